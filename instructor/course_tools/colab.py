"""The first cell of every notebook: what makes it run on Google Colab.

Colab opens a notebook without the course's package or data. Each source,
release and companion notebook therefore starts with one code cell that, on
Colab only (``"google.colab" in sys.modules``), installs the package from the
instructor's repository with pip and fetches the data file (checked against
its SHA-256). Anywhere else, including nbval, the grader and JupyterLab on a
laptop, the cell does nothing.

The repository address is set in one place, ``course.toml`` at the course
root::

    [colab]
    repository = "https://github.com/your-org/saliency-course"
    ref = "main"

and ``course colab`` (also run by ``course build``) writes it into every
notebook; ``course check`` reports a notebook whose cell is missing or stale.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import nbformat

from .notebooks import read_notebook
from .paths import CourseError

CONFIG_FILE = "course.toml"
#: The first line of the cell; how it is recognised.
MARKER = "# Colab set-up (read-only)"
#: nbgrader's grade_id for the cell in source notebooks (locked, not graded).
GRADE_ID = "colab_setup"
PLACEHOLDER = "https://github.com/CHANGE-ME/saliency-course"


class ColabConfigError(CourseError, ValueError):
    """``course.toml`` is missing or its ``[colab]`` table is wrong."""


@dataclass(frozen=True)
class ColabConfig:
    """Where Colab installs the course package from."""

    repository: str
    ref: str

    @property
    def is_placeholder(self) -> bool:
        """Whether the address is still the template's."""
        return self.repository == PLACEHOLDER


def read_config(root: Path) -> ColabConfig:
    """Read ``[colab]`` from ``course.toml`` at the course root.

    Parameters
    ----------
    root : pathlib.Path
        The course root.

    Returns
    -------
    ColabConfig

    Raises
    ------
    ColabConfigError
        If the file is missing, is not TOML, or the address or ref is not a
        plain https URL / git ref (they are pasted into code, so nothing else
        is accepted).
    """
    path = Path(root) / CONFIG_FILE
    if not path.is_file():
        raise ColabConfigError(f"{path} is missing: it sets the repository Colab installs the course from "
                               f"([colab] repository = \"https://...\", ref = \"main\")")
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8")).get("colab")
    except tomllib.TOMLDecodeError as err:
        raise ColabConfigError(f"{path} is not valid TOML: {err}") from err
    except UnicodeDecodeError as err:
        raise ColabConfigError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start}): save it as UTF-8") from err
    except OSError as err:
        raise ColabConfigError(f"{path} cannot be read: {err.strerror or err}") from err
    if not isinstance(table, dict):
        raise ColabConfigError(f"{path} needs a [colab] table with repository and ref")
    repository, ref = table.get("repository"), table.get("ref", "main")
    if not isinstance(repository, str) or not re.fullmatch(r"https://[A-Za-z0-9.-]+(/[A-Za-z0-9._~-]+)+", repository):
        raise ColabConfigError(f"[colab] repository in {path} must be an https address such as "
                               f"https://github.com/your-org/saliency-course, got {repository!r}")
    if not isinstance(ref, str) or not re.fullmatch(r"[A-Za-z0-9._/-]+", ref) or ref.startswith("-"):
        raise ColabConfigError(f"[colab] ref in {path} must be a branch, tag or commit, got {ref!r}")
    return ColabConfig(repository.removesuffix(".git"), ref)


def cell_source(config: ColabConfig, *, instructor_tools: bool = False) -> str:
    """The Colab cell's code for one notebook.

    Parameters
    ----------
    config : ColabConfig
        The repository and ref.
    instructor_tools : bool
        Also install ``saliency-course-instructor`` (the companion notebooks
        that use ``course_tools``) and turn on Colab's widget manager.

    Returns
    -------
    str
    """
    packages = ['f"saliency-course-helpers @ git+{COURSE}@{REF}"']
    if instructor_tools:
        packages.append('f"saliency-course-instructor @ git+{COURSE}@{REF}#subdirectory=instructor"')
    lines = [
        MARKER + ": on Google Colab this installs the course's package and",
        "# fetches the data; anywhere else it does nothing. The address is set in the course's course.toml.",
        "import sys",
        "",
        'if "google.colab" in sys.modules:',
        "    import subprocess",
        "",
        f'    COURSE, REF = "{config.repository}", "{config.ref}"',
        '    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",',
        *[f"                    {p}," for p in packages[:-1]],
        f"                    {packages[-1]}], check=True)",
        "    import importlib",
        "",
        "    importlib.invalidate_caches()   # see the packages just installed",
    ]
    if instructor_tools:
        lines += ["    from google.colab import output",
                  "    output.enable_custom_widget_manager()   # sliders (ipywidgets 8)"]
    lines += ["    import helpers",
              "    helpers.load_imagenet_val()   # downloads the 25 images once and checks their SHA-256"]
    return "\n".join(lines)


def is_colab_cell(cell: dict) -> bool:
    """Whether ``cell`` is a Colab set-up cell (of any address)."""
    return cell.get("cell_type") == "code" and str(cell.get("source", "")).startswith(MARKER)


def _needs_instructor_tools(nb) -> bool:
    return any("course_tools" in c.source for c in nb.cells if c.cell_type == "code" and not is_colab_cell(c))


def expected_cell(nb, config: ColabConfig, *, nbgrader: bool) -> nbformat.NotebookNode:
    """The Colab cell ``nb`` should start with."""
    cell = nbformat.v4.new_code_cell(cell_source(config, instructor_tools=_needs_instructor_tools(nb)))
    if nbgrader:
        cell.metadata["nbgrader"] = {"grade": False, "grade_id": GRADE_ID, "locked": True,
                                     "schema_version": 3, "solution": False, "task": False}
    return cell


def install_cell(path: Path, config: ColabConfig, *, nbgrader: bool) -> bool:
    """Make ``path`` start with the current Colab cell; return whether the file changed.

    An existing Colab cell (anywhere) is replaced; the notebook is rewritten
    only when something differs.
    """
    nb = read_notebook(path)
    want = expected_cell(nb, config, nbgrader=nbgrader)
    others = [c for c in nb.cells if not is_colab_cell(c)]
    first = nb.cells[0] if nb.cells else None
    if (first is not None and is_colab_cell(first) and first.source == want.source
            and first.metadata.get("nbgrader") == want.metadata.get("nbgrader")
            and len(others) == len(nb.cells) - 1):
        return False
    if first is not None and is_colab_cell(first):
        want.id = first.get("id", want.get("id"))
    nb.cells = [want, *others]
    nbformat.validate(nb)
    nbformat.write(nb, path)
    return True


def cell_problems(path: Path, config: ColabConfig, *, nbgrader: bool | None = None) -> list[str]:
    """What is wrong with ``path``'s Colab cell (empty if it is current)."""
    nb = read_notebook(path)
    if not nb.cells or not is_colab_cell(nb.cells[0]):
        return [f"{path}: does not start with the Colab set-up cell (run `course colab`)"]
    want = expected_cell(nb, config, nbgrader=False)
    if nb.cells[0].source != want.source:
        return [f"{path}: its Colab cell differs from course.toml's address (run `course colab`)"]
    if nbgrader and nb.cells[0].metadata.get("nbgrader", {}).get("grade_id") != GRADE_ID:
        return [f"{path}: its Colab cell must be nbgrader's locked cell {GRADE_ID!r}"]
    return []
