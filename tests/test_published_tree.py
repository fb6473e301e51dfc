"""The published student tree works on its own (``course publish``), with nothing of the instructor's side.

Each notebook runs in a kernel started as ``python -I -S`` with an explicit ``sys.path``: the published tree
first, then the virtual environment's site-packages *without* its ``.pth`` files, so the editable installs of
the course checkout (``-e .``, ``-e ./instructor``) cannot import this repository's ``helpers``,
``beyond`` or ``course_tools``. The first cell of every run proves it: ``course_tools`` (and, before the
homework, ``beyond``) cannot be found, and ``helpers`` comes from the published tree.

These tests run every release notebook twice and every companion once (about 2-3 minutes on 2 cores).
"""

from __future__ import annotations

import json
import os
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from course_tools.publish import publish

ROOT = Path(__file__).resolve().parents[1]
KERNEL = "saliency-student-tree"
#: Generous: the machine may be busy with other notebooks.
CELL_TIMEOUT = 300

pytestmark = pytest.mark.slow


def _install_isolated_kernel(folder: Path, tree: Path, monkeypatch) -> None:
    """A kernelspec whose kernel sees only ``tree`` and the environment's third-party packages."""
    launcher = folder / "launch_isolated_kernel.py"
    launcher.write_text(
        "import sys\n"
        "tree, site_packages = sys.argv.pop(1), sys.argv.pop(1)\n"
        "sys.path.insert(0, tree)\n"
        "sys.path.append(site_packages)   # no .pth files: the checkout's editable installs stay off\n"
        "from ipykernel import kernelapp\n"
        "kernelapp.launch_new_instance()\n")
    spec = folder / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-I", "-S", str(launcher), str(tree), sysconfig.get_paths()["purelib"],
            "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(folder / "jupyter"))


def _isolation_cell(tree: Path, absent: list[str]) -> nbformat.NotebookNode:
    return nbformat.v4.new_code_cell(
        "import importlib.util, pathlib\n"
        f"for name in {absent!r}:\n"
        "    assert importlib.util.find_spec(name) is None, f'{name} must not be importable from the student tree'\n"
        "import helpers\n"
        f"assert pathlib.Path(helpers.__file__).resolve().is_relative_to(pathlib.Path({str(tree.resolve())!r})), "
        "helpers.__file__\n"
        "print('isolated:', helpers.__file__)")


def _kernel_env(data_file: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "MPLBACKEND"}
    env.update(SALIENCY_DATA=str(data_file), SALIENCY_WEIGHTS=os.environ.get("SALIENCY_WEIGHTS", "untrained"),
               SALIENCY_QUICK="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg")
    return env


def _run(path: Path, tree: Path, absent: list[str], data_file: Path) -> list[nbformat.NotebookNode]:
    """Run ``path`` (inside ``tree``) in the isolated kernel; return its executed cells (without the check)."""
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, _isolation_cell(tree, absent))
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name=KERNEL, allow_errors=True,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute(env=_kernel_env(data_file))
    first = nb.cells[0]
    assert not [o for o in first.outputs if o.output_type == "error"], f"the tree is not isolated: {first.outputs}"
    assert "isolated:" in "".join(o.get("text", "") for o in first.outputs)
    return nb.cells[1:]


def _errors(cells: list) -> list[tuple[int, str, str]]:
    return [(index, out.ename, out.evalue) for index, cell in enumerate(cells) if cell.cell_type == "code"
            for out in cell.outputs if out.output_type == "error"]


def _assigned_names(source: str) -> set[str]:
    """Names a cell's top-level statements bind (what later cells miss when it fails)."""
    import ast

    names = set()
    for node in ast.parse(source).body:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                names.add(sub.id)
            elif isinstance(sub, (ast.FunctionDef, ast.ClassDef)):
                names.add(sub.name)
    return names


def _failures_not_caused_by_an_exercise(cells: list) -> list[tuple[int, str, str]]:
    """Errors other than an unanswered exercise's NotImplementedError and what it causes: a NameError for a name
    that a failed cell would have defined, or a failing visible test of that exercise (a test cell after the
    answer cell whose code raised NotImplementedError)."""
    import re

    missing: set[str] = set()
    unanswered = False    # the exercise of the latest answer cell raised NotImplementedError (there or in its tests)
    unexplained = []
    for index, cell in enumerate(cells):
        if cell.cell_type != "code":
            continue
        grading = cell.metadata.get("nbgrader", {})
        errors = [(out.ename, out.evalue) for out in cell.outputs if out.output_type == "error"]
        if grading.get("solution"):
            unanswered = False
        unanswered |= any(name == "NotImplementedError" for name, _ in errors)
        for name, value in errors:
            undefined = re.fullmatch(r"name '(\w+)' is not defined", value)
            explained = (name == "NotImplementedError" or (name == "NameError" and undefined and undefined[1] in missing)
                         or (grading.get("grade") and not grading.get("solution") and unanswered))
            if not explained:
                unexplained.append((index, name, value))
        if errors:
            missing |= _assigned_names(cell.source)
    return unexplained


