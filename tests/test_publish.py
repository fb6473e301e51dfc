"""``course publish``: what the student tree holds, how it is (re)written, and the leak scan with planted leaks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest

from course_tools import cli
from course_tools.demo_class import DEMO_FOLDER
from course_tools.publish import (
    FAST_SMOOTHGRAD_NAMES, FORBIDDEN_TEXT, INSTRUCTOR_NAMES, MANIFEST, PublishError, companion_schedule,
    fast_smoothgrad_lines, leak_problems, publish,
    published_tree_problems, secret_lines,
)

ROOT = Path(__file__).resolve().parents[1]
quiet = dict(log=lambda line: None)


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    tree = tmp_path_factory.mktemp("publish") / "student"
    publish(ROOT, tree, **quiet)
    return tree


def _files(tree: Path) -> set[str]:
    return {p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file() and ".git" not in p.parts}


def test_the_student_tree_holds_what_students_need_and_nothing_else(published):
    files = _files(published)
    for name in ("README.md", "pyproject.toml", "requirements.txt", "runtime.txt", "helpers/__init__.py",
                 "lab/01_data_and_model.ipynb", "homework/04_smoothgrad.ipynb", "notebooks/00_setup_check.ipynb",
                 MANIFEST):
        assert name in files
    assert not [f for f in files if f.split("/")[0] in ("source", "instructor", "references", "beyond", "tests")]
    assert not [f for f in files if f.endswith((".npz", ".npy", ".pth", ".db"))]
    assert [f for f in files if f.startswith("notebooks/")] == ["notebooks/00_setup_check.ipynb"]
    for name in ("lab/02_vanilla_saliency.ipynb", "homework/04_smoothgrad.ipynb"):
        assert (published / name).read_bytes() == (ROOT / "release" / name).read_bytes()
    assert 'packages = ["helpers"]' in (published / "pyproject.toml").read_text()
    requirements = (published / "requirements.txt").read_text()
    assert "torch==" in requirements and "-e ." in requirements
    assert "nbgrader" not in requirements and "instructor" not in requirements


def test_the_example_students_stay_with_the_instructor(published):
    """demo/ quotes the solutions (the typical mistakes are written as edits of them): never published."""
    assert (ROOT / DEMO_FOLDER / "lab.toml").is_file() and DEMO_FOLDER in INSTRUCTOR_NAMES
    assert not [f for f in _files(published) if DEMO_FOLDER in f.split("/")[:-1] or f.endswith("/lab.toml")]


def test_the_student_readme_links_colab_binder_and_the_data(published):
    from helpers.data import DATA_SHA256, DATA_URL

    readme = (published / "README.md").read_text()
    assert "colab.research.google.com/github/CHANGE-ME/saliency-course/blob/main/lab/01_data_and_model.ipynb" in readme
    assert "mybinder.org/v2/gh/CHANGE-ME/saliency-course/main" in readme
    assert DATA_URL in readme and DATA_SHA256 in readme
    assert "SALIENCY_DATA" in readme and "SALIENCY_WEIGHTS" in readme and "jupyter lab" in readme
    assert "saliency-course-private" not in readme


def test_the_published_tree_leaks_nothing_at_any_stage():
    assert published_tree_problems(ROOT) == []


def test_after_the_homework_the_companions_and_beyond_are_published_and_withdrawn_again(tmp_path):
    tree = tmp_path / "student"
    publish(ROOT, tree, **quiet)
    (tree / ".git").mkdir()
    (tree / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (tree / "LICENSE").write_text("CC-BY 4.0\n")               # the instructor's own addition
    publish(ROOT, tree, "homework", **quiet)
    files = _files(tree)
    assert {f"notebooks/{p.name}" for p in (ROOT / "notebooks").glob("*.ipynb")} <= files
    assert "beyond/smoothgrad.py" in files and "beyond/attribution.py" in files
    assert '"helpers", "beyond"' in (tree / "pyproject.toml").read_text()
    assert json.loads((tree / MANIFEST).read_text())["after"] == "homework"
    publish(ROOT, tree, **quiet)                                  # a new term: back to before the deadlines
    assert not (tree / "beyond").exists() and "notebooks/sanity_checks.ipynb" not in _files(tree)
    assert (tree / ".git" / "HEAD").read_text() == "ref: refs/heads/main\n"
    assert (tree / "LICENSE").read_text() == "CC-BY 4.0\n"


def test_a_non_empty_folder_that_is_not_a_publish_is_refused_and_kept(tmp_path):
    dest = tmp_path / "thesis"
    dest.mkdir()
    (dest / "chapter1.tex").write_text("precious")
    with pytest.raises(PublishError, match="is not empty and is not an earlier `course publish`"):
        publish(ROOT, dest, **quiet)
    assert _files(dest) == {"chapter1.tex"} and (dest / "chapter1.tex").read_text() == "precious"


def test_a_clone_of_an_empty_repository_is_accepted(tmp_path):
    dest = tmp_path / "clone"
    (dest / ".git").mkdir(parents=True)
    publish(ROOT, dest, **quiet)
    assert (dest / "README.md").is_file() and (dest / ".git").is_dir()


@pytest.mark.parametrize("dest, match", [
    (ROOT / "student", "inside the course folder"),
    (ROOT, "inside the course folder"),
    (ROOT.parent, "contains the course folder"),
    ("", "dest must be a folder path"),
    (42, "dest must be a folder path"),
])
def test_bad_destinations_are_refused(dest, match):
    with pytest.raises(PublishError, match=match):
        publish(ROOT, dest, **quiet)
    assert not (ROOT / "student").exists()


def test_a_file_as_destination_and_a_bad_stage_are_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(PublishError, match="is not a folder"):
        publish(ROOT, tmp_path / "file", **quiet)
    with pytest.raises(PublishError, match="after must be one of"):
        publish(ROOT, tmp_path / "new", "exam", **quiet)
    assert not (tmp_path / "new").exists()


def test_the_cli_publishes_and_reports_errors_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    assert cli.main(["publish", str(tmp_path / "out"), "--after", "homework"]) == 0
    assert "beyond/__init__.py" in _files(tmp_path / "out")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert cli.main(["publish", str(tmp_path / "busy")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: dest ") and "notes.txt" in err
    assert cli.main(["publish", str(tmp_path / "x"), "--after", "exam"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: after must be one of ['lab', 'homework']") and not (tmp_path / "x").exists()


# ------------------------------------------------------------------------------------------- the companion rules

def _course_copy(tmp_path: Path) -> Path:
    course = tmp_path / "course"
    course.mkdir()
    for name in ("source", "release", "notebooks", "helpers", "beyond"):
        shutil.copytree(ROOT / name, course / name, ignore=shutil.ignore_patterns("__pycache__", "*.png", "*.pdf"))
    (course / "instructor" / "course_tools").mkdir(parents=True)
    shutil.copy2(ROOT / "instructor" / "course_tools" / "smoothgrad.py", course / "instructor" / "course_tools")
    for name in ("course.toml", "pyproject.toml", "requirements.txt", "runtime.txt", "nbgrader_config.py"):
        shutil.copy2(ROOT / name, course / name)
    return course


def test_the_schedule_holds_the_companions_that_answer_the_homework_back():
    schedule = companion_schedule(ROOT)
    assert schedule["00_setup_check.ipynb"] == "always"
    for name in ("sanity_checks.ipynb", "smoothgrad_knobs.ipynb", "gradient_family.ipynb", "try_your_own_image.ipynb"):
        assert schedule[name] == "homework"


@pytest.mark.parametrize("table, match", [
    ('"nope.ipynb" = "always"', "which is not in notebooks/"),
    ('"00_setup_check.ipynb" = "exam"', "must be one of"),
    ('"sanity_checks.ipynb" = "always"', "imports beyond, which answers the homework"),
])
def test_bad_schedules_are_refused(tmp_path, table, match):
    course = _course_copy(tmp_path)
    text = (course / "course.toml").read_text().split("[companions]")[0]
    (course / "course.toml").write_text(text + "[companions]\n" + table + "\n")
    with pytest.raises(PublishError, match=match):
        companion_schedule(course)


def test_an_unlisted_companion_waits_for_the_last_assignment(tmp_path):
    course = _course_copy(tmp_path)
    shutil.copy2(course / "notebooks" / "00_setup_check.ipynb", course / "notebooks" / "new_idea.ipynb")
    assert companion_schedule(course)["new_idea.ipynb"] == "homework"


# ------------------------------------------------------------------------------------- the leak scan, planted

def _first_secret(kind: str) -> str:
    lines = [line for line, what in secret_lines(ROOT).items() if what == kind]
    assert lines, f"source/ has no {kind} lines"
    return lines[0]


def _plant_in_helpers(tree: Path, line: str) -> None:
    with open(tree / "helpers" / "plots.py", "a") as fh:
        fh.write("\n" + line + "\n")


def _plant_in_notebook(tree: Path, line: str, *, outputs: bool = False) -> None:
    path = tree / "lab" / "01_data_and_model.ipynb"
    nb = nbformat.read(path, as_version=4)
    cell = nbformat.v4.new_code_cell(line)
    if outputs:
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="42\n")]
    nb.cells.append(cell)
    nbformat.write(nb, path)


def _spread(line: str) -> str:
    """The same code with other whitespace: the scan normalises it away."""
    return "    " + " ".join(line) if len(line) < 40 else "  " + line.replace(",", " ,  ")


PLANTS = {
    "solution line": (lambda t: _plant_in_helpers(t, _spread(_first_secret("solution"))), "a solution line"),
    "solution line in a notebook": (lambda t: _plant_in_notebook(t, _first_secret("solution")), "a solution line"),
    "hidden-test line": (lambda t: _plant_in_helpers(t, _first_secret("hidden test")), "a hidden test line"),
    "mark-scheme line": (lambda t: (t / "notes.md").write_text(_first_secret("mark scheme")), "a mark scheme line"),
    "solution marker": (lambda t: _plant_in_notebook(t, "### BEGIN SOLUTION"), "a solution marker"),
    "hidden-test marker": (lambda t: _plant_in_notebook(t, "### END HIDDEN TESTS"), "a hidden-test marker"),
    "mark-scheme marker": (lambda t: (t / "notes.md").write_text("=== MARK SCHEME ==="), "a mark-scheme marker"),
    "reference array": (lambda t: (t / "helpers" / "ref_0.npy").write_bytes(b"\x93NUMPY"), "reference-array"),
    "weights file": (lambda t: (t / "squeezenet.pth").write_bytes(b"PK"), "weights file"),
    "data file": (lambda t: (t / "imagenet_val_25.npz").write_bytes(b"PK"), "data"),
    "gradebook": (lambda t: (t / "gradebook.db").write_bytes(b"SQLite"), "data, reference-array"),
    "source folder": (lambda t: (t / "source" / "lab").mkdir(parents=True)
                      or (t / "source" / "lab" / "x.txt").write_text("x"), "instructor's repository"),
    "demo students": (lambda t: shutil.copytree(ROOT / "demo", t / "demo"), "instructor's repository"),
    "demo students in a folder": (lambda t: shutil.copytree(ROOT / "demo", t / "lab" / "demo"),
                                  "instructor's repository"),
    "instructor import": (lambda t: _plant_in_helpers(t, "from course_tools import smoothgrad"), "instructor package"),
    "instructor install": (lambda t: _plant_in_notebook(t, "!pip install saliency-course-instructor"),
                           "instructor package"),
    "fast SmoothGrad line": (lambda t: _plant_in_helpers(t, sorted(fast_smoothgrad_lines(ROOT))[0]),
                             "fast SmoothGrad"),
    "fast SmoothGrad name": (lambda t: _plant_in_helpers(t, "maps = smoothgrad(X, y, m, noise_on_device=True)"),
                             "fast SmoothGrad"),
    "beyond before the homework": (lambda t: shutil.copytree(ROOT / "beyond", t / "beyond",
                                                             ignore=shutil.ignore_patterns("__pycache__")),
                                   "publish it only with --after homework"),
    "companion before the homework": (lambda t: shutil.copy2(ROOT / "notebooks" / "sanity_checks.ipynb",
                                                             t / "notebooks"), "publish it only with --after homework"),
    "notebook outputs": (lambda t: _plant_in_notebook(t, "print(42)", outputs=True), "carries outputs"),
    "symbolic link": (lambda t: (t / "link").symlink_to(ROOT / "source"), "symbolic link"),
}


def test_the_clean_tree_passes_the_scan(published):
    assert leak_problems(published, ROOT) == []


@pytest.mark.parametrize("kind", list(PLANTS))
def test_each_kind_of_leak_is_caught(kind, published, tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(published, tree)
    plant, expected = PLANTS[kind]
    plant(tree)
    problems = leak_problems(tree, ROOT)
    assert any(expected in problem for problem in problems), problems


def test_a_planted_solution_line_stops_course_publish_and_leaves_dest_alone(tmp_path):
    course = _course_copy(tmp_path)
    dest = tmp_path / "student"
    publish(course, dest, **quiet)
    before = {name: (dest / name).read_bytes() for name in _files(dest)}
    with open(course / "helpers" / "plots.py", "a") as fh:
        fh.write("\n" + _first_secret("solution") + "\n")
    with pytest.raises(PublishError, match="(?s)would leak instructor material.*a solution line"):
        publish(course, dest, **quiet)
    assert {name: (dest / name).read_bytes() for name in _files(dest)} == before


def test_a_leaking_file_the_instructor_added_to_the_student_repository_is_caught(tmp_path):
    dest = tmp_path / "student"
    publish(ROOT, dest, **quiet)
    (dest / "answers.md").write_text(_first_secret("solution"))
    with pytest.raises(PublishError, match="answers.md"):
        publish(ROOT, dest, **quiet)


def test_course_check_runs_the_published_tree_scan(tmp_path, monkeypatch):
    import course_tools.publish as pub

    calls = []
    monkeypatch.setattr(pub, "published_tree_problems", lambda root: calls.append(root) or ["planted leak"])
    monkeypatch.setattr("course_tools.release.release_differences", lambda root: [])
    monkeypatch.chdir(ROOT)
    assert cli.main(["check"]) == 1 and calls == [ROOT]


@pytest.mark.parametrize("word, what", FORBIDDEN_TEXT, ids=[w for w, _ in FORBIDDEN_TEXT])
def test_every_forbidden_word_is_caught(word, what, published, tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(published, tree)
    (tree / "notes.md").write_text(f"see {word} here\n")
    assert leak_problems(tree, ROOT) == [f"notes.md: line 1 contains {word!r} ({what})"]


@pytest.mark.parametrize("name", FAST_SMOOTHGRAD_NAMES)
def test_every_name_of_the_fast_smoothgrad_is_caught(name, published, tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(published, tree)
    (tree / "helpers" / "extra.py").write_text(f"value = {name}\n")
    assert leak_problems(tree, ROOT) == [f"helpers/extra.py: line 1 contains the instructor's fast SmoothGrad: "
                                         f"'value = {name}'"]
