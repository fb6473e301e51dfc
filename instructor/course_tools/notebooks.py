"""Executing notebooks headless and keeping committed notebooks free of outputs."""

from __future__ import annotations

import copy
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from .paths import CourseError

CHECK_MARK = "# NBVAL_CHECK_OUTPUT"


class NotebookFileError(CourseError):
    """A notebook file that cannot be read: missing, not JSON, not a notebook, or not UTF-8."""


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """Read a notebook (version 4), or raise :class:`NotebookFileError` naming the file and the problem.

    nbformat's own errors (``NotJSONError``, a ``KeyError`` for a missing
    ``cells``...) do not say which file was at fault.
    """
    try:
        nb = nbformat.read(path, as_version=4)
    except FileNotFoundError as err:
        raise NotebookFileError(f"{path} is missing") from err
    except UnicodeDecodeError as err:
        raise NotebookFileError(f"{path} is not a notebook: it is not UTF-8 text ({err.reason})") from err
    except OSError as err:
        raise NotebookFileError(f"{path} cannot be read: {err.strerror or err}") from err
    except Exception as err:  # nbformat: NotJSONError, a KeyError or ValidationError for a malformed notebook
        detail = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise NotebookFileError(f"{path} is not a valid Jupyter notebook ({type(err).__name__}: {detail})") from err
    if not isinstance(nb.get("cells"), list):
        raise NotebookFileError(f"{path} is not a valid Jupyter notebook: it has no list of cells")
    return nb


@dataclass
class Execution:
    """The result of running one notebook."""

    notebook: Path
    seconds: float
    error: str | None


#: matplotlib's backend in Jupyter: figures become PNG outputs of their cells.
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


def execute_notebook(path: Path, *, cwd: Path | None = None, env: Mapping[str, str] | None = None,
                     timeout: int = 300, write_to: Path | None = None, figures: bool = False) -> Execution:
    """Run a notebook top to bottom in a fresh kernel, optionally saving the executed copy.

    Parameters
    ----------
    path : pathlib.Path
        The notebook.
    cwd : pathlib.Path, optional
        Folder the kernel runs in (default: the notebook's own folder).
    env : mapping, optional
        Extra environment variables for the kernel.
    timeout : int
        Per-cell time limit in seconds.
    write_to : pathlib.Path, optional
        Where to save the executed notebook.
    figures : bool
        Keep figures as cell outputs (matplotlib's inline backend, as in
        Jupyter); by default they are drawn with Agg and dropped, which is faster.
    """
    nb = read_notebook(path)
    backend = INLINE_BACKEND if figures else "Agg"
    kernel_env = {**os.environ, "MPLBACKEND": backend, **python_kernel_env(), **(env or {})}
    start = time.perf_counter()
    error = None
    try:
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(cwd or path.parent)}})
        client.execute(env=kernel_env)
    except CellExecutionError as err:
        error = _first_error_line(str(err))
    seconds = time.perf_counter() - start
    if write_to is not None:
        write_to.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, write_to)
    return Execution(path, seconds, error)


def _first_error_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or "Exception" in line]
    line = errors[-1] if errors else lines[-1] if lines else "cell failed"
    return re.sub(r"\x1b\[[0-9;]*m", "", line)[:500]


EXPECTED_KEY = "expected_output"


def strip_outputs(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Return a copy without outputs or execution counts.

    The printed text of ``# NBVAL_CHECK_OUTPUT`` cells (data-only facts such as
    shapes and class names) moves to the cell's metadata as
    ``expected_output``; the course's ``conftest.py`` hands it to nbval, which
    compares it on every run. Committed notebooks thus carry no outputs.
    """
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type != "code":
            continue
        if cell.source.lstrip().startswith(CHECK_MARK) and cell.outputs:
            text = "".join(o.get("text", "") for o in cell.outputs
                           if o.get("output_type") == "stream" and o.get("name") == "stdout")
            cell.metadata[EXPECTED_KEY] = text
        cell.outputs = []
        cell.execution_count = None
    return nb


def outputs_problems(path: Path) -> list[str]:
    """What in a committed notebook should not be there: outputs or execution counts."""
    nb = read_notebook(path)
    problems = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if cell.outputs or cell.execution_count is not None:
            problems.append(f"{path}: cell {index} carries outputs (run `course strip`)")
        if cell.source.lstrip().startswith(CHECK_MARK) and EXPECTED_KEY not in cell.metadata:
            problems.append(f"{path}: check cell {index} has no expected output (run `course strip --refresh`)")
    return problems


def expected_outputs(cell) -> list:
    """The outputs nbval should compare a check cell against (from its metadata)."""
    text = cell.metadata.get(EXPECTED_KEY)
    return [] if text is None else [nbformat.v4.new_output("stream", name="stdout", text=text)]


def python_kernel_env() -> dict[str, str]:
    """Environment that makes the kernel use this interpreter's packages."""
    return {"PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}


def copy_tree(src: Path, dst: Path) -> None:
    """Copy a folder of notebooks, leaving out checkpoints and generated figures."""
    shutil.copytree(src, dst, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "*.png", "*.pdf"))