def _paste_solutions(release: Path, source: Path) -> None:
    """Put the source notebook's answer cells into the release notebook's (matched by nbgrader's grade_id)."""
    answers = {cell.metadata["nbgrader"]["grade_id"]: cell.source
               for cell in nbformat.read(source, as_version=4).cells
               if cell.metadata.get("nbgrader", {}).get("solution")}
    nb = nbformat.read(release, as_version=4)
    pasted = 0
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cell.metadata.get("nbgrader", {}).get("solution") and grade_id in answers:
            cell.source = answers[grade_id]
            pasted += 1
    assert pasted == len(answers) > 0, f"{release.name}: {pasted} of {len(answers)} answer cells found"
    nbformat.write(nb, release)


@pytest.fixture(scope="module")
def isolation_works():
    """The check is not vacuous: in the test's own interpreter the instructor package *is* importable."""
    import importlib.util

    assert importlib.util.find_spec("course_tools") is not None


def _publish(tmp_path: Path, monkeypatch, after: str | None) -> Path:
    tree = tmp_path / "student"
    publish(ROOT, tree, after, log=lambda line: None)
    _install_isolated_kernel(tmp_path, tree, monkeypatch)
    return tree


RELEASED = sorted((ROOT / "release").glob("*/*.ipynb"))


@pytest.mark.parametrize("release", RELEASED, ids=lambda p: p.name)
def test_release_notebooks_run_from_the_student_tree_alone(release, tmp_path, monkeypatch, data_file,
                                                           isolation_works):
    tree = _publish(tmp_path, monkeypatch, after=None)
    notebook = tree / release.parent.name / release.name
    absent = ["course_tools", "beyond"]

    # Unanswered: every cell runs, except those that reach an exercise, which stop at its NotImplementedError
    # (and cells that use what such a cell would have defined).
    cells = _run(notebook, tree, absent, data_file)
    assert "NotImplementedError" in {name for _, name, _ in _errors(cells)}, "unanswered exercises must say so"
    assert _failures_not_caused_by_an_exercise(cells) == []

    # Answered with the source solutions: every visible test passes, nothing fails.
    _paste_solutions(notebook, ROOT / "source" / release.parent.name / release.name)
    assert _errors(_run(notebook, tree, absent, data_file)) == []


def test_unexplained_failures_are_told_apart():
    def cell(source, errors=(), **grading):
        made = nbformat.v4.new_code_cell(source)
        made.outputs = [nbformat.v4.new_output("error", ename=n, evalue=v, traceback=[]) for n, v in errors]
        if grading:
            made.metadata["nbgrader"] = grading
        return made

    cells = [cell("def f():\n    raise NotImplementedError()", solution=True),
             cell("saliency = f()", [("NotImplementedError", "")]),
             cell("plot(saliency)", [("NameError", "name 'saliency' is not defined")]),
             cell("assert False, 'figure missing'", [("AssertionError", "figure missing")], grade=True, solution=False),
             cell("plot(typo)", [("NameError", "name 'typo' is not defined")]),
             cell("x = 1", solution=True),
             cell("assert x == 2", [("AssertionError", "")], grade=True, solution=False),
             cell("f(1, 2)", [("TypeError", "bad")])]
    assert _failures_not_caused_by_an_exercise(cells) == [(4, "NameError", "name 'typo' is not defined"),
                                                          (6, "AssertionError", ""), (7, "TypeError", "bad")]


def test_companions_published_after_the_homework_run_from_the_student_tree_alone(tmp_path, monkeypatch,
                                                                                   data_file, isolation_works):
    tree = _publish(tmp_path, monkeypatch, after="homework")
    companions = sorted((tree / "notebooks").glob("*.ipynb"))
    assert len(companions) == len(list((ROOT / "notebooks").glob("*.ipynb")))
    assert (tree / "beyond" / "__init__.py").is_file()
    for notebook in companions:
        assert _errors(_run(notebook, tree, ["course_tools"], data_file)) == [], notebook.name
