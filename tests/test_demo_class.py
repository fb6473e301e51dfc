"""The demo class: students declared in ``demo/<assignment>.toml``, read, checked and written.

Most tests use a small course made here (one assignment, two notebooks, whose answers are one-liners), so
that each kind of declaration and each mistake in one is tried quickly; the last ones read the course's own
``demo/`` against the real ``source/``.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from course_tools import cli
from course_tools.demo_class import (
    BROKEN_JSON, DEMO_FOLDER, DemoClassError, FileEdits, make_demo_class, read_demo_file, scenarios, solutions,
    write_submission,
)
from course_tools.paths import CourseError

ROOT = Path(__file__).resolve().parents[1]
NB1, NB2 = "01_quiz.ipynb", "02_quiz.ipynb"


def _cell(source: str, grade_id: str, *, solution: bool = False, points: float | None = None):
    meta = {"grade": points is not None, "grade_id": grade_id, "locked": not solution, "schema_version": 3,
            "solution": solution, "task": False}
    if points is not None:
        meta["points"] = points
    return nbformat.v4.new_code_cell(source, metadata={"nbgrader": meta})


def _notebook(answers: dict[str, str], *, released: bool) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Quiz"), _cell("import math", "setup")]
    for gid, body in answers.items():
        code = ("    raise NotImplementedError()" if released
                else f"    ### BEGIN SOLUTION\n{body}\n    ### END SOLUTION")
        nb.cells += [_cell(f"def {gid}(x):\n{code}", gid, solution=True),
                     _cell(f"assert {gid}(2) == {gid}(2)", f"test_{gid}", points=1)]
    return nb


@pytest.fixture
def course(tmp_path) -> Path:
    """source/ and release/ of an assignment ``quiz``: 01 asks for ``double``, 02 for ``triple`` and ``square``;
    both notebooks have a ``setup`` cell."""
    shutil.copy2(ROOT / "nbgrader_config.py", tmp_path)
    questions = {NB1: {"double": "    return 2 * x"},
                 NB2: {"triple": "    y = 3 * x\n    return y", "square": "    return x * x"}}
    for folder, released in (("source", False), ("release", True)):
        (tmp_path / folder / "quiz").mkdir(parents=True)
        for name, answers in questions.items():
            nbformat.write(_notebook(answers, released=released), tmp_path / folder / "quiz" / name)
    (tmp_path / DEMO_FOLDER).mkdir()
    return tmp_path


def _declare(course: Path, text: str, assignment: str = "quiz") -> Path:
    path = course / DEMO_FOLDER / f"{assignment}.toml"
    path.write_text(text)
    return path


def _cells(path: Path) -> dict[str, str]:
    return {c.metadata["nbgrader"]["grade_id"]: c.source for c in nbformat.read(path, as_version=4).cells
            if "nbgrader" in c.metadata}


# ------------------------------------------------------------------------------------------------- reading

def test_every_assignment_has_its_solutions_and_untouched_students_without_a_file(course):
    shutil.rmtree(course / DEMO_FOLDER)
    table = scenarios(course)
    assert list(table) == ["solutions_quiz", "untouched_quiz"]
    assert not table["solutions_quiz"].blank and table["untouched_quiz"].blank
    assert table["solutions_quiz"].answers == {} and table["solutions_quiz"].edit is None


def test_answers_are_the_solutions_changed_as_declared(course):
    _declare(course, '''
[two_mistakes]
only = ["02_quiz.ipynb"]
[[two_mistakes.answer]]
cell = "triple"
replace = [["3 * x", "3 + x"], ["return y", "return y - 1"]]
prepend = "import os\\n"
[[two_mistakes.answer]]
notebook = "02_quiz.ipynb"
cell = "square"
prepend = """
while True:
    pass
