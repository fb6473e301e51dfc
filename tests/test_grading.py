"""Tests of course_tools.grading's judgement, outside any kernel: tolerance, declared mistakes, feedback words,
reading and rebuilding submitted notebooks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import numpy as np
import pytest

from course_tools import classroom, cli
from course_tools.grading import (DEFAULT_CELL_TIMEOUT, CourseGradingConfig, GradingSettings, course_grading_config,
                                  graded_cells, judge_files, judge_value, load_specs, read_submission,
                                  rebuild_notebook, solution_timings)
from course_tools.figures import fingerprint_recorded_figures
from course_tools.paths import CourseError
from helpers.autograde import HiddenChecks, RECORD_ENV, serialise
from helpers.checks import TOLERANCE

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(5)
REFERENCE = RNG.random((3, 8, 8)).astype(np.float32) + 0.5
MISTAKES = {"doubled": (REFERENCE * 2, "message for doubling"),
            "first_only": (np.repeat(REFERENCE[:1], 3, axis=0), "message for the first image only")}


@pytest.fixture
def recorded(tmp_path, monkeypatch):
    """A reference set recorded through the real HiddenChecks hook, with two declared mistakes."""
    monkeypatch.setenv(RECORD_ENV, str(tmp_path / "refs"))
    checks = HiddenChecks("0" * 64, "1" * 12, "nb")
    checks.compare("maps", REFERENCE, cell="test_maps", expect="numpy", mistakes=lambda: MISTAKES,
                   otherwise="advice when nothing fits")
    folder = next((tmp_path / "refs").iterdir()) / "nb"
    spec = json.loads((folder / "maps.spec.json").read_text())
    return folder, spec, tmp_path / "outbox"


def _judge(recorded, value):
    folder, spec, outbox = recorded
    serialise(value, outbox, "maps")
    return judge_value(folder, outbox, "maps", spec)


def test_the_right_answer_passes_within_the_tolerance(recorded):
    assert _judge(recorded, REFERENCE * (1 + TOLERANCE / 10)) is None


def test_the_tolerance_is_pinned(recorded):
    """An error of 10x the tolerance fails: a tolerance made 100x looser would let it through."""
    assert _judge(recorded, REFERENCE * (1 + 10 * TOLERANCE)) is not None
    assert recorded[1]["tolerance"] == TOLERANCE == 1e-3


def test_a_declared_tolerance_is_recorded_and_used(tmp_path, monkeypatch):
    monkeypatch.setenv(RECORD_ENV, str(tmp_path / "refs"))
    HiddenChecks("0" * 64, "1" * 12, "nb").compare("maps", REFERENCE, cell="test_maps", tolerance=0.05)
    folder = next((tmp_path / "refs").iterdir()) / "nb"
    [(name, spec)] = load_specs(folder)["test_maps"]
    assert spec["tolerance"] == 0.05
    serialise(REFERENCE * 1.04, tmp_path / "outbox", "maps")
    assert judge_value(folder, tmp_path / "outbox", "maps", spec) is None
    serialise(REFERENCE * 1.2, tmp_path / "outbox", "maps")
    assert judge_value(folder, tmp_path / "outbox", "maps", spec) is not None


def test_a_figure_spec_needs_no_tolerance(tmp_path, monkeypatch):
    folder = tmp_path / "nb"
    folder.mkdir()
    spec = {"cell": "test_fig", "similarity": 0.95, "match_rows": 1, "files": {}}
    (folder / "files.test_fig.spec.json").write_text(json.dumps(spec))
    assert load_specs(folder) == {"test_fig": [("files.test_fig", spec)]}


# ----------------------------------------------------------------------------- figure files

FIGURE_RNG = np.random.default_rng(12)
IMAGES = FIGURE_RNG.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
MAPS = FIGURE_RNG.random((4, 32, 32))


def _save_figures(folder: Path, images=IMAGES, maps=MAPS, **kwargs) -> None:
    """Two figures as an exercise asks for them (images above their maps), each as PNG and PDF."""
    import matplotlib

    matplotlib.use("Agg")
    from helpers import plots

    folder.mkdir(parents=True, exist_ok=True)
    plots.save_figure(plots.show_saliency_grid(images, maps, **{"cmap": "hot", **kwargs}), folder / "grid")
    plots.save_figure(plots.show_smoothgrad_comparison(images, maps, maps[::-1], **{"cmap": "hot", **kwargs}),
                      folder / "comparison")
    import matplotlib.pyplot as plt

    plt.close("all")


FIGURE_NAMES = ["grid.png", "grid.pdf", "comparison.png", "comparison.pdf"]


@pytest.fixture
def figure_spec(tmp_path, monkeypatch):
    """The solution's figures recorded through the real HiddenChecks hook; returns (reference folder, spec)."""
    _save_figures(tmp_path / "solution")
    monkeypatch.chdir(tmp_path / "solution")
    monkeypatch.setenv(RECORD_ENV, str(tmp_path / "refs"))
    HiddenChecks("0" * 64, "1" * 12, "nb").require_files(FIGURE_NAMES, cell="test_fig")
    monkeypatch.delenv(RECORD_ENV)
    folder = next((tmp_path / "refs").iterdir()) / "nb"
    fingerprint_recorded_figures(folder.parent)   # as `course references` does once the notebooks ran
    [(_, spec)] = load_specs(folder)["test_fig"]
    return folder, spec


