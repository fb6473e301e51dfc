"""What the grader's sandbox costs per notebook: the same small notebook run sandboxed and unsandboxed.

Each round runs a notebook that imports the course's packages (torch, helpers) and computes one gradient,
once in a sandbox (bubblewrap + cgroup, as `course grade` does) and once with ``--unsandboxed``'s plain kernel;
rounds alternate the order. Prints the median of each and their difference (the sandbox's cost per notebook).
Needs root, bubblewrap and control groups.

    .venv/bin/python benchmarks/bench_sandbox.py --rounds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import nbformat

from course_tools.grading import execute_sandboxed
from course_tools.sandbox import KernelJob, SandboxPolicy, prerequisites

CELLS = ["import torch, helpers", "x = torch.randn(2, 3, 224, 224, requires_grad=True)",
         "m = torch.nn.Conv2d(3, 8, 3); m(x).sum().backward(); print(x.grad.shape)"]


def run_once(isolated: bool, base: Path) -> float:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    job = KernelJob("bench", SandboxPolicy(isolated=isolated), inputs=base).open(base)
    try:
        start = time.perf_counter()
        result = execute_sandboxed(nb, job, cell_limits=[120] * len(CELLS), notebook_limit=300)
        seconds = time.perf_counter() - start
    finally:
        job.close()
    if result.cell_errors or result.crashed:
        raise SystemExit(f"the benchmark notebook failed: {result.cell_errors or result.crashed}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if prerequisites():
        raise SystemExit("sandbox prerequisites missing: " + "; ".join(prerequisites()))
    times = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for isolated in ((True, False) if r % 2 == 0 else (False, True)):
                times[isolated].append(run_once(isolated, Path(tmp)))
    sandboxed, plain = statistics.median(times[True]), statistics.median(times[False])
    print(f"load average: {os.getloadavg()}")
    print(f"sandboxed:   median {sandboxed:.2f} s  {[round(t, 2) for t in times[True]]}")
    print(f"unsandboxed: median {plain:.2f} s  {[round(t, 2) for t in times[False]]}")
    print(f"sandbox cost per notebook: {sandboxed - plain:+.2f} s ({sandboxed / plain:.2f}x)")


if __name__ == "__main__":
    main()
