"""``course_tools.nbgrader_cells``: nbgrader's roles of a cell, read safely from any metadata."""

from __future__ import annotations

import nbformat
import pytest

from course_tools.nbgrader_cells import (grade_id, is_autograder_test, is_grade, is_locked, is_solution,
                                         nbgrader_metadata, points)


def _cell(meta, cell_type="code"):
    cell = nbformat.v4.new_code_cell("x = 1") if cell_type == "code" else nbformat.v4.new_markdown_cell("x")
    cell.metadata["nbgrader"] = meta
    return cell


@pytest.mark.parametrize("meta, gid, grade, solution, locked, test", [
    ({"grade_id": "setup", "locked": True, "grade": False, "solution": False}, "setup", False, False, True, False),
    ({"grade_id": "answer", "solution": True, "grade": False, "locked": False}, "answer", False, True, False, False),
    ({"grade_id": "test", "grade": True, "solution": False, "locked": False, "points": 2}, "test", True, False, True,
     True),   # nbgrader: a test cell is read-only even when "locked" says otherwise
    ({"grade_id": "manual", "grade": True, "solution": True, "locked": True}, "manual", True, True, False, False),
])
def test_roles_are_nbgraders(meta, gid, grade, solution, locked, test):
    cell = _cell(meta)
    assert (grade_id(cell), is_grade(cell), is_solution(cell), is_locked(cell), is_autograder_test(cell)) == \
        (gid, grade, solution, locked, test)


@pytest.mark.parametrize("cell", [
    _cell("a string"), _cell(["grade", True]), _cell(7), _cell(None), _cell({"grade_id": ["a"], "grade": True}),
    _cell({"grade_id": 12, "grade": True}), _cell({"grade_id": "g" * 100_000, "grade": True}),
    _cell({"grade_id": "test\n", "grade": True}), _cell({"grade_id": "", "grade": True}),
    {"cell_type": "code", "metadata": ["not", "a", "dict"]}, {"metadata": {"nbgrader": {"grade": True}}}, "a cell",
    None, 42, nbformat.v4.new_code_cell("x"),
])
def test_malformed_or_missing_metadata_is_no_role_and_never_raises(cell):
    assert grade_id(cell) is None
    if nbgrader_metadata(cell) is None:
        assert not (is_grade(cell) or is_solution(cell) or is_locked(cell) or is_autograder_test(cell))
    assert points(cell) == 0.0


def test_a_plain_dict_cell_is_read_like_a_notebook_node():
    cell = {"cell_type": "code", "metadata": {"nbgrader": {"grade_id": "t", "grade": True, "points": 4}}}
    assert grade_id(cell) == "t" and is_grade(cell) and is_locked(cell) and points(cell) == 4.0


@pytest.mark.parametrize("value", ["2", True, None, [2]])
def test_points_that_are_not_a_number_count_zero(value):
    assert points(_cell({"grade_id": "t", "grade": True, "points": value})) == 0.0
