"""The Colab set-up cell (``course_tools.colab``): present everywhere, harmless outside Colab."""

from __future__ import annotations

import shutil
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest

from course_tools.colab import (
    GRADE_ID, MARKER, ColabConfig, ColabConfigError, cell_problems, cell_source, install_cell, read_config,
)

ROOT = Path(__file__).resolve().parents[1]
SOURCE = sorted((ROOT / "source").glob("*/*.ipynb"))
RELEASE = sorted((ROOT / "release").glob("*/*.ipynb"))
COMPANIONS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_the_course_config_is_valid():
    config = read_config(ROOT)
    assert config.repository.startswith("https://") and config.ref


@pytest.mark.parametrize("path", SOURCE + RELEASE + COMPANIONS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_notebook_starts_with_the_current_cell(path):
    graded = path.parent.parent.name in ("source", "release")
    assert cell_problems(path, read_config(ROOT), nbgrader=graded) == []


def run_cell(source: str, monkeypatch, *, on_colab: bool) -> list[list[str]]:
    """Execute the cell's code; return the commands it ran (subprocess.run is recorded, not run)."""
    calls: list[list[str]] = []

    def fake_run(cmd, check=False, **kwargs):
        calls.append(list(cmd))
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    loaded = []
    import helpers

    monkeypatch.setattr(helpers, "load_imagenet_val", lambda *a, **k: loaded.append(True))
    widgets = []
    if on_colab:
        colab = types.ModuleType("google.colab")
        colab.output = types.SimpleNamespace(enable_custom_widget_manager=lambda: widgets.append(True))
        monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
        monkeypatch.setitem(sys.modules, "google.colab", colab)
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    exec(compile(source, "<colab cell>", "exec"), {})
    if on_colab:
        assert loaded == [True], "on Colab the cell must fetch (and check) the data"
    else:
        assert loaded == [] and widgets == []
    return calls


def test_outside_colab_the_cell_does_nothing(monkeypatch):
    source = cell_source(ColabConfig("https://example.org/course", "v1"), widgets=True)
    assert run_cell(source, monkeypatch, on_colab=False) == []


@pytest.mark.parametrize("widgets", [False, True])
def test_on_colab_the_cell_installs_only_the_student_package(monkeypatch, widgets):
    source = cell_source(ColabConfig("https://example.org/course", "v1", "https://example.org/private"),
                         widgets=widgets)
    calls = run_cell(source, monkeypatch, on_colab=True)
    assert len(calls) == 1
    cmd = calls[0]
    assert cmd[:4] == [sys.executable, "-m", "pip", "install"]
    assert cmd[-1] == "saliency-course-helpers @ git+https://example.org/course@v1"
    assert "instructor" not in " ".join(cmd) and "private" not in source


def test_install_cell_adds_replaces_and_is_idempotent(tmp_path):
    path = tmp_path / "nb.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"), nbformat.v4.new_code_cell("from beyond import sanity")]
    nbformat.write(nb, path)
    first = ColabConfig("https://example.org/a", "main")
    assert cell_problems(path, first)
    assert install_cell(path, first, nbgrader=True)
    assert not install_cell(path, first, nbgrader=True)
    assert cell_problems(path, first, nbgrader=True) == []
    cells = nbformat.read(path, as_version=4).cells
    assert len(cells) == 3 and cells[0].source.startswith(MARKER)
    assert cells[0].metadata["nbgrader"]["grade_id"] == GRADE_ID and cells[0].metadata["nbgrader"]["locked"]
    assert "enable_custom_widget_manager" in cells[0].source   # the notebook uses beyond: sliders
    second = ColabConfig("https://example.org/b", "v2")
    assert cell_problems(path, second) == [f"{path}: its Colab cell differs from course.toml's address "
                                           "(run `course colab`)"]
    assert install_cell(path, second, nbgrader=True)
    cells = nbformat.read(path, as_version=4).cells
    assert len(cells) == 3 and "example.org/b" in cells[0].source


