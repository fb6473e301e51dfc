"""Example submissions: the instructor's solutions, typical mistakes, and broken notebooks.

They are made from the released notebooks exactly as a student would make
them (answer cells filled in, everything else as released), so that grading
can be tried, tested and benchmarked on a realistic class:
``course demo-class`` writes them into ``submitted/``.

Every assignment gets two students automatically: ``solutions_<assignment>``
(the solutions: full marks) and ``untouched_<assignment>`` (the release as
handed out: 0). Any other student is declared beside the assignment, in
``demo/<assignment>.toml`` at the course root: outside ``source/``, because
nbgrader hands ``source/<assignment>/`` to students and these files quote the
solutions (``course publish`` never ships ``demo/``). One table per student::

    [no_abs]                                   # the student's name (a folder of submitted/)
    only = ["03_reductions_and_histograms.ipynb"]   # hand in only these notebooks (default: all)

    [[no_abs.answer]]                          # one answer cell, changed from the solution
    cell = "maxabs_over_channels"              # its grade_id
    replace = [["gradients.abs().max", "gradients.max"]]   # [old, new], in order; old must be there
    prepend = "import os\\n"                    # code put before the (changed) solution

Other keys of a student's table: ``blank = true`` (the release as handed out),
``notebook`` (where a grade_id used by several notebooks is meant; an
``answer`` table may name its own), and edits of the written files, applied
in this order: ``replace_cell = {grade_id = "new source"}`` (any cell, e.g. a
test cell), ``delete_cell = "grade_id"`` (or a list), ``break_json =
"notebook.ipynb"`` (or a list: the file is no longer JSON) and ``rename =
{"old.ipynb" = "new name.ipynb"}``. Every name is checked against the
assignment's notebooks when the class is written, and a replacement whose
``old`` text is no longer in the solution stops ``course demo-class`` with
the file, student and key to update.
"""

from __future__ import annotations

import copy
import re
import shutil
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import nbformat

from .nbgrader_cells import grade_id, is_solution
from .paths import CourseError, assignments, source_notebooks

#: The folder of the course root that holds ``<assignment>.toml``, the declared students of each assignment.
DEMO_FOLDER = "demo"
#: What ``break_json`` writes into a notebook file.
BROKEN_JSON = '{"cells": [ this is not json'
#: How a declared student may be named (it becomes a folder of ``submitted/`` and a gradebook id).
SCENARIO_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,127}$")
_SCENARIO_KEYS = ("answer", "blank", "only", "notebook", "replace_cell", "delete_cell", "break_json", "rename")
_ANSWER_KEYS = ("cell", "notebook", "replace", "prepend")


class DemoClassError(CourseError):
    """A ``demo/<assignment>.toml`` that cannot be read, names what is not there, or no longer fits the solution."""


def solution_text(source: str) -> str:
    """The code between the solution markers, as a student would have written it."""
    return "\n".join(line for line in source.splitlines()
                     if "BEGIN SOLUTION" not in line and "END SOLUTION" not in line)


def solutions(root: Path, assignment: str) -> dict[str, dict[str, str]]:
    """notebook name -> {grade_id: the solution's answer}."""
    out: dict[str, dict[str, str]] = {}
    for nb_path in source_notebooks(root, assignment):
        nb = nbformat.read(nb_path, as_version=4)
        out[nb_path.name] = {grade_id(cell): solution_text(cell.source) for cell in nb.cells if is_solution(cell)}
    return out


def _grade_ids(root: Path, assignment: str) -> dict[str, list[str]]:
    """notebook name -> the grade_ids of all its nbgrader cells (answers, tests, read-only cells)."""
    return {path.name: [gid for cell in nbformat.read(path, as_version=4).cells if (gid := grade_id(cell))]
            for path in source_notebooks(root, assignment)}


