"""How long grading takes: one submission of the full series, and a whole class.

Builds a temporary course from the real ``source/``, writes ``--students``
submissions of the full series (lab and homework, the instructor's answers:
every cell runs, as in a good submission), grades them with the real
``course grade --jobs J`` and prints the per-submission and per-class times.

    .venv/bin/python benchmarks/bench_grading.py --students 100

Uses ``$SALIENCY_WEIGHTS`` / ``$SALIENCY_DATA`` like every course command
(CI and this machine: untrained weights and ``../shared/data``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def course(args: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "course_tools", *args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=(os.cpu_count() or 1) + 1, help="default: cores + 1, as course grade")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "instructor"))
    from course_tools.demo_class import make_demo_class

    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        root = Path(tmp) / "course"
        root.mkdir()
        shutil.copy2(ROOT / "nbgrader_config.py", root)
        shutil.copytree(ROOT / "source", root / "source", ignore=shutil.ignore_patterns("*.png", "*.pdf"))
        build = course(["build"], root)
        make_demo_class(root, ["solutions_lab", "solutions_homework"])
        one = course(["grade", "--jobs", str(args.jobs)], root)
        # The class: each student hands in the full series (lab + homework).
        shutil.rmtree(root / "submitted")
        shutil.rmtree(root / "autograded", ignore_errors=True)
        for index in range(args.students):
            for name in ("solutions_lab", "solutions_homework"):
                make_demo_class(root, [name])
                assignment = "lab" if name.endswith("lab") else "homework"
                (root / "submitted" / name / assignment).rename(
                    _student_dir(root, f"student_{index:03d}", assignment))
                shutil.rmtree(root / "submitted" / name)
        whole = course(["grade", "--jobs", str(args.jobs)], root)
        scores = [json.loads(p.read_text())["notebooks"] for p in (root / "autograded").glob("*/*/grading.json")]
        full = sum(1 for nbs in scores if all(part["points"] == part["max_points"]
                                              for nb in nbs for part in nb["parts"] if not part["manual"]))
    result = {"cpus": os.cpu_count(), "jobs": args.jobs, "students": args.students, "build_s": round(build, 1),
              "one_submission_s": round(one, 1), "class_s": round(whole, 1),
              "per_submission_s": round(whole / args.students, 2), "full_marks": full,
              "submissions_graded": len(scores)}
    print(f"build (release + references):       {build:7.1f} s")
    print(f"one submission of the full series:  {one:7.1f} s  (course grade, {args.jobs} jobs)")
    print(f"{args.students} submissions of the full series: {whole:7.1f} s  "
          f"= {whole / 60:.1f} min, {whole / args.students:.1f} s per submission")
    print(f"full marks: {full} of {len(scores)} graded (lab + homework each)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


def _student_dir(root: Path, student: str, assignment: str) -> Path:
    target = root / "submitted" / student / assignment
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


if __name__ == "__main__":
    sys.exit(main())
