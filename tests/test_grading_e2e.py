"""Grading a class end to end, with the real commands, on a temporary course made from the real source.

One module-scoped run builds the course (``course build``), writes the demo
class (``course demo-class``: the solutions, an untouched release, typical
mistakes, broken notebooks and cheating attempts), grades it
(``course grade``) and reports (``course report``). The tests then check every
score exactly, the diagnostics, the gradebook, the report and the feedback.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import make_course_copy

ROOT = Path(__file__).resolve().parents[1]
COURSE = [sys.executable, "-m", "course_tools"]

SNOOPER = '''import pathlib, helpers
_leaks = []
for _root in (pathlib.Path(helpers.__file__).resolve().parents[1], pathlib.Path(COURSE_ROOT)):
    for _folder in ("references", "source", "submitted", "autograded"):
        try:
            if any(p.is_file() for p in (_root / _folder).rglob("*")):
                _leaks.append(str(_root / _folder))
        except OSError:
            pass
    try:
        (_root / "gradebook.db").read_bytes()[:16].decode("ascii").startswith("SQLite") and _leaks.append("gradebook")
    except (OSError, UnicodeDecodeError):
        pass
try:
    (pathlib.Path(helpers.__file__).parent / "pwned.txt").write_text("x")
    _leaks.append("wrote into helpers/")
except OSError:
    pass
'''


def _run(args, cwd, timeout=900):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(COURSE + args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, f"course {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def graded(tmp_path_factory, untrained_references):
    course = make_course_copy(tmp_path_factory.mktemp("e2e") / "course", untrained_references)
    _run(["demo-class"], course)
    # A student who tries to read the references and the solutions, and to change the course's code.
    from course_tools.demo_class import Scenario, solutions, write_submission

    nb01 = "01_data_and_model.ipynb"
    answer = SNOOPER.replace("COURSE_ROOT", repr(str(course))) + "if _leaks:\n    raise RuntimeError(f'sandbox leaked: {_leaks}')\n" + \
        solutions(course, "lab")[nb01]["correct_class_scores"]
    write_submission(course, "snooper", Scenario("lab", {nb01: {"correct_class_scores": answer}}, only=(nb01,)))
    grade_log = _run(["grade", "--jobs", "2", "--cell-timeout", "20"], course)
    report_log = _run(["report"], course)
    results = {}
    for path in (course / "autograded").glob("*/*/grading.json"):
        record = json.loads(path.read_text())
        results[record["student"]] = record
    return {"course": course, "results": results, "grade_log": grade_log,
            "report_log": report_log}


def _parts(record):
    return {part["grade_id"]: part for nb in record["notebooks"] for part in nb["parts"] if not part["manual"]}


def _scores(record):
    return {gid: part["points"] for gid, part in _parts(record).items()}


LAB_FULL = {"test_correct_class_scores": 2.0, "test_compute_saliency": 4.0,
            "test_max_over_channels": 2.0, "test_maxabs_over_channels": 2.0}
HOMEWORK_FULL = {"test_smoothgrad": 6.0, "test_figure_files": 2.0}
LAB_ZERO = {k: 0.0 for k in LAB_FULL}


def test_the_solutions_get_full_marks(graded):
    assert _scores(graded["results"]["solutions_lab"]) == LAB_FULL
    assert _scores(graded["results"]["solutions_homework"]) == HOMEWORK_FULL


def test_the_seed_or_generator_idiom_gets_full_marks(graded):
    """`rng = np.random.default_rng(rng)` accepts a seed or a Generator: the grader's noise is a real one."""
    assert _scores(graded["results"]["smoothgrad_rng_idiom"]) == HOMEWORK_FULL


def test_an_untouched_release_gets_zero(graded):
    assert _scores(graded["results"]["untouched_lab"]) == LAB_ZERO
    assert _scores(graded["results"]["untouched_homework"]) == {"test_smoothgrad": 0.0, "test_figure_files": 0.0}