@dataclass
class Scenario:
    """One example student: how their notebooks differ from the solutions."""

    assignment: str
    answers: dict[str, dict[str, str]] = field(default_factory=dict)   # notebook -> grade_id -> code
    blank: bool = False                                                  # untouched release
    only: tuple[str, ...] | None = None                                  # submit only these notebooks
    edit: Callable[[Path], None] | None = None                           # change the written files


@dataclass
class FileEdits:
    """Changes to a written submission folder, declared in a demo file; called with the folder.

    ``replace_cell`` and ``delete_cell`` hold ``(notebook, grade_id)`` pairs; ``where`` names the declaration
    (file and student) in the error raised when a cell is not in the written notebook.
    """

    where: str
    replace_cell: dict[tuple[str, str], str] = field(default_factory=dict)
    delete_cell: list[tuple[str, str]] = field(default_factory=list)
    break_json: list[str] = field(default_factory=list)
    rename: dict[str, str] = field(default_factory=dict)

    def __call__(self, folder: Path) -> None:
        notebooks = {nb for nb, _ in self.replace_cell} | {nb for nb, _ in self.delete_cell}
        for name in sorted(notebooks):
            path = folder / name
            nb = nbformat.read(path, as_version=4)
            for (target, gid), source in self.replace_cell.items():
                if target == name:
                    self._cells(nb, name, gid, "replace_cell")
                    for cell in nb.cells:
                        if grade_id(cell) == gid:
                            cell.source = source
            for target, gid in self.delete_cell:
                if target == name:
                    self._cells(nb, name, gid, "delete_cell")
                    nb.cells = [cell for cell in nb.cells if grade_id(cell) != gid]
            nbformat.write(nb, path)
        for name in self.break_json:
            (folder / name).write_text(BROKEN_JSON)
        for old, new in self.rename.items():
            (folder / old).rename(folder / new)

    def touched(self) -> dict[str, str]:
        """notebook -> the key of an edit that changes it."""
        return {**{nb: "replace_cell" for nb, _ in self.replace_cell},
                **{nb: "delete_cell" for nb, _ in self.delete_cell},
                **{nb: "break_json" for nb in self.break_json}, **{nb: "rename" for nb in self.rename}}

    def _cells(self, nb: nbformat.NotebookNode, name: str, gid: str, key: str) -> None:
        if not any(grade_id(cell) == gid for cell in nb.cells):
            raise DemoClassError(f"{self.where} {key}: the released {name} has no cell {gid!r}")


# ------------------------------------------------------------------------------------------ reading demo files

def _show(value: Any, limit: int = 80) -> str:
    """The value as written in Python, shortened."""
    shown = repr(value)
    return shown if len(shown) <= limit else shown[:limit - 3] + "..."


