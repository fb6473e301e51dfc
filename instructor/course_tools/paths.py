"""Where things are in a course folder."""

from __future__ import annotations

import re
from pathlib import Path

#: How an assignment folder of ``source/`` may be named (nbgrader uses it as a folder and a database key).
ASSIGNMENT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


class CourseError(RuntimeError):
    """A problem the ``course`` command reports in one line (``error: ...``) and exits with status 1."""


class CourseNotFoundError(CourseError):
    """No course root (a folder with ``nbgrader_config.py``) above the current folder."""


def course_root(start: str | Path | None = None) -> Path:
    """Return the nearest folder at or above ``start`` that holds ``nbgrader_config.py``."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "nbgrader_config.py").is_file() and (folder / "source").is_dir():
            return folder
    raise CourseNotFoundError(
        f"{here} is not inside a course folder (none of its parents holds nbgrader_config.py and source/)"
    )


def assignments(root: Path) -> list[str]:
    """The course's assignments: the folders of ``source/`` that hold a notebook, in series order.

    Nothing lists them in code: a folder ``source/<name>/`` with at least one ``*.ipynb`` is an
    assignment. They are ordered by their first notebook's file name, then by folder name, so that
    numbering the notebooks (``01_...`` to ``03_...`` in ``lab/``, ``04_...`` in ``homework/``) orders the
    assignments too. Release, references, grading, the report, the demo class and publishing follow this
    list.

    Parameters
    ----------
    root : pathlib.Path
        The course root.

    Raises
    ------
    CourseError
        If a folder holding notebooks has a name nbgrader cannot use.
    """
    source = Path(root) / "source"
    found = []
    for folder in sorted(source.iterdir()) if source.is_dir() else []:
        if not folder.is_dir() or folder.name.startswith((".", "_")):
            continue
        notebooks = sorted(p.name for p in folder.glob("*.ipynb"))
        if not notebooks:
            continue
        if not ASSIGNMENT_NAME.match(folder.name):
            raise CourseError(f"source/{folder.name}: an assignment folder's name must start with a letter and "
                              "hold only letters, digits, '_' and '-' (at most 64)")
        found.append((notebooks[0], folder.name))
    return [name for _, name in sorted(found)]


def source_notebooks(root: Path, assignment: str | None = None) -> list[Path]:
    """The instructor's notebooks, in series order (one assignment's, or every assignment's)."""
    names = [assignment] if assignment else assignments(root)
    found: list[Path] = []
    for name in names:
        found.extend(sorted((root / "source" / name).glob("*.ipynb")))
    return found


def companion_notebooks(root: Path) -> list[Path]:
    """The ungraded notebooks in ``notebooks/``."""
    return sorted((root / "notebooks").glob("*.ipynb"))


def references_dir(root: Path) -> Path:
    """Where reference arrays live: outside ``source/``, so students never receive them."""
    return root / "references"
