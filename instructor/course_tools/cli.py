"""``course``: one-line instructor commands, run from anywhere inside the course folder.

Examples
--------
``course run``          execute the whole series headless; executed notebooks and figures go to ``outputs/``
``course build``        generate ``release/`` with nbgrader and write the reference arrays
``course references``   only the reference arrays
``course check``        what CI checks: release up to date, no leaks, no committed outputs
``course strip``        remove outputs from the committed notebooks
``course publish DEST`` write the student repository (add ``--after homework`` once its deadline has passed)
``course new NAME``     a new assignment: source/NAME/<NN>_NAME.ipynb with one example exercise
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat

from . import notebooks as nbtools
from .paths import CourseError, companion_notebooks, course_root, source_notebooks

#: Per-cell time limit (seconds) of `course run`, `build`, `references` and `strip --refresh`.
DEFAULT_CELL_TIMEOUT = 600


def _int_at_least(low: int, what: str):
    """An argparse type: an integer >= ``low``; the message says what was expected."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number of {what}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected at least {low} {what}, got {value}")
        return value
    parse.__name__ = f"integer >= {low}"
    return parse


#: Smallest memory limit for a student's kernel: the series peaks at about 1.4 GB (README), and a kernel
#: under 1 GiB cannot even import torch, so every notebook would be graded 0.
MIN_MEMORY_MIB = 1024


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one ``error:`` line and status 1, like every other mistake."""

    def error(self, message: str):  # noqa: D401 - argparse API
        print(f"error: {self.prog}: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(1)


def _env_from_args(args: argparse.Namespace, root: Path | None = None) -> dict[str, str]:
    """The kernels' environment: weights and data from the arguments, the network from course.toml."""
    from .network import kernel_env

    env = kernel_env(root) if root is not None else {}
    if getattr(args, "weights", None):
        env["SALIENCY_WEIGHTS"] = args.weights
    if getattr(args, "data", None):
        env["SALIENCY_DATA"] = str(Path(args.data).resolve())
    return env