class _Declaration:
    """One student's table of a demo file, checked against the assignment's notebooks."""

    def __init__(self, path: str, name: str, table: dict[str, Any], assignment: str,
                 answers: dict[str, dict[str, str]], grade_ids: dict[str, list[str]]) -> None:
        self.where, self.name, self.table, self.assignment = f"{path} [{name}]", name, table, assignment
        self.solutions, self.grade_ids = answers, grade_ids

    def fail(self, key: str, problem: str) -> DemoClassError:
        return DemoClassError(f"{self.where} {key}: {problem}")

    def names(self, key: str, value: Any) -> list[str]:
        """A string or a list of strings."""
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items or not all(isinstance(v, str) and v for v in items):
            raise self.fail(key, f"expected a name or a list of names, got {_show(value)}")
        return items

    def notebook(self, key: str, value: Any) -> str:
        if not isinstance(value, str) or value not in self.grade_ids:
            raise self.fail(key, f"no notebook {value!r} in source/{self.assignment}/ "
                                 f"(there: {', '.join(self.grade_ids)})")
        return value

    def locate(self, key: str, gid: Any, notebook: str | None, *, answer: bool) -> str:
        """The notebook that holds the cell ``gid`` (an answer cell if ``answer``)."""
        kind = "answer cell" if answer else "cell"
        if not isinstance(gid, str) or not gid:
            raise self.fail(key, f"expected a grade_id (a cell's name), got {_show(gid)}")
        cells = {nb: (list(self.solutions[nb]) if answer else ids) for nb, ids in self.grade_ids.items()}
        if notebook is not None:
            if gid not in cells[notebook]:
                raise self.fail(key, f"{notebook} has no {kind} {gid!r} (there: {', '.join(cells[notebook])})")
            return notebook
        holders = [nb for nb, ids in cells.items() if gid in ids]
        if not holders:
            known = sorted({g for ids in cells.values() for g in ids})
            raise self.fail(key, f"no {kind} {gid!r} in source/{self.assignment}/ (there: {', '.join(known)})")
        if len(holders) > 1:
            raise self.fail(key, f"{gid!r} is a cell of {', '.join(holders)}: say which with notebook = \"...\"")
        return holders[0]

    def scenario(self) -> Scenario:
        unknown = sorted(set(self.table) - set(_SCENARIO_KEYS))
        if unknown:
            raise self.fail(unknown[0], f"unknown key (a student's table may hold {', '.join(_SCENARIO_KEYS)})")
        blank = self.table.get("blank", False)
        if not isinstance(blank, bool):
            raise self.fail("blank", f"expected true or false, got {_show(blank)}")
        only = None
        if "only" in self.table:
            only = tuple(self.notebook("only", nb) for nb in self.names("only", self.table["only"]))
        default = self.notebook("notebook", self.table["notebook"]) if "notebook" in self.table else None
        answers = self.answers(default)
        if blank and answers:
            raise self.fail("answer", "a blank student hands in the release untouched: drop blank or the answers")
        edits = self.edits(default)
        for nb, key in {**{nb: "answer" for nb in answers}, **edits.touched()}.items():
            if only is not None and nb not in only:
                raise self.fail(key, f"changes {nb}, which this student does not hand in (only = {list(only)})")
        return Scenario(self.assignment, answers, blank=blank, only=only, edit=edits if edits.touched() else None)

    def answers(self, default: str | None) -> dict[str, dict[str, str]]:
        tables = self.table.get("answer", [])
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            raise self.fail("answer", f"expected [[{self.name}.answer]] tables, one per answer cell")
        out: dict[str, dict[str, str]] = {}
        for number, table in enumerate(tables, 1):
            key = f"answer {number}"
            unknown = sorted(set(table) - set(_ANSWER_KEYS))
            if unknown:
                raise self.fail(key, f"unknown key {unknown[0]!r} (an answer holds {', '.join(_ANSWER_KEYS)})")
            notebook = self.notebook(f"{key} notebook", table["notebook"]) if "notebook" in table else default
            if "cell" not in table:
                raise self.fail(key, "cell = \"<grade_id>\" is missing: which answer cell does it change?")
            gid = table["cell"]
            notebook = self.locate(f"{key} cell", gid, notebook, answer=True)
            if gid in out.get(notebook, {}):
                raise self.fail(key, f"{gid!r} of {notebook} is changed twice: one answer table per cell")
            if "replace" not in table and "prepend" not in table:
                raise self.fail(key, "changes nothing: give replace = [[old, new], ...] and/or prepend = \"...\"")
            out.setdefault(notebook, {})[gid] = self.answer(key, table, self.solutions[notebook][gid], gid, notebook)
        return out

    def answer(self, key: str, table: dict[str, Any], text: str, gid: str, notebook: str) -> str:
        pairs = table.get("replace", [])
        if not isinstance(pairs, list) or not all(
                isinstance(p, list) and len(p) == 2 and all(isinstance(s, str) for s in p) and p[0] for p in pairs):
            raise self.fail(f"{key} replace", "expected a list of [old, new] pairs of text, old not empty")
        for index, (old, new) in enumerate(pairs):
            if old not in text:
                raise self.fail(f"{key} replace[{index}]", f"the solution of {gid!r} in {notebook} no longer "
                                f"contains {_show(old)}: the solution changed; update this student")
            text = text.replace(old, new)
        prepend = table.get("prepend", "")
        if not isinstance(prepend, str):
            raise self.fail(f"{key} prepend", f"expected text, got {_show(prepend)}")
        return prepend + text

    def edits(self, default: str | None) -> FileEdits:
        edits = FileEdits(self.where)
        replace = self.table.get("replace_cell", {})
        if not isinstance(replace, dict) or not all(isinstance(s, str) for s in replace.values()):
            raise self.fail("replace_cell", "expected a table of grade_id = \"new source\"")
        for gid, source in replace.items():
            edits.replace_cell[(self.locate("replace_cell", gid, default, answer=False), gid)] = source
        if "delete_cell" in self.table:
            edits.delete_cell = [(self.locate("delete_cell", gid, default, answer=False), gid)
                                 for gid in self.names("delete_cell", self.table["delete_cell"])]
        if "break_json" in self.table:
            edits.break_json = [self.notebook("break_json", nb) for nb in self.names("break_json",
                                                                                     self.table["break_json"])]
        rename = self.table.get("rename", {})
        if not isinstance(rename, dict):
            raise self.fail("rename", "expected a table of \"old.ipynb\" = \"new name\"")
        for old, new in rename.items():
            self.notebook("rename", old)
            if not isinstance(new, str) or not new.strip() or "/" in new or "\\" in new or new in (".", ".."):
                raise self.fail("rename", f"{old!r} must become a file name (no folders), got {_show(new)}")
            edits.rename[old] = new
        return edits


