"""Autograding a class: sandboxed execution, verdicts outside the student's kernel, nbgrader's gradebook.

How one submitted notebook is graded
------------------------------------
1. **Rebuild** it from the instructor's version: every read-only and test cell
   (hidden tests included) is taken from ``source/``, matched by nbgrader
   ``grade_id``; the student's answer cells and extra cells are kept in their
   order. A test cell the student deleted stays deleted (its points are lost
   and the report says so); a deleted read-only setup cell is put back.
2. **Execute** it in a fresh kernel started by :mod:`course_tools.sandbox_kernel`
   (memory cap; as root, an unprivileged user) in a private folder, with a
   time limit per cell. A cell that runs over is interrupted; a kernel that
   ignores the interrupt (a loop catching ``KeyboardInterrupt``) or that grows
   past the memory limit is killed. The hidden tests run in *grade* mode:
   they only serialise the student's results to an outbox.
3. **Judge** in this process, which the student's code never touched: each
   outbox value is compared with the reference arrays by
   :func:`helpers.checks.compare_arrays`; figure files are checked on disk. A
   test cell scores its points when every check that belongs to it passes.
4. **Record** the scores in nbgrader's gradebook (``gradebook.db``), so that
   ``nbgrader formgrader`` (manual grading of the written answers) and
   ``nbgrader export`` keep working; write per-student feedback that shows
   the diagnostic messages and never the hidden tests, their tracebacks, seeds
   or reference values.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import psutil

from helpers.autograde import OUTBOX_ENV, check_file, deserialise
from helpers.checks import compare_arrays

from .paths import ASSIGNMENTS, references_dir

SANDBOX_USER = "nobody"
DEFAULT_CELL_TIMEOUT = 60
DEFAULT_MEMORY_MIB = 4096


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


# ----------------------------------------------------------------------------- rebuild

def _nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def instructor_cells(source_nb) -> tuple[dict[str, Any], list[str]]:
    """The instructor's cells by grade_id, and the grade_ids in order."""
    cells, order = {}, []
    for cell in source_nb.cells:
        gid = _nbgrader_meta(cell).get("grade_id")
        if gid:
            cells[gid] = cell
            order.append(gid)
    return cells, order


def graded_cells(source_nb) -> list[tuple[str, float, bool]]:
    """(grade_id, points, graded by hand) of every graded cell, in order."""
    out = []
    for cell in source_nb.cells:
        meta = _nbgrader_meta(cell)
        if meta.get("grade"):
            manual = bool(meta.get("solution")) or cell.cell_type == "markdown"
            out.append((meta["grade_id"], float(meta.get("points", 0)), manual))
    return out


def rebuild_notebook(source_nb, student_nb) -> tuple[Any, list[str]]:
    """Put the instructor's locked and test cells back into a student's notebook.

    Returns the notebook to execute and a list of problems found (deleted test cells).
    """
    source_cells, order = instructor_cells(source_nb)
    problems: list[str] = []
    seen: set[str] = set()
    rebuilt = []
    for cell in student_nb.cells:
        gid = _nbgrader_meta(cell).get("grade_id")
        original = source_cells.get(gid) if gid else None
        if original is None or gid in seen:
            # The student's own cell (or a duplicate): keep it, stripped of grading metadata.
            cell = copy.deepcopy(cell)
            cell.get("metadata", {}).pop("nbgrader", None)
            rebuilt.append(cell)
            continue
        seen.add(gid)
        meta = _nbgrader_meta(original)
        if meta.get("locked") or meta.get("grade") and not meta.get("solution"):
            rebuilt.append(copy.deepcopy(original))
        else:
            answer = copy.deepcopy(original)
            answer.source = cell.get("source", "")
            rebuilt.append(answer)
    # Put back read-only cells that are not tests (the setup cell); deleted tests stay deleted.
    for index, gid in enumerate(order):
        if gid in seen:
            continue
        meta = _nbgrader_meta(source_cells[gid])
        if meta.get("grade") and not meta.get("solution"):
            problems.append(f"test cell {gid!r} was deleted: its points are lost")
        elif meta.get("locked") and not meta.get("grade"):
            position = _position_after(rebuilt, order[:index])
            rebuilt.insert(position, copy.deepcopy(source_cells[gid]))
        elif meta.get("solution"):
            problems.append(f"answer cell {gid!r} was deleted")
    nb = copy.deepcopy(source_nb)
    nb.cells = rebuilt
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb, problems


