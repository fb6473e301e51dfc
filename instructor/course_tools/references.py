"""Writing the reference arrays by running the instructor's solutions.

The source notebooks run in *record* mode: every hidden check saves the
solution's value (with its comparison settings) instead of comparing. The
reference set is keyed by the data file's hash and the weights' fingerprint
(see :func:`helpers.autograde.reference_key`), and lives in ``references/``
at the course root, outside ``source/``, so that nbgrader never copies it
into ``release/`` and students never receive it.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from helpers.autograde import RECORD_ENV

from .notebooks import copy_tree, execute_notebook
from .paths import references_dir, source_notebooks


class ReferenceError(RuntimeError):
    """The solutions failed to run, so no references were written."""


def make_references(root: Path, *, jobs: int = 1, env: dict[str, str] | None = None,
                    log=print, keep_outputs: Path | None = None) -> Path:
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

    Returns
    -------
    pathlib.Path
        The folder of the new reference set, ``references/<key>``.
    """
    notebooks = source_notebooks(root)
    if not notebooks:
        raise ReferenceError(f"no source notebooks under {root / 'source'}")
    with tempfile.TemporaryDirectory(prefix="saliency-refs-") as tmp:
        tmp_path = Path(tmp)
        record = tmp_path / "record"
        work = tmp_path / "work"
        copy_tree(root / "source", work)

        threads = {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // max(1, jobs)))} if jobs > 1 else {}

        def run(nb: Path):
            target = work / nb.parent.name / nb.name
            written = keep_outputs / nb.parent.name / nb.name if keep_outputs else None
            return execute_notebook(target, env={**(env or {}), **threads, RECORD_ENV: str(record)},
                                    write_to=written)

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            results = list(pool.map(run, notebooks))
        failed = [r for r in results if r.error]
        for r in results:
            log(f"  {r.notebook.parent.name}/{r.notebook.name}: {r.seconds:.1f} s"
                + (f"  FAILED: {r.error}" if r.error else ""))
        if failed:
            raise ReferenceError("the solutions failed; no references were written: "
                                 + "; ".join(f"{r.notebook.name}: {r.error}" for r in failed))
        keys = [p for p in record.iterdir() if p.is_dir()] if record.is_dir() else []
        if len(keys) != 1:
            raise ReferenceError(f"expected one reference set, found {[k.name for k in keys]}: "
                                 "did the notebooks use different data or weights?")
        key_dir = keys[0]
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
        }
        (key_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
        dest_root = references_dir(root)
        dest_root.mkdir(exist_ok=True)
        os.chmod(dest_root, 0o700)
        dest = dest_root / key_dir.name
        staging = dest_root / f".{key_dir.name}.new"
        if staging.exists():
            shutil.rmtree(staging)
        shutil.copytree(key_dir, staging)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(staging, dest)
    return dest


def reference_sets(root: Path) -> list[Path]:
    """The reference sets present, newest first."""
    folder = references_dir(root)
    if not folder.is_dir():
        return []
    sets = [p for p in folder.iterdir() if p.is_dir() and (p / "manifest.json").is_file()]
    return sorted(sets, key=lambda p: p.stat().st_mtime, reverse=True)
