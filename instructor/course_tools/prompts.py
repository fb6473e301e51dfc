"""Every answer graded by hand has its question in view.

nbgrader replaces the whole of a solution cell with "YOUR ANSWER HERE" in the student version, so a question
written inside the answer cell never reaches the students. Each manually graded answer cell (nbgrader
``solution`` and ``grade``) must therefore follow a read-only markdown cell that asks the question.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

from .nbgrader_cells import grade_id, is_grade, is_locked, is_solution


def is_manual_answer(cell) -> bool:
    """Whether a cell is an answer graded by hand (nbgrader: solution and grade)."""
    return is_solution(cell) and is_grade(cell)


def is_read_only(cell) -> bool:
    """Whether students cannot change a cell (read-only for nbgrader, or marked not editable)."""
    return is_locked(cell) or cell.get("metadata", {}).get("editable") is False


def unprompted_answers(path: Path, stub: str = "YOUR ANSWER HERE") -> list[str]:
    """Manually graded answer cells of a notebook that are not right below a read-only markdown question.

    Parameters
    ----------
    path : pathlib.Path
        A notebook (a student version in ``release/``, or a source notebook).
    stub : str
        The text nbgrader puts into an emptied answer cell; a cell holding only this is no question.

    Returns
    -------
    list of str
        One line per answer cell without a visible question; empty if all are fine.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path must be an existing notebook, got {path}")
    nb = nbformat.read(path, as_version=4)
    problems = []
    for index, cell in enumerate(nb.cells):
        if not is_manual_answer(cell):
            continue
        name = grade_id(cell) or f"cell {index}"
        above = nb.cells[index - 1] if index > 0 else None
        text = above.source.strip() if above is not None else ""
        if above is None or above.cell_type != "markdown" or not text or text == stub:
            problems.append(f"{path}: the answer cell {name!r} (cell {index}) has no question above it: put the "
                            "question in a read-only markdown cell right above the answer cell")
        elif not is_read_only(above):
            problems.append(f"{path}: the question above the answer cell {name!r} (cell {index - 1}) is not "
                            "read-only: make it an nbgrader read-only cell so that students cannot lose it")
    return problems