def _position_after(cells, earlier_ids: list[str]) -> int:
    position = 0
    for i, cell in enumerate(cells):
        if _nbgrader_meta(cell).get("grade_id") in earlier_ids:
            position = i + 1
    return position


# ----------------------------------------------------------------------------- execution

@dataclass
class Execution:
    """What happened when a rebuilt notebook ran."""

    cell_errors: dict[int, str] = field(default_factory=dict)
    timed_out: list[int] = field(default_factory=list)
    crashed: str | None = None
    seconds: float = 0.0


def _kernel_spec_dir(base: Path) -> Path:
    import sys

    spec_dir = base / "kernels" / "saliency-sandbox"
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {"argv": [sys.executable, "-m", "course_tools.sandbox_kernel", "-f", "{connection_file}"],
            "display_name": "saliency sandbox", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return base / "kernels"


def _error_text(outputs) -> str | None:
    for out in outputs:
        if out.get("output_type") == "error":
            value = str(out.get("evalue", "")).strip().splitlines()
            return f"{out.get('ename', 'Error')}: {value[0][:300] if value else ''}".rstrip(": ")
    return None


def private_paths(root: Path) -> list[str]:
    """What a student's kernel must not see: solutions, references, other students' work, the gradebook."""
    names = ["source", "references", "submitted", "autograded", "feedback", "reports", ".git", "gradebook.db",
             "outputs"]
    return [str(root / name) for name in names if (root / name).exists()]


def hidden_paths(root: Path) -> list[str]:
    """Private paths of the course being graded and of the course the installed ``helpers`` comes from."""
    import helpers

    paths = private_paths(root)
    home = Path(helpers.__file__).resolve().parents[1]
    if home != root.resolve() and (home / "nbgrader_config.py").is_file():
        paths += [p for p in private_paths(home) if p not in paths]
    return paths


def execute_sandboxed(nb, workdir: Path, *, env: dict[str, str], cell_timeout: int = DEFAULT_CELL_TIMEOUT,
                      memory_mib: int = DEFAULT_MEMORY_MIB, sandbox_user: str | None = SANDBOX_USER,
                      hide: list[str] | None = None, interrupt_grace: float = 5.0) -> Execution:
    """Run ``nb`` cell by cell in a limited kernel; never raises for what the student's code does."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager as KernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    result = Execution()
    specs = _kernel_spec_dir(workdir.parent / f".{workdir.name}-spec")
    km = KernelManager(kernel_name="saliency-sandbox",
                       kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(specs)]))
    kernel_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SALIENCY_", "JPY_", "JUPYTER_TOKEN"))},
        "MPLBACKEND": "Agg", "PYTHONWARNINGS": "ignore", **env,
        "SALIENCY_SANDBOX_DIR": str(workdir), "SALIENCY_SANDBOX_MEMORY_MIB": str(memory_mib),
    }
    if sandbox_user:
        kernel_env["SALIENCY_SANDBOX_USER"] = sandbox_user
    if hide:
        kernel_env["SALIENCY_SANDBOX_HIDE"] = os.pathsep.join(hide)
    client = NotebookClient(nb, km=km, timeout=None, allow_errors=True, kernel_name="saliency-sandbox",
                            resources={"metadata": {"path": str(workdir)}}, record_timing=False)
    state = {"deadline": None, "interrupted": False, "killed": None, "stop": False}

    def watchdog() -> None:
        while not state["stop"]:
            time.sleep(0.2)
            try:
                pid = km.provisioner.pid if km.provisioner else None
                proc = psutil.Process(pid) if pid else None
                rss = proc.memory_info().rss if proc else 0
            except (psutil.Error, AttributeError):
                proc, rss = None, 0
            if proc and rss > memory_mib * 1024 * 1024:
                state["killed"] = f"the kernel used more than {memory_mib} MiB of memory and was stopped"
                _kill(proc)
                continue
            deadline = state["deadline"]
            if deadline is None or time.monotonic() < deadline:
                continue
            if not state["interrupted"]:
                state["interrupted"] = True
                # A plain signal: the client's own interrupt would need the event loop this thread lacks.
                try:
                    if proc is not None:
                        proc.send_signal(signal.SIGINT)
                except psutil.Error:
                    pass
                state["deadline"] = time.monotonic() + interrupt_grace
            elif proc is not None:
                state["killed"] = "a cell ignored the interrupt after its time limit; the kernel was stopped"
                _kill(proc)

    start = time.perf_counter()
    guard = threading.Thread(target=watchdog, daemon=True)
    try:
        with client.setup_kernel(env=kernel_env):
            guard.start()
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                state.update(deadline=time.monotonic() + cell_timeout, interrupted=False)
                try:
                    client.execute_cell(cell, index)
                except (DeadKernelError, CellTimeoutError) as err:
                    result.crashed = state["killed"] or f"the kernel died ({type(err).__name__})"
                    result.cell_errors[index] = result.crashed
                    break
                except CellExecutionError as err:  # only with allow_errors=False
                    result.cell_errors[index] = str(err)[:300]
                except Exception as err:  # noqa: BLE001 - a broken kernel must not stop the class
                    result.crashed = state["killed"] or f"the kernel stopped answering ({type(err).__name__})"
                    result.cell_errors[index] = result.crashed
                    break
                finally:
                    if state["interrupted"]:
                        result.timed_out.append(index)
                    state["deadline"] = None
                error = _error_text(cell.get("outputs", []))
                if error:
                    result.cell_errors[index] = error
                if state["killed"]:
                    result.crashed = state["killed"]
                    break
    except Exception as err:  # noqa: BLE001 - kernel failed to start or died on shutdown
        if result.crashed is None and not result.cell_errors:
            result.crashed = f"the kernel could not run: {type(err).__name__}: {str(err)[:200]}"
    finally:
        state["stop"] = True
        _shutdown(km, client)
    result.seconds = time.perf_counter() - start
    return result


def _shutdown(km, client) -> None:
    """Stop the kernel and free every thread, socket and context (nbclient leaves a kernel manager
    it did not create alone; without this a class of 100 leaks thousands of threads and sockets)."""
    try:
        pid = km.provisioner.pid if km.provisioner else None
    except Exception:  # noqa: BLE001
        pid = None
    from jupyter_core.utils import run_sync

    try:
        if km.has_kernel:
            run_sync(km.shutdown_kernel)(now=True)
    except Exception:  # noqa: BLE001 - it may be dead already
        pass
    if pid:
        try:
            _kill(psutil.Process(pid))
        except psutil.Error:
            pass
    try:
        run_sync(km.cleanup_resources)()
    except Exception:  # noqa: BLE001
        pass
    try:
        if client.kc is not None:
            client.kc.stop_channels()
    except Exception:  # noqa: BLE001
        pass
    try:
        km.context.destroy(linger=0)
    except Exception:  # noqa: BLE001
        pass


def _kill(proc: psutil.Process) -> None:
    try:
        for child in proc.children(recursive=True):
            child.kill()
        proc.kill()
    except psutil.Error:
        pass


# ----------------------------------------------------------------------------- verdicts

SMOOTHGRAD_NOISE_HINT = (
    "your maps are right without noise but not with it: add the noise to the uint8 image in pixel space, "
    "before preprocessing, with helpers.add_noise(X[i], noise_pct, rng), and draw all of it from rng"
)


def _known_mistakes(family: str | None, name: str, reference: np.ndarray,
                    context: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, str]]:
    """Wrong answers a student typically gives, computed from the instructor's context arrays."""
    mistakes: dict[str, tuple[np.ndarray, str]] = {}
    if family == "gradient" and "predicted_class" in context:
        mistakes["predicted_class"] = (
            context["predicted_class"],
            "you explained the predicted class (the argmax of the scores) instead of the true label y",
        )
    if family == "gradient" and name.endswith("second_call"):
        mistakes["accumulated"] = (
            2.0 * reference,
            "gradients accumulated across calls: a second call on the same tensor returned twice the gradient; "
            "work on a fresh copy (X.detach().clone().requires_grad_(True)) or zero X.grad first",
        )
    if family == "reduction" and "gradient" in context:
        g = context["gradient"].astype(np.float64)
        wants_abs = "maxabs" in name
        candidates = {
            "signed_max": (g.max(axis=1), "your maps are signed: take the absolute value before the max over channels"),
            "abs_max": (np.abs(g).max(axis=1), "you took absolute values: this exercise asks for the signed max"),
            "sum": (g.sum(axis=1), "you summed over the channels: take the max instead"),
            "abs_sum": (np.abs(g).sum(axis=1), "you summed the magnitudes over the channels: take the max instead"),
            "mean": (g.mean(axis=1), "you averaged over the channels: take the max instead"),
            "abs_mean": (np.abs(g).mean(axis=1), "you averaged the magnitudes over the channels: take the max instead"),
            "min": (g.min(axis=1), "you took the min over the channels: take the max"),
        }
        for key, value in candidates.items():
            if (key == "abs_max") == wants_abs:
                continue  # that one is the right answer
            mistakes[key] = value
    return mistakes


def judge_notebook(reference_folder: Path, outbox: Path, workdir: Path, source_nb,
                   execution: Execution | None, rebuilt_nb=None) -> list[PartResult]:
    """Score each graded cell of one notebook from the outbox, the references and the files on disk."""
    specs: dict[str, list[tuple[str, dict]]] = {}
    for spec_path in sorted(reference_folder.glob("*.spec.json")):
        spec = json.loads(spec_path.read_text())
        specs.setdefault(spec["cell"], []).append((spec_path.name[: -len(".spec.json")], spec))
    errors_by_cell = _errors_by_grade_id(rebuilt_nb, execution) if rebuilt_nb is not None else {}
    parts = []
    for grade_id, points, manual in graded_cells(source_nb):
        part = PartResult(grade_id, 0.0, points, manual=manual)
        parts.append(part)
        if manual:
            part.messages.append("graded by hand")
            continue
        checks = specs.get(grade_id)
        if not checks:
            ran_clean = rebuilt_nb is not None and grade_id in _present_ids(rebuilt_nb) and grade_id not in errors_by_cell
            part.points = points if ran_clean else 0.0
            if not ran_clean:
                part.messages.append(errors_by_cell.get(grade_id, "this test cell did not run"))
            continue
        failed = False
        passed: dict[str, bool] = {}
        for check_name, spec in checks:
            if "files" in spec:
                for filename in spec["files"]:
                    problem = check_file(workdir / filename)
                    if problem:
                        failed = True
                        part.messages.append(problem)
                continue
            if not (outbox / f"{check_name}.json").is_file():
                failed = True
                reason = errors_by_cell.get(grade_id)
                message = f"this test did not get to check your result ({reason})" if reason else \
                    "this test did not get to check your result (the cell did not run)"
                if message not in part.messages:
                    part.messages.append(message)
                continue
            reference, _ = deserialise(reference_folder, check_name)
            student, meta = deserialise(outbox, check_name)
            context = {}
            for ctx in spec.get("context", []):
                value, _ = deserialise(reference_folder, f"{check_name}.context.{ctx}")
                context[ctx] = np.asarray(value)
            reference = np.asarray(reference)
            known = _known_mistakes(spec.get("mistakes"), check_name, reference, context)
            verdict = compare_arrays(student, reference, name="your result", rtol=spec.get("rtol", 1e-3),
                                     expect=spec.get("expect", "any"), known_mistakes=known or None)
            passed[check_name] = verdict.passed
            if not verdict.passed:
                failed = True
                if verdict.message not in part.messages:
                    part.messages.append(verdict.message)
        if passed.get("smoothgrad_no_noise") and passed.get("smoothgrad_fixed_noise") is False:
            part.messages.append(SMOOTHGRAD_NOISE_HINT)
        if not failed and grade_id in errors_by_cell:
            failed = True
            part.messages.append(errors_by_cell[grade_id])
        part.points = 0.0 if failed else points
    return parts


def _present_ids(nb) -> set[str]:
    return {_nbgrader_meta(c).get("grade_id") for c in nb.cells if _nbgrader_meta(c).get("grade_id")}


def _errors_by_grade_id(nb, execution: Execution | None) -> dict[str, str]:
    if execution is None:
        return {}
    out = {}
    for index, cell in enumerate(nb.cells):
        gid = _nbgrader_meta(cell).get("grade_id")
        if not gid:
            continue
        if index in execution.timed_out:
            out[gid] = "the cell ran past its time limit and was interrupted"
        elif index in execution.cell_errors:
            out[gid] = execution.cell_errors[index]
    if execution.crashed:
        # Cells after the crash never ran.
        crash_index = max(execution.cell_errors) if execution.cell_errors else -1
        for index, cell in enumerate(nb.cells):
            gid = _nbgrader_meta(cell).get("grade_id")
            if gid and index > crash_index:
                out.setdefault(gid, f"not run: {execution.crashed}")
    return out


# ----------------------------------------------------------------------------- one submission

def grade_notebook(root: Path, reference_key: str, student: str, assignment: str, notebook_name: str, *,
                   env: dict[str, str], cell_timeout: int, memory_mib: int,
                   sandbox_user: str | None) -> NotebookResult:
    """Rebuild, execute and judge one submitted notebook; save what the instructor needs."""
    start = time.perf_counter()
    result = NotebookResult(student, assignment, notebook_name)
    source_path = root / "source" / assignment / notebook_name
    source_nb = nbformat.read(source_path, as_version=4)
    submitted = root / "submitted" / student / assignment / notebook_name
    autograded = root / "autograded" / student / assignment
    autograded.mkdir(parents=True, exist_ok=True)
    ref_folder = references_dir(root) / reference_key / source_path.stem

    student_nb = None
    if not submitted.is_file():
        result.problems.append(f"{notebook_name} is missing from the submission")
    else:
        try:
            student_nb = nbformat.read(submitted, as_version=4)
        except Exception as err:  # noqa: BLE001 - any unreadable file is the student's problem
            result.problems.append(f"{notebook_name} is not a valid notebook ({type(err).__name__}): nothing could run")
    if student_nb is None:
        result.parts = judge_notebook(ref_folder, Path("/nonexistent"), Path("/nonexistent"), source_nb, None)
        for part in result.parts:
            if not part.manual:
                part.messages = [result.problems[-1]]
        result.seconds = time.perf_counter() - start
        return result

    rebuilt, problems = rebuild_notebook(source_nb, student_nb)
    result.problems += problems
    with tempfile.TemporaryDirectory(prefix="saliency-grade-") as tmp:
        os.chmod(tmp, 0o755)
        workdir = Path(tmp) / "work"
        workdir.mkdir()
        # The student's other files (none are needed, but their code may read them).
        for item in submitted.parent.iterdir():
            if item.is_file() and item.suffix not in (".ipynb",) and item.name != "timestamp.txt":
                shutil.copy2(item, workdir / item.name)
        outbox = workdir / ".outbox"
        execution = execute_sandboxed(rebuilt, workdir, env={**env, OUTBOX_ENV: str(outbox)},
                                      cell_timeout=cell_timeout, memory_mib=memory_mib,
                                      sandbox_user=sandbox_user, hide=hidden_paths(root))
        if execution.crashed:
            result.problems.append(execution.crashed)
        for index in execution.timed_out:
            result.problems.append(f"cell {index} ran past the {cell_timeout} s limit and was interrupted")
        result.parts = judge_notebook(ref_folder, outbox / source_path.stem, workdir, source_nb, execution, rebuilt)
        nbformat.write(rebuilt, autograded / notebook_name)
        for item in workdir.iterdir():
            if item.is_file() and item.suffix in (".png", ".pdf"):
                shutil.copy2(item, autograded / item.name)
    result.seconds = time.perf_counter() - start
    return result


def save_result(root: Path, results: list[NotebookResult]) -> None:
    """Write ``autograded/<student>/<assignment>/grading.json`` for one submission."""
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


def discover_submissions(root: Path, students: list[str] | None = None,
                         assignments: list[str] | None = None) -> list[tuple[str, str]]:
    """(student, assignment) pairs present in nbgrader's ``submitted/`` layout."""
    pairs = []
    base = root / "submitted"
    if not base.is_dir():
        return pairs
    for student_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        if students and student_dir.name not in students:
            continue
        for assignment in ASSIGNMENTS:
            if assignments and assignment not in assignments:
                continue
            if (student_dir / assignment).is_dir():
                pairs.append((student_dir.name, assignment))
    return pairs
