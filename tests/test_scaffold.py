"""``course new``: a new assignment's source notebook with the course's conventions (no grading here; the
whole round trip is in ``test_authoring_e2e.py``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest

from course_tools import cli
from course_tools.colab import is_colab_cell
from course_tools.paths import CourseError, assignments
from course_tools.scaffold import new_assignment

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def course(tmp_path):
    shutil.copy2(ROOT / "nbgrader_config.py", tmp_path)
    shutil.copy2(ROOT / "course.toml", tmp_path)
    shutil.copytree(ROOT / "source", tmp_path / "source", ignore=shutil.ignore_patterns("*.png", "*.pdf"))
    return tmp_path


def test_the_new_notebook_comes_last_and_follows_the_conventions(course):
    path = new_assignment(course, "extra")
    assert path == course / "source" / "extra" / "05_extra.ipynb"
    assert assignments(course) == ["lab", "homework", "extra"]
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert is_colab_cell(nb.cells[0]) and nb.cells[0].metadata["nbgrader"]["locked"]
    meta = {c.metadata.get("nbgrader", {}).get("grade_id"): c.metadata.get("nbgrader") for c in nb.cells}
    assert meta["setup"]["locked"] and not meta["setup"]["grade"]
    assert meta["correct_class_probability"]["solution"]
    assert meta["test_correct_class_probability"]["grade"] and meta["test_correct_class_probability"]["points"] == 2
    setup = next(c.source for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "setup")
    assert "helpers.load_model()" in setup and '"05_extra")' in setup
    test = next(c.source for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") ==
                "test_correct_class_probability")
    hidden = test.split("### BEGIN HIDDEN TESTS")[1].split("### END HIDDEN TESTS")[0]
    assert 'cell="test_correct_class_probability"' in hidden and "mistakes=lambda:" in hidden
    assert "assert" in test.split("### END HIDDEN TESTS")[1]


def test_the_cli_writes_it_and_refuses_a_taken_or_bad_name(course, monkeypatch, capsys):
    monkeypatch.chdir(course)
    assert cli.main(["new", "bonus", "--title", "Bonus: gradient x input"]) == 0
    nb = nbformat.read(course / "source" / "bonus" / "05_bonus.ipynb", as_version=4)
    assert nb.cells[1].source.startswith("# Bonus: gradient x input")
    capsys.readouterr()
    for argv, words in ((["new", "bonus"], "exists already"), (["new", "lab"], "exists already"),
                        (["new", "9lives"], "must start with a letter"), (["new", "a b"], "must start with a letter")):
        assert cli.main(argv) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and words in err and "\n" not in err
    assert assignments(course) == ["lab", "homework", "bonus"]


def test_without_course_toml_nothing_is_written(course):
    (course / "course.toml").unlink()
    with pytest.raises(CourseError, match="course.toml is missing"):
        new_assignment(course, "extra")
    assert not (course / "source" / "extra").exists()
