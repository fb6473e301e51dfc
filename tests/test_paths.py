"""Where things are in a course folder: the assignments are discovered from ``source/``."""

from __future__ import annotations

from pathlib import Path

import pytest

from course_tools.paths import CourseError, assignments, source_notebooks

ROOT = Path(__file__).resolve().parents[1]


def _notebook(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')


def test_the_course_has_the_lab_then_the_homework():
    assert assignments(ROOT) == ["lab", "homework"]
    assert [p.name[:2] for p in source_notebooks(ROOT)] == ["01", "02", "03", "04"]


def test_assignments_are_ordered_by_their_first_notebook_then_by_name(tmp_path):
    _notebook(tmp_path / "source" / "homework" / "04_b.ipynb")
    _notebook(tmp_path / "source" / "lab" / "01_a.ipynb")
    _notebook(tmp_path / "source" / "lab" / "02_a.ipynb")
    _notebook(tmp_path / "source" / "extra" / "05_c.ipynb")
    _notebook(tmp_path / "source" / "bonus" / "05_c.ipynb")
    (tmp_path / "source" / "empty").mkdir()                     # no notebook: not an assignment
    _notebook(tmp_path / "source" / ".ipynb_checkpoints" / "x.ipynb")
    (tmp_path / "source" / "notes.ipynb").write_text("{}")       # a file, not a folder
    assert assignments(tmp_path) == ["lab", "homework", "bonus", "extra"]
    assert [p.parent.name + "/" + p.name for p in source_notebooks(tmp_path)] == [
        "lab/01_a.ipynb", "lab/02_a.ipynb", "homework/04_b.ipynb", "bonus/05_c.ipynb", "extra/05_c.ipynb"]
    assert [p.name for p in source_notebooks(tmp_path, "extra")] == ["05_c.ipynb"]


def test_no_source_folder_means_no_assignments(tmp_path):
    assert assignments(tmp_path) == []


def test_a_folder_nbgrader_cannot_use_is_refused_by_name(tmp_path):
    _notebook(tmp_path / "source" / "week 1" / "01.ipynb")
    with pytest.raises(CourseError, match=r"source/week 1: an assignment folder's name must start with a letter"):
        assignments(tmp_path)
