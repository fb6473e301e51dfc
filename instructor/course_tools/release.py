"""Generating the student versions and proving that nothing leaks into them."""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


from .notebooks import read_notebook
from .paths import CourseError, assignments


class ReleaseError(CourseError):
    """nbgrader could not generate the release, or the release would leak instructor material."""

# Text that only the instructor's version may contain.
_FORBIDDEN = [
    "BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS", "MARK SCHEME",
    "checks.compare", "checks.require_files", "cross_check=", "SALIENCY_RECORD_REFERENCES",
]


def nbgrader(root: Path, *args: str) -> subprocess.CompletedProcess:
    """Run an nbgrader command in ``root`` with this interpreter's nbgrader."""
    # nbgrader starts `alembic` for its database: it must find this environment's scripts.
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    return subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=root, capture_output=True, text=True,
                          env=env)


def generate_release(root: Path, *, log=print) -> None:
    """Write ``release/<assignment>`` from ``source/<assignment>`` with nbgrader (and update the gradebook)."""
    for assignment in assignments(root):
        target = root / "release" / assignment
        with tempfile.TemporaryDirectory(prefix="saliency-release-") as tmp:
            backup = Path(tmp) / assignment
            if target.is_dir():
                shutil.copytree(target, backup)
            result = nbgrader(root, "generate_assignment", assignment, "--force", "--log-level=WARN")
            if result.returncode != 0:
                # nbgrader --force empties release/<assignment> before it fails: put the old version back.
                if backup.is_dir():
                    shutil.rmtree(target, ignore_errors=True)
                    shutil.copytree(backup, target)
                hint = ""
                if "there are submissions associated with it" in result.stderr:
                    hint = (f"\nThe gradebook (gradebook.db) already holds submissions of {assignment!r}, and nbgrader "
                            "will not add or remove cells of a notebook after that (the submitted notebooks would "
                            "no longer match). Change cells' contents only, or, if those submissions are tests or a "
                            f"demo class, remove them first: nbgrader db assignment remove {assignment} --force")
                raise ReleaseError(f"nbgrader generate_assignment {assignment} failed; release/{assignment} is "
                                   f"unchanged.{hint}\n{result.stderr[-3000:]}")
        log(f"  release/{assignment}: generated")
    problems = leak_problems(root)
    if problems:
        raise ReleaseError("the release leaks instructor material:\n  " + "\n  ".join(problems))


def _solution_lines(root: Path) -> set[str]:
    lines: set[str] = set()
    for nb_path in (root / "source").glob("*/*.ipynb"):
        nb = read_notebook(nb_path)
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            inside = False
            for line in cell.source.splitlines():
                stripped = line.strip()
                if "BEGIN SOLUTION" in stripped or "BEGIN HIDDEN TESTS" in stripped:
                    inside = True
                elif "END SOLUTION" in stripped or "END HIDDEN TESTS" in stripped:
                    inside = False
                elif inside and len(stripped) >= 20:
                    lines.add(stripped)
    return lines


def leak_problems(root: Path) -> list[str]:
    """Everything in ``release/`` that a student must not receive."""
    problems = []
    release = root / "release"
    secret_lines = _solution_lines(root)
    for path in sorted(release.rglob("*")):
        if path.is_dir() or ".ipynb_checkpoints" in path.parts:
            continue
        rel = path.relative_to(root)
        if path.suffix in (".npy", ".npz", ".pt", ".pth", ".pkl", ".db"):
            problems.append(f"{rel}: data files do not belong in a release")
            continue
        if path.suffix != ".ipynb":
            continue
        nb = read_notebook(path)
        text = path.read_text(encoding="utf-8")
        problems += [f"{rel}: contains {word!r}" for word in _FORBIDDEN if word in text]
        for index, cell in enumerate(nb.cells):
            if cell.cell_type == "code" and cell.get("outputs"):
                problems.append(f"{rel}: cell {index} carries outputs")
            if cell.cell_type == "code":
                for line in cell.source.splitlines():
                    if line.strip() in secret_lines:
                        problems.append(f"{rel}: cell {index} contains a solution line: {line.strip()[:60]!r}")
    return problems


def release_differences(root: Path) -> list[str]:
    """Differences between the committed ``release/`` and what nbgrader generates now."""
    with tempfile.TemporaryDirectory(prefix="saliency-release-") as tmp:
        copy = Path(tmp) / "course"
        copy.mkdir()
        shutil.copy2(root / "nbgrader_config.py", copy / "nbgrader_config.py")
        shutil.copytree(root / "source", copy / "source",
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "*.png", "*.pdf", "__pycache__"))
        for assignment in assignments(root):
            result = nbgrader(copy, "generate_assignment", assignment, "--force", "--log-level=WARN")
            if result.returncode != 0:
                return [f"nbgrader generate_assignment {assignment} failed: {result.stderr[-2000:]}"]
        return _tree_differences(copy / "release", root / "release")


def _generated_here(path: Path) -> bool:
    """Files that running the release notebooks in place leaves behind (git ignores them too)."""
    return ".ipynb_checkpoints" in path.parts or path.suffix in (".png", ".pdf")


def _tree_differences(expected: Path, actual: Path) -> list[str]:
    def files(base: Path) -> set[str]:
        return {str(p.relative_to(base)) for p in base.rglob("*") if p.is_file() and not _generated_here(p)} \
            if base.is_dir() else set()

    want, have = files(expected), files(actual)
    problems = [f"release/{name} is missing (run `course release`)" for name in sorted(want - have)]
    problems += [f"release/{name} is not generated from source/ (remove it)" for name in sorted(have - want)]
    for name in sorted(want & have):
        if not filecmp.cmp(expected / name, actual / name, shallow=False):
            problems.append(f"release/{name} differs from what nbgrader generates (run `course release`)")
    return problems