# student -> (the part that loses its points, words expected in the explanation)
MISTAKES = {
    "no_abs": ("test_maxabs_over_channels", "take the absolute value"),
    "wrong_axis": ("test_max_over_channels", "axis"),
    "sum_not_max": ("test_maxabs_over_channels", "summed"),
    "predicted_class": ("test_compute_saliency", "predicted class"),
    "accumulated_gradients": ("test_compute_saliency", "accumulated"),
    "smoothgrad_wrong_count": ("test_smoothgrad", "wrong count"),
    "smoothgrad_last_image_only": ("test_smoothgrad", "only the last image"),
    "noise_after_normalisation": ("test_smoothgrad", "pixel space"),
    "smoothgrad_one_copy": ("test_smoothgrad", "one noisy copy"),
    "smoothgrad_reused_noise": ("test_smoothgrad", "each with new noise"),
    "smoothgrad_average_raw": ("test_smoothgrad", "averaged the raw gradients"),
    # Its patches silence the in-kernel hook too, so nothing is handed to the grader: zero for that part.
    "patched_comparisons": ("test_maxabs_over_channels", "did not get to check"),
    "tampered_tests": ("test_maxabs_over_channels", "take the absolute value"),
}
ONLY_NOTEBOOK = {"no_abs": "03", "wrong_axis": "03", "sum_not_max": "03", "predicted_class": "02",
                 "accumulated_gradients": "02", "patched_comparisons": "03", "tampered_tests": "03"}
LAB_PARTS_BY_NOTEBOOK = {"01": ["test_correct_class_scores"], "02": ["test_compute_saliency"],
                         "03": ["test_max_over_channels", "test_maxabs_over_channels"]}


@pytest.mark.parametrize("student", sorted(MISTAKES))
def test_each_typical_mistake_loses_exactly_its_part_with_a_diagnostic(graded, student):
    lost, words = MISTAKES[student]
    record = graded["results"][student]
    expected = dict(HOMEWORK_FULL if record["assignment"] == "homework" else LAB_FULL)
    if student in ONLY_NOTEBOOK:  # these students handed in a single notebook
        kept = LAB_PARTS_BY_NOTEBOOK[ONLY_NOTEBOOK[student]]
        expected = {gid: (pts if gid in kept else 0.0) for gid, pts in expected.items()}
    expected[lost] = 0.0
    assert _scores(record) == expected
    messages = " ".join(_parts(record)[lost]["messages"])
    assert words in messages, messages


def test_an_endless_loop_costs_only_its_parts(graded):
    record = graded["results"]["infinite_loop"]
    # 01's loop catches KeyboardInterrupt: the kernel is stopped, 01 is lost; 03's plain loop is interrupted.
    assert _scores(record) == {**LAB_FULL, "test_correct_class_scores": 0.0, "test_max_over_channels": 0.0}
    problems = " ".join(p for nb in record["notebooks"] for p in nb["problems"])
    assert "ignored the interrupt" in problems and "time limit" in problems


def test_a_kernel_crash_costs_only_its_notebook(graded):
    record = graded["results"]["kernel_crash"]
    assert _scores(record) == {**LAB_FULL, "test_compute_saliency": 0.0}
    assert any("died" in p for nb in record["notebooks"] for p in nb["problems"])


def test_running_out_of_memory_is_contained(graded):
    record = graded["results"]["memory_hog"]
    assert _scores(record) == LAB_ZERO  # only 01 was handed in, and its answer cell hit the memory limit
    messages = " ".join(_parts(record)["test_correct_class_scores"]["messages"])
    assert "memory" in messages.lower()


def test_broken_missing_and_renamed_notebooks(graded):
    broken = graded["results"]["broken_json"]
    assert _scores(broken) == {**LAB_FULL, "test_correct_class_scores": 0.0}
    assert any("not a valid notebook" in p for nb in broken["notebooks"] for p in nb["problems"])
    missing = graded["results"]["missing_notebook"]
    assert _scores(missing) == {**LAB_FULL, "test_compute_saliency": 0.0}
    renamed = graded["results"]["renamed_notebook"]
    assert _scores(renamed) == {**LAB_FULL, "test_correct_class_scores": 0.0}
    assert any("missing" in p for nb in renamed["notebooks"] for p in nb["problems"])


def test_deleted_test_cell_costs_its_points(graded):
    record = graded["results"]["deleted_test_cell"]
    assert _scores(record) == {**LAB_ZERO, "test_maxabs_over_channels": 2.0}
    assert any("deleted" in p for nb in record["notebooks"] for p in nb["problems"])


def test_student_code_cannot_read_private_files_or_change_the_course(graded):
    if os.getuid() != 0:
        pytest.skip("kernel isolation needs root (CI and a grading server run as root)")
    assert "its own sandbox" in graded["grade_log"]
    record = graded["results"]["snooper"]
    assert _scores(record)["test_correct_class_scores"] == 2.0, _parts(record)["test_correct_class_scores"]
    assert not (graded["course"].parent / "helpers" / "pwned.txt").exists()
    assert not (ROOT / "helpers" / "pwned.txt").exists()


