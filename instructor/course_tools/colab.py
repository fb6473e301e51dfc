"""The first cell of every notebook: what makes it run on Google Colab.

Colab opens a notebook without the course's package or data. Each source,
release and companion notebook therefore starts with one code cell that, on
Colab only (``"google.colab" in sys.modules``), installs the package from the
*student* repository with pip and fetches the data file (checked against its
SHA-256). Anywhere else, including nbval, the grader and JupyterLab on a
laptop, the cell does nothing.

Two repositories, both named in ``course.toml`` at the course root::

    [student]        # public: `course publish` writes it; Colab, Binder and the student README point here
    repository = "https://github.com/your-org/saliency-course"
    ref = "main"

    [instructor]     # private: this repository (solutions, hidden tests); nothing students open points here
    repository = "https://github.com/your-org/saliency-course-private"

(``[colab]``, the former name of ``[student]``, is still read.) ``course colab``
(also run by ``course build``) writes the student address into every notebook;
``course check`` reports a notebook whose cell is missing, stale or points at
the instructor's repository.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import nbformat

from .nbgrader_cells import grade_id
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
    #: The instructor's (private) repository, if course.toml names it; never written into a notebook.
    instructor_repository: str | None = None

    @property
    def is_placeholder(self) -> bool:
        """Whether the address is still the template's."""
        return self.repository == PLACEHOLDER


def read_config(root: Path) -> ColabConfig:
    """Read ``[student]`` (or its former name ``[colab]``) and ``[instructor]`` from ``course.toml``.

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
        raise ColabConfigError(f"{path} is missing: it sets the student repository Colab installs the course from "
                               f"([student] repository = \"https://...\", ref = \"main\")")
    try:
        settings = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ColabConfigError(f"{path} is not valid TOML: {err}") from err
    except UnicodeDecodeError as err:
        raise ColabConfigError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start}): save it as UTF-8") from err
    except OSError as err:
        raise ColabConfigError(f"{path} cannot be read: {err.strerror or err}") from err
    name = "student" if "student" in settings else "colab"
    table = settings.get(name)
    if not isinstance(table, dict):
        raise ColabConfigError(f"{path} needs a [student] table with repository and ref (the public student "
                               "repository that `course publish` writes)")
    repository = _https_address(table.get("repository"), f"[{name}] repository in {path}")
    ref = table.get("ref", "main")
    if not isinstance(ref, str) or not re.fullmatch(r"[A-Za-z0-9._/-]+", ref) or ref.startswith("-"):
        raise ColabConfigError(f"[{name}] ref in {path} must be a branch, tag or commit, got {ref!r}")
    instructor = settings.get("instructor", {})
    if not isinstance(instructor, dict):
        raise ColabConfigError(f"[instructor] in {path} must be a table with repository")
    private = instructor.get("repository")
    if private is not None:
        private = _https_address(private, f"[instructor] repository in {path}")
        if private.lower() == repository.lower():
            raise ColabConfigError(f"[{name}] repository in {path} is the instructor's repository ({private}): "
                                   "students get a separate, public repository written by `course publish`; the "
                                   "instructor's, with solutions and hidden tests, stays private")
    return ColabConfig(repository, ref, private)


def _https_address(value: object, what: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"https://[A-Za-z0-9.-]+(/[A-Za-z0-9._~-]+)+", value):
        raise ColabConfigError(f"{what} must be an https address such as "
                               f"https://github.com/your-org/saliency-course-student, got {value!r}")
    return value.removesuffix(".git")


def cell_source(config: ColabConfig, *, widgets: bool = False) -> str:
    """The Colab cell's code for one notebook.

    Parameters
    ----------
    config : ColabConfig
        The student repository and ref (the package there holds ``helpers``, and ``beyond`` once it is
        published after the homework).
    widgets : bool
        Also turn on Colab's widget manager (the companion notebooks beyond the lab).

    Returns
    -------
    str
    """
    packages = ['f"saliency-course-helpers @ git+{COURSE}@{REF}"']
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
    if widgets:
        lines += ["    from google.colab import output",
                  "    output.enable_custom_widget_manager()   # sliders (ipywidgets 8)"]
    lines += ["    import helpers",
              "    helpers.load_imagenet_val()   # downloads the 25 images once and checks their SHA-256"]
    return "\n".join(lines)


def is_colab_cell(cell: dict) -> bool:
    """Whether ``cell`` is a Colab set-up cell (of any address)."""
    return cell.get("cell_type") == "code" and str(cell.get("source", "")).startswith(MARKER)


def _needs_widgets(nb) -> bool:
    """The notebooks beyond the lab (they import ``beyond``) have sliders."""
    return any(re.search(r"^\s*(from|import)\s+beyond\b", c.source, re.M)
               for c in nb.cells if c.cell_type == "code" and not is_colab_cell(c))


def expected_cell(nb, config: ColabConfig, *, nbgrader: bool) -> nbformat.NotebookNode:
    """The Colab cell ``nb`` should start with."""
    cell = nbformat.v4.new_code_cell(cell_source(config, widgets=_needs_widgets(nb)))
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
    private = config.instructor_repository
    if private and private.lower() in nb.cells[0].source.lower() or "saliency-course-instructor" in nb.cells[0].source:
        return [f"{path}: its Colab cell installs from the instructor's (private) repository; it must install only "
                f"the student package from {config.repository} (run `course colab`)"]
    if nb.cells[0].source != want.source:
        return [f"{path}: its Colab cell differs from course.toml's address (run `course colab`)"]
    if nbgrader and grade_id(nb.cells[0]) != GRADE_ID:
        return [f"{path}: its Colab cell must be nbgrader's locked cell {GRADE_ID!r}"]
    return []