def test_a_recorded_figure_spec_holds_layout_and_fingerprint(figure_spec):
    _, spec = figure_spec
    assert spec["similarity"] == 0.95 and spec["match_rows"] == 1 and sorted(spec["files"]) == sorted(FIGURE_NAMES)
    assert spec["files"]["grid.pdf"]["fingerprint"]["rows"] == [4, 4]
    assert spec["files"]["comparison.png"]["fingerprint"]["rows"] == 3


@pytest.mark.parametrize("variant", [{"maps": MAPS ** 3}, {"cmap": "gray"}, {"cmap": "diverging"},
                                     {"same_scale": True}])
def test_honest_figures_are_judged_right(tmp_path, figure_spec, variant):
    _save_figures(tmp_path / "work", **variant)
    assert judge_files(tmp_path / "work", figure_spec[1], None) == []


def test_figures_of_other_images_noise_or_nothing_are_judged_wrong(tmp_path, figure_spec):
    from PIL import Image

    work = tmp_path / "work"
    _save_figures(work, images=IMAGES[::-1])   # the right layout, the images in another order
    problems = judge_files(work, figure_spec[1], None)
    assert len(problems) == 4 and all("does not show what the exercise asks for" in p for p in problems)
    _save_figures(work)
    size = Image.open(work / "grid.png").size
    Image.fromarray(FIGURE_RNG.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(work / "grid.png")
    (work / "comparison.pdf").unlink()
    assert judge_files(work, figure_spec[1], None) == [
        "grid.png: its panels are not arranged as in the figure the exercise asks for (rows of panels found: 1)",
        "comparison.pdf is missing"]


def test_in_check_mode_the_recorded_layouts_are_the_reference(tmp_path, figure_spec, monkeypatch):
    """An instructor running a source notebook sees its figures held against the recorded layouts (what they
    show is the grader's to judge: the student package has no such code)."""
    monkeypatch.setenv("SALIENCY_REFERENCES", str(figure_spec[0].parents[1]))
    _save_figures(tmp_path / "work", cmap="gray")
    monkeypatch.chdir(tmp_path / "work")
    checks = HiddenChecks("0" * 64, "1" * 12, "nb")
    checks.require_files(FIGURE_NAMES, cell="test_fig")
    _save_figures(tmp_path / "work", images=IMAGES[:2], maps=MAPS[:2])   # of two images: another aspect ratio
    with pytest.raises(AssertionError, match="grid.png does not have the expected layout"):
        checks.require_files(FIGURE_NAMES, cell="test_fig")


def test_the_solution_figures_are_copied_beside_the_spec_and_never_read_as_checks(figure_spec):
    folder, spec = figure_spec
    assert sorted(p.name for p in folder.glob("files.test_fig.*") if not p.name.endswith(".spec.json")) == \
        sorted(f"files.test_fig.{name}" for name in FIGURE_NAMES)
    assert list(load_specs(folder)) == ["test_fig"]


def test_a_figure_spec_without_what_the_figures_show_is_refused(figure_spec):
    folder, spec = figure_spec
    old = {"cell": "test_fig", "files": {name: {k: v for k, v in entry.items() if k != "fingerprint"}
                                         for name, entry in spec["files"].items()}}
    (folder / "files.test_fig.spec.json").write_text(json.dumps(old))
    with pytest.raises(CourseError, match="older version .* run `course references` again"):
        load_specs(folder)


@pytest.mark.parametrize("kwargs, error", [({"similarity": 1.5}, ValueError), ({"similarity": "high"}, TypeError),
                                           ({"match_rows": -1}, ValueError), ({"match_rows": 1.0}, TypeError)])
def test_require_files_checks_its_arguments(kwargs, error):
    with pytest.raises(error, match=next(iter(kwargs))):
        HiddenChecks("0" * 64, "1" * 12, "nb").require_files(["a.png"], cell="test_fig", **kwargs)


def test_a_spec_recorded_without_a_tolerance_is_refused(recorded):
    folder = recorded[0]
    spec_path = folder / "maps.spec.json"
    spec = json.loads(spec_path.read_text())
    spec_path.write_text(json.dumps({**{k: v for k, v in spec.items() if k != "tolerance"}, "rtol": 1e-3}))
    with pytest.raises(CourseError, match="older version .* run `course references` again"):
        load_specs(folder)


@pytest.mark.parametrize("key", sorted(MISTAKES))
def test_each_declared_mistake_gets_its_own_message(recorded, key):
    wrong, message = MISTAKES[key]
    verdict = _judge(recorded, wrong)
    assert message in verdict
    others = [m for k, (_, m) in MISTAKES.items() if k != key]
    assert not any(other in verdict for other in others)
    assert "advice when nothing fits" not in verdict


def test_otherwise_only_when_no_mistake_fits(recorded):
    verdict = _judge(recorded, REFERENCE + RNG.random(REFERENCE.shape).astype(np.float32))
    assert "advice when nothing fits" in verdict


def test_a_wrong_type_is_named_not_advised(recorded):
    verdict = _judge(recorded, [1, 2, 3])
    assert verdict and "advice when nothing fits" not in verdict


def test_a_mistake_that_equals_the_right_answer_is_not_recorded(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(RECORD_ENV, str(tmp_path / "refs"))
    HiddenChecks("0" * 64, "1" * 12, "nb").compare(
        "maps", REFERENCE, cell="t", mistakes=lambda: {"same": (REFERENCE.copy(), "never shown")})
    spec = json.loads(next((tmp_path / "refs").rglob("maps.spec.json")).read_text())
    assert spec["mistakes"] == {} and "not used" in capsys.readouterr().out


@pytest.mark.parametrize("mistakes, error", [
    ("gradient", TypeError), (lambda: {"k": REFERENCE}, TypeError), (lambda: {"bad key!": (REFERENCE, "m")}, ValueError),
    (lambda: [1], TypeError),
])
def test_malformed_mistake_declarations_are_refused(tmp_path, monkeypatch, mistakes, error):
    monkeypatch.setenv(RECORD_ENV, str(tmp_path / "refs"))
    with pytest.raises(error, match="mistake"):
        HiddenChecks("0" * 64, "1" * 12, "nb").compare("maps", REFERENCE, cell="t", mistakes=mistakes)


def _notebook(tmp_path: Path, text: str | bytes, name="nb.ipynb") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


@pytest.mark.parametrize("content, problem", [
    ('{"cells": [ not json', "not a valid notebook"),
    ("[1, 2]", "not a valid notebook"),
    (b"\x00\xff" * 100, "not a valid notebook"),
])
def test_unreadable_notebooks_become_problems(tmp_path, content, problem):
    nb, found = read_submission(_notebook(tmp_path, content))
    assert nb is None and problem in found


def test_a_linked_notebook_is_not_read(tmp_path):
    target = tmp_path / "solution.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), target)
    (tmp_path / "nb.ipynb").symlink_to(target)
    nb, problem = read_submission(tmp_path / "nb.ipynb")
    assert nb is None and "not a regular file" in problem


def test_a_huge_notebook_is_not_read(tmp_path):
    path = tmp_path / "nb.ipynb"
    with open(path, "wb") as fh:
        fh.truncate(64 * 2**20)
    nb, problem = read_submission(path)
    assert nb is None and "too large" in problem


def _source():
    nb = nbformat.v4.new_notebook()
    meta = lambda gid, **kw: {"nbgrader": {"grade_id": gid, "schema_version": 3, **kw}}  # noqa: E731
    nb.cells = [nbformat.v4.new_code_cell("setup = 1", metadata=meta("setup", locked=True, grade=False)),
                nbformat.v4.new_code_cell("answer = None", metadata=meta("answer", solution=True, grade=False)),
                nbformat.v4.new_code_cell("assert answer", metadata=meta("test", grade=True, points=2, locked=True))]
    return nb


@pytest.mark.parametrize("bad_meta", ["a string", ["list"], 3, None, {"grade_id": ["answer"]}, {"grade_id": 7},
                                      {"grade_id": "x" * 500}, {"grade_id": "test\n"}, {"grade_id": "test; rm"},
                                      {"grade_id": {"test": 1}}, {"grade_id": "g" * 100_000, "grade": True}])
def test_malformed_nbgrader_metadata_makes_a_cell_the_students_own(tmp_path, bad_meta):
    student = _source()
    student.cells[1].source = "answer = 42"
    student.cells[2].source = "print('tests passed')"
    student.cells[2].metadata["nbgrader"] = bad_meta
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(student))
    nb, problem = read_submission(path)
    for submitted in (nb, student):   # as read, and as handed in (not cleaned by read_submission)
        rebuilt, problems = rebuild_notebook(_source(), submitted)
        kept = [c for c in rebuilt.cells if c.source == "print('tests passed')"]
        assert len(kept) == 1 and "nbgrader" not in kept[0].metadata   # the student's own cell, nothing more
        assert "test cell 'test' was deleted: its points are lost" in problems
        assert [c.source for c in rebuilt.cells].count("assert answer") == 0


def test_graded_cells_come_from_nbgrader_roles():
    source = _source()
    source.cells.append(nbformat.v4.new_markdown_cell("why?", metadata={"nbgrader": {
        "grade_id": "why", "grade": True, "solution": True, "points": 3, "schema_version": 3}}))
    source.cells.append(nbformat.v4.new_code_cell("x", metadata={"nbgrader": ["not", "a", "dict"]}))
    assert graded_cells(source) == [("test", 2.0, False), ("why", 3.0, True)]


def test_duplicate_grade_ids_keep_the_instructors_cell_once():
    student = _source()
    student.cells.append(nbformat.from_dict(json.loads(json.dumps(student.cells[2]))))
    student.cells[-1].source = "pass  # forged copy"
    rebuilt, _ = rebuild_notebook(_source(), student)
    assert [c.source for c in rebuilt.cells].count("assert answer") == 1


def test_a_kernel_stopped_after_a_test_cell_ran_leaves_its_verdict_alone(tmp_path):
    """The kernel was stopped (a message flood, the notebook's limit) once the test cell had run: only cells that
    never ran are 'not run', whether or not the stop came inside a cell."""
    from course_tools.grading import _errors_by_grade_id
    from course_tools.runner import CellTiming, Execution

    nb = _source()
    nb.cells.append(nbformat.v4.new_code_cell("print('after')"))
    stopped = "the notebook sent more than 50000 messages and was stopped"
    between = Execution(tmp_path, cells=[CellTiming(i, None, 0.1) for i in range(4)], crashed=stopped)
    assert _errors_by_grade_id(nb, between) == {}
    early = Execution(tmp_path, cells=[CellTiming(0, None, 0.1), CellTiming(1, None, 0.1)], crashed=stopped,
                      cell_errors={1: stopped})
    assert _errors_by_grade_id(nb, early) == {"answer": stopped, "test": f"not run: {stopped}"}


def test_cell_limits_follow_the_solutions_times(tmp_path):
    (tmp_path / "timings.json").write_text(json.dumps(
        {"format": 1, "notebooks": {"lab/nb.ipynb": {"grade_ids": {"answer": 30.0, "test": 0.5}}}}))
    timings = solution_timings(tmp_path, "lab/nb.ipynb")
    limits = GradingSettings(cell_timeout=20, timing_margin=10).cell_limits(_source(), timings)
    assert limits == [20.0, 300.0, 20.0]
    assert solution_timings(tmp_path, "lab/other.ipynb") == {}


@pytest.mark.parametrize("kwargs", [{"cell_timeout": 0}, {"notebook_timeout": -1}, {"timing_margin": "10"},
                                    {"cell_timeout": True}])
def test_grading_settings_refuse_non_positive_limits(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        GradingSettings(**kwargs)


def _course(tmp_path: Path, settings: str) -> Path:
    (tmp_path / "source").mkdir()
    (tmp_path / "nbgrader_config.py").write_text("c = get_config()  # noqa: F821\n" + settings)
    return tmp_path


def test_this_courses_config_sets_only_what_course_grade_reads():
    assert course_grading_config(ROOT) == CourseGradingConfig(cell_timeout=60, configured=True, ignored=())


def test_course_grade_takes_its_per_cell_floor_from_nbgrader_config(tmp_path, monkeypatch, capsys):
    """c.Execute.timeout is the least time each cell gets; --cell-timeout overrides it for one run; settings
    only nbgrader autograde reads are named, not silently ignored."""
    course = _course(tmp_path, "c.Execute.timeout = 7\nc.Execute.interrupt_on_timeout = False\n"
                               "c.IgnorePattern.pattern = 'x'\n")
    used = []
    monkeypatch.setattr(classroom, "grade_class", lambda root, **kwargs: used.append(kwargs["settings"]))
    monkeypatch.setenv("PATH", os.environ["PATH"])   # main() puts the interpreter's scripts first
    monkeypatch.chdir(course)
    assert cli.main(["grade"]) == 0
    out = capsys.readouterr().out
    assert "at least 7 s (c.Execute.timeout in nbgrader_config.py)" in out
    assert "c.Execute.interrupt_on_timeout" in out and "c.IgnorePattern.pattern" in out
    assert cli.main(["grade", "--cell-timeout", "9", "--notebook-timeout", "30"]) == 0
    assert [(s.cell_timeout, s.notebook_timeout) for s in used] == [(7, 600), (9, 30)]


def test_without_the_setting_the_grader_default_applies(tmp_path):
    assert course_grading_config(_course(tmp_path, "")) == CourseGradingConfig(DEFAULT_CELL_TIMEOUT, False)


@pytest.mark.parametrize("value", ["None", "0", "-5", "'60'", "2.5", "True"])
def test_a_per_cell_floor_that_is_no_whole_number_of_seconds_is_refused(tmp_path, value):
    with pytest.raises(CourseError, match=r"c.Execute.timeout must be a whole number of seconds, at least 1.*got"):
        course_grading_config(_course(tmp_path, f"c.Execute.timeout = {value}\n"))


def test_a_config_that_fails_to_load_is_one_line(tmp_path, monkeypatch, capsys):
    course = _course(tmp_path, "c.Execute.timeout = 1 / 0\n")
    with pytest.raises(CourseError, match=r"nbgrader_config.py could not be loaded \(ZeroDivisionError"):
        course_grading_config(course)
    monkeypatch.setenv("PATH", os.environ["PATH"])
    monkeypatch.chdir(course)
    assert cli.main(["grade"]) == 1
    assert "error:" in capsys.readouterr().err