def read_demo_file(root: Path, path: Path) -> dict[str, Scenario]:
    """The students declared in one ``demo/<assignment>.toml``: name -> scenario.

    Parameters
    ----------
    root : pathlib.Path
        The course root: ``source/<assignment>/`` holds the notebooks the declarations name.
    path : pathlib.Path
        The demo file; its name (without ``.toml``) is the assignment.

    Raises
    ------
    DemoClassError
        If the file is not TOML, its assignment is not in ``source/``, or a declaration is wrong (an unknown
        key, notebook or cell, or a replacement whose old text is no longer in the solution): the message
        names the file, the student and the key.
    """
    root, path = Path(root), Path(path)
    if path.suffix != ".toml":
        raise DemoClassError(f"path must be a demo file named <assignment>.toml, got {path}")
    shown = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
    assignment = path.stem
    if assignment not in assignments(root):
        raise DemoClassError(f"{shown}: no assignment {assignment!r} in source/ (there: "
                             f"{', '.join(assignments(root)) or 'none'}); rename or remove the file")
    try:
        declared = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise DemoClassError(f"{shown} is not valid TOML: {err}") from err
    answers, grade_ids = solutions(root, assignment), _grade_ids(root, assignment)
    automatic = {f"{prefix}_{assignment}" for prefix in ("solutions", "untouched")}
    table = {}
    for name, value in declared.items():
        if not SCENARIO_NAME.match(name):
            raise DemoClassError(f"{shown} [{name}]: a student's name starts with a letter and holds only letters, "
                                 "digits, '_' and '-'")
        if name in automatic:
            raise DemoClassError(f"{shown} [{name}]: every assignment has this student already; choose another name")
        if not isinstance(value, dict):
            raise DemoClassError(f"{shown} {name}: expected a table [{name}] (one per student), got "
                                 f"{type(value).__name__}")
        table[name] = _Declaration(shown, name, value, assignment, answers, grade_ids).scenario()
    return table


