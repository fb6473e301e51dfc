"""Run notebooks headless, top to bottom, and report their peak memory.

For each notebook (default: every ``.ipynb`` in ``source/*/`` and
``notebooks/`` of the repository; none found is not an error), a fresh
kernel is started with nbclient (kernel ``python3``, which resolves to the
Python running this script, i.e. the venv's, when launched as
``.venv/bin/python benchmarks/notebook_memory.py``), with the notebook's own
folder as working directory and the environment variables
``SALIENCY_WEIGHTS=untrained`` (no download; override with ``--weights``) and
``SALIENCY_DATA`` (passed through from the environment, or set by
``--data``; when neither gives it, ``../shared/data/imagenet_val_25.npz`` if
that file exists, as the tests do, so that nothing is downloaded). While it runs, a thread sums the resident set size (RSS) of every
descendant of this process (the kernel and anything it starts) every 0.05 s
with psutil; the peak of that sum is compared with ``--limit-mib``.

Memory shared between processes is counted once per process, and allocations
that live shorter than the 0.05 s sampling interval can be missed; the peak is
therefore a sampled estimate, close to what a single-process kernel really
holds.

Exit status: 0 when every notebook ran without error and under the limit,
1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import nbformat
import psutil
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

ROOT = Path(__file__).resolve().parents[1]
MIB = 2**20
SHARED_DATA = ROOT.parent / "shared" / "data" / "imagenet_val_25.npz"


def default_notebooks(root: Path = ROOT) -> list[Path]:
    """Every notebook in ``source/*/`` and ``notebooks/`` under ``root``, sorted."""
    found = sorted(root.glob("source/*/*.ipynb")) + sorted(root.glob("notebooks/*.ipynb"))
    return [p for p in found if ".ipynb_checkpoints" not in p.parts]


class TreeRssSampler:
    """Samples the summed RSS of this process's descendants in a background thread."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._me = psutil.Process()

    def _tree_rss(self) -> int:
        total = 0
        for child in self._me.children(recursive=True):
            try:
                total += child.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._tree_rss())
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> "TreeRssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_notebook(path: Path, *, env: dict[str, str], timeout: int, kernel: str, interval: float) -> dict:
    """Execute one notebook in a fresh kernel; return its runtime, peak RSS and outcome."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name=kernel,
                            resources={"metadata": {"path": str(path.parent)}})
    status = "ok"
    t0 = time.perf_counter()
    with TreeRssSampler(interval) as sampler:
        try:
            client.execute(env=env, cwd=str(path.parent))
        except CellExecutionError as err:
            status = f"error: {getattr(err, 'ename', type(err).__name__)}: {getattr(err, 'evalue', '')}"[:140]
        except CellTimeoutError:
            status = f"error: a cell ran longer than {timeout} s"
        except DeadKernelError as err:
            status = f"error: the kernel died ({err})"[:140]
    runtime = time.perf_counter() - t0
    return {"notebook": str(path), "runtime_s": runtime, "peak_rss_mib": sampler.peak / MIB,
            "samples": sampler.samples, "status": status}


def format_table(rows: list[dict], limit: float) -> str:
    table = [("notebook", "runtime s", "peak RSS MiB", f"<= {limit:g} MiB", "status")]
    for r in rows:
        table.append((r["notebook"], f"{r['runtime_s']:.1f}", f"{r['peak_rss_mib']:.0f}",
                      "pass" if r["under_limit"] else "FAIL", r["status"]))
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    lines = ["  ".join(c.ljust(w) if i in (0, 4) else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in table]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("notebooks", nargs="*", type=Path,
                    help="notebooks to run (default: source/*/*.ipynb and notebooks/*.ipynb)")
    ap.add_argument("--limit-mib", type=float, default=1536.0, help="peak RSS limit in MiB (default 1536)")
    ap.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell (default 600)")
    ap.add_argument("--kernel", default="python3", help="kernel name (default python3)")
    ap.add_argument("--interval", type=float, default=0.05, help="RSS sampling interval in s (default 0.05)")
    ap.add_argument("--weights", default="untrained", help="SALIENCY_WEIGHTS for the kernel (default untrained)")
    ap.add_argument("--data", type=Path, default=None,
                    help="SALIENCY_DATA for the kernel (default: passed through, else ../shared/data's file)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = ap.parse_args(argv)

    notebooks = [p.resolve() for p in args.notebooks] if args.notebooks else default_notebooks()
    missing = [str(p) for p in notebooks if not p.is_file()]
    if missing:
        print(f"no such notebook: {', '.join(missing)}", file=sys.stderr)
        return 1
    if not notebooks:
        print("no notebooks found (looked in source/*/ and notebooks/); nothing to measure")
        if args.json:
            args.json.write_text(json.dumps({"limit_mib": args.limit_mib, "notebooks": []}, indent=2))
        return 0
    env = dict(os.environ)
    env["SALIENCY_WEIGHTS"] = args.weights
    if args.data is not None:
        env["SALIENCY_DATA"] = str(args.data.resolve())
    elif not env.get("SALIENCY_DATA") and SHARED_DATA.is_file():
        env["SALIENCY_DATA"] = str(SHARED_DATA)  # as the tests do: never download
    env.setdefault("MPLBACKEND", "Agg")
    rows = []
    for path in notebooks:
        print(f"running {path} ...", flush=True)
        row = run_notebook(path, env=env, timeout=args.timeout, kernel=args.kernel, interval=args.interval)
        row["under_limit"] = row["peak_rss_mib"] <= args.limit_mib
        rows.append(row)
    print(format_table(rows, args.limit_mib))
    print(f"kernel {args.kernel!r} started by {sys.executable}; SALIENCY_WEIGHTS={env['SALIENCY_WEIGHTS']}, "
          f"SALIENCY_DATA={env.get('SALIENCY_DATA', '(unset)')}; RSS of the kernel and its children, "
          f"sampled every {args.interval} s")
    if args.json:
        args.json.write_text(json.dumps({"limit_mib": args.limit_mib, "notebooks": rows}, indent=2))
    ok = all(r["under_limit"] and r["status"] == "ok" for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
