"""Bad input to the ``course`` command: one ``error:`` line, status 1, no traceback, and no file of the
course changed or deleted. Each case runs ``course_tools.cli.main`` in a fresh copy of the course (no
notebook is executed: every mistake is caught before any work)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import file_states
from course_tools.cli import main

ROOT = Path(__file__).resolve().parents[1]
NOT_JSON = "{this is not json"


def _break(rel: str, content: str | bytes):
    def apply(course: Path) -> None:
        path = course / rel
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return apply


def _orphan_references(course: Path) -> None:
    (course / "source" / "lab" / "02_vanilla_saliency.ipynb").unlink()
    kept = course / "references" / "abc_def" / "02_vanilla_saliency"
    kept.mkdir(parents=True)
    (kept / "saliency.npy").write_bytes(b"recorded")
    (course / "references" / "abc_def" / "manifest.json").write_text("{}")


SRC01 = "source/lab/01_data_and_model.ipynb"
CASES = [
    # arguments (argparse): the value, the argument and what was expected
    ("grade-jobs-negative", None, ["grade", "--jobs", "-1"], r"argument --jobs: expected at least 1 jobs, got -1"),
    ("grade-jobs-0", None, ["grade", "--jobs", "0"], r"argument --jobs: expected at least 1"),
    ("grade-jobs-word", None, ["grade", "--jobs", "many"], r"argument --jobs: expected a whole number of jobs"),
    ("grade-cell-timeout-0", None, ["grade", "--cell-timeout", "0"], r"argument --cell-timeout: expected at least 1 s"),
    ("grade-cell-timeout-negative", None, ["grade", "--cell-timeout", "-1"], r"argument --cell-timeout: expected at"),
    ("grade-cell-timeout-float", None, ["grade", "--cell-timeout", "2.5"], r"argument --cell-timeout: expected a whole"),
    ("grade-memory-0", None, ["grade", "--memory-mib", "0"], r"argument --memory-mib: expected at least 1024 MiB"),
    ("grade-memory-small", None, ["grade", "--memory-mib", "100"], r"argument --memory-mib: expected at least 1024"),
    ("grade-assignment", None, ["grade", "--assignment", "exam"], r"--assignment: no assignment named 'exam' in source/ \(there: lab, homework\)"),
    ("references-jobs-0", None, ["references", "--jobs", "0"], r"argument --jobs: expected at least 1"),
    ("build-jobs-negative", None, ["build", "--jobs", "-2"], r"argument --jobs: expected at least 1"),
    ("run-timeout-0", None, ["run", "--timeout", "0"], r"argument --timeout: expected at least 1 seconds"),
    ("demo-copies-0", None, ["demo-class", "--copies", "0"], r"argument --copies: expected at least 1 copies"),
    ("unknown-command", None, ["publish-everything"], r"invalid choice: 'publish-everything'"),
    ("no-command", None, [], r"the following arguments are required: command"),
    ("unknown-option", None, ["check", "--fast"], r"unrecognized arguments: --fast"),
    # a broken source notebook: named, for every command that reads it
    *[(f"{cmd}-not-json", _break(SRC01, NOT_JSON), [cmd], r"01_data_and_model.ipynb is not a valid Jupyter notebook "
       r"\(NotJSONError") for cmd in ("check", "colab", "strip", "references", "grade", "release", "build", "run",
                                       "demo-class")],
    ("check-not-utf8", _break(SRC01, b"\xff\xfe{}"), ["check"], r"01_data_and_model.ipynb is not"),
    ("check-no-cells", _break(SRC01, '{"nbformat": 4, "nbformat_minor": 5, "metadata": {}}'), ["check"],
     r"01_data_and_model.ipynb is not a valid Jupyter notebook"),
    ("check-empty-notebook", _break(SRC01, ""), ["check"], r"01_data_and_model.ipynb is not a valid Jupyter notebook"),
    ("colab-companion-not-json", _break("notebooks/gradient_family.ipynb", NOT_JSON), ["colab"],
     r"gradient_family.ipynb is not a valid Jupyter notebook"),
    ("check-release-not-json", _break("release/lab/01_data_and_model.ipynb", NOT_JSON), ["check"],
     r"release/lab/01_data_and_model.ipynb is not a valid Jupyter notebook"),
    # course.toml and nbgrader_config.py
    ("colab-toml-not-utf8", _break("course.toml", b'[colab]\nrepository = "caf\xe9"\n'), ["colab"],
     r"course.toml is not UTF-8 text"),
    ("colab-toml-not-toml", _break("course.toml", "[colab\nrepository ="), ["colab"], r"course.toml is not valid TOML"),
    ("colab-toml-no-table", _break("course.toml", "x = 1\n"), ["colab"], r"course.toml needs a \[student\] table"),
    ("colab-toml-bad-address", _break("course.toml", '[colab]\nrepository = "http://x; rm -rf /"\n'), ["colab"],
     r"\[colab\] repository in .* must be an https address"),
    ("release-config-syntax", _break("nbgrader_config.py", "c = get_config(\n"), ["release"],
     r"nbgrader_config.py has a syntax error at line 1"),
    ("check-config-syntax", _break("nbgrader_config.py", "c.CourseDirectory.root = \n"), ["check"],
     r"nbgrader_config.py has a syntax error"),
    ("grade-config-not-utf8", _break("nbgrader_config.py", b"c = '\xff'\n"), ["grade"], r"nbgrader_config.py"),
    # references of a missing source notebook are kept, not silently dropped
    ("references-missing-source", _orphan_references, ["references"],
     r"references/abc_def/02_vanilla_saliency holds the references of 02_vanilla_saliency.ipynb, which is missing"),
]


@pytest.fixture
def course(tmp_path, monkeypatch):
    root = tmp_path / "course"
    root.mkdir()
    for name in ("nbgrader_config.py", "course.toml"):
        shutil.copy2(ROOT / name, root / name)
    for name in ("source", "notebooks", "release"):
        shutil.copytree(ROOT / name, root / name,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "*.png", "*.pdf", "__pycache__"))
    monkeypatch.chdir(root)
    return root


@pytest.mark.parametrize("damage, argv, pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_mistake_is_one_error_line_and_status_1(course, capsys, damage, argv, pattern):
    if damage is not None:
        damage(course)
    before = file_states(course)
    try:
        code = main(argv)
    except SystemExit as exit_:   # argparse's mistakes
        code = exit_.code
    out, err = capsys.readouterr()
    assert code == 1, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in out + err
    import re

    assert re.search(pattern, lines[0]), f"{lines[0]!r} does not match {pattern!r}"
    assert file_states(course) == before, "a refused command changed or deleted the course's files"


def test_outside_a_course_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["check"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "is not inside a course folder" in err and "\n" not in err


def test_an_unexpected_error_is_one_line_with_the_file(course, monkeypatch, capsys):
    # e.g. release/ not writable, a file where a folder should be: the OSError with its file name.
    import course_tools.cli as cli

    def fails(root, args):
        raise FileExistsError(17, "File exists", str(root / "release"))

    monkeypatch.setattr(cli, "cmd_release", fails)
    monkeypatch.setattr(cli, "build_parser", _patched_parser(cli, fails))
    assert main(["release"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: {course / 'release'}: File exists", err


def _patched_parser(cli, func):
    original = cli.build_parser

    def build():
        parser = original()
        parser.set_defaults()
        for action in parser._subparsers._group_actions:
            action.choices["release"].set_defaults(func=func)
        return parser
    return build