def scenarios(root: Path) -> dict[str, Scenario]:
    """The example class: name -> scenario.

    Every assignment found in ``source/`` gets ``solutions_<assignment>`` (full marks) and
    ``untouched_<assignment>`` (the release as handed out: 0); then come the students declared in
    ``demo/<assignment>.toml`` (see the module's description), assignment by assignment.

    Raises
    ------
    DemoClassError
        If a demo file is wrong (see :func:`read_demo_file`) or two of them declare the same student.
    """
    root = Path(root)
    found = assignments(root)
    table: dict[str, Scenario] = {}
    for assignment in found:
        table[f"solutions_{assignment}"] = Scenario(assignment)
        table[f"untouched_{assignment}"] = Scenario(assignment, blank=True)
    folder = root / DEMO_FOLDER
    files = sorted(folder.glob("*.toml")) if folder.is_dir() else []
    files.sort(key=lambda p: found.index(p.stem) if p.stem in found else -1)   # unknown ones first: they fail
    for path in files:
        for name, scenario in read_demo_file(root, path).items():
            if name in table:
                raise DemoClassError(f"{DEMO_FOLDER}/{path.name} [{name}]: the {table[name].assignment} has a student "
                                     "of that name already; choose another name")
            table[name] = scenario
    return table


# ----------------------------------------------------------------------------------------- writing the class

def write_submission(root: Path, student: str, scenario: Scenario) -> Path:
    """Write one student's submission into ``submitted/<student>/<assignment>/``.

    Raises
    ------
    DemoClassError
        If ``student`` is not a plain name (letters, digits, ``_``, ``-``) or ``scenario`` not a :class:`Scenario`.
    """
    if not isinstance(student, str) or not SCENARIO_NAME.match(student):
        raise DemoClassError(f"student must start with a letter and hold only letters, digits, '_' and '-', "
                             f"got {student!r}")
    if not isinstance(scenario, Scenario):
        raise DemoClassError(f"scenario must be a Scenario, got {type(scenario).__name__}")
    folder = root / "submitted" / student / scenario.assignment
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for nb_path in sorted((root / "release" / scenario.assignment).glob("*.ipynb")):
        if scenario.only is not None and nb_path.name not in scenario.only:
            continue
        nb = nbformat.read(nb_path, as_version=4)
        if not scenario.blank:
            answers = {**solutions(root, scenario.assignment)[nb_path.name],
                       **scenario.answers.get(nb_path.name, {})}
            for cell in nb.cells:
                if is_solution(cell) and grade_id(cell) in answers:
                    cell.source = answers[grade_id(cell)]
        nbformat.write(copy.deepcopy(nb), folder / nb_path.name)
    if scenario.edit is not None:
        scenario.edit(folder)
    (folder / "timestamp.txt").write_text("2026-11-20 12:00:00.000000 UTC")
    return folder


def make_demo_class(root: Path, names: list[str] | None = None, copies: int = 1) -> list[str]:
    """Write the example class (or the named scenarios); ``copies`` > 1 repeats them as student_2, ...

    Raises
    ------
    DemoClassError
        If a demo file is wrong (nothing is written then), or ``names`` or ``copies`` is.
    """
    if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
        raise DemoClassError(f"copies must be a whole number of at least 1, got {copies!r}")
    if names is not None and (isinstance(names, str) or not all(isinstance(n, str) for n in names)):
        raise DemoClassError(f"names must be a list of scenario names, got {names!r}")
    table = scenarios(root)
    chosen = names or list(table)
    unknown = [name for name in chosen if name not in table]
    if unknown:
        raise DemoClassError(f"names: no demo scenario {', '.join(map(repr, unknown))} (there: {', '.join(table)})")
    written = []
    for copy_index in range(copies):
        for name in chosen:
            student = name if copy_index == 0 else f"{name}_{copy_index + 1}"
            write_submission(root, student, table[name])
            written.append(student)
    return written


__all__ = ["DEMO_FOLDER", "DemoClassError", "FileEdits", "Scenario", "make_demo_class", "read_demo_file",
           "scenarios", "solutions", "write_submission"]
