"""Autograding one notebook: rebuild it, run it in a sandbox, judge its results outside.

How one submitted notebook is graded
------------------------------------
1. **Read** only the notebook itself: a regular file (not a link) under :data:`MAX_NOTEBOOK_BYTES`,
   parsed as JSON, never executed to be read. Files beside it in the submission are ignored.
2. **Rebuild** it from the instructor's version: every read-only and test cell (hidden tests included) is
   taken from ``source/``, matched by nbgrader ``grade_id``, the test cells without the code that builds their
   typical mistakes (:mod:`course_tools.hidden_code`: in the student's kernel it is within the student's
   reach); the student's answer cells and extra cells are kept in their order, stripped of grading metadata.
   A deleted test cell stays deleted (its points are lost); a deleted read-only setup cell is put back.
   Malformed metadata makes a cell the student's own.
3. **Execute** it in a fresh kernel inside a throw-away sandbox (:mod:`course_tools.sandbox`: own PID,
   network and IPC namespaces, private file system, unprivileged user, one control group for memory,
   processes and CPU), with a time limit per cell and one for the whole notebook. The hidden tests run in
   *grade* mode: they only hand the student's results to an outbox. Outputs kept from the run are capped.
4. **Judge** in this process once every process of the sandbox is dead: each result is read strictly
   (:mod:`course_tools.results`) and compared with the references by :func:`helpers.checks.compare_arrays`,
   together with the typical mistakes each hidden test declared beside its exercise; figures count only
   if the notebook wrote them in this run, they decode with the solution's layout and show what the
   solution's show (the rows of panels the exercise fixes, :mod:`course_tools.figures`). Feedback uses the
   grader's own words only: exception *types*, never text that student code put into an exception.
"""

from __future__ import annotations

import copy
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import numpy as np

from helpers.autograde import same_layout
from helpers.checks import compare_arrays

from .contained import run_contained
from .figures import compare_figure
from .hidden_code import grading_sources
from .paths import CourseError
from .nbgrader_cells import (grade_id, is_autograder_test, is_grade, is_locked, is_solution, nbgrader_metadata,
                             points)
from .results import ResultError, read_figure, read_regular, read_value
from .runner import Execution, TimeLimits, Untrusted
from .sandbox import KernelJob

DEFAULT_CELL_TIMEOUT = 60
DEFAULT_NOTEBOOK_TIMEOUT = 600
DEFAULT_MEMORY_MIB = 4096
#: Largest submitted notebook read (a notebook without outputs is tens of KiB).
MAX_NOTEBOOK_BYTES = 16 * 2**20
#: Outputs kept from the run: per cell and for the whole notebook (the rest is dropped, and said so).
MAX_CELL_OUTPUT_BYTES = 1 * 2**20
MAX_NOTEBOOK_OUTPUT_BYTES = 8 * 2**20
#: Largest message accepted from a kernel; a larger one is dropped by ZeroMQ, unread.
MAX_MESSAGE_BYTES = 16 * 2**20
#: Messages a notebook may send in all (each costs the grader's CPU even when its output is dropped); the
#: series sends a few hundred.
MAX_MESSAGES = 50_000
#: Output kinds kept in the executed notebook the instructor opens: plain text, PNG figures, streams and errors.
#: HTML, JavaScript, SVG and widget views are dropped, so nothing a student printed runs in the instructor's
#: browser (nbgrader's formgrader renders these notebooks).
KEPT_MIME_TYPES = ("text/plain", "image/png")
#: How the runner treats a submission's code: every cap above, and no text of the student's in a message.
SUBMISSION = Untrusted(cell_output_bytes=MAX_CELL_OUTPUT_BYTES, notebook_output_bytes=MAX_NOTEBOOK_OUTPUT_BYTES,
                       message_bytes=MAX_MESSAGE_BYTES, messages=MAX_MESSAGES, kept_mime_types=KEPT_MIME_TYPES)


# ----------------------------------------------------------------------------- results

@dataclass
class PartResult:
    """One graded cell of one student's notebook."""

    grade_id: str
    points: float
    max_points: float
    manual: bool = False
    messages: list[str] = field(default_factory=list)


