"""``course_tools.hidden_code``: what a test cell runs in a student's kernel, without its mistake builders."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from course_tools.grading import rebuild_notebook
from course_tools.hidden_code import grading_source, grading_sources

ROOT = Path(__file__).resolve().parents[1]

CELL = '''# Tests (read-only).
### BEGIN HIDDEN TESTS
_SEED = 7


def _variant(copies, divide_by):
    """The solution with one typical mistake."""
    return _helper(copies) / divide_by


def _helper(copies):
    return copies


checks.compare("seeded", solve(_SEED), cell="test", mistakes=lambda: {"one": (_variant(1, 1), "one copy")})
### END HIDDEN TESTS
assert solve(0) == 0, "visible test"   # a comment the student sees
'''


def test_mistake_builders_and_what_only_they_use_are_taken_out():
    out = grading_source(CELL)
    assert "mistakes" not in out and "_variant" not in out and "_helper" not in out
    assert "checks.compare('seeded', solve(_SEED), cell='test')" in out and "_SEED = 7" in out
    assert out.startswith("# Tests (read-only).\n### BEGIN HIDDEN TESTS\n")
    assert out.endswith("### END HIDDEN TESTS\nassert solve(0) == 0, \"visible test\"   # a comment the student sees\n")


def test_a_definition_read_by_kept_code_stays():
    cell = CELL.replace("checks.compare(", "_helper(2)\nchecks.compare(")
    out = grading_source(cell)
    assert "def _helper" in out and "_variant" not in out
    assert "def _variant" in grading_source(CELL, used_elsewhere={"_variant"})   # read by another cell


def test_cells_without_mistakes_or_that_do_not_parse_are_unchanged():
    assert grading_source("### BEGIN HIDDEN TESTS\nchecks.compare('a', f(), cell='t')\n### END HIDDEN TESTS\n# c\n") \
        == "### BEGIN HIDDEN TESTS\nchecks.compare('a', f(), cell='t')\n### END HIDDEN TESTS\n# c\n"
    broken = "### BEGIN HIDDEN TESTS\n  checks.compare('a', 1, cell='t', mistakes=m)\n### END HIDDEN TESTS\n"
    assert grading_source(broken) == broken
    assert grading_source("compare('a', 1, mistakes=_m)\n_m = lambda: {}\n") == "compare('a', 1)\n"


def test_a_builder_shared_by_two_test_cells_goes_from_both():
    first = "def _mistakes():\n    return {}\ncompare('a', f(), mistakes=_mistakes)\n"
    second = "compare('b', g(), mistakes=_mistakes)\n"
    out = grading_sources([first, second, "print(f())"], [0, 1])
    assert out == {0: "compare('a', f())\n", 1: "compare('b', g())\n"}


def test_grading_source_refuses_what_is_not_text():
    with pytest.raises(TypeError, match="source must be a str"):
        grading_source(None)


@pytest.mark.parametrize("notebook, builder", [("homework/04_smoothgrad.ipynb", "_smoothgrad_variant"),
                                               ("lab/03_reductions_and_histograms.ipynb", "_channel_mistakes"),
                                               ("lab/02_vanilla_saliency.ipynb", "argmax")])
def test_the_courses_hidden_tests_reach_the_kernel_without_their_mistakes(notebook, builder):
    source = nbformat.read(ROOT / "source" / notebook, as_version=4)
    assert builder in "".join(c.source for c in source.cells)
    rebuilt, problems = rebuild_notebook(source, nbformat.read(ROOT / "release" / notebook, as_version=4))
    code = "".join(c.source for c in rebuilt.cells if c.cell_type == "code")
    assert problems == [] and builder not in code and "mistakes=" not in code
    assert code.count("checks.compare(") == "".join(c.source for c in source.cells).count("checks.compare(")
