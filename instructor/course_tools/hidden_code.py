"""The hidden tests as the grader runs them: without the code that builds the typical mistakes.

A hidden test declares its typical wrong answers with ``checks.compare(..., mistakes=...)``: a function that
only *record* mode calls, often built from the solution's own pieces (the homework's ``_smoothgrad_variant``
is SmoothGrad itself when it is called with the right arguments). In *grade* mode the student's kernel runs the
hidden test, and everything it defines is within the reach of the student's code, which could hand the grader
what such a builder computes instead of its own result. So before a test cell runs in a student's kernel,
:func:`grading_source` takes out every ``mistakes=`` argument and the functions only they used; the grader
judges the mistakes from the arrays recorded in the references, as before.
"""

from __future__ import annotations

import ast

#: nbgrader's markers of the hidden part of a test cell.
BEGIN, END = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"
_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def names_used(source: str) -> set[str]:
    """Every name that ``source`` reads (empty when it is not valid Python)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set()
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}


def grading_sources(sources: list[str], tests: list[int]) -> dict[int, str]:
    """The grading version (:func:`grading_source`) of each test cell of one instructor's notebook.

    Parameters
    ----------
    sources : list of str
        The notebook's code cells.
    tests : list of int
        Indices (into ``sources``) of its test cells.

    Returns
    -------
    dict
        Index -> the source to run in a student's kernel. A definition that another cell reads (once that
        cell's ``mistakes=`` arguments are gone) is kept.
    """
    read = [names_used(_without_mistake_arguments(source)) for source in sources]
    out = {}
    for index in tests:
        elsewhere = set().union(*(names for j, names in enumerate(read) if j != index))
        out[index] = grading_source(sources[index], elsewhere)
    return out


def _without_mistake_arguments(source: str) -> str:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return source
    return source if _drop_mistake_arguments(tree) is None else ast.unparse(tree)


def grading_source(source: str, used_elsewhere: set[str] = frozenset()) -> str:
    """``source`` of a test cell without its mistake builders (unchanged when it has none).

    Parameters
    ----------
    source : str
        The instructor's test cell.
    used_elsewhere : set of str
        Names the instructor's other cells of the notebook read (a function they use is kept).

    Returns
    -------
    str
        The hidden part of the cell (between nbgrader's markers, or the whole cell without markers) with every
        ``mistakes=`` keyword argument removed, and every top-level function, class or lambda that only the
        removed code used (directly or through other removed definitions) deleted. Code that does not parse
        is returned unchanged.
    """
    if not isinstance(source, str):
        raise TypeError(f"source must be a str, got {type(source).__name__}")
    lines = source.splitlines(keepends=True)
    begin = next((i for i, line in enumerate(lines) if BEGIN in line), None)
    end = next((i for i, line in enumerate(lines) if END in line), None)
    if begin is None or end is None or end < begin:
        begin, end = -1, len(lines)
    hidden = "".join(lines[begin + 1:end])
    try:
        tree = ast.parse(hidden)
    except (SyntaxError, ValueError):
        return source
    read = _drop_mistake_arguments(tree)
    if read is None:
        return source
    _drop_unused_definitions(tree, read, set(used_elsewhere) | names_used("".join(lines[end + 1:])))
    body = ast.unparse(tree) + "\n" if tree.body else ""
    return "".join(lines[:begin + 1]) + body + "".join(lines[end:])


def _drop_mistake_arguments(tree: ast.Module) -> set[str] | None:
    """Remove ``mistakes=`` keyword arguments from every call; the names the removed code read (``None`` when
    there was none)."""
    read: set[str] | None = None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and any(k.arg == "mistakes" for k in node.keywords):
            read = read or set()
            for keyword in node.keywords:
                if keyword.arg == "mistakes":
                    read |= {n.id for n in ast.walk(keyword.value) if isinstance(n, ast.Name)}
            node.keywords = [k for k in node.keywords if k.arg != "mistakes"]
    return read


def _defined_name(statement: ast.stmt) -> str | None:
    """The name a top-level definition binds: ``def``, ``class``, or ``name = lambda ...``."""
    if isinstance(statement, _DEFINITIONS):
        return statement.name
    if isinstance(statement, ast.Assign) and len(statement.targets) == 1 \
            and isinstance(statement.targets[0], ast.Name) and isinstance(statement.value, ast.Lambda):
        return statement.targets[0].id
    return None


def _drop_unused_definitions(tree: ast.Module, candidates: set[str], used_elsewhere: set[str]) -> None:
    """Delete top-level definitions named in ``candidates`` (growing with what they read) that nothing kept
    reads."""
    candidates = set(candidates)
    changed = True
    while changed:
        changed = False
        for statement in list(tree.body):
            name = _defined_name(statement)
            if name is None or name not in candidates or name in used_elsewhere:
                continue
            others = [s for s in tree.body if s is not statement]
            if any(isinstance(n, ast.Name) and n.id == name for s in others for n in ast.walk(s)):
                continue
            candidates |= {n.id for n in ast.walk(statement) if isinstance(n, ast.Name)}
            tree.body.remove(statement)
            changed = True