@pytest.mark.parametrize("text, match", [
    (None, "course.toml is missing"),
    ("[colab\n", "not valid TOML"),
    ("[other]\n", "needs a \\[student\\] table"),
    ('[student]\nrepository = "https://github.com/me/course"\n[instructor]\nrepository = "https://github.com/me/course.git"\n',
     "is the instructor's repository"),
    ('[student]\nrepository = "https://github.com/me/course"\n[instructor]\nrepository = "ssh://x"\n',
     "\\[instructor\\] repository .* must be an https address"),
    ('[colab]\nrepository = "git@github.com:me/course.git"\n', "must be an https address"),
    ('[colab]\nrepository = "https://github.com/me/course\\"; import os"\n', "must be an https address"),
    ('[colab]\nrepository = "https://github.com/me/course"\nref = "--upgrade"\n', "must be a branch, tag or commit"),
])
def test_bad_configs_are_refused(tmp_path, text, match):
    if text is not None:
        (tmp_path / "course.toml").write_text(text)
    with pytest.raises(ColabConfigError, match=match):
        read_config(tmp_path)


def test_config_accepts_a_git_suffix(tmp_path):
    (tmp_path / "course.toml").write_text('[colab]\nrepository = "https://github.com/me/course.git"\n')
    assert read_config(tmp_path) == ColabConfig("https://github.com/me/course", "main")


def test_student_and_instructor_repositories_are_read(tmp_path):
    (tmp_path / "course.toml").write_text('[student]\nrepository = "https://github.com/me/course"\nref = "fall"\n'
                                          '[instructor]\nrepository = "https://github.com/me/course-private"\n')
    assert read_config(tmp_path) == ColabConfig("https://github.com/me/course", "fall",
                                                 "https://github.com/me/course-private")


def test_the_course_keeps_the_two_repositories_apart():
    config = read_config(ROOT)
    assert config.instructor_repository and config.instructor_repository != config.repository


def test_a_cell_that_installs_from_the_instructor_repository_is_flagged(tmp_path):
    path = tmp_path / "nb.ipynb"
    private = ColabConfig("https://example.org/private", "main")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1")]
    nbformat.write(nb, path)
    install_cell(path, private, nbgrader=False)
    config = ColabConfig("https://example.org/public", "main", "https://example.org/private")
    assert cell_problems(path, config) == [f"{path}: its Colab cell installs from the instructor's (private) "
                                           "repository; it must install only the student package from "
                                           "https://example.org/public (run `course colab`)"]
    other = ColabConfig("https://example.org/elsewhere", "main")
    install_cell(path, other, nbgrader=False)
    assert "differs from course.toml's address" in cell_problems(path, config)[0]


def test_course_colab_and_check_on_a_copy(tmp_path, monkeypatch, capsys):
    from course_tools import cli

    course = tmp_path / "course"
    course.mkdir()
    for name in ("source", "notebooks", "release"):
        shutil.copytree(ROOT / name, course / name)
    shutil.copy(ROOT / "nbgrader_config.py", course)
    (course / "course.toml").write_text('[colab]\nrepository = "https://example.org/fork"\nref = "spring"\n')
    monkeypatch.chdir(course)
    assert cli.main(["colab"]) == 0
    out = capsys.readouterr().out
    assert "https://example.org/fork@spring" in out and "updated" in out
    nb = nbformat.read(course / "source" / "lab" / "01_data_and_model.ipynb", as_version=4)
    assert 'COURSE, REF = "https://example.org/fork", "spring"' in nb.cells[0].source
    # release/ still has the old address until it is regenerated: course check says so.
    assert cli.main(["check"]) == 1
    assert "its Colab cell differs from course.toml's address" in capsys.readouterr().out


def test_course_colab_without_a_config_says_so(tmp_path, monkeypatch, capsys):
    from course_tools import cli

    (tmp_path / "nbgrader_config.py").write_text("c = get_config()\n")
    (tmp_path / "source").mkdir()
    monkeypatch.chdir(tmp_path)
    assert cli.main(["colab"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "course.toml is missing" in err
