"""Writing the reference arrays by running the instructor's solutions.

The source notebooks run in *record* mode: every hidden check saves the
solution's value (with its comparison settings) instead of comparing. The
reference set is keyed by the data file's hash and the weights' fingerprint
(see :func:`helpers.autograde.reference_key`), and lives in ``references/``
at the course root, outside ``source/``, so that nbgrader never copies it
into ``release/`` and students never receive it.

A figure a hidden test asks for (``require_files``) is recorded as its layout and a copy of the solution's
file; once the notebooks ran, :func:`course_tools.figures.fingerprint_recorded_figures` adds to its spec what
the figure shows, on this side: the student package holds no such code.

Beside the arrays, ``timings.json`` records how long each cell of each
solution ran (see :func:`timing_record`), so that time limits can follow the
work (e.g. grading's per-cell limit: the solution's time times a margin).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
import warnings
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from helpers.autograde import RECORD_ENV, deserialise, reference_key

from .figures import fingerprint_recorded_figures
from .nbgrader_cells import grade_id, is_autograder_test, points
from .notebooks import available_cores, copy_tree, execute_notebook, format_execution, read_notebook
from .paths import CourseError, references_dir, source_notebooks
from .runner import Execution


#: Math-library threads of every kernel that records references, and of every kernel the grader (and nbval)
#: compares with them. torch's sums, and so which ReLUs of a network sit just above or below zero, depend on
#: the thread count: measured on the untrained network, one image's gradient differs by 3% between 1 and 2
#: threads, while the same thread count gives bitwise the same result. One thread is also the fastest on a
#: busy machine.
REFERENCE_THREADS = 1


def reference_thread_env() -> dict[str, str]:
    """The thread settings of a kernel whose results are, or are compared with, references."""
    from .notebooks import THREAD_VARIABLES

    return {name: str(REFERENCE_THREADS) for name in THREAD_VARIABLES}


class ReferenceError(CourseError):
    """The solutions failed to run, so no references were written."""


#: Name of the per-cell run times written beside ``manifest.json`` in each reference set.
TIMINGS_FILE = "timings.json"
#: Default per-cell time limit (seconds) when the solutions run; ``--timeout`` changes it.
DEFAULT_CELL_TIMEOUT = 600


def make_references(root: Path, *, jobs: int = 1, env: dict[str, str] | None = None,
                    log=print, keep_outputs: Path | None = None, timeout: int = DEFAULT_CELL_TIMEOUT,
                    progress: bool = False) -> Path:
    """Run every source notebook in record mode and install the references.

    Parameters
    ----------
    root : pathlib.Path
        The course root.
    jobs : int
        Notebooks run at the same time.
    env : dict, optional
        Extra environment for the kernels (``SALIENCY_WEIGHTS``, ``SALIENCY_DATA``).
    log : callable
        Where progress lines go.
    keep_outputs : pathlib.Path, optional
        Also keep the executed notebooks and the figures they saved here,
        one folder per assignment.
    timeout : int
        Per-cell time limit in seconds.
    progress : bool
        Show a progress bar per notebook (on a terminal).

    Returns
    -------
    pathlib.Path
        The folder of the new reference set, ``references/<key>``.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a whole number of notebooks run at once, at least 1, got {jobs!r}")
    from .network import kernel_env

    env = kernel_env(root, env)
    notebooks = source_notebooks(root)
    if not notebooks:
        raise ReferenceError(f"no source notebooks under {root / 'source'}")
    _refuse_orphans(root, notebooks)
    with tempfile.TemporaryDirectory(prefix="saliency-refs-") as tmp:
        tmp_path = Path(tmp)
        record = tmp_path / "record"
        work = tmp_path / "work"
        copy_tree(root / "source", work)

        concurrent = min(jobs, len(notebooks))
        load_before = _load_average()

        def run(position_and_nb: tuple[int, Path]) -> Execution:
            position, nb = position_and_nb
            target = work / nb.parent.name / nb.name
            written = keep_outputs / nb.parent.name / nb.name if keep_outputs else None
            result = execute_notebook(target, env={**(env or {}), **reference_thread_env(), RECORD_ENV: str(record)},
                                      timeout=timeout,
                                      write_to=written, figures=written is not None, concurrent=concurrent,
                                      progress=progress, progress_position=position % concurrent)
            log(format_execution(result))
            return result

        with ThreadPoolExecutor(max_workers=concurrent) as pool:
            results = list(pool.map(run, enumerate(notebooks)))
        failed = [r for r in results if r.error]
        if failed:
            raise ReferenceError("the solutions failed; no references were written: "
                                 + "; ".join(f"{r.notebook.name}: {r.error}" for r in failed))
        keys = [p for p in record.iterdir() if p.is_dir()] if record.is_dir() else []
        if len(keys) != 1:
            raise ReferenceError(f"expected one reference set, found {[k.name for k in keys]}: "
                                 "did the notebooks use different data or weights?")
        key_dir = keys[0]
        for name in fingerprint_recorded_figures(key_dir):
            log(f"  {name}: what the solution's figure shows is recorded")
        for line in unchecked_test_cells(notebooks, key_dir):
            log(f"  warning: {line}")
        checked = cross_check_references(key_dir, env=env)
        for name, err in checked.items():
            log(f"  {name}: the independent recomputation agrees (mean {err['mean']:.1e}, max {err['max']:.1e} "
                f"of an image's scale)")
        if keep_outputs is not None:
            for figure in work.rglob("*"):
                if figure.suffix in (".png", ".pdf"):
                    dest_fig = keep_outputs / figure.relative_to(work)
                    dest_fig.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(figure, dest_fig)
        manifest = {
            "key": key_dir.name,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "notebooks": {f"{r.notebook.parent.name}/{r.notebook.name}": round(r.seconds, 1) for r in results},
            "code": {_relative(root, nb): code_fingerprint(nb) for nb in notebooks},
        }
        (key_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
        timings = timing_record(results, concurrent=concurrent, figures=keep_outputs is not None,
                                load_average=(load_before, _load_average()))
        (key_dir / TIMINGS_FILE).write_text(json.dumps(timings, indent=2))
        dest_root = references_dir(root)
        dest_root.mkdir(exist_ok=True)
        os.chmod(dest_root, 0o700)
        dest = dest_root / key_dir.name
        _refuse_orphans(root, notebooks)   # again: the set for these weights may be older than the check above
        staging = dest_root / f".{key_dir.name}.new"
        if staging.exists():
            shutil.rmtree(staging)
        shutil.copytree(key_dir, staging)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(staging, dest)
    return dest


def code_fingerprint(path: Path) -> str:
    """SHA-256 of what a notebook computes: its code cells' sources and grade_ids, in order (prose excluded)."""
    digest = hashlib.sha256()
    for cell in read_notebook(path).cells:
        if cell.get("cell_type") == "code":
            digest.update(json.dumps([grade_id(cell), cell.get("source", "")]).encode())
    return digest.hexdigest()


def _relative(root: Path, notebook: Path) -> str:
    return notebook.relative_to(Path(root) / "source").as_posix()


def outdated(root: Path, key_dir: Path) -> list[str]:
    """Why a reference set no longer fits ``source/``, one line each (empty when it fits).

    A set fits while the code of every source notebook is what it was when the set was recorded
    (:func:`code_fingerprint`: prose may change) and no notebook was added or removed.
    """
    try:
        recorded = json.loads((Path(key_dir) / "manifest.json").read_text()).get("code")
    except (OSError, ValueError) as err:
        return [f"its manifest cannot be read ({type(err).__name__})"]
    if not isinstance(recorded, dict):
        return ["it was recorded by an older version of the course tools"]
    current = {_relative(root, nb): code_fingerprint(nb) for nb in source_notebooks(root)}
    lines = [f"{name}: its code changed since the references were recorded"
             for name in sorted(current) if name in recorded and recorded[name] != current[name]]
    lines += [f"{name}: new since the references were recorded" for name in sorted(set(current) - set(recorded))]
    lines += [f"{name}: removed since the references were recorded" for name in sorted(set(recorded) - set(current))]
    return lines


def unchecked_test_cells(notebooks: list[Path], key_dir: Path) -> list[str]:
    """The autograder test cells with points whose hidden test recorded no check, one line each.

    The grader scores such a cell only on whether it ran without an error, which a student's earlier cells
    can arrange (by redefining what the visible tests call); a hidden ``checks.compare`` or
    ``checks.require_files`` makes it judge the result itself.
    """
    lines = []
    for path in notebooks:
        recorded = {spec.get("cell") for spec in (json.loads(p.read_text())
                                                  for p in (Path(key_dir) / path.stem).glob("*.spec.json"))}
        for cell in read_notebook(path).cells:
            gid = grade_id(cell)
            if is_autograder_test(cell) and points(cell) > 0 and gid not in recorded:
                lines.append(f"{path.parent.name}/{path.name}: test cell {gid!r} ({points(cell):g} points) records "
                             "no hidden check, so it scores on running without an error, which a student can "
                             "arrange; add a checks.compare(..., cell=...) between its HIDDEN TESTS markers")
    return lines


def _refuse_orphans(root: Path, notebooks: list[Path]) -> None:
    """Refuse to replace a reference set holding a notebook's references whose source notebook is missing.

    Writing the new set would delete them silently (a notebook moved away by
    mistake, or unreadable); the instructor decides instead.
    """
    stems = {nb.stem for nb in notebooks}
    for folder in sorted(references_dir(root).glob("*/*")):
        if folder.parent.name.startswith("."):
            continue   # a staging copy left by an interrupted run
        if folder.is_dir() and not folder.name.startswith(".") and folder.name not in stems:
            raise ReferenceError(
                f"{folder.relative_to(root)} holds the references of {folder.name}.ipynb, which is missing from "
                f"source/: nothing was changed. Restore the notebook, or, if it was removed on purpose, delete "
                f"{folder.relative_to(root)} and run again")


def timing_record(results: list[Execution], *, concurrent: int, figures: bool,
                  load_average: tuple[list[float] | None, list[float] | None]) -> dict:
    """What ``timings.json`` holds: how long the solutions ran, cell by cell, and under what conditions.

    Format (version 1)::

        {"format": 1, "created": "...", "cores": 2, "concurrent_kernels": 1, "threads_per_kernel": 2,
         "figures_inline": false, "load_average": {"before": [1m, 5m, 15m], "after": [...]},
         "notebooks": {"lab/01_data_and_model.ipynb": {
             "seconds": 9.1,             # wall time, kernel start-up included
             "startup_seconds": 1.2,     # until the kernel was ready
             "cells": [{"index": 2, "grade_id": "setup", "seconds": 3.4}, ...],   # every code cell that ran
             "grade_ids": {"setup": 3.4, "test_correct_class_scores": 0.1, ...}}}}

    Times are seconds of wall time of the solution notebooks in record mode (hidden tests included), so
    they are what grading runs, measured on this machine under the load stated.
    """
    notebooks = {}
    for r in results:
        cells = [{"index": c.index, "grade_id": c.grade_id, "seconds": round(c.seconds, 3)} for c in r.cells]
        notebooks[f"{r.notebook.parent.name}/{r.notebook.name}"] = {
            "seconds": round(r.seconds, 3),
            "startup_seconds": round(r.startup_seconds, 3),
            "cells": cells,
            "grade_ids": {c["grade_id"]: c["seconds"] for c in cells if c["grade_id"]},
        }
    return {
        "format": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cores": available_cores(),
        "concurrent_kernels": concurrent,
        "threads_per_kernel": REFERENCE_THREADS,
        "figures_inline": figures,
        "load_average": {"before": load_average[0], "after": load_average[1]},
        "notebooks": notebooks,
    }


def read_timings(reference_set: Path) -> dict:
    """The ``timings.json`` of a reference set (see :func:`timing_record`).

    Raises
    ------
    ReferenceError
        If the set has no timings (made before they were recorded: run ``course references`` again) or the
        file is not what :func:`timing_record` writes.
    """
    path = Path(reference_set) / TIMINGS_FILE
    if not path.is_file():
        raise ReferenceError(f"{path} is missing: run `course references` to measure the solutions' run times")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ReferenceError(f"{path} is not valid JSON ({err}): run `course references` again") from None
    if not isinstance(data, dict) or data.get("format") != 1 or not isinstance(data.get("notebooks"), dict):
        raise ReferenceError(f"{path} is not a timings file of format 1: run `course references` again")
    return data


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


#: How far single values of an independent recomputation may stray, in units of the check's ``tolerance``.
#: Each image's mean difference must stay within the tolerance itself (of the image's scale), but batched
#: convolutions add in another order than one-at-a-time ones, and where a ReLU's input is about 0 that flips
#: it: 909 pixels of one untrained-network image differ by 2.6% (the homework's SmoothGrad, n=2).
CROSS_CHECK_OUTLIER_FACTOR = 100


def _fast_smoothgrad(data, model, *, images: int, n: int, noise_pct: float, seed: int | None):
    from .smoothgrad import smoothgrad

    rng = np.random.default_rng(seed) if seed is not None else None
    return smoothgrad(data.X[:images], data.y[:images], model, n=n, noise_pct=noise_pct, rng=rng)


#: The instructor's independent implementations a hidden check may name in ``cross_check={"method": ...}``:
#: ``method(data, model, **arguments)`` returns what the solution must have recorded. Add one here to
#: cross-check a new kind of exercise; the hidden test says which values to check, with which arguments.
CROSS_CHECK_METHODS = {"smoothgrad": _fast_smoothgrad}


def declared_cross_checks(key_dir: Path) -> list[tuple[str, str, dict]]:
    """(notebook, check name, recorded spec) of every recorded check that declares a ``cross_check``."""
    found = []
    for spec_path in sorted(Path(key_dir).glob("*/*.spec.json")):
        spec = json.loads(spec_path.read_text())
        if isinstance(spec.get("cross_check"), dict):
            found.append((spec_path.parent.name, spec_path.name[: -len(".spec.json")], spec))
    return found


def cross_check_references(key_dir: Path, env: dict[str, str] | None = None) -> dict[str, dict[str, float]]:
    """Recompute every recorded reference whose hidden check declares a ``cross_check``.

    The references are the instructor's solution run in the notebook; an independent computation
    (:data:`CROSS_CHECK_METHODS`) on the same data, network, weights and arguments must agree with
    it within the check's own ``tolerance``: each image's mean difference within ``tolerance`` of the
    image's scale, every single value within :data:`CROSS_CHECK_OUTLIER_FACTOR` times that, so that a
    slip in the solution notebook cannot become every student's reference.

    Parameters
    ----------
    key_dir : pathlib.Path
        A recorded reference set (``.../<data hash>_<weights fingerprint>``).
    env : dict, optional
        ``SALIENCY_DATA`` / ``SALIENCY_WEIGHTS`` / ``SALIENCY_MODEL`` as given to the notebooks
        (the process environment otherwise).

    Returns
    -------
    dict
        For each cross-checked ``notebook/check``: the largest per-image ``mean`` and ``max``
        difference, as fractions of the image's scale.

    Raises
    ------
    ReferenceError
        If the set was made with other data or weights than ``env`` names, a check names an unknown
        method or arguments it does not take, or a recorded value disagrees with the recomputed one.
    """
    from helpers.data import load_imagenet_val
    from helpers.model import MODEL_ENV_VAR, load_model, weights_fingerprint

    declared = declared_cross_checks(key_dir)
    if not declared:
        return {}
    env = {**os.environ, **(env or {})}
    data = load_imagenet_val(path=env.get("SALIENCY_DATA") or None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the untrained network's warning was shown by the notebooks
        model = load_model(env.get("SALIENCY_WEIGHTS") or None, "cpu", name=env.get(MODEL_ENV_VAR) or None)
    key = reference_key(data.sha256, weights_fingerprint(model))
    if key != Path(key_dir).name:
        raise ReferenceError(f"cannot cross-check {Path(key_dir).name}: this process loads data and weights "
                             f"{key}")
    out = {}
    for notebook, name, spec in declared:
        where, declaration = f"{notebook}/{name}", spec["cross_check"]
        arguments = {k: v for k, v in declaration.items() if k != "method"}
        method = CROSS_CHECK_METHODS.get(declaration.get("method"))
        if method is None:
            raise ReferenceError(f"{where}: its hidden check asks for a cross-check by {declaration.get('method')!r}; "
                                 f"known: {', '.join(CROSS_CHECK_METHODS)}")
        try:
            fast = np.asarray(method(data, model, **arguments), dtype=np.float64)
        except TypeError as err:
            raise ReferenceError(f"{where}: the cross-check's arguments {arguments} do not fit "
                                 f"{declaration['method']!r} ({err})") from err
        recorded = np.asarray(deserialise(Path(key_dir) / notebook, name)[0], dtype=np.float64)
        if recorded.shape != fast.shape:
            raise ReferenceError(f"{where}: the solution recorded shape {recorded.shape}, "
                                 f"the independent {declaration['method']} gives {fast.shape}")
        out[where] = worst = _relative_differences(fast, recorded)
        tolerance = float(spec["tolerance"])
        if worst["mean"] > tolerance or worst["max"] > CROSS_CHECK_OUTLIER_FACTOR * tolerance:
            raise ReferenceError(f"{where}: the solution's values and the independent {declaration['method']} "
                                 f"disagree (mean {worst['mean']:.2e}, max {worst['max']:.2e} of an image's "
                                 f"scale; the check's tolerance {tolerance:g} allows a mean of {tolerance:g} "
                                 f"and single values {CROSS_CHECK_OUTLIER_FACTOR} times that): check the "
                                 f"solution of {notebook}")
    return out


def _relative_differences(values: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """The largest per-image mean and largest single difference, as fractions of each image's scale."""
    axes = tuple(range(1, reference.ndim))
    scale = np.abs(reference).max(axis=axes, keepdims=True) if axes else np.abs(reference)
    scale = np.where(scale == 0, 1.0, scale)
    err = np.abs(values - reference) / scale
    mean = err.mean(axis=axes) if axes else err
    return {"mean": float(np.max(mean)), "max": float(err.max())}


def reference_sets(root: Path) -> list[Path]:
    """The reference sets present, newest first."""
    folder = references_dir(root)
    if not folder.is_dir():
        return []
    sets = [p for p in folder.iterdir() if p.is_dir() and (p / "manifest.json").is_file()]
    return sorted(sets, key=lambda p: p.stat().st_mtime, reverse=True)