@dataclass
class NotebookResult:
    """Everything known about one submitted notebook after grading."""

    student: str
    assignment: str
    notebook: str
    parts: list[PartResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def score(self) -> float:
        return sum(p.points for p in self.parts if not p.manual)

    @property
    def max_score(self) -> float:
        return sum(p.max_points for p in self.parts if not p.manual)


# ----------------------------------------------------------------------------- reading and rebuilding

def instructor_cells(source_nb) -> tuple[dict[str, Any], list[str]]:
    """The instructor's cells by grade_id, and the grade_ids in order."""
    cells, order = {}, []
    for cell in source_nb.cells:
        gid = grade_id(cell)
        if gid:
            cells[gid] = cell
            order.append(gid)
    return cells, order


def graded_cells(source_nb) -> list[tuple[str, float, bool]]:
    """(grade_id, points, graded by hand) of every graded cell, in order."""
    out = []
    for cell in source_nb.cells:
        gid = grade_id(cell)
        if gid and is_grade(cell):
            manual = is_solution(cell) or cell.cell_type == "markdown"
            out.append((gid, points(cell), manual))
    return out


def read_submission(path: Path) -> tuple[Any, str | None]:
    """The submitted notebook at ``path``, or ``(None, problem)`` in the grader's words.

    Only a regular file (never a link) of at most :data:`MAX_NOTEBOOK_BYTES` is read; its cells are
    checked for the fields a notebook cell has, and a cell that is not one is dropped.
    """
    name = path.name
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None, f"{name} is missing from the submission"
    if not os.path.isfile(path) or os.path.islink(path):
        return None, f"{name} is not a regular file (a link or a folder): it was not graded"
    if info.st_size > MAX_NOTEBOOK_BYTES:
        return None, f"{name} is too large ({info.st_size // 2**20} MiB; at most {MAX_NOTEBOOK_BYTES // 2**20})"
    try:
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            data = read_regular(fd, name, MAX_NOTEBOOK_BYTES)
        finally:
            os.close(fd)
        nb = nbformat.reads(data.decode("utf-8"), as_version=4)
        cells = nb.get("cells") if isinstance(nb, dict) else None
        if not isinstance(cells, list):
            raise ValueError("no list of cells")
    except (ResultError, OSError):
        return None, f"{name} could not be read as a regular file"
    except Exception as err:  # noqa: BLE001 - any malformed file is the student's problem
        return None, f"{name} is not a valid notebook ({type(err).__name__}): nothing could run"
    nb.cells = [_clean_cell(c) for c in cells if _is_cell(c)]
    return nb, None


def _is_cell(cell: Any) -> bool:
    return isinstance(cell, dict) and cell.get("cell_type") in ("code", "markdown", "raw") and \
        isinstance(cell.get("source", ""), str) and isinstance(cell.get("metadata", {}), dict)


def _clean_cell(cell: dict) -> Any:
    make = {"code": nbformat.v4.new_code_cell, "markdown": nbformat.v4.new_markdown_cell,
            "raw": nbformat.v4.new_raw_cell}[cell["cell_type"]]
    clean = make(source=cell.get("source", ""))
    meta = nbgrader_metadata(cell)
    if meta:
        clean.metadata["nbgrader"] = copy.deepcopy(meta)
    return clean


def rebuild_notebook(source_nb, student_nb) -> tuple[Any, list[str]]:
    """Put the instructor's locked and test cells back into a student's notebook.

    Returns the notebook to execute and a list of problems found (deleted test cells).
    """
    source_cells, order = instructor_cells(source_nb)
    tests = _test_sources(source_nb)
    problems: list[str] = []
    seen: set[str] = set()
    rebuilt = []
    for cell in student_nb.cells:
        gid = grade_id(cell)
        original = source_cells.get(gid) if gid else None
        if original is None or gid in seen or original.cell_type != cell.get("cell_type"):
            # The student's own cell (or a duplicate): keep it, stripped of grading metadata.
            cell = copy.deepcopy(cell)
            cell.get("metadata", {}).pop("nbgrader", None)
            rebuilt.append(cell)
            continue
        seen.add(gid)
        if is_locked(original):   # read-only and test cells: the instructor's, whatever the student sent
            rebuilt.append(copy.deepcopy(original))
            if gid in tests:
                rebuilt[-1].source = tests[gid]
        else:
            answer = copy.deepcopy(original)
            answer.source = cell.get("source", "")
            rebuilt.append(answer)
    for index, gid in enumerate(order):
        if gid in seen:
            continue
        original = source_cells[gid]
        if is_autograder_test(original):
            problems.append(f"test cell {gid!r} was deleted: its points are lost")
        elif is_locked(original):
            rebuilt.insert(_position_after(rebuilt, order[:index]), copy.deepcopy(original))
        elif is_solution(original):
            problems.append(f"answer cell {gid!r} was deleted")
    nb = copy.deepcopy(source_nb)
    nb.cells = rebuilt
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb, problems


def _test_sources(source_nb) -> dict[str, str]:
    """grade_id -> what each test cell runs in a student's kernel (without its mistake builders)."""
    code = [c for c in source_nb.cells if c.cell_type == "code"]
    tests = [i for i, c in enumerate(code) if grade_id(c) and is_autograder_test(c)]
    sources = grading_sources([c.source for c in code], tests)
    return {grade_id(code[i]): source for i, source in sources.items()}


def _position_after(cells, earlier_ids: list[str]) -> int:
    position = 0
    for i, cell in enumerate(cells):
        if grade_id(cell) in earlier_ids:
            position = i + 1
    return position


# ----------------------------------------------------------------------------- execution

def execute_sandboxed(nb, job: KernelJob, *, cell_limits: list[float], notebook_limit: float,
                      interrupt_grace: float = 5.0, notebook: Path = Path("submission.ipynb")) -> Execution:
    """Run ``nb`` cell by cell in ``job``'s sandbox, as untrusted code; never raises for what the student's
    code does.

    The course's one runner (:func:`course_tools.runner.run_notebook`) with the sandbox's kernel
    (:meth:`course_tools.sandbox.KernelJob.kernel`), the submission's caps (:data:`SUBMISSION`), and every cell
    run whatever the earlier ones did, in a process and control group of its own
    (:func:`course_tools.contained.run_contained`: what the kernel sends cannot fill the grader's memory).

    Parameters
    ----------
    nb : NotebookNode
        The rebuilt notebook (outputs are written into it).
    job : KernelJob
        An opened sandbox job.
    cell_limits : list of float
        Seconds allowed for each cell (by index).
    notebook_limit : float
        Seconds allowed for the whole notebook, kernel start-up included.
    interrupt_grace : float
        Seconds a cell has to stop after the interrupt at its limit, before the sandbox is killed.
    notebook : pathlib.Path
        The submitted file, for the result.
    """
    limits = TimeLimits(cell=list(cell_limits), notebook=notebook_limit, grace=interrupt_grace)
    return run_contained(nb, job, limits=limits, untrusted=SUBMISSION, notebook=notebook)


# ----------------------------------------------------------------------------- verdicts

def load_specs(reference_folder: Path) -> dict[str, list[tuple[str, dict]]]:
    """The recorded checks of one notebook, by the grade_id of their test cell."""
    specs: dict[str, list[tuple[str, dict]]] = {}
    for spec_path in sorted(reference_folder.glob("*.spec.json")):
        spec = json.loads(spec_path.read_text())
        if "files" not in spec and "tolerance" not in spec:
            raise CourseError(f"{spec_path}: recorded by an older version of the course tools (no 'tolerance'); "
                              "run `course references` again")
        if "files" in spec and ("similarity" not in spec
                                or not all("fingerprint" in f for f in spec["files"].values())):
            raise CourseError(f"{spec_path}: recorded by an older version of the course tools (figures without "
                              "what they show); run `course references` again")
        specs.setdefault(spec["cell"], []).append((spec_path.name[: -len(".spec.json")], spec))
    return specs


def judge_value(reference_folder: Path, outbox: Path, check_name: str, spec: dict) -> str | None:
    """Compare one result with its reference and declared mistakes; ``None`` if right, else the feedback."""
    from helpers.autograde import deserialise

    reference, _ = deserialise(reference_folder, check_name)
    reference = np.asarray(reference)
    try:
        student, _ = read_value(outbox, check_name, max_bytes=4 * reference.nbytes + 2**20)
    except ResultError as err:
        return f"your result could not be used: {err}"
    known = {key: (np.asarray(deserialise(reference_folder, f"{check_name}.mistake.{key}")[0]), message)
             for key, message in (spec.get("mistakes") or {}).items()}
    verdict = compare_arrays(student, reference, name="your result", tolerance=spec["tolerance"],
                             expect=spec.get("expect", "any"), known_mistakes=known or None)
    if verdict.passed:
        return None
    if spec.get("otherwise") and verdict.details.get("stage") == "values":
        return f"{verdict.message} {spec['otherwise']}"
    return verdict.message


def judge_files(work: Path, spec: dict, execution: Execution | None) -> list[str]:
    """Problems with the figure files a test cell asks for (each must come from this run, have the solution's
    layout and show what the solution's shows: :mod:`course_tools.figures`)."""
    problems = []
    for name, expected in spec["files"].items():
        try:
            data, layout = read_figure(work, name)
        except ResultError as err:
            message = str(err)
            if execution is not None and (execution.timed_out or execution.notebook_timed_out):
                message += " (a cell was interrupted at its time limit before the figure could be saved)"
            problems.append(message)
            continue
        if not same_layout(layout, expected):
            problems.append(f"{name} does not have the expected layout: make it with the plotting function "
                            "the exercise names")
        elif problem := compare_figure(data, Path(name).suffix, expected["fingerprint"], spec["similarity"]):
            problems.append(f"{name}: {problem}")
    return problems


def judge_notebook(reference_folder: Path, outbox: Path | None, work: Path | None, source_nb,
                   execution: Execution | None, rebuilt_nb=None) -> list[PartResult]:
    """Score each graded cell of one notebook from the outbox, the references and the figure files."""
    specs = load_specs(reference_folder)
    errors = _errors_by_grade_id(rebuilt_nb, execution) if rebuilt_nb is not None else {}
    present = _present_ids(rebuilt_nb) if rebuilt_nb is not None else set()
    parts = []
    for gid, max_points, manual in graded_cells(source_nb):
        part = PartResult(gid, 0.0, max_points, manual=manual)
        parts.append(part)
        if manual:
            part.messages.append("graded by hand")
            continue
        if gid not in present or execution is None:
            part.messages.append("this test cell did not run" if gid not in present or rebuilt_nb is None
                                 else "nothing could run")
            continue
        messages = []
        for check_name, spec in specs.get(gid, []):
            if "files" in spec:
                messages += judge_files(work, spec, execution)
            elif gid in errors and not (outbox / f"{check_name}.json").exists():
                messages.append(f"this test did not get to check your result ({errors[gid]})")
            else:
                message = judge_value(reference_folder, outbox, check_name, spec)
                if message:
                    messages.append(message)
        if not messages and gid in errors:
            messages.append(errors[gid])
        part.messages = list(dict.fromkeys(messages))
        part.points = 0.0 if part.messages else max_points
    return parts


def _present_ids(nb) -> set[str]:
    return {gid for c in nb.cells if (gid := grade_id(c))}


def _errors_by_grade_id(nb, execution: Execution | None) -> dict[str, str]:
    """What went wrong in each graded cell, in the grader's words."""
    if execution is None:
        return {}
    out = {}
    for index, cell in enumerate(nb.cells):
        gid = grade_id(cell)
        if not gid:
            continue
        if index in execution.timed_out:
            out[gid] = "the cell was interrupted at its time limit"
        elif index in execution.cell_errors:
            error = execution.cell_errors[index]
            out[gid] = error if error == execution.crashed else f"the cell stopped with {error}"
    if execution.crashed:
        ran = {timing.index for timing in execution.cells}   # a cell that ran keeps its own verdict
        for index, cell in enumerate(nb.cells):
            gid = grade_id(cell)
            if gid and index not in ran:
                out.setdefault(gid, f"not run: {execution.crashed}")
    return out


# ----------------------------------------------------------------------------- one submission

@dataclass(frozen=True)
class GradingSettings:
    """How each notebook of a class run is executed.

    Parameters
    ----------
    cell_timeout : float
        Seconds for a cell whose solution's time is unknown, and the least any cell gets.
    notebook_timeout : float
        Seconds for the whole notebook, start-up included.
    timing_margin : float
        A cell gets this many times what the solution's cell took (when recorded), at least ``cell_timeout``.
    """

    cell_timeout: float = DEFAULT_CELL_TIMEOUT
    notebook_timeout: float = DEFAULT_NOTEBOOK_TIMEOUT
    timing_margin: float = 10.0

    def __post_init__(self) -> None:
        for name in ("cell_timeout", "notebook_timeout", "timing_margin"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")

    def cell_limits(self, nb, timings: dict[str, float]) -> list[float]:
        """Seconds for each cell: the solution's time for that cell (by grade_id) times the margin, or the
        default."""
        limits = []
        for cell in nb.cells:
            measured = timings.get(grade_id(cell) or "", 0.0)
            limits.append(max(float(self.cell_timeout), self.timing_margin * measured))
        return limits


#: Settings of nbgrader_config.py that only ``nbgrader autograde`` reads; ``course grade`` names them when set.
#: It always interrupts a cell at its limit and kills the kernel 5 s later, never fails a cell for a late output
#: message, judges results rather than stderr, and caps outputs itself.
AUTOGRADE_ONLY_SETTINGS = ("Execute", "IgnorePattern", "LimitOutput")


@dataclass(frozen=True)
class CourseGradingConfig:
    """What ``course grade`` takes from the course's ``nbgrader_config.py``.

    Attributes
    ----------
    cell_timeout : int
        ``c.Execute.timeout``: the least seconds any cell gets (:attr:`GradingSettings.cell_timeout`), or
        :data:`DEFAULT_CELL_TIMEOUT` when it is not set.
    configured : bool
        Whether ``c.Execute.timeout`` is set.
    ignored : tuple of str
        Settings there that ``course grade`` does not use (see :data:`AUTOGRADE_ONLY_SETTINGS`).
    """

    cell_timeout: int
    configured: bool
    ignored: tuple[str, ...] = ()


def course_grading_config(root: Path) -> CourseGradingConfig:
    """Read ``c.Execute.timeout`` (and what ``course grade`` ignores) from ``root/nbgrader_config.py``.

    The file is loaded with traitlets' own loader, as nbgrader loads it (it runs the file: it is the
    instructor's). ``c.Execute.timeout`` must be a whole number of seconds, at least 1: nbgrader's
    ``None`` or ``0`` (no limit) is refused, since a student's endless loop must not hold the class run.

    Raises
    ------
    course_tools.paths.CourseError
        When the file cannot be loaded, or the timeout is not a whole number of seconds >= 1.
    """
    from traitlets.config.loader import ConfigFileNotFound, PyFileConfigLoader

    from .paths import CourseError

    path = Path(root) / "nbgrader_config.py"
    try:
        config = PyFileConfigLoader(path.name, path=str(path.parent)).load_config()
    except ConfigFileNotFound:
        return CourseGradingConfig(DEFAULT_CELL_TIMEOUT, False)
    except Exception as err:  # noqa: BLE001 - whatever the file raises, said in one line
        raise CourseError(f"{path} could not be loaded ({type(err).__name__}: {err})") from err
    ignored = tuple(f"c.{section}.{key}" for section in AUTOGRADE_ONLY_SETTINGS if section in config
                    for key in config[section] if (section, key) != ("Execute", "timeout"))
    if "timeout" not in config.Execute:
        return CourseGradingConfig(DEFAULT_CELL_TIMEOUT, False, ignored)
    value = config.Execute.timeout
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CourseError(f"{path}: c.Execute.timeout must be a whole number of seconds, at least 1 (the least "
                          f"time `course grade` gives each cell), got {value!r}")
    return CourseGradingConfig(value, True, ignored)


def solution_timings(reference_set: Path, notebook: str) -> dict[str, float]:
    """Seconds each cell (by grade_id) of the solution took when the references were recorded.

    Read from the reference set's ``timings.json`` (written by ``course references``); ``{}`` when absent or
    malformed, and then every cell gets the default limit.

    Parameters
    ----------
    reference_set : pathlib.Path
        ``references/<key>``.
    notebook : str
        ``"<assignment>/<notebook>.ipynb"``.
    """
    try:
        data = json.loads((reference_set / "timings.json").read_text())
        cells = data["notebooks"][notebook]["grade_ids"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    if not isinstance(cells, dict):
        return {}
    return {k: float(v) for k, v in cells.items() if isinstance(k, str) and isinstance(v, (int, float))}


def grade_notebook(root: Path, reference_key: str, student: str, assignment: str, notebook_name: str, *,
                   job: KernelJob, settings: GradingSettings) -> NotebookResult:
    """Rebuild, execute and judge one submitted notebook; save what the instructor needs."""
    from .paths import references_dir

    start = time.perf_counter()
    result = NotebookResult(student, assignment, notebook_name)
    source_path = root / "source" / assignment / notebook_name
    source_nb = nbformat.read(source_path, as_version=4)
    ref_folder = references_dir(root) / reference_key / source_path.stem
    student_nb, problem = read_submission(root / "submitted" / student / assignment / notebook_name)
    if student_nb is None:
        result.problems.append(problem)
        result.parts = judge_notebook(ref_folder, None, None, source_nb, None)
        for part in result.parts:
            if not part.manual:
                part.messages = [problem]
        result.seconds = time.perf_counter() - start
        return result

    rebuilt, problems = rebuild_notebook(source_nb, student_nb)
    result.problems += problems
    limits = settings.cell_limits(rebuilt, solution_timings(ref_folder.parent, f"{assignment}/{notebook_name}"))
    execution = execute_sandboxed(rebuilt, job, cell_limits=limits, notebook_limit=settings.notebook_timeout,
                                  notebook=Path(student) / assignment / notebook_name)
    if execution.crashed:
        result.problems.append(execution.crashed)
    for index in execution.timed_out:
        result.problems.append(f"cell {index} was interrupted at its time limit ({limits[index]:.0f} s)")
    if execution.outputs_truncated:
        result.problems.append("the notebook printed too much: outputs beyond the limit were dropped")
    outbox = job.outbox / source_path.stem
    result.parts = judge_notebook(ref_folder, outbox, job.work, source_nb, execution, rebuilt)
    _save_autograded(root, student, assignment, notebook_name, rebuilt, job.work, ref_folder)
    result.seconds = time.perf_counter() - start
    return result


def _save_autograded(root: Path, student: str, assignment: str, notebook_name: str, rebuilt, work: Path,
                     ref_folder: Path) -> None:
    """The executed notebook and the figures that passed the checks, for the instructor."""
    folder = root / "autograded" / student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    text = nbformat.writes(rebuilt)
    if len(text) > MAX_NOTEBOOK_OUTPUT_BYTES + MAX_NOTEBOOK_BYTES:
        for cell in rebuilt.cells:
            if cell.cell_type == "code":
                cell.outputs = []
        text = nbformat.writes(rebuilt)
    target = folder / notebook_name
    if target.is_symlink():
        target.unlink()
    target.write_text(text)
    for _, spec in [s for checks in load_specs(ref_folder).values() for s in checks]:
        for name in spec.get("files", {}):
            try:
                data, _ = read_figure(work, name)
            except ResultError:
                continue
            target = folder / name
            if target.is_symlink() or target.exists():
                target.unlink()
            target.write_bytes(data)


def save_result(root: Path, results: list[NotebookResult]) -> None:
    """Write ``autograded/<student>/<assignment>/grading.json`` for one submission."""
    from dataclasses import asdict

    if not results:
        return
    first = results[0]
    folder = root / "autograded" / first.student / first.assignment
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"student": first.student, "assignment": first.assignment,
               "notebooks": [asdict(r) | {"score": r.score} for r in results]}
    (folder / "grading.json").write_text(json.dumps(payload, indent=2))


def load_results(root: Path) -> list[dict]:
    """Every ``grading.json`` under ``autograded/``."""
    return [json.loads(p.read_text()) for p in sorted((root / "autograded").glob("*/*/grading.json"))]


_STUDENT_ID = re.compile(r"^[A-Za-z0-9_.@+-]{1,100}$")


def discover_submissions(root: Path, assignments_found: list[str], students: list[str] | None = None,
                         assignments: list[str] | None = None) -> tuple[list[tuple[str, str]], list[str]]:
    """(student, assignment) pairs in nbgrader's ``submitted/`` layout, and what was skipped (and why)."""
    pairs, skipped = [], []
    base = root / "submitted"
    if not base.is_dir():
        return pairs, skipped
    for student_dir in sorted(base.iterdir()):
        if students and student_dir.name not in students:
            continue
        if student_dir.is_symlink() or not student_dir.is_dir() or not _STUDENT_ID.match(student_dir.name):
            skipped.append(f"submitted/{student_dir.name!r}: not a student folder (a link, a file or an odd name)")
            continue
        for assignment in assignments_found:
            if assignments and assignment not in assignments:
                continue
            folder = student_dir / assignment
            if folder.is_symlink():
                skipped.append(f"submitted/{student_dir.name}/{assignment}: a link, not a folder")
            elif folder.is_dir():
                pairs.append((student_dir.name, assignment))
    return pairs, skipped
