"""Grading a whole class: parallel workers, the gradebook, feedback files and the report."""

from __future__ import annotations

import csv
import html
import os
import shutil
import tempfile
import time
import warnings
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import nbformat

from helpers.autograde import reference_key
from helpers.data import locate_data_file, sha256_of
from helpers.model import MODEL_ENV_VAR, load_model, network, weights_fingerprint

from .grading import (DEFAULT_MEMORY_MIB, GradingSettings, NotebookResult, PartResult, discover_submissions,
                      grade_notebook, graded_cells, load_results, load_specs, save_result)
from .paths import CourseError, assignments, references_dir, source_notebooks
from .sandbox import KernelJob, SandboxError, SandboxPolicy, prerequisites


class GradingSetupError(CourseError):
    """Grading cannot start (no references, no gradebook entries, ...)."""


def current_model_and_data(weights: str | None = None, name: str | None = None) -> tuple[str, Path, str]:
    """(weights choice, data file, reference key) for the grading run, decided by the instructor's settings.

    ``name`` is the network (``course.toml`` ``[model] name``; ``$SALIENCY_MODEL`` or the default if ``None``).
    """
    data_file = locate_data_file(download=True)
    choice = weights or os.environ.get("SALIENCY_WEIGHTS") or "pretrained"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_model(choice, device="cpu", name=name)
    key = reference_key(sha256_of(data_file), weights_fingerprint(model))
    return choice, data_file, key


def _shared_inputs(tmp: Path, choice: str, data_file: Path, inside: str, name: str) -> dict[str, str]:
    """Copies of the data and weight files that the unprivileged kernel may read (at ``inside`` in its view).

    The kernel's environment names them, and the network (``name``), as the notebooks read them.
    """
    tmp.mkdir(parents=True, exist_ok=True)
    os.chmod(tmp, 0o755)
    data_copy = tmp / "imagenet_val_25.npz"
    shutil.copy2(data_file, data_copy)
    os.chmod(data_copy, 0o444)
    net = network(name)
    env = {"SALIENCY_DATA": f"{inside}/{data_copy.name}", "SALIENCY_WEIGHTS": choice, MODEL_ENV_VAR: net.name}
    if choice not in ("untrained",):
        import torch

        source = Path(torch.hub.get_dir()) / "checkpoints" / net.filename if choice == "pretrained" \
            else Path(choice)
        weights_copy = tmp / net.filename
        shutil.copy2(source, weights_copy)
        os.chmod(weights_copy, 0o444)
        env["SALIENCY_WEIGHTS"] = f"{inside}/{weights_copy.name}"
    return env


def _alembic_on_path() -> None:
    """nbgrader's gradebook runs the ``alembic`` command: find it beside this interpreter if PATH lacks it."""
    import sys

    if shutil.which("alembic") is None:
        scripts = os.path.dirname(sys.executable)
        if not os.path.exists(os.path.join(scripts, "alembic")):
            raise GradingSetupError("nbgrader's `alembic` command is not installed in this environment "
                                    f"({scripts}): reinstall the requirements")
        os.environ["PATH"] = scripts + os.pathsep + os.environ.get("PATH", "")


def _ensure_gradebook(root: Path) -> None:
    from nbgrader.api import Gradebook, MissingEntry

    _alembic_on_path()

    from .release import generate_release

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", course_id="saliency") as gb:
        missing = []
        for assignment in assignments(root):
            try:
                gb.find_assignment(assignment)
            except MissingEntry:
                missing.append(assignment)
    if missing:
        generate_release(root, log=lambda line: None)


def read_timestamp(path: Path):
    """The submission time in ``timestamp.txt`` (nbgrader's format), or ``None`` if absent or unreadable."""
    from nbgrader.utils import parse_utc

    from .results import ResultError, open_folder, read_regular

    if path.is_symlink() or not path.is_file():
        return None
    try:
        fd = open_folder(path.parent)
        try:
            text = read_regular(fd, path.name, 256).decode("utf-8").strip()
        finally:
            os.close(fd)
        return parse_utc(text)
    except (ResultError, OSError, UnicodeDecodeError, ValueError, OverflowError, TypeError):
        return None