def test_gradebook_holds_the_scores(graded):
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{graded['course'] / 'gradebook.db'}", course_id="saliency") as gb:
        assert gb.find_submission("lab", "solutions_lab").score == 10.0
        assert gb.find_submission("lab", "no_abs").score == 2.0
        assert gb.find_submission("homework", "solutions_homework").score == 8.0
        grade = gb.find_grade("histogram_question", "03_reductions_and_histograms", "lab", "solutions_lab")
        assert grade.needs_manual_grade


def test_report_has_a_row_per_submission_and_a_column_per_part(graded):
    with open(graded["course"] / "reports" / "grades.csv") as fh:
        rows = {(r["student"], r["assignment"]): r for r in csv.DictReader(fh)}
    assert len(rows) == len(graded["results"])
    row = rows[("no_abs", "lab")]
    assert row["03_reductions_and_histograms:test_maxabs_over_channels"] == "0"
    assert row["03_reductions_and_histograms:test_max_over_channels"] == "2"
    assert row["score"] == "2" and row["max_score"] == "12" and row["manual_pending"] == "1"
    assert "missing" in rows[("missing_notebook", "lab")]["problems"]
    assert "time limit" in rows[("infinite_loop", "lab")]["problems"]
    assert rows[("solutions_homework", "homework")]["score"] == "8"
    # The feedback's total and the report's agree, and a problem names its notebook once.
    feedback = (graded["course"] / "feedback" / "no_abs" / "lab" / "feedback.txt").read_text()
    assert "automatic score: 2 / 10; written answers: up to 2 more points" in feedback and "out of 12" in feedback
    assert rows[("missing_notebook", "lab")]["problems"].count("02_vanilla_saliency.ipynb") == 1


def test_feedback_explains_and_hides_the_hidden_tests(graded):
    course = graded["course"]
    feedback_files = list((course / "feedback").glob("*/*/feedback.html"))
    assert len(feedback_files) == len(graded["results"])
    page = (course / "feedback" / "no_abs" / "lab" / "feedback.html").read_text()
    assert "take the absolute value" in page
    reference_numbers = set()
    for npy in (course / "references").rglob("*.npy"):
        values = np.load(npy, allow_pickle=False).ravel()
        for value in values[:: max(1, values.size // 50)][:50]:
            if float(value) != 0.0:
                reference_numbers.add(f"{float(value):.4g}")
    for path in feedback_files + list((course / "feedback").glob("*/*/feedback.txt")):
        text = path.read_text()
        for secret in ("HIDDEN", "checks.compare", "_smoothgrad_variant", "_SEED", "manual_seed", "default_rng(0)",
                       "Traceback", "references/", "MARK SCHEME"):
            assert secret not in text, f"{path}: shows {secret!r}"
        numbers = set(re.findall(r"-?\d+\.\d+(?:e-?\d+)?", text))
        assert not (numbers & reference_numbers), f"{path} shows reference values {numbers & reference_numbers}"


def test_regrading_keeps_manual_scores(graded):
    from nbgrader.api import Gradebook

    course = graded["course"]
    db = f"sqlite:///{course / 'gradebook.db'}"
    with Gradebook(db, course_id="saliency") as gb:
        grade = gb.find_grade("histogram_question", "03_reductions_and_histograms", "lab", "no_abs")
        grade.manual_score = 1.5
        gb.db.commit()
    _run(["grade", "--student", "no_abs", "--assignment", "lab", "--cell-timeout", "20"], course)
    with Gradebook(db, course_id="saliency") as gb:
        assert gb.find_grade("histogram_question", "03_reductions_and_histograms", "lab", "no_abs").manual_score == 1.5
        assert gb.find_submission("lab", "no_abs").score == 3.5


def test_grading_refuses_references_that_no_longer_fit_the_source(tmp_path, untrained_references):
    """An instructor who edits a solution and grades without `course build` is stopped before any student runs."""
    from course_tools.classroom import GradingSetupError, grade_class
    from course_tools.demo_class import Scenario, write_submission

    course = make_course_copy(tmp_path / "course", untrained_references)
    write_submission(course, "someone", Scenario("lab", only=("01_data_and_model.ipynb",)))
    source = course / "source" / "lab" / "01_data_and_model.ipynb"
    nb = json.loads(source.read_text())
    code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    code["source"] = "".join(code["source"]) + "\n# changed"
    source.write_text(json.dumps(nb))
    with pytest.raises(GradingSetupError, match="lab/01_data_and_model.ipynb: its code changed .* run `course build`"):
        grade_class(course, weights="untrained", unsandboxed=True, log=lambda line: None)
    assert not (course / "autograded").exists()
