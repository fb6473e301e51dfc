"""``course_tools.prompts``: every answer graded by hand has its question in view of the students."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from course_tools.prompts import unprompted_answers

ROOT = Path(__file__).resolve().parents[1]


def _answer(grade_id: str = "q1"):
    cell = nbformat.v4.new_markdown_cell("YOUR ANSWER HERE")
    cell.metadata["nbgrader"] = {"grade": True, "solution": True, "locked": False, "points": 2, "grade_id": grade_id,
                                 "schema_version": 3, "task": False}
    return cell


def _question(locked: bool = True):
    cell = nbformat.v4.new_markdown_cell("### Question\n\nWhy is the histogram symmetric?")
    if locked:
        cell.metadata["nbgrader"] = {"grade": False, "solution": False, "locked": True, "grade_id": "q1_prompt",
                                     "schema_version": 3, "task": False}
    return cell


def _write(tmp_path: Path, cells) -> Path:
    path = tmp_path / "nb.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    return path


def test_every_released_answer_cell_has_its_question_above():
    released = sorted((ROOT / "release").glob("*/*.ipynb"))
    assert released
    assert [p for nb in released for p in unprompted_answers(nb)] == []


def test_a_question_inside_the_answer_cell_is_flagged(tmp_path):
    # What nbgrader releases when the question was written inside the solution cell: only the stub is left.
    path = _write(tmp_path, [nbformat.v4.new_code_cell("x = 1"), _answer()])
    (problem,) = unprompted_answers(path)
    assert "'q1'" in problem and "no question above it" in problem


@pytest.mark.parametrize("above", [None, "stub", "empty"])
def test_no_question_first_cell_stub_or_empty_cell_above(tmp_path, above):
    cells = {None: [], "stub": [nbformat.v4.new_markdown_cell("YOUR ANSWER HERE")],
             "empty": [nbformat.v4.new_markdown_cell("  ")]}[above]
    assert len(unprompted_answers(_write(tmp_path, [*cells, _answer()]))) == 1


def test_an_editable_question_is_flagged_and_a_read_only_one_passes(tmp_path):
    (problem,) = unprompted_answers(_write(tmp_path, [_question(locked=False), _answer()]))
    assert "not read-only" in problem
    assert unprompted_answers(_write(tmp_path, [_question(), _answer()])) == []


def test_autograded_cells_need_no_prompt(tmp_path):
    solution = nbformat.v4.new_code_cell("raise NotImplementedError()")
    solution.metadata["nbgrader"] = {"grade": False, "solution": True, "grade_id": "f", "schema_version": 3}
    assert unprompted_answers(_write(tmp_path, [solution])) == []


def test_a_missing_notebook_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="path must be an existing notebook"):
        unprompted_answers(tmp_path / "nope.ipynb")
