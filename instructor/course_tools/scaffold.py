"""``course new ASSIGNMENT``: a new assignment's source notebook, with the course's conventions.

The notebook it writes, ``source/<assignment>/<NN>_<assignment>.ipynb`` (``NN`` after the highest number
of the notebooks already in ``source/``, so that the new assignment comes last), has

* the Colab cell (read-only), as ``course colab`` writes it;
* a read-only setup cell: data, the course's network (:func:`helpers.load_model`), the hidden checks;
* one example exercise: its answer cell (the solution between the solution markers), and its test cell
  with visible tests and a hidden check that declares its expected type and one typical mistake with its
  feedback (``checks.compare(..., mistakes=lambda: {key: (wrong_answer, message)})``).

Beside it, ``demo/<assignment>.toml`` declares one example student who makes that mistake
(``scores_not_probabilities_<assignment>``, see :mod:`course_tools.demo_class`).

It builds, releases and grades as written (``course build``, then ``course demo-class`` and ``course
grade``); replace the example with your own exercises, and the example student with your own typical mistakes.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

from .demo_class import DEMO_FOLDER
from .paths import ASSIGNMENT_NAME, CourseError, assignments, source_notebooks

_NUMBER = re.compile(r"^(\d+)_")


def _meta(grade_id: str, *, locked: bool = False, solution: bool = False, points: float | None = None) -> dict:
    meta = {"grade": points is not None, "grade_id": grade_id, "locked": locked, "schema_version": 3,
            "solution": solution, "task": False}
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def next_notebook_name(root: Path, assignment: str) -> str:
    """``<NN>_<assignment>.ipynb``, numbered after every notebook already in ``source/``."""
    numbers = [int(m.group(1)) for nb in source_notebooks(root) if (m := _NUMBER.match(nb.name))]
    return f"{max(numbers, default=0) + 1:02d}_{assignment}.ipynb"


def setup_source(notebook: str) -> str:
    """The read-only setup cell of every graded notebook (``notebook``: its name without ``.ipynb``)."""
    return f'''# Setup (read-only). Run this cell first.
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch

import helpers
from helpers import plots
from helpers.autograde import HiddenChecks

data = helpers.load_imagenet_val()   # the 25 images, their labels and class names
model = helpers.load_model()         # the network (SqueezeNet 1.1 unless the course names another), frozen
checks = HiddenChecks(data.sha256, helpers.weights_fingerprint(model), "{notebook}")
print(helpers.weights_description(model))
warnings.filterwarnings("ignore")    # keep library warnings out of the cells below'''


EXAMPLE_SOLUTION = '''def correct_class_probability(X: torch.Tensor, y: torch.Tensor, model: torch.nn.Module) -> torch.Tensor:
    """The probability the network gives each image's correct class, shape (N,).

    Parameters
    ----------
    X : torch.Tensor
        Preprocessed images, shape (N, 3, H, W).
    y : torch.Tensor
        Correct labels, int64, shape (N,).
    model : torch.nn.Module
        The frozen classifier.
    """
    ### BEGIN SOLUTION
    probabilities = torch.softmax(model(X), dim=1)
    return probabilities.gather(1, y.view(-1, 1)).squeeze(1)
    ### END SOLUTION'''

EXAMPLE_TEST = '''# Tests for correct_class_probability (read-only).
### BEGIN HIDDEN TESTS
Xc, yc = X_t[:6], y_t[:6]
checks.compare("probability", correct_class_probability(Xc, yc, model), cell="test_correct_class_probability",
               expect="torch",  # tolerance=... here would replace the course's helpers.checks.TOLERANCE
               mistakes=lambda: {"scores_not_probabilities": (
                   model(Xc).gather(1, yc.view(-1, 1)).squeeze(1),
                   "these are the class scores (logits), not probabilities: apply torch.softmax(scores, dim=1) "
                   "before picking each image's correct class")})
### END HIDDEN TESTS
p = correct_class_probability(X_t[:4], y_t[:4], model)
assert isinstance(p, torch.Tensor), f"return a torch tensor, got {type(p).__name__}"
assert tuple(p.shape) == (4,), f"expected shape (4,): one probability per image, got {tuple(p.shape)}"
assert bool(((p >= 0) & (p <= 1)).all()), "probabilities lie between 0 and 1: did you apply softmax?"
print("Visible tests passed.")'''


#: The example exercise's answer cell and the edit that makes its declared mistake (scores, not probabilities).
EXAMPLE_ANSWER_CELL = "correct_class_probability"
EXAMPLE_MISTAKE = ("torch.softmax(model(X), dim=1)", "model(X)")


def demo_declaration(assignment: str) -> str:
    """``demo/<assignment>.toml``: one example student who makes the example exercise's declared mistake."""
    student = f"scores_not_probabilities_{assignment}"
    old, new = EXAMPLE_MISTAKE
    return f'''# Example students of the assignment {assignment} for `course demo-class`, besides
# solutions_{assignment} and untouched_{assignment} (every assignment has those). One table per student: how their
# notebooks differ from the solutions in source/{assignment}/ (keys: instructor/course_tools/demo_class.py).
# Declare here the typical mistakes your hidden checks name, and check their feedback with `course demo-class`
# and `course grade`. Keep this folder private: its fragments quote the solutions (`course publish` never
# ships it).

# The example exercise's declared mistake: the class scores instead of probabilities.
[{student}]
[[{student}.answer]]
cell = "{EXAMPLE_ANSWER_CELL}"
replace = [["{old}", "{new}"]]
'''


