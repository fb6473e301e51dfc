"""The committed student versions are exactly what nbgrader makes, and leak nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest

from course_tools.notebooks import expected_outputs, outputs_problems, strip_outputs
from course_tools.paths import companion_notebooks, source_notebooks
from course_tools.release import _tree_differences, leak_problems, release_differences

ROOT = Path(__file__).resolve().parents[1]


def test_release_is_what_nbgrader_generates():
    assert release_differences(ROOT) == []


def test_release_leaks_nothing():
    assert leak_problems(ROOT) == []


def test_committed_notebooks_carry_no_outputs():
    notebooks = source_notebooks(ROOT) + companion_notebooks(ROOT) + sorted((ROOT / "release").glob("*/*.ipynb"))
    assert len(notebooks) >= 8
    problems = [p for nb in notebooks for p in outputs_problems(nb)]
    assert problems == []


def test_every_source_notebook_has_hidden_tests_and_release_has_none():
    for nb_path in source_notebooks(ROOT):
        text = nb_path.read_text()
        assert "BEGIN HIDDEN TESTS" in text, nb_path
        released = ROOT / "release" / nb_path.parent.name / nb_path.name
        assert released.is_file(), released
        assert "HIDDEN" not in released.read_text()
        assert "NotImplementedError" in released.read_text()


def test_leak_check_catches_a_solution_line(tmp_path):
    course = tmp_path / "course"
    shutil.copytree(ROOT / "source", course / "source")
    shutil.copytree(ROOT / "release", course / "release")
    target = course / "release" / "lab" / "01_data_and_model.ipynb"
    nb = nbformat.read(target, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and "NotImplementedError" in c.source)
    cell.source = cell.source.replace("raise NotImplementedError()", "return scores.gather(1, y.view(-1, 1)).squeeze(1)")
    nbformat.write(nb, target)
    (course / "release" / "lab" / "answers.npz").write_bytes(b"x")
    problems = leak_problems(course)
    assert any("solution line" in p for p in problems)
    assert any("answers.npz" in p for p in problems)


def test_tree_differences_reports_missing_extra_and_changed(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    (a / "lab").mkdir(parents=True)
    (b / "lab").mkdir(parents=True)
    (a / "lab" / "x.ipynb").write_text("1")
    (b / "lab" / "x.ipynb").write_text("2")
    (a / "lab" / "only_expected.ipynb").write_text("")
    (b / "lab" / "stray.ipynb").write_text("")
    (b / "lab" / "smoothgrad_maps.png").write_bytes(b"x")              # left by running the notebook in place
    (b / "lab" / ".ipynb_checkpoints").mkdir()
    (b / "lab" / ".ipynb_checkpoints" / "x-checkpoint.ipynb").write_text("3")
    problems = _tree_differences(a, b)
    assert len(problems) == 3
    assert any("missing" in p for p in problems)
    assert any("not generated" in p for p in problems)
    assert any("differs" in p for p in problems)


def test_strip_moves_check_cell_text_to_metadata_and_drops_everything_else(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(1)", execution_count=3, outputs=[
            nbformat.v4.new_output("stream", name="stdout", text="1\n"),
            nbformat.v4.new_output("stream", name="stderr", text="warning\n")]),
        nbformat.v4.new_code_cell("x", execution_count=4, outputs=[
            nbformat.v4.new_output("execute_result", data={"text/plain": "2"}, execution_count=4)]),
    ])
    stripped = strip_outputs(nb)
    assert all(c.outputs == [] and c.execution_count is None for c in stripped.cells)
    assert stripped.cells[0].metadata["expected_output"] == "1\n"
    assert [o.text for o in expected_outputs(stripped.cells[0])] == ["1\n"]
    assert nb.cells[1].outputs, "strip_outputs must not modify its input"
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    assert len(outputs_problems(path)) == 3  # two cells with outputs, and the check cell lacks its expected text
    nbformat.write(stripped, path)
    assert outputs_problems(path) == []


def test_a_refused_release_leaves_the_old_one_in_place(tmp_path, monkeypatch):
    import subprocess

    from course_tools import release

    course = tmp_path / "course"
    shutil.copytree(ROOT / "release", course / "release")
    shutil.copytree(ROOT / "source", course / "source")   # the assignments are the folders of source/
    before = sorted(p.relative_to(course) for p in (course / "release").rglob("*"))

    def refusing_nbgrader(root, *args):
        # What nbgrader generate_assignment --force does when the gradebook has submissions:
        # it empties the release folder first, then fails.
        shutil.rmtree(Path(root) / "release" / args[1])
        (Path(root) / "release" / args[1]).mkdir()
        return subprocess.CompletedProcess(args, 1, "", "RuntimeError: Cannot add or remove cells for notebook "
                                           "'01_data_and_model' because there are submissions associated with it")

    monkeypatch.setattr(release, "nbgrader", refusing_nbgrader)
    with pytest.raises(RuntimeError, match="(?s)release/lab is unchanged.*already holds submissions of .lab."):
        release.generate_release(course, log=lambda line: None)
    assert sorted(p.relative_to(course) for p in (course / "release").rglob("*")) == before
    assert (course / "release" / "lab" / "01_data_and_model.ipynb").read_bytes() == \
        (ROOT / "release" / "lab" / "01_data_and_model.ipynb").read_bytes()


def test_execute_notebook_keeps_figures_only_when_asked(tmp_path):
    from course_tools.notebooks import execute_notebook

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import matplotlib.pyplot as plt\nplt.plot([0, 1], [1, 0])\nprint('drawn')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "plot.ipynb"
    nbformat.write(nb, path)
    for figures, expected in ((False, 0), (True, 1)):
        out = tmp_path / f"out_{figures}.ipynb"
        result = execute_notebook(path, cwd=tmp_path, write_to=out, figures=figures)
        assert result.error is None
        outputs = nbformat.read(out, as_version=4).cells[0].outputs
        assert any(o.output_type == "stream" and "drawn" in o.text for o in outputs)
        pngs = [o for o in outputs if "data" in o and "image/png" in o.data]
        assert len(pngs) == expected, f"figures={figures}: {len(pngs)} PNG outputs"


@pytest.mark.parametrize("word", __import__("course_tools.release", fromlist=["_FORBIDDEN"])._FORBIDDEN)
def test_every_forbidden_word_of_the_release_is_caught(word, tmp_path):
    """Each word of the release scan's list, planted alone in a released notebook, is reported."""
    course = tmp_path / "course"
    shutil.copytree(ROOT / "source", course / "source")
    shutil.copytree(ROOT / "release", course / "release")
    path = course / "release" / "lab" / "01_data_and_model.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(f"x = 1  # {word}"))
    nbformat.write(nb, path)
    assert leak_problems(course) == [f"release/lab/01_data_and_model.ipynb: contains {word!r}"]