def cmd_run(root: Path, args: argparse.Namespace) -> int:
    out = (root / args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = _env_from_args(args, root)
    from .references import REFERENCE_THREADS, make_references

    print(f"Running the series (source/, with solutions) headless; results in {out}")
    print(f"  (the source notebooks use {REFERENCE_THREADS} thread, as references are recorded; the companions "
          f"{nbtools.kernel_thread_env(1)['OMP_NUM_THREADS']}; times include each kernel's start-up)")
    dest = make_references(root, env=env, keep_outputs=out, log=print, timeout=args.timeout, progress=True)
    print(f"  (reference arrays for these weights written to {dest.relative_to(root)})")
    failures = 0
    for nb in companion_notebooks(root):
        folder = out / nb.parent.name
        folder.mkdir(exist_ok=True)
        result = nbtools.execute_notebook(nb, cwd=folder, env=env, timeout=args.timeout,
                                          write_to=folder / nb.name, figures=True, progress=True)
        print(nbtools.format_execution(result))
        failures += result.error is not None
    figures = sorted(p.relative_to(out) for p in out.rglob("*") if p.suffix in (".png", ".pdf"))
    print(f"Executed notebooks (with all figures inline) and {len(figures)} figure files are in {out}")
    return 1 if failures else 0


def cmd_references(root: Path, args: argparse.Namespace) -> int:
    from .references import REFERENCE_THREADS, TIMINGS_FILE, make_references

    print(f"Running the solutions in record mode ({args.jobs} at a time, {REFERENCE_THREADS} thread each, "
          f"at most {args.timeout} s per cell) ...")
    dest = make_references(root, jobs=args.jobs, env=_env_from_args(args, root), timeout=args.timeout, progress=True)
    print(f"References written to {dest.relative_to(root)} (cell run times: {TIMINGS_FILE})")
    return 0


def cmd_release(root: Path, args: argparse.Namespace) -> int:
    from .release import generate_release

    generate_release(root)
    return 0


def cmd_colab(root: Path, args: argparse.Namespace) -> int:
    from .colab import install_cell, read_config

    config = read_config(root)
    changed = [nb for nb in source_notebooks(root) if install_cell(nb, config, nbgrader=True)]
    changed += [nb for nb in companion_notebooks(root) if install_cell(nb, config, nbgrader=False)]
    print(f"Colab cells install from {config.repository}@{config.ref}; "
          + (f"updated {len(changed)} notebook(s)" if changed else "all notebooks up to date"))
    for nb in changed:
        print(f"  {nb.relative_to(root)}")
    if config.is_placeholder:
        print("  note: course.toml still has the template's address; set [student] repository to "
              "your course's public student repository before students use Colab")
    return 0


def cmd_build(root: Path, args: argparse.Namespace) -> int:
    cmd_colab(root, args)
    print("Generating the student versions ...")
    cmd_release(root, args)
    return cmd_references(root, args)


def cmd_check(root: Path, args: argparse.Namespace) -> int:
    from .colab import ColabConfigError, cell_problems, read_config
    from .release import leak_problems, release_differences

    problems = []
    released = sorted((root / "release").glob("*/*.ipynb"))
    for nb in source_notebooks(root) + companion_notebooks(root) + released:
        problems += nbtools.outputs_problems(nb)
    try:
        config = read_config(root)
        for nb in source_notebooks(root) + released:
            problems += cell_problems(nb, config, nbgrader=True)
        for nb in companion_notebooks(root):
            problems += cell_problems(nb, config)
    except ColabConfigError as err:
        problems.append(str(err))
    problems += leak_problems(root)
    problems += release_differences(root)
    from .publish import published_tree_problems

    problems += published_tree_problems(root)
    from .prompts import unprompted_answers

    for nb in released:
        problems += unprompted_answers(nb)
    from .demo_class import DemoClassError, scenarios

    try:
        scenarios(root)   # the example students of demo/ still fit the solutions
    except DemoClassError as err:
        problems.append(str(err))
    for problem in problems:
        print(f"  {problem}")
    print("course check: " + ("OK" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


def cmd_strip(root: Path, args: argparse.Namespace) -> int:
    import tempfile

    changed = 0
    for nb_path in source_notebooks(root) + companion_notebooks(root):
        nb = nbtools.read_notebook(nb_path)
        if args.refresh:
            # Re-run to record the expected text of the "# NBVAL_CHECK_OUTPUT" cells.
            with tempfile.TemporaryDirectory() as tmp:
                executed = Path(tmp) / nb_path.name
                env = {**_env_from_args(args, root), "SALIENCY_RECORD_REFERENCES": str(Path(tmp) / "refs")}
                result = nbtools.execute_notebook(nb_path, cwd=Path(tmp), env=env, write_to=executed,
                                                  timeout=args.timeout, progress=True)
                print(nbtools.format_execution(result))
                if result.error:
                    raise CourseError(f"{nb_path.name} failed: {result.error}")
                original_metadata = nb.metadata
                nb = nbtools.read_notebook(executed)
                nb.metadata = original_metadata   # not the kernel's language_info or widget state
        stripped = nbtools.strip_outputs(nb)
        if stripped != nbtools.read_notebook(nb_path):
            nbformat.write(stripped, nb_path)
            changed += 1
            print(f"  stripped {nb_path.relative_to(root)}")
    print(f"{changed} notebook(s) changed")
    return 0


def cmd_publish(root: Path, args: argparse.Namespace) -> int:
    from .colab import read_config
    from .publish import publish

    config = read_config(root)
    print(f"Publishing the student tree for {config.repository}@{config.ref} into {args.dest} ...")
    publish(root, args.dest, args.after)
    print("Scanned: no solution, hidden test, mark scheme, reference or weights file, instructor import or fast "
          f"SmoothGrad. Commit and push it: cd {args.dest} && git add -A && git commit -m 'publish' && git push")
    if config.is_placeholder:
        print("  note: course.toml still has the template's student address; set [student] repository first")
    return 0


def cmd_grade(root: Path, args: argparse.Namespace) -> int:
    from .classroom import grade_class
    from .grading import GradingSettings, course_grading_config

    if args.data:
        os.environ["SALIENCY_DATA"] = str(Path(args.data).resolve())
    config = course_grading_config(root)
    for name in config.ignored:
        print(f"  note: nbgrader_config.py sets {name}, which only `nbgrader autograde` reads; `course grade` "
              "ignores it (README, 'Grading')")
    cell_timeout = args.cell_timeout if args.cell_timeout is not None else config.cell_timeout
    origin = ("--cell-timeout" if args.cell_timeout is not None else
              "c.Execute.timeout in nbgrader_config.py" if config.configured else "the default")
    print(f"Each cell gets at least {cell_timeout} s ({origin}) or 10x its solution's time; each notebook "
          f"{args.notebook_timeout} s")
    settings = GradingSettings(cell_timeout=cell_timeout, notebook_timeout=args.notebook_timeout)
    grade_class(root, jobs=args.jobs, students=args.student or None, only_assignments=args.assignment or None,
                settings=settings, memory_mib=args.memory_mib, weights=args.weights, unsandboxed=args.unsandboxed)
    return 0


def cmd_report(root: Path, args: argparse.Namespace) -> int:
    import csv

    from .classroom import write_report

    path = write_report(root)
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    print(f"{'student':>16s} {'assignment':10s} {'score':>9s}  problems")
    for row in rows:
        print(f"{row['student']:>16s} {row['assignment']:10s} {row['score']:>4s}/{row['max_score']:<4s}  "
              f"{row['problems'][:80]}")
    print(f"Report: {path.relative_to(root)}; feedback: feedback/<student>/<assignment>/feedback.html")
    return 0


def cmd_demo_class(root: Path, args: argparse.Namespace) -> int:
    from .demo_class import make_demo_class

    made = make_demo_class(root, names=args.scenario or None, copies=args.copies)
    print(f"wrote {len(made)} demo submissions under submitted/: " + ", ".join(sorted(set(made))[:12])
          + (" ..." if len(set(made)) > 12 else ""))
    return 0


def cmd_new(root: Path, args: argparse.Namespace) -> int:
    from .scaffold import new_assignment

    path = new_assignment(root, args.assignment, args.title)
    print(f"wrote {path.relative_to(root)}: a Colab cell, the read-only setup cell and one example exercise "
          "(answer cell, visible tests, a hidden check with one declared mistake), and "
          f"demo/{args.assignment}.toml: an example student who makes that mistake.")
    print(f"Next: edit it in JupyterLab, then `course build`; try the grader with `course demo-class` "
          f"(solutions_{args.assignment}, untouched_{args.assignment} and the students of "
          f"demo/{args.assignment}.toml) and `course grade --assignment {args.assignment}`.")
    return 0


def _seconds_since_start() -> float:
    """Seconds since this process started (interpreter and imports included), or since main() if unknown."""
    try:
        import psutil

        return max(0.0, time.time() - psutil.Process().create_time())
    except Exception:   # psutil missing or the process table unreadable
        return time.perf_counter() - _MAIN_STARTED


_MAIN_STARTED = time.perf_counter()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="course", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def with_model(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--weights", help="'pretrained' (default), 'untrained', or a path to the network's torchvision "
                                         "file, e.g. squeezenet1_1-b8a52dc0.pth (default: $SALIENCY_WEIGHTS; the "
                                         "network is course.toml's [model] name)")
        p.add_argument("--data", help="path to imagenet_val_25.npz (default: $SALIENCY_DATA, the cache, or a download)")
        return p

    def with_timeout(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--timeout", type=_int_at_least(1, "seconds"), default=DEFAULT_CELL_TIMEOUT,
                       help=f"per-cell time limit in seconds (default {DEFAULT_CELL_TIMEOUT}; raise it on a busy "
                            "machine)")
        return p

    p = with_model(sub.add_parser("run", help="execute the whole series headless and write its figures"))
    p.add_argument("--out", default="outputs", help="folder for executed notebooks and figures (default: outputs)")
    with_timeout(p)
    p.set_defaults(func=cmd_run)
    p = with_model(sub.add_parser("references", help="run the solutions and write the reference arrays and "
                                                     "their cell run times"))
    p.add_argument("--jobs", type=_int_at_least(1, "jobs"), default=1, help="notebooks run at once (default 1)")
    with_timeout(p)
    p.set_defaults(func=cmd_references)
    p = sub.add_parser("release", help="generate release/ from source/ with nbgrader")
    p.set_defaults(func=cmd_release)
    sub.add_parser("colab", help="write course.toml's repository address into every notebook's Colab cell"
                   ).set_defaults(func=cmd_colab)
    p = with_model(sub.add_parser("build", help="Colab cells, release/ and the reference arrays"))
    p.add_argument("--jobs", type=_int_at_least(1, "jobs"), default=1, help="notebooks run at once (default 1)")
    with_timeout(p)
    p.set_defaults(func=cmd_build)
    sub.add_parser("check", help="release up to date, nothing leaked (release and published tree), no outputs "
                                  "committed, Colab cells current").set_defaults(func=cmd_check)
    p = sub.add_parser("publish", help="write the student repository (release notebooks, helpers, README) into DEST")
    p.add_argument("dest", help="folder of the public student repository (outside the course folder; empty, or "
                                "written by an earlier publish)")
    p.add_argument("--after", default=None, metavar="ASSIGNMENT",
                   help="the last assignment whose deadline has passed: also publish the companion notebooks "
                        "that answer it (and, after the homework, the beyond package)")
    p.set_defaults(func=cmd_publish)
    p = with_model(sub.add_parser("grade", help="autograde every submission in submitted/ (in parallel)"))
    p.add_argument("--jobs", type=_int_at_least(1, "jobs"), default=None,
                   help="parallel workers (default: number of cores + 1)")
    p.add_argument("--student", action="append", help="grade only this student (repeatable)")
    p.add_argument("--assignment", action="append", help="only this assignment (a folder of source/; repeatable)")
    p.add_argument("--cell-timeout", type=_int_at_least(1, "seconds"), default=None,
                   help="seconds per cell: at least this, or 10x the solution's time for that cell (default: "
                        "c.Execute.timeout in nbgrader_config.py, else 60)")
    p.add_argument("--notebook-timeout", type=_int_at_least(1, "seconds"), default=600,
                   help="seconds for a whole notebook, kernel start included (default 600)")
    p.add_argument("--memory-mib", type=_int_at_least(MIN_MEMORY_MIB, "MiB"), default=4096,
                   help=f"memory of a student's kernel and every process it starts (default 4096, at least "
                        f"{MIN_MEMORY_MIB})")
    p.add_argument("--unsandboxed", action="store_true",
                   help="grade even without the sandbox's prerequisites (root, bubblewrap, cgroups): student code "
                        "then runs as you, unconfined; only for code you trust")
    p.set_defaults(func=cmd_grade)
    sub.add_parser("report", help="grades.csv per student and part, plus a summary").set_defaults(func=cmd_report)
    p = sub.add_parser("demo-class", help="write example submissions (solutions, typical mistakes, broken ones)")
    p.add_argument("--copies", type=_int_at_least(1, "copies"), default=1,
                   help="how many copies of each example (for benchmarks)")
    p.add_argument("--scenario", action="append", metavar="NAME",
                   help="write only this example (repeatable; e.g. solutions_lab, untouched_lab, no_abs)")
    p.set_defaults(func=cmd_demo_class)
    p = sub.add_parser("new", help="a new assignment: source/ASSIGNMENT/<NN>_ASSIGNMENT.ipynb with the course's "
                                   "conventions and one example exercise")
    p.add_argument("assignment", help="the new assignment's folder name (a letter, then letters, digits, '_', '-')")
    p.add_argument("--title", default=None, help="the notebook's heading")
    p.set_defaults(func=cmd_new)
    p = with_model(sub.add_parser("strip", help="remove outputs from source/ and notebooks/"))
    p.add_argument("--refresh", action="store_true",
                   help="re-run the notebooks first and store the printed text of '# NBVAL_CHECK_OUTPUT' cells "
                        "in their metadata, for nbval")
    with_timeout(p)
    p.set_defaults(func=cmd_strip)
    return parser


def _check_course_files(root: Path) -> None:
    """Refuse, before any work, the course files every command relies on when they are broken.

    nbgrader ignores a ``nbgrader_config.py`` it cannot execute (so ``release``
    would report "generated" with the default settings), and nbformat's errors
    do not name the notebook that is broken.
    """
    config = root / "nbgrader_config.py"
    try:
        compile(config.read_bytes(), str(config), "exec")
    except SyntaxError as err:
        raise CourseError(f"{config} has a syntax error at line {err.lineno}: {err.msg}; nbgrader would "
                          "silently ignore it") from err
    except (OSError, ValueError) as err:
        raise CourseError(f"{config} cannot be read: {err}") from err
    for nb in source_notebooks(root):
        nbtools.read_notebook(nb)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, CourseError):
        return text
    if isinstance(err, OSError) and err.filename:
        return f"{err.filename}: {err.strerror or text}"
    return f"{type(err).__name__}: {text}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # nbgrader starts `alembic` and `jupyter` by name: find this environment's scripts even when the
    # environment is not activated (`/path/to/.venv/bin/course ...`).
    os.environ["PATH"] = nbtools.python_kernel_env()["PATH"]
    try:
        root = course_root()
        if args.func not in (cmd_report,):
            _check_course_files(root)
        code = args.func(root, args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as err:   # noqa: BLE001 - every mistake is one line, never a traceback
        # CourseError: references, release, Colab settings, grading set-up, broken notebooks; anything
        # else (a read-only folder, a file where a folder should be) with its type and file name.
        print(f"error: {_one_line(err)}", file=sys.stderr)
        if os.environ.get("COURSE_DEBUG"):
            raise
        return 1
    print(f"({_seconds_since_start():.0f} s, start-up included)")
    return code


if __name__ == "__main__":
    sys.exit(main())
