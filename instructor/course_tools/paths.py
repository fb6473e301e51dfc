"""Where things are in a course folder."""

from __future__ import annotations

from pathlib import Path

ASSIGNMENTS = ("lab", "homework")


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


def source_notebooks(root: Path, assignment: str | None = None) -> list[Path]:
    """The instructor's notebooks, in series order."""
    names = [assignment] if assignment else list(ASSIGNMENTS)
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