def scaffold_notebook(assignment: str, notebook: str, title: str) -> nbformat.NotebookNode:
    """The new assignment's source notebook (without its Colab cell, which :func:`new_assignment` adds)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    nb.cells = [
        nbformat.v4.new_markdown_cell(
            f"# {title}\n\nSay here what this assignment is about. Each exercise below has an answer cell and a "
            "read-only test cell: visible tests that explain what is wrong, and a hidden check the grader "
            "judges.\n\n*Run All* stops at the first exercise you have not done yet (it raises "
            "`NotImplementedError`): that is expected. Complete the exercise, then run on from there."),
        nbformat.v4.new_code_cell(setup_source(notebook), metadata=_meta("setup", locked=True)),
        nbformat.v4.new_code_cell("X, y, class_names = data\nX_t = helpers.preprocess_batch(X)\n"
                                  "y_t = torch.from_numpy(y)"),
        nbformat.v4.new_markdown_cell(
            "### Exercise 1: the probability of the correct class (2 points)\n\n"
            "Complete `correct_class_probability`: run the network on `X`, turn each row of scores into "
            "probabilities with `torch.softmax(scores, dim=1)`, and pick each image's correct class with "
            "`gather`. Return a tensor of shape (N,)."),
        nbformat.v4.new_code_cell(EXAMPLE_SOLUTION, metadata=_meta("correct_class_probability", solution=True)),
        nbformat.v4.new_code_cell(EXAMPLE_TEST, metadata=_meta("test_correct_class_probability", locked=True,
                                                               points=2)),
    ]
    return nb


def new_assignment(root: Path, assignment: str, title: str | None = None) -> Path:
    """Write ``source/<assignment>/<NN>_<assignment>.ipynb`` from the course's template, and its example student.

    The example student, ``demo/<assignment>.toml``, makes the example exercise's declared mistake.

    Parameters
    ----------
    root : pathlib.Path
        The course root.
    assignment : str
        The new assignment's folder name (a letter, then letters, digits, ``_`` or ``-``).
    title : str, optional
        The notebook's heading (default: ``"<NN>. <Assignment>"``).

    Returns
    -------
    pathlib.Path
        The notebook written.

    Raises
    ------
    CourseError
        If the name is not one nbgrader can use, or ``source/<assignment>`` or ``demo/<assignment>.toml``
        exists already (then nothing is written).
    """
    from .colab import install_cell, read_config

    if not isinstance(assignment, str) or not ASSIGNMENT_NAME.match(assignment):
        raise CourseError(f"assignment must start with a letter and hold only letters, digits, '_' and '-' "
                          f"(at most 64), got {assignment!r}")
    if title is not None and (not isinstance(title, str) or not title.strip() or "\n" in title):
        raise CourseError(f"title must be one line of text, got {title!r}")
    folder = Path(root) / "source" / assignment
    if folder.exists():
        raise CourseError(f"{folder} exists already: choose another name (assignments: "
                          f"{', '.join(assignments(root)) or 'none'})")
    demo = Path(root) / DEMO_FOLDER / f"{assignment}.toml"
    if demo.exists():
        raise CourseError(f"{demo} exists already (example students of an earlier {assignment!r}?): remove or "
                          "rename it first")
    config = read_config(root)   # before anything is written: the Colab cell needs the student repository
    name = next_notebook_name(root, assignment)
    number = int(name.split("_", 1)[0])
    nb = scaffold_notebook(assignment, Path(name).stem,
                           title or f"{number}. {assignment.replace('_', ' ').replace('-', ' ').capitalize()}")
    nbformat.validate(nb)
    folder.mkdir(parents=True)
    path = folder / name
    nbformat.write(nb, path)
    install_cell(path, config, nbgrader=True)
    demo.parent.mkdir(exist_ok=True)
    demo.write_text(demo_declaration(assignment), encoding="utf-8")
    return path