"""
''')
    scenario = scenarios(course)["two_mistakes"]
    assert scenario.assignment == "quiz" and scenario.only == (NB2,) and not scenario.blank
    assert scenario.edit is None
    # The replacements apply in order, to the solution without its markers; the prepended code comes first.
    assert solutions(course, "quiz")[NB2]["triple"] == "def triple(x):\n    y = 3 * x\n    return y"
    assert scenario.answers == {NB2: {"triple": "import os\ndef triple(x):\n    y = 3 + x\n    return y - 1",
                                      "square": "while True:\n    pass\ndef square(x):\n    return x * x"}}


def test_a_blank_student_and_a_student_who_hands_in_less(course):
    _declare(course, '[blank_one]\nblank = true\nonly = ["01_quiz.ipynb"]\n\n[half]\nonly = "02_quiz.ipynb"\n')
    table = scenarios(course)
    assert table["blank_one"].blank and table["blank_one"].only == (NB1,)
    assert table["half"].only == (NB2,) and table["half"].answers == {}
    folder = write_submission(course, "blank_one", table["blank_one"])
    assert sorted(p.name for p in folder.iterdir()) == [NB1, "timestamp.txt"]
    assert (folder / NB1).read_bytes() == (course / "release" / "quiz" / NB1).read_bytes()


def test_the_declared_students_follow_the_automatic_ones_in_file_order(course):
    _declare(course, "[zeta]\n[alpha]\n")
    assert list(scenarios(course)) == ["solutions_quiz", "untouched_quiz", "zeta", "alpha"]


# ------------------------------------------------------------------------------------------------- writing

def test_the_answers_are_written_into_the_released_notebooks(course):
    _declare(course, '[wrong]\n[[wrong.answer]]\ncell = "double"\nreplace = [["2 * x", "x + x + 1"]]\n')
    make_demo_class(course, ["wrong", "solutions_quiz"])
    wrong = _cells(course / "submitted" / "wrong" / "quiz" / NB1)
    assert wrong["double"] == "def double(x):\n    return x + x + 1"
    assert wrong["test_double"] == "assert double(2) == double(2)"       # everything else as released
    assert _cells(course / "submitted" / "wrong" / "quiz" / NB2) == _cells(
        course / "submitted" / "solutions_quiz" / "quiz" / NB2)
    assert (course / "submitted" / "wrong" / "quiz" / "timestamp.txt").is_file()


def test_replace_cell_and_delete_cell_change_any_cell_of_the_written_notebook(course):
    _declare(course, '''
[cheat]
notebook = "02_quiz.ipynb"
replace_cell = { test_triple = "print('all tests passed')", setup = "import os" }
delete_cell = ["test_square"]
''')
    scenario = scenarios(course)["cheat"]
    assert isinstance(scenario.edit, FileEdits)
    folder = write_submission(course, "cheat", scenario)
    cells = _cells(folder / NB2)
    assert cells["test_triple"] == "print('all tests passed')" and cells["setup"] == "import os"
    assert "test_square" not in cells and "square" in cells
    assert "BEGIN SOLUTION" not in cells["triple"] and "y = 3 * x" in cells["triple"]   # the answers: solutions
    assert _cells(folder / NB1)["setup"] == "import math"                              # the other notebook's


def test_break_json_and_rename_change_the_files(course):
    _declare(course, '[broken]\nbreak_json = "01_quiz.ipynb"\n\n'
                     '[renamed]\nrename = { "02_quiz.ipynb" = "02_quiz (1).ipynb" }\n')
    make_demo_class(course, ["broken", "renamed"])
    broken = course / "submitted" / "broken" / "quiz"
    assert (broken / NB1).read_text() == BROKEN_JSON and nbformat.read(broken / NB2, as_version=4).cells
    with pytest.raises(json.JSONDecodeError):
        json.loads((broken / NB1).read_text())
    renamed = course / "submitted" / "renamed" / "quiz"
    assert sorted(p.name for p in renamed.iterdir()) == [NB1, "02_quiz (1).ipynb", "timestamp.txt"]


def test_a_cell_edit_fails_loudly_when_the_release_lacks_the_cell(course):
    _declare(course, '[cheat]\ndelete_cell = "test_double"\n')
    scenario = scenarios(course)["cheat"]
    release = course / "release" / "quiz" / NB1
    nb = nbformat.read(release, as_version=4)
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "test_double"]
    nbformat.write(nb, release)       # a release older than the source
    with pytest.raises(DemoClassError, match=r"demo/quiz.toml \[cheat\] delete_cell: the released 01_quiz.ipynb "
                                             r"has no cell 'test_double'"):
        write_submission(course, "cheat", scenario)


# ------------------------------------------------------------------------------------ out of date, and errors

def test_a_replacement_no_longer_in_the_solution_names_the_file_the_student_and_the_key(course):
    _declare(course, '[stale]\n[[stale.answer]]\ncell = "triple"\nreplace = [["3 * x", "3*x"], ["y = 4", "y = 5"]]\n')
    with pytest.raises(DemoClassError) as err:
        scenarios(course)
    assert str(err.value) == ("demo/quiz.toml [stale] answer 1 replace[1]: the solution of 'triple' in 02_quiz.ipynb "
                              "no longer contains 'y = 4': the solution changed; update this student")
    with pytest.raises(DemoClassError, match=r"\[stale\]"):
        make_demo_class(course, ["solutions_quiz"])                  # the whole class is refused, nothing written
    assert not (course / "submitted").exists()


BAD_DECLARATIONS = {
    "not TOML": ("[a\n", r"demo/quiz.toml is not valid TOML"),
    "not a table": ("a = 1\n", r"demo/quiz.toml a: expected a table \[a\] \(one per student\), got int"),
    "bad name": ('["a b"]\n', r"\[a b\]: a student's name starts with a letter"),
    "automatic name": ("[solutions_quiz]\n", r"\[solutions_quiz\]: every assignment has this student already"),
    "unknown key": ("[a]\nonyl = []\n", r"\[a\] onyl: unknown key \(a student's table may hold answer, blank, only"),
    "blank not a boolean": ('[a]\nblank = "yes"\n', r"\[a\] blank: expected true or false, got 'yes'"),
    "unknown notebook": ('[a]\nonly = ["03_quiz.ipynb"]\n',
                         r"\[a\] only: no notebook '03_quiz.ipynb' in source/quiz/ \(there: 01_quiz.ipynb, 02_quiz"),
    "empty only": ("[a]\nonly = []\n", r"\[a\] only: expected a name or a list of names"),
    "answer not tables": ('[a]\nanswer = "double"\n', r"\[a\] answer: expected \[\[a.answer\]\] tables"),
    "answer without cell": ('[a]\n[[a.answer]]\nprepend = "x"\n', r"\[a\] answer 1: cell = \"<grade_id>\" is missing"),
    "unknown answer key": ('[a]\n[[a.answer]]\ncell = "double"\nappend = "x"\n',
                           r"\[a\] answer 1: unknown key 'append' \(an answer holds cell, notebook, replace, prepend"),
    "unknown cell": ('[a]\n[[a.answer]]\ncell = "halve"\nprepend = "x"\n',
                     r"\[a\] answer 1 cell: no answer cell 'halve' in source/quiz/ \(there: double, square, triple\)"),
    "test cell as answer": ('[a]\n[[a.answer]]\ncell = "test_double"\nprepend = "x"\n',
                            r"no answer cell 'test_double'"),
    "cell in another notebook": ('[a]\n[[a.answer]]\nnotebook = "01_quiz.ipynb"\ncell = "triple"\nprepend = "x"\n',
                                 r"\[a\] answer 1 cell: 01_quiz.ipynb has no answer cell 'triple' \(there: double\)"),
    "answer that changes nothing": ('[a]\n[[a.answer]]\ncell = "double"\n', r"\[a\] answer 1: changes nothing"),
    "same cell twice": ('[a]\n[[a.answer]]\ncell = "double"\nprepend = "x"\n[[a.answer]]\ncell = "double"\n'
                        'prepend = "y"\n', r"\[a\] answer 2: 'double' of 01_quiz.ipynb is changed twice"),
    "replace not pairs": ('[a]\n[[a.answer]]\ncell = "double"\nreplace = ["2 * x", "3 * x"]\n',
                          r"\[a\] answer 1 replace: expected a list of \[old, new\] pairs"),
    "empty old text": ('[a]\n[[a.answer]]\ncell = "double"\nreplace = [["", "3"]]\n', r"old not empty"),
    "prepend not text": ('[a]\n[[a.answer]]\ncell = "double"\nprepend = 3\n',
                         r"\[a\] answer 1 prepend: expected text, got 3$"),
    "blank with answers": ('[a]\nblank = true\n[[a.answer]]\ncell = "double"\nprepend = "x"\n',
                           r"\[a\] answer: a blank student hands in the release untouched"),
    "answer outside only": ('[a]\nonly = ["02_quiz.ipynb"]\n[[a.answer]]\ncell = "double"\nprepend = "x"\n',
                            r"\[a\] answer: changes 01_quiz.ipynb, which this student does not hand in"),
    "edit outside only": ('[a]\nonly = ["02_quiz.ipynb"]\nbreak_json = "01_quiz.ipynb"\n',
                          r"\[a\] break_json: changes 01_quiz.ipynb, which this student does not hand in"),
    "ambiguous cell": ('[a]\ndelete_cell = "setup"\n',
                       r"\[a\] delete_cell: 'setup' is a cell of 01_quiz.ipynb, 02_quiz.ipynb: say which with "
                       r"notebook = "),
    "unknown cell to delete": ('[a]\ndelete_cell = "setupp"\n', r"\[a\] delete_cell: no cell 'setupp' in source/quiz/"),
    "replace_cell not a table": ('[a]\nreplace_cell = "test_double"\n',
                                 r"\[a\] replace_cell: expected a table of grade_id = \"new source\""),
    "rename into a folder": ('[a]\nrename = { "01_quiz.ipynb" = "../01_quiz.ipynb" }\n',
                             r"\[a\] rename: '01_quiz.ipynb' must become a file name \(no folders\)"),
    "rename an unknown notebook": ('[a]\nrename = { "09_quiz.ipynb" = "x.ipynb" }\n',
                                   r"\[a\] rename: no notebook '09_quiz.ipynb'"),
    "break_json not names": ("[a]\nbreak_json = 1\n", r"\[a\] break_json: expected a name or a list of names"),
}


@pytest.mark.parametrize("text, match", BAD_DECLARATIONS.values(), ids=list(BAD_DECLARATIONS))
def test_a_wrong_declaration_is_refused_naming_the_file_student_and_key(course, text, match):
    _declare(course, text)
    with pytest.raises(DemoClassError, match=match) as err:
        scenarios(course)
    assert str(err.value).startswith("demo/quiz.toml") and "\n" not in str(err.value)
    assert isinstance(err.value, CourseError)    # the CLI prints it as one line


def test_a_file_for_an_assignment_not_in_source_is_refused(course):
    _declare(course, "[a]\n", assignment="quizz")
    with pytest.raises(DemoClassError, match=r"demo/quizz.toml: no assignment 'quizz' in source/ \(there: quiz\)"):
        scenarios(course)


def test_two_files_may_not_declare_the_same_student(course):
    for folder in ("source", "release"):
        shutil.copytree(course / folder / "quiz", course / folder / "exam")
    _declare(course, "[same]\n")
    _declare(course, "[same]\n", assignment="exam")
    with pytest.raises(DemoClassError, match=r"demo/(quiz|exam).toml \[same\]: the (exam|quiz) has a student of "
                                             "that name already"):
        scenarios(course)


def test_the_cli_reports_a_wrong_declaration_in_one_line(course, monkeypatch, capsys):
    _declare(course, '[a]\n[[a.answer]]\ncell = "double"\nreplace = [["4 * x", "x"]]\n')
    monkeypatch.chdir(course)
    assert cli.main(["demo-class"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: demo/quiz.toml [a] answer 1 replace[0]:") and "'4 * x'" in err and "\n" not in err


def test_copies_repeat_the_class_and_bad_arguments_are_named(course):
    _declare(course, "[a]\n")
    assert make_demo_class(course, ["a"], copies=2) == ["a", "a_2"]
    assert (course / "submitted" / "a_2" / "quiz" / NB1).is_file()
    for call, words in ((lambda: make_demo_class(course, ["b"]), "names: no demo scenario 'b' (there: solutions_quiz"),
                        (lambda: make_demo_class(course, "a"), "names must be a list"),
                        (lambda: make_demo_class(course, copies=0), "copies must be a whole number of at least 1"),
                        (lambda: write_submission(course, "../a", scenarios(course)["a"]), "student must start with"),
                        (lambda: write_submission(course, "a", "a"), "scenario must be a Scenario, got str"),
                        (lambda: read_demo_file(course, course / "demo" / "quiz.txt"), "path must be a demo file")):
        with pytest.raises(DemoClassError, match=re.escape(words)):
            call()


def test_course_check_names_a_student_who_no_longer_fits_the_solution(tmp_path, monkeypatch, capsys):
    course = tmp_path / "course"
    for name in ("source", "release", "notebooks", DEMO_FOLDER):
        shutil.copytree(ROOT / name, course / name, ignore=shutil.ignore_patterns("*.png", "*.pdf", "__pycache__"))
    for name in ("nbgrader_config.py", "course.toml"):
        shutil.copy2(ROOT / name, course)
    monkeypatch.setattr("course_tools.release.release_differences", lambda root: [])      # nbgrader: slow
    monkeypatch.setattr("course_tools.publish.published_tree_problems", lambda root: [])
    monkeypatch.chdir(course)
    assert cli.main(["check"]) == 0
    demo = course / DEMO_FOLDER / "lab.toml"
    demo.write_text(demo.read_text().replace('"dim=1", "dim=2"', '"dim=3", "dim=2"'))
    capsys.readouterr()
    assert cli.main(["check"]) == 1
    assert "demo/lab.toml [wrong_axis] answer 1 replace[0]: the solution of 'max_over_channels' in " \
           "03_reductions_and_histograms.ipynb no longer contains 'dim=3'" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------- the course's own

#: Every student of the course's demo class, in order: tests/test_grading_e2e.py, test_authoring_e2e.py and the
#: benchmarks grade them by name. -> (assignment, notebooks handed in (None: all), answers changed, edits).
COURSE_CLASS = {
    "solutions_lab": ("lab", None, set(), set()),
    "untouched_lab": ("lab", None, set(), set()),
    "solutions_homework": ("homework", None, set(), set()),
    "untouched_homework": ("homework", None, set(), set()),
    "no_abs": ("lab", ("03",), {"maxabs_over_channels"}, set()),
    "wrong_axis": ("lab", ("03",), {"max_over_channels"}, set()),
    "sum_not_max": ("lab", ("03",), {"maxabs_over_channels"}, set()),
    "predicted_class": ("lab", ("02",), {"compute_saliency"}, set()),
    "accumulated_gradients": ("lab", ("02",), {"compute_saliency"}, set()),
    "infinite_loop": ("lab", None, {"correct_class_scores", "max_over_channels"}, set()),
    "kernel_crash": ("lab", None, {"compute_saliency"}, set()),
    "memory_hog": ("lab", ("01",), {"correct_class_scores"}, set()),
    "broken_json": ("lab", None, set(), {"break_json"}),
    "missing_notebook": ("lab", ("01", "03"), set(), set()),
    "renamed_notebook": ("lab", None, set(), {"rename"}),
    "tampered_tests": ("lab", ("03",), {"maxabs_over_channels"}, {"replace_cell"}),
    "deleted_test_cell": ("lab", ("03",), set(), {"delete_cell"}),
    "patched_comparisons": ("lab", ("03",), {"maxabs_over_channels"}, set()),
    "smoothgrad_wrong_count": ("homework", None, {"smoothgrad"}, set()),
    "smoothgrad_last_image_only": ("homework", None, {"smoothgrad"}, set()),
    "noise_after_normalisation": ("homework", None, {"smoothgrad"}, set()),
    "smoothgrad_one_copy": ("homework", None, {"smoothgrad"}, set()),
    "smoothgrad_reused_noise": ("homework", None, {"smoothgrad"}, set()),
    "smoothgrad_average_raw": ("homework", None, {"smoothgrad"}, set()),
    "smoothgrad_rng_idiom": ("homework", None, {"smoothgrad"}, set()),
}


@pytest.fixture(scope="module")
def course_class():
    return scenarios(ROOT)


def test_the_course_declares_the_students_its_tests_grade(course_class):
    assert list(course_class) == list(COURSE_CLASS)
    for name, (assignment, only, changed, edits) in COURSE_CLASS.items():
        scenario = course_class[name]
        assert scenario.assignment == assignment, name
        assert (None if scenario.only is None else tuple(nb[:2] for nb in scenario.only)) == only, name
        assert {gid for answers in scenario.answers.values() for gid in answers} == changed, name
        kinds = {key for key in ("replace_cell", "delete_cell", "break_json", "rename")
                 if scenario.edit is not None and getattr(scenario.edit, key)}
        assert kinds == edits, name
        assert scenario.blank == name.startswith("untouched_"), name


def test_each_course_mistake_changes_its_solution(course_class):
    answers = {nb: gids for assignment in ("lab", "homework") for nb, gids in solutions(ROOT, assignment).items()}
    for name, scenario in course_class.items():
        for nb, changed in scenario.answers.items():
            for gid, text in changed.items():
                assert text != answers[nb][gid] and "SOLUTION" not in text, (name, gid)
    maxabs = "03_reductions_and_histograms.ipynb"
    # The cheating attempts make a known mistake behind their cheat.
    assert course_class["tampered_tests"].answers == course_class["no_abs"].answers
    patched = course_class["patched_comparisons"].answers[maxabs]["maxabs_over_channels"]
    assert patched.endswith(course_class["sum_not_max"].answers[maxabs]["maxabs_over_channels"])
    assert "numpy.allclose = lambda *a, **k: True" in patched
    assert course_class["tampered_tests"].edit.replace_cell == {(maxabs, "test_maxabs_over_channels"):
                                                                "print('all tests passed')"}
    assert course_class["deleted_test_cell"].edit.delete_cell == [(maxabs, "test_max_over_channels")]


def test_the_course_class_is_written_from_the_release(tmp_path):
    course = tmp_path / "course"
    for name in ("source", "release", DEMO_FOLDER):
        shutil.copytree(ROOT / name, course / name, ignore=shutil.ignore_patterns("*.png", "*.pdf"))
    written = make_demo_class(course, ["broken_json", "renamed_notebook", "deleted_test_cell", "missing_notebook"])
    assert written == ["broken_json", "renamed_notebook", "deleted_test_cell", "missing_notebook"]
    submitted = course / "submitted"
    assert (submitted / "broken_json" / "lab" / "01_data_and_model.ipynb").read_text() == BROKEN_JSON
    assert (submitted / "renamed_notebook" / "lab" / "01_data_and_model (1).ipynb").is_file()
    assert not (submitted / "renamed_notebook" / "lab" / "01_data_and_model.ipynb").exists()
    assert "test_max_over_channels" not in _cells(submitted / "deleted_test_cell" / "lab" /
                                                  "03_reductions_and_histograms.ipynb")
    assert sorted(p.name for p in (submitted / "missing_notebook" / "lab").glob("*.ipynb")) == [
        "01_data_and_model.ipynb", "03_reductions_and_histograms.ipynb"]
