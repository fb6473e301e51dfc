"""nbgrader's view of a cell: its ``grade_id`` and its role, read through :mod:`nbgrader.utils`.

Cells of submitted notebooks come from students, so their nbgrader metadata may be anything. Every function
here accepts any value and never raises: metadata that is not a mapping, or whose ``grade_id`` is not a short
plain name (:data:`GRADE_ID`), counts as none, so such a cell is nobody's but the student's. Only well-formed
metadata is handed to nbgrader's own :func:`nbgrader.utils.is_grade`, :func:`~nbgrader.utils.is_solution` and
:func:`~nbgrader.utils.is_locked`, which decide what the roles mean (a test cell, graded and not a solution, is
read-only, as in nbgrader).
"""

from __future__ import annotations

import re
from typing import Any

from nbformat import NotebookNode
from nbgrader import utils

#: A well-formed grade_id: letters, digits, ``_``, ``.`` and ``-``, at most 100 characters.
GRADE_ID = re.compile(r"[A-Za-z0-9_.-]{1,100}")


def nbgrader_metadata(cell: Any) -> dict | None:
    """A cell's nbgrader metadata, or ``None`` when it has none or it is malformed.

    Malformed: the cell or its metadata is not a mapping, the nbgrader entry is not a mapping, or its
    ``grade_id`` (when present) is not a string matching :data:`GRADE_ID`.
    """
    try:
        meta = cell.get("metadata", {}).get("nbgrader")
    except AttributeError:
        return None
    if not isinstance(meta, dict):
        return None
    gid = meta.get("grade_id")
    if gid is not None and not (isinstance(gid, str) and GRADE_ID.fullmatch(gid)):
        return None
    return meta


def grade_id(cell: Any) -> str | None:
    """The cell's nbgrader ``grade_id``, or ``None`` (no nbgrader cell, or malformed metadata)."""
    meta = nbgrader_metadata(cell)
    return meta.get("grade_id") if meta is not None else None


def _view(cell: Any) -> NotebookNode | None:
    """What :mod:`nbgrader.utils` reads of a cell (its nbgrader metadata), if that is well formed."""
    meta = nbgrader_metadata(cell)
    return None if meta is None else NotebookNode(metadata=NotebookNode(nbgrader=meta))


def is_grade(cell: Any) -> bool:
    """Whether nbgrader grades the cell (an autograder test, or an answer graded by hand)."""
    view = _view(cell)
    return view is not None and bool(utils.is_grade(view))


def is_solution(cell: Any) -> bool:
    """Whether the cell holds the student's answer."""
    view = _view(cell)
    return view is not None and bool(utils.is_solution(view))


def is_locked(cell: Any) -> bool:
    """Whether nbgrader restores the cell from the instructor's version (read-only cells and test cells)."""
    view = _view(cell)
    return view is not None and bool(utils.is_locked(view))


def is_autograder_test(cell: Any) -> bool:
    """Whether the cell is an autograder test: graded, and not an answer."""
    return is_grade(cell) and not is_solution(cell)


def points(cell: Any) -> float:
    """The points of a graded cell (0 when it has none, or they are not a number)."""
    meta = nbgrader_metadata(cell) or {}
    value = meta.get("points", 0)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0.0
    return float(value)
