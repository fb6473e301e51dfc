"""Hostile and malformed submissions, graded in one class run beside honest students.

One module-scoped run builds a temporary course from the real source (``course release`` + ``course
references``), writes every case of :data:`hostile_cases.CASES` (each student hands in the single notebook
their attack needs) and two honest students, and grades them all with one ``course grade --jobs 3``. The
tests then check, case by case, the exact points of every graded part, the problems reported, that the
honest students keep full marks, that no process of the attackers survives, and that no feedback file shows
anything of the hidden tests. ``HOSTILE_CASES=name1,name2`` runs only some cases (for iterating).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest

from conftest import make_course_copy

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hostile_cases as hc  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COURSE = [sys.executable, "-m", "course_tools"]
CELL_TIMEOUT, NOTEBOOK_TIMEOUT, MEMORY_MIB = 30, 150, 2048
#: The second run, for attacks on time itself: six cells of 8 s each pass the cell limit but not the notebook's.
TIGHT_CELL_TIMEOUT, TIGHT_NOTEBOOK_TIMEOUT = 10, 40
CASES = hc.selected(hc.CASES)
#: The most memory the grader's process may hold while grading these cases, 3 at a time (about 0.8 GiB of it is
#: the interpreter, torch and the network that names the reference set).
MAX_GRADER_RSS = 2 * 2**30
SECRETS = ("BEGIN HIDDEN", "HIDDEN TESTS", "checks.compare", "_smoothgrad_variant", "default_rng(_SEED)", "_SEED",
           "manual_seed(31)", "manual_seed(32)", "_channel_mistakes", "correct_scores_other_labels",
           "y_t.flip", "references/", "/references", "smoothgrad_seeded", "Traceback", "co_consts", "f_locals",
           "FrameInfo", hc.MARK)


def _run(args, cwd, timeout=1200):
    """Run ``course ARGS``; the completed process, with ``peak_rss``: the most memory the grader's own process
    held (its sandboxed kernels are counted by their control groups, not here)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(COURSE + args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    peak, done = [0], threading.Event()

    def sample():
        grader = psutil.Process(proc.pid)
        while not done.wait(0.05):
            try:
                peak[0] = max(peak[0], grader.memory_info().rss)
            except psutil.Error:
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    finally:
        done.set()
        sampler.join()
    result = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    result.peak_rss = peak[0]
    return result


def _marked_processes() -> list[str]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(hc.MARK in part for part in proc.info["cmdline"] or []):
                found.append(f"{proc.info['pid']}: {' '.join(proc.info['cmdline'])[:200]}")
        except (psutil.Error, TypeError):
            continue
    return found


def _substitute_in_notebooks(folder: Path, values: dict[str, str]) -> None:
    for path in folder.glob("*.ipynb"):
        if path.is_symlink() or not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        new = hc.substitute(text, values)
        if new != text:
            path.write_text(new)


@pytest.fixture(scope="module")
def graded(tmp_path_factory, untrained_references):
    from course_tools.sandbox import prerequisites

    missing = prerequisites()
    if missing:
        pytest.skip("hostile submissions need the sandbox: " + "; ".join(missing))
    from course_tools.demo_class import Scenario, write_submission

    course = make_course_copy(tmp_path_factory.mktemp("hostile") / "course", untrained_references)
    refs = next(p for p in (course / "references").iterdir() if p.is_dir())
    values = {"__REFS__": str(refs), "__COURSE__": str(course), "__MARK__": hc.MARK,
              "__SLEEP__": str(TIGHT_CELL_TIMEOUT - 2)}
    for student, (assignment, only) in hc.INNOCENTS.items():
        write_submission(course, student, Scenario(assignment, only=only))
    for case in CASES:
        answers = {case.notebook: {gid: hc.substitute(code, values) for gid, code in case.answers.items()}}
        folder = write_submission(course, case.name, Scenario(case.assignment, answers, only=(case.notebook,),
                                                              edit=case.edit))
        _substitute_in_notebooks(folder, values)
        if case.after is not None:
            case.after(folder)
    def students(names):
        return [arg for name in names for arg in ("--student", name)]

    normal = [c.name for c in CASES if not c.tight] + list(hc.INNOCENTS)
    grading = _run(["grade", "--jobs", "3", "--cell-timeout", str(CELL_TIMEOUT), "--notebook-timeout",
                    str(NOTEBOOK_TIMEOUT), "--memory-mib", str(MEMORY_MIB), *students(normal)], course)
    tight = [c.name for c in CASES if c.tight]
    if tight:
        second = _run(["grade", "--jobs", "2", "--cell-timeout", str(TIGHT_CELL_TIMEOUT), "--notebook-timeout",
                       str(TIGHT_NOTEBOOK_TIMEOUT), "--memory-mib", str(MEMORY_MIB), *students(tight)], course)
        assert second.returncode == 0, f"{second.stdout[-3000:]}\n{second.stderr[-3000:]}"
    peak_rss = max(grading.peak_rss, second.peak_rss if tight else 0)
    results = {}
    for path in (course / "autograded").glob("*/*/grading.json"):
        record = json.loads(path.read_text())
        results[record["student"]] = record
    return {"course": course, "results": results, "grading": grading, "survivors": _marked_processes(),
            "peak_rss": peak_rss}


def _parts(record):
    return {part["grade_id"]: part for nb in record["notebooks"] for part in nb["parts"] if not part["manual"]}


def _scores(record):
    return {gid: part["points"] for gid, part in _parts(record).items()}


def _problems(record, notebook=None):
    return [p for nb in record["notebooks"] if notebook in (None, nb["notebook"]) for p in nb["problems"]]


def test_the_class_run_finishes(graded):
    grading = graded["grading"]
    assert grading.returncode == 0, f"{grading.stdout[-3000:]}\n{grading.stderr[-3000:]}"
    assert "each notebook runs in its own sandbox" in grading.stdout
    assert "ERROR recording" not in grading.stdout
    expected = {c.name for c in CASES} | set(hc.INNOCENTS)
    assert set(graded["results"]) == expected


def test_honest_students_in_the_same_run_keep_full_marks(graded):
    lab_full = {gid: pts for parts in hc.LAB_PARTS.values() for gid, pts in parts.items()}
    assert _scores(graded["results"]["innocent_lab"]) == lab_full
    record = graded["results"]["innocent_01"]
    assert _scores(record) == {**{k: 0.0 for k in lab_full}, "test_correct_class_scores": 2.0}
    assert _problems(record, hc.NB01) == []


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_hostile_submission_scores_exactly(graded, case):
    record = graded["results"].get(case.name)
    assert record is not None, f"{case.name} was not graded"
    assert _scores(record) == case.expected(), json.dumps(record, indent=1)[:4000]
    for name in {nb["notebook"] for nb in record["notebooks"]} - {case.notebook}:
        assert any("missing" in p or "not a regular file" in p for p in _problems(record, name)), name
    if case.message:
        lost = [p for p in _parts(record).values()
                if p["grade_id"] in case.parts and p["points"] < p["max_points"]]
        messages = " ".join(m for p in lost for m in p["messages"])
        assert case.message in messages, messages
    if case.problem:
        problems = " | ".join(_problems(record, case.notebook))
        assert case.problem in problems, problems


def test_no_feedback_shows_hidden_material(graded):
    course = graded["course"]
    files = list((course / "feedback").glob("*/*/feedback.html")) + list((course / "feedback").glob("*/*/feedback.txt"))
    assert len(files) == 2 * len(graded["results"])
    for path in files:
        text = path.read_text()
        for secret in SECRETS + (str(course),):
            assert secret not in text, f"{path.relative_to(course)} shows {secret!r}"


def test_no_process_of_an_attacker_survives_the_run(graded):
    assert graded["survivors"] == []
    assert _marked_processes() == []


def test_grader_keeps_the_executed_notebooks_small_and_inert(graded):
    for path in (graded["course"] / "autograded").glob("*/*/*.ipynb"):
        assert path.stat().st_size < 10 * 2**20, f"{path}: {path.stat().st_size} bytes"
        text = path.read_text()
        assert "text/html" not in text and "application/javascript" not in text, f"{path} keeps active output"
    grading = graded["grading"]
    assert len(grading.stdout) + len(grading.stderr) < 2**20


def _handlers_and_scripts(page: str) -> tuple[list[str], set[str]]:
    """Event-handler attributes (``onerror=``...) and the texts of the scripts of an HTML page."""
    from html.parser import HTMLParser

    class Parser(HTMLParser):
        handlers: list[str] = []
        scripts: set[str] = set()
        in_script = False

        def handle_starttag(self, tag, attrs):
            self.handlers += [f"<{tag} {name}={value!r}>" for name, value in attrs if name.lower().startswith("on")]
            self.in_script = tag == "script"

        def handle_data(self, data):
            if self.in_script:
                self.scripts.add(data.strip())

    parser = Parser()
    parser.feed(page)
    return parser.handlers, parser.scripts


def test_formgrader_runs_no_script_of_a_student(graded):
    """nbgrader's formgrader shows the executed notebooks through nbconvert (the course sets sanitize_html): nothing
    a student's code sent becomes an event handler or a script on the page."""
    import nbformat
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    config = Config()
    config.HTMLExporter.sanitize_html = True   # as nbgrader_config.py
    config.HTMLExporter.template_name = "classic"   # the one formgrader's page extends
    exporter = HTMLExporter(config=config)
    _, template_scripts = _handlers_and_scripts(exporter.from_notebook_node(nbformat.v4.new_notebook())[0])
    for path in (graded["course"] / "autograded").glob("*/*/*.ipynb"):
        handlers, scripts = _handlers_and_scripts(exporter.from_filename(str(path))[0])
        assert handlers == [] and scripts <= template_scripts, f"{path.name} of {path.parts[-3]}: {handlers}"


def test_the_graders_memory_stays_bounded(graded):
    """What the kernels send costs the grader bounded memory: a few queued messages per channel, capped outputs,
    no channel that is never read (a kernel could fill any of them with gigabytes)."""
    assert graded["peak_rss"] < MAX_GRADER_RSS, f"the grader held {graded['peak_rss'] >> 20} MiB"


def test_nothing_written_outside_the_sandbox(graded):
    course = graded["course"]
    assert not list(course.rglob("daemon.txt"))
    assert not (ROOT / "helpers" / "pwned.txt").exists()
