"""Notebook files for the instructor: reading them, running them headless, keeping them free of outputs.

:func:`execute_notebook` runs a notebook file with :func:`course_tools.runner.run_notebook`, the one runner
every tool uses. Every kernel the course's tools start gets its share of the machine's cores
(``OMP_NUM_THREADS`` and friends, set in the kernel's environment before torch starts): on a 2-core machine
that other work keeps busy, torch's default of one thread per core for each of several kernels made one
forward and backward pass five times slower. A cell that runs past its time limit, a kernel that dies and a
lost connection to the kernel are each reported in one line (:attr:`course_tools.runner.Execution.error`),
never as a traceback.
"""

from __future__ import annotations

import copy
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Mapping

import nbformat

from .paths import CourseError
from .runner import Execution, Kernel, TimeLimits, run_notebook

#: The legacy first-line marker of a cell whose printed text nbval compares (still recognised).
CHECK_MARK = "# NBVAL_CHECK_OUTPUT"
#: The cell tag that marks such a cell; a tag, unlike a comment, is not shown to students.
CHECK_TAG = "nbval-check-output"
#: The thread-count variables a kernel gets (torch reads ``OMP_NUM_THREADS`` when it starts).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
#: Passed to every kernel: its log shows errors only. ipykernel 7 otherwise prints "Kernel is running over TCP
#: without encryption" for every kernel (the kernel listens on localhost only).
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]


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


#: matplotlib's backend in Jupyter: figures become PNG outputs of their cells.
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


def available_cores() -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup CPU quota (v1 or v2) if one is set."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def _cgroup_cpu_quota() -> float | None:
    try:
        text = Path("/sys/fs/cgroup/cpu.max").read_text().split()   # cgroups v2: "<quota> <period>"
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
        return None
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())   # cgroups v1
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def kernel_thread_env(concurrent: int = 1) -> dict[str, str]:
    """Thread settings for one of ``concurrent`` kernels that run at the same time.

    Each kernel gets its share of the cores, ``available_cores() // concurrent``, and no more than the cores
    that other work leaves idle (the cores minus the 1-minute load average, rounded): torch's threads wait
    for each other, so on a busy machine more threads than idle cores make every pass slower (measured on 2
    cores at a load of 5: the homework's figure cell took 158 s with 2 threads and 38 s with 1). Always at
    least one. A thread count the user set in this process's environment (``OMP_NUM_THREADS=...``) wins.

    Parameters
    ----------
    concurrent : int
        How many kernels run at once (at least 1).

    Returns
    -------
    dict
        ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS``, for the kernel's environment.
    """
    if isinstance(concurrent, bool) or not isinstance(concurrent, int) or concurrent < 1:
        raise ValueError(f"concurrent must be a whole number of kernels, at least 1, got {concurrent!r}")
    cores = available_cores()
    try:
        idle = round(cores - os.getloadavg()[0])
    except (AttributeError, OSError):   # no load average on this system
        idle = cores
    threads = str(max(1, min(cores // concurrent, idle)))
    chosen = os.environ.get("OMP_NUM_THREADS", "").strip() or threads
    return {name: os.environ.get(name, "").strip() or chosen for name in THREAD_VARIABLES}


def execute_notebook(path: Path, *, cwd: Path | None = None, env: Mapping[str, str] | None = None,
                     timeout: int = 300, write_to: Path | None = None, figures: bool = False,
                     concurrent: int = 1, progress: bool = False, progress_position: int = 0) -> Execution:
    """Run a notebook top to bottom in a fresh kernel, optionally saving the executed copy.

    Parameters
    ----------
    path : pathlib.Path
        The notebook.
    cwd : pathlib.Path, optional
        Folder the kernel runs in (default: the notebook's own folder).
    env : mapping, optional
        Extra environment variables for the kernel (they win over the thread settings).
    timeout : int
        Per-cell time limit in seconds.
    write_to : pathlib.Path, optional
        Where to save the executed notebook (also when a cell failed).
    figures : bool
        Keep figures as cell outputs (matplotlib's inline backend, as in
        Jupyter); by default they are drawn with Agg and dropped, which is faster.
    concurrent : int
        How many kernels the caller runs at once: this one gets ``cores // concurrent`` threads.
    progress : bool
        Show a progress bar of the code cells on stderr (only on a terminal).
    progress_position : int
        Line of the progress bar when several notebooks run at once.

    Returns
    -------
    Execution
        Wall time (start-up included), per-cell times and, if it failed, one line saying why.
    """
    path = Path(path)
    if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 1:
        raise ValueError(f"timeout must be a whole number of seconds, at least 1, got {timeout!r}")
    nb = read_notebook(path)
    backend = INLINE_BACKEND if figures else "Agg"
    kernel = Kernel(cwd=Path(cwd or path.parent), arguments=tuple(KERNEL_ARGUMENTS),
                    env={**os.environ, "MPLBACKEND": backend, **python_kernel_env(),
                         **kernel_thread_env(concurrent), **(env or {})})
    code_cells = sum(1 for cell in nb.cells if cell.cell_type == "code" and cell.source.strip())
    bar = _progress_bar(path, code_cells, progress, progress_position)
    try:
        result = run_notebook(nb, kernel, notebook=path, limits=TimeLimits(cell=timeout),
                              on_cell_done=lambda index: bar.update(1))
    finally:
        bar.close()
    if write_to is not None:
        write_to.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, write_to)
    return result


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(path: Path, total: int, progress: bool, position: int):
    if not progress:
        return _NoBar()
    from tqdm import tqdm

    # disable=None: a bar on a terminal, nothing in a log file (the caller prints one line per notebook).
    return tqdm(total=total, desc=f"{path.parent.name}/{path.name}", unit="cell", leave=False, disable=None,
                position=position, file=sys.stderr, dynamic_ncols=True)


def format_execution(result: Execution) -> str:
    """One line about a run: the notebook, its time (start-up included) and whether it worked."""
    name = f"{result.notebook.parent.name}/{result.notebook.name}"
    status = "ok" if result.error is None else f"FAILED: {result.error}"
    return f"  {name:45s} {result.seconds:6.1f} s (kernel start {result.startup_seconds:4.1f} s)  {status}"


EXPECTED_KEY = "expected_output"


def is_check_cell(cell) -> bool:
    """Whether nbval compares this code cell's printed text: tagged ``nbval-check-output`` (or, the older way,
    starting with the comment ``# NBVAL_CHECK_OUTPUT``)."""
    if cell.get("cell_type") != "code":
        return False
    tags = cell.get("metadata", {}).get("tags", [])
    return CHECK_TAG in tags or cell.get("source", "").lstrip().startswith(CHECK_MARK)


def strip_outputs(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Return a copy without outputs or execution counts.

    The printed text of check cells (see :func:`is_check_cell`; data-only facts such as shapes and class
    names) moves to the cell's metadata as ``expected_output``; the course's ``conftest.py`` hands it to nbval, which
    compares it on every run. Committed notebooks thus carry no outputs.
    """
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)   # ipywidgets' saved state is output too
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type != "code":
            continue
        if is_check_cell(cell) and cell.outputs:
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
        if is_check_cell(cell) and EXPECTED_KEY not in cell.metadata:
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