def record_in_gradebook(root: Path, results: list[NotebookResult]) -> None:
    """Write the automatic scores of one submission into nbgrader's gradebook (manual scores are kept)."""
    from nbgrader.api import Gradebook, MissingEntry

    warnings.filterwarnings("ignore", module="nbgrader.api")  # SQLAlchemy chatter from nbgrader's own code

    student, assignment = results[0].student, results[0].assignment
    timestamp_file = root / "submitted" / student / assignment / "timestamp.txt"
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", course_id="saliency") as gb:
        gb.update_or_create_student(student)
        try:
            gb.find_submission(assignment, student)
        except MissingEntry:
            timestamp = read_timestamp(timestamp_file)
            gb.add_submission(assignment, student, **({"timestamp": timestamp} if timestamp else {}))
        for result in results:
            notebook = Path(result.notebook).stem
            for part in result.parts:
                grade = gb.find_grade(part.grade_id, notebook, assignment, student)
                if part.manual:
                    grade.needs_manual_grade = grade.manual_score is None
                else:
                    grade.auto_score = part.points
                    grade.needs_manual_grade = False
        gb.db.commit()


def manual_scores(root: Path) -> dict[tuple[str, str, str, str], float | None]:
    """(student, assignment, notebook, grade_id) -> score, as the gradebook has it now."""
    from nbgrader.api import Gradebook, MissingEntry

    scores: dict[tuple[str, str, str, str], float | None] = {}
    db = root / "gradebook.db"
    if not db.is_file():
        return scores
    with Gradebook(f"sqlite:///{db}", course_id="saliency") as gb:
        for record in load_results(root):
            for nb in record["notebooks"]:
                for part in nb["parts"]:
                    try:
                        grade = gb.find_grade(part["grade_id"], Path(nb["notebook"]).stem,
                                              record["assignment"], record["student"])
                    except MissingEntry:
                        continue
                    scores[(record["student"], record["assignment"], nb["notebook"], part["grade_id"])] = \
                        grade.manual_score if grade.manual_score is not None else grade.auto_score
    return scores


