"""``course new``: a new assignment's source notebook with the course's conventions (no grading here; the
whole round trip is in ``test_authoring_e2e.py``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest

from course_tools import cli
from course_tools.colab import is_colab_cell
from course_tools.paths import CourseError, assignments
from course_tools.scaffold import new_assignment

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def course(tmp_path):
    shutil.copy2(ROOT / "nbgrader_config.py", tmp_path)
    shutil.copy2(ROOT / "course.toml", tmp_path)
    shutil.copytree(ROOT / "source", tmp_path / "source", ignore=shutil.ignore_patterns("*.png", "*.pdf"))
    return tmp_path


def test_the_new_notebook_comes_last_and_follows_the_conventions(course):
    path = new_assignment(course, "extra")
    assert path == course / "source" / "extra" / "05_extra.ipynb"
    assert assignments(course) == ["lab", "homework", "extra"]
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert is_colab_cell(nb.cells[0]) and nb.cells[0].metadata["nbgrader"]["locked"]
    meta = {c.metadata.get("nbgrader", {}).get("grade_id"): c.metadata.get("nbgrader") for c in nb.cells}
    assert meta["setup"]["locked"] and not meta["setup"]["grade"]
    assert meta["correct_class_probability"]["solution"]
    assert meta["test_correct_class_probability"]["grade"] and meta["test_correct_class_probability"]["points"] == 2
    setup = next(c.source for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "setup")
    assert "helpers.load_model()" in setup and '"05_extra")' in setup
    test = next(c.source for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") ==
                "test_correct_class_probability")
    hidden = test.split("### BEGIN HIDDEN TESTS")[1].split("### END HIDDEN TESTS")[0]
    assert 'cell="test_correct_class_probability"' in hidden and "mistakes=lambda:" in hidden
    assert "assert" in test.split("### END HIDDEN TESTS")[1]


def test_the_cli_writes_it_and_refuses_a_taken_or_bad_name(course, monkeypatch, capsys):
    monkeypatch.chdir(course)
    assert cli.main(["new", "bonus", "--title", "Bonus: gradient x input"]) == 0
    nb = nbformat.read(course / "source" / "bonus" / "05_bonus.ipynb", as_version=4)
    assert nb.cells[1].source.startswith("# Bonus: gradient x input")
    capsys.readouterr()
    for argv, words in ((["new", "bonus"], "exists already"), (["new", "lab"], "exists already"),
                        (["new", "9lives"], "must start with a letter"), (["new", "a b"], "must start with a letter")):
        assert cli.main(argv) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and words in err and "\n" not in err
    assert assignments(course) == ["lab", "homework", "bonus"]


def test_without_course_toml_nothing_is_written(course):
    (course / "course.toml").unlink()
    with pytest.raises(CourseError, match="course.toml is missing"):
        new_assignment(course, "extra")
    assert not (course / "source" / "extra").exists()
    assert not (course / "demo" / "extra.toml").exists()


def test_the_example_student_makes_the_mistake_the_hidden_check_declares(course):
    """demo/<assignment>.toml's student hands in the example answer with the declared mistake: scores, not
    probabilities (run here on a small stand-in network)."""
    import torch

    from course_tools.demo_class import read_demo_file, scenarios, solutions

    new_assignment(course, "extra")
    assert "extra.toml" in {p.name for p in (course / "demo").iterdir()}
    (student, scenario), = read_demo_file(course, course / "demo" / "extra.toml").items()
    assert student == "scores_not_probabilities_extra" and student in scenarios(course)
    notebook = "05_extra.ipynb"
    wrong, right = scenario.answers[notebook]["correct_class_probability"], \
        solutions(course, "extra")[notebook]["correct_class_probability"]
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5))
    X, y = torch.randn(3, 3, 2, 2), torch.tensor([0, 4, 2])
    values = {}
    for name, code in (("wrong", wrong), ("right", right)):
        namespace = {"torch": torch}
        exec(compile(code, name, "exec"), namespace)
        values[name] = namespace["correct_class_probability"](X, y, model).detach()
    # The hidden check's declared mistake (scaffold.EXAMPLE_TEST): model(Xc).gather(1, yc.view(-1, 1)).squeeze(1)
    declared = model(X).gather(1, y.view(-1, 1)).squeeze(1).detach()
    assert torch.equal(values["wrong"], declared)
    assert torch.allclose(values["right"], torch.softmax(model(X), dim=1).gather(1, y.view(-1, 1)).squeeze(1))
    assert not torch.allclose(values["right"], declared)


def test_an_earlier_demo_file_of_the_same_name_is_kept_and_nothing_written(course):
    (course / "demo").mkdir()
    (course / "demo" / "extra.toml").write_text("[mine]\n")
    with pytest.raises(CourseError, match=r"demo/extra.toml exists already"):
        new_assignment(course, "extra")
    assert (course / "demo" / "extra.toml").read_text() == "[mine]\n" and not (course / "source" / "extra").exists()