def write_feedback(root: Path, results: list[NotebookResult]) -> Path:
    """``feedback/<student>/<assignment>/feedback.html``: points and what to fix, no hidden material."""
    student, assignment = results[0].student, results[0].assignment
    folder = root / "feedback" / student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    total = sum(r.score for r in results)
    maximum = sum(p.max_points for r in results for p in r.parts if not p.manual)
    by_hand = sum(p.max_points for r in results for p in r.parts if p.manual)
    overall = (f"automatic score: {total:g} / {maximum:g}" + (f"; written answers: up to {by_hand:g} more points, "
               f"graded by hand (the report counts out of {maximum + by_hand:g})" if by_hand else ""))
    rows, text = [], [f"{assignment} - feedback for {student}", overall, ""]
    for r in results:
        text.append(r.notebook)
        for problem in r.problems:
            rows.append(f"<tr class='problem'><td>{html.escape(r.notebook)}</td><td colspan='3'>"
                        f"{html.escape(problem)}</td></tr>")
            text.append(f"  ! {problem}")
        for p in r.parts:
            score = "by hand" if p.manual else f"{p.points:g} / {p.max_points:g}"
            advice = "" if p.points == p.max_points and not p.manual else "<br>".join(
                html.escape(m) for m in p.messages)
            status = "manual" if p.manual else ("ok" if p.points == p.max_points else "lost")
            rows.append(f"<tr class='{status}'><td>{html.escape(r.notebook)}</td><td>{html.escape(p.grade_id)}</td>"
                        f"<td>{score}</td><td>{advice}</td></tr>")
            text.append(f"  {p.grade_id}: {score}" + ("" if status == "ok" else
                        "".join(f"\n      {m}" for m in p.messages)))
    page = f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(assignment)} feedback</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}td,th{{padding:.4em;border-bottom:1px solid #ddd;
vertical-align:top;text-align:left}}tr.lost td{{background:#fff0f0}}tr.ok td{{background:#f0fff0}}
tr.problem td{{background:#fff8e0}}</style></head><body>
<h1>{html.escape(assignment)}: feedback for {html.escape(student)}</h1>
<p>{html.escape(overall[0].upper() + overall[1:])}.</p>
<table><tr><th>notebook</th><th>part</th><th>points</th><th>what to look at</th></tr>
{''.join(rows)}</table></body></html>"""
    (folder / "feedback.html").write_text(page)
    (folder / "feedback.txt").write_text("\n".join(text) + "\n")
    return folder / "feedback.html"


def grade_class(root: Path, *, jobs: int | None = None, students: list[str] | None = None,
                only_assignments: list[str] | None = None, settings: GradingSettings | None = None,
                memory_mib: int = DEFAULT_MEMORY_MIB, weights: str | None = None, unsandboxed: bool = False,
                log=print) -> list[list[NotebookResult]]:
    """Grade every submission found in ``submitted/``; returns the results per submission.

    Parameters
    ----------
    root : pathlib.Path
        The course root.
    jobs : int, optional
        Notebooks graded at once (default: one more than the cores).
    students, only_assignments : list of str, optional
        Grade only these (assignment names as found in ``source/``).
    settings : GradingSettings, optional
        Time limits.
    memory_mib : int
        Memory of each notebook's whole process tree.
    weights : str, optional
        ``pretrained``, ``untrained`` or a weights file (default: ``$SALIENCY_WEIGHTS``).
    unsandboxed : bool
        Grade even where :func:`course_tools.sandbox.prerequisites` reports something missing: student
        code then runs as the grader, unconfined. Only for code you trust.
    log : callable
        Where progress lines go.
    """
    # One more worker than cores: a kernel spends part of its life starting up and waiting on messages,
    # and the extra worker fills those gaps (measured: 13.4 s instead of 15.7 s per submission on 2 cores).
    only = only_assignments
    unknown = sorted(set(only or ()) - set(assignments(root)))
    if unknown:
        raise GradingSetupError(f"--assignment: no assignment named {', '.join(map(repr, unknown))} in source/ (there: "
                                f"{', '.join(assignments(root)) or 'none'})")
    cores = os.cpu_count() or 1
    jobs = jobs or cores + 1
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ValueError(f"jobs must be a positive int, got {jobs!r}")
    settings = settings or GradingSettings()
    missing = prerequisites()
    if missing and not unsandboxed:
        raise GradingSetupError("student code cannot be sandboxed here: " + "; ".join(missing)
                                + ". Install what is missing (README, 'Grading'), or pass --unsandboxed to run "
                                "student code unconfined as yourself.")
    pairs, skipped = discover_submissions(root, assignments(root), students, only)
    for line in skipped:
        log(f"  skipped {line}")
    if not pairs:
        raise GradingSetupError(f"no submissions found under {root / 'submitted'} (nbgrader layout: "
                                "submitted/<student>/<assignment>/<notebook>.ipynb)")
    from .network import course_network

    name = course_network(root)
    choice, data_file, key = current_model_and_data(weights, name)
    if not (references_dir(root) / key / "manifest.json").is_file():
        raise GradingSetupError(f"no reference arrays for {key}: run `course build` (or `course references`) "
                                "with the same data and weights first")
    from .references import outdated

    stale = outdated(root, references_dir(root) / key)
    if stale:
        raise GradingSetupError(f"the reference arrays for {key} do not fit source/ any more ({'; '.join(stale)}): "
                                "run `course build` (or `course references`) first")
    for folder in sorted(p for p in (references_dir(root) / key).iterdir() if p.is_dir()):
        load_specs(folder)   # refuses a set recorded by an older version, before any student is graded
    _ensure_gradebook(root)
    for private in (references_dir(root), root / "submitted", root / "autograded"):
        if private.is_dir():
            os.chmod(private, 0o700)
    from .references import REFERENCE_THREADS

    # Each kernel computes with the references' thread count (their results depend on it) and may use up to
    # its share of the cores for everything else it runs.
    policy = SandboxPolicy(memory_mib=memory_mib, cpus=float(max(1, cores // jobs)), threads=REFERENCE_THREADS,
                           isolated=not missing)
    log(f"Grading {len(pairs)} submission(s) with {jobs} worker(s); network {name}, references {key}")
    log("  each notebook runs in its own sandbox (bubblewrap: no network, own processes and files; "
        f"cgroup: {memory_mib} MiB, {policy.pids} tasks, {policy.cpus:g} CPU)" if policy.isolated else
        "  WARNING: --unsandboxed: student code runs as you, unconfined, and can read and change your files")
    start = time.perf_counter()
    by_submission: dict[tuple[str, str], list[NotebookResult]] = defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="saliency-grading-") as tmp:
        os.chmod(tmp, 0o711)
        inputs = Path(tmp) / "inputs"
        from .sandbox import INPUTS

        env = _shared_inputs(inputs, choice, data_file, INPUTS if policy.isolated else str(inputs), name)
        items = [(student, assignment, nb.name) for student, assignment in pairs
                 for nb in source_notebooks(root, assignment)]

        def grade_one(student: str, assignment: str, name: str) -> NotebookResult:
            return _grade_contained(root, key, student, assignment, name, Path(tmp), policy, inputs, env, settings)

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(grade_one, *item): item for item in items}
            for done, future in enumerate(as_completed(futures), 1):
                result = future.result()
                by_submission[(result.student, result.assignment)].append(result)
                flag = f"  [{'; '.join(result.problems)}]" if result.problems else ""
                log(f"  [{done:>{len(str(len(items)))}}/{len(items)}] {result.student:<20.20s} "
                    f"{result.assignment}/{result.notebook:<34.34s} {result.score:>4g}/{result.max_score:<3g} "
                    f"{result.seconds:5.1f} s{flag}")
    submissions = []
    for (student, assignment), results in sorted(by_submission.items()):
        order = [nb.name for nb in source_notebooks(root, assignment)]
        results.sort(key=lambda r: order.index(r.notebook))
        try:
            save_result(root, results)
            record_in_gradebook(root, results)
            write_feedback(root, results)
        except Exception as err:  # noqa: BLE001 - one submission's records must not stop the class
            log(f"  ERROR recording {student}/{assignment}: {type(err).__name__}: {err}")
        submissions.append(results)
    elapsed = time.perf_counter() - start
    log(f"Graded {len(submissions)} submission(s) in {elapsed:.1f} s "
        f"({elapsed / max(1, len(submissions)):.1f} s per submission). Next: `course report`.")
    return submissions


def _grade_contained(root: Path, key: str, student: str, assignment: str, name: str, base: Path,
                     policy: SandboxPolicy, inputs: Path, env: dict[str, str],
                     settings: GradingSettings) -> NotebookResult:
    """Grade one notebook in its own sandbox job; whatever goes wrong becomes that notebook's problem."""
    job = KernelJob(name=f"job-{Path(name).stem[:16]}", policy=policy, inputs=inputs, env=env)
    try:
        job.open(base)
        return grade_notebook(root, key, student, assignment, name, job=job, settings=settings)
    except Exception as err:  # noqa: BLE001 - one notebook must never stop the class run
        result = NotebookResult(student, assignment, name)
        problem = (f"the sandbox could not be set up ({err})" if isinstance(err, SandboxError)
                   else f"grading failed with an internal error ({type(err).__name__}); its parts score 0")
        result.problems.append(problem)
        source = nbformat.read(root / "source" / assignment / name, as_version=4)
        result.parts = [PartResult(gid, 0.0, points, manual=manual,
                                   messages=["graded by hand"] if manual else [problem])
                        for gid, points, manual in graded_cells(source)]
        return result
    finally:
        job.close()


def write_report(root: Path, out: Path | None = None) -> Path:
    """``reports/grades.csv``: one row per student and assignment, one column per graded part."""
    records = load_results(root)
    if not records:
        raise GradingSetupError("nothing graded yet: run `course grade` first")
    scores = manual_scores(root)
    columns: dict[str, list[str]] = {}
    order = assignments(root)
    for assignment in order:
        columns[assignment] = [f"{nb.stem}:{gid}" for nb in source_notebooks(root, assignment)
                               for gid, _, _ in graded_cells(nbformat.read(nb, as_version=4))]
    all_columns = [c for a in order for c in columns[a]]
    out = out or root / "reports" / "grades.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["student", "assignment", *all_columns, "score", "max_score", "manual_pending", "problems"])
        for record in records:
            values: dict[str, str] = {}
            total = maximum = 0.0
            pending = 0
            problems = []
            for nb in record["notebooks"]:
                problems += [p if p.startswith(nb["notebook"]) else f"{nb['notebook']}: {p}" for p in nb["problems"]]
                for part in nb["parts"]:
                    key = (record["student"], record["assignment"], nb["notebook"], part["grade_id"])
                    score = scores.get(key, None if part["manual"] else part["points"])
                    maximum += part["max_points"]
                    if score is None:
                        pending += 1
                        values[f"{Path(nb['notebook']).stem}:{part['grade_id']}"] = ""
                    else:
                        total += score
                        values[f"{Path(nb['notebook']).stem}:{part['grade_id']}"] = f"{score:g}"
            writer.writerow([record["student"], record["assignment"], *[values.get(c, "") for c in all_columns],
                             f"{total:g}", f"{maximum:g}", pending, " | ".join(problems)])
    return out
