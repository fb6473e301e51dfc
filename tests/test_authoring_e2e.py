"""Proof that instructors author assignments without touching the grader (issue 12, item 5).

Both tests work on a temporary course and run the real ``course`` commands; neither changes a Python file
of ``helpers`` or ``course_tools`` (checked). They grade small classes end to end, so they are marked
``slow`` (about 1.5 and 3 minutes on 2 cores):

* a new assignment (``course new``) whose example exercise the instructor replaces, in the notebook only,
  by a gradient x input exercise with one declared mistake, and whose example student (``demo/``) by one
  who makes that mistake: built, then a correct, a wrong and a blank submission graded;
* the lab's demo class (the solutions, an untouched release and one typical mistake of notebooks 02 and
  03) with ``[model] name = "resnet18"`` (untrained, as in CI): every score as with SqueezeNet. Only the
  lab: the homework's SmoothGrad runs hundreds of ResNet-18 passes, minutes on a 2-core CPU.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
COURSE = [sys.executable, "-m", "course_tools"]
pytestmark = pytest.mark.slow


def _run(args, cwd, timeout=900):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("SALIENCY_MODEL", None)   # the course's course.toml decides
    result = subprocess.run(COURSE + args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, f"course {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def _package_files() -> dict[str, str]:
    return {str(p.relative_to(ROOT)): hashlib.sha256(p.read_bytes()).hexdigest()
            for folder in ("helpers", "instructor/course_tools") for p in sorted((ROOT / folder).glob("*.py"))}


def _empty_course(tmp_path: Path, model: str | None = None) -> Path:
    course = tmp_path / "course"
    course.mkdir()
    shutil.copy2(ROOT / "nbgrader_config.py", course)
    settings = (ROOT / "course.toml").read_text()
    if model is not None:
        assert settings.count('\nname = "squeezenet1_1"\n') == 1, "course.toml's [model] name is not where expected"
        settings = settings.replace('\nname = "squeezenet1_1"\n', f'\nname = "{model}"\n')
    (course / "course.toml").write_text(settings)
    (course / "source").mkdir()
    (course / "release").mkdir()
    return course


def _results(course: Path) -> dict[str, dict]:
    return {(r := json.loads(p.read_text()))["student"]: r for p in (course / "autograded").glob("*/*/grading.json")}


def _parts(record) -> dict[str, dict]:
    return {part["grade_id"]: part for nb in record["notebooks"] for part in nb["parts"] if not part["manual"]}


def _scores(record) -> dict[str, float]:
    return {gid: part["points"] for gid, part in _parts(record).items()}


# ------------------------------------------------------------------------------- a new assignment, authored

GXI_TEXT = ("### Exercise 1: gradient x input (3 points)\n\nComplete `gradient_times_input`: the gradient of each "
            "image's correct-class score with respect to its input (as in notebook 2), multiplied element by "
            "element by the input itself. Return a tensor of shape (N, 3, H, W).")
GXI_SOLUTION = '''def gradient_times_input(X: torch.Tensor, y: torch.Tensor, model: torch.nn.Module) -> torch.Tensor:
    """Gradient x input of each image's correct-class score, shape (N, 3, H, W)."""
    ### BEGIN SOLUTION
    X = X.detach().clone().requires_grad_(True)
    correct = model(X).gather(1, y.view(-1, 1)).squeeze(1)
    correct.backward(torch.ones_like(correct))
    return X.grad * X.detach()
    ### END SOLUTION'''
GXI_MESSAGE = "this is the gradient alone: multiply it by the input, element by element"
GXI_TEST = f'''# Tests for gradient_times_input (read-only).
### BEGIN HIDDEN TESTS
Xc, yc = X_t[:4], y_t[:4]


def _gradient(X, y):
    X = X.detach().clone().requires_grad_(True)
    model(X).gather(1, y.view(-1, 1)).sum().backward()
    return X.grad


checks.compare("gradient_times_input", gradient_times_input(Xc, yc, model), cell="test_gradient_times_input",
               expect="torch", mistakes=lambda: {{"gradient_only": (_gradient(Xc, yc), "{GXI_MESSAGE}")}})
### END HIDDEN TESTS
gxi = gradient_times_input(X_t[:2], y_t[:2], model)
assert tuple(gxi.shape) == (2, 3, 224, 224), f"expected shape (2, 3, 224, 224), got {{tuple(gxi.shape)}}"
print("Visible tests passed.")'''


def _author_gradient_times_input(path: Path) -> None:
    """What the instructor does in JupyterLab: replace the example exercise by their own (the notebook only)."""
    nb = nbformat.read(path, as_version=4)
    grade_ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells]
    answer = grade_ids.index("correct_class_probability")
    assert grade_ids[answer + 1] == "test_correct_class_probability" and nb.cells[answer - 1].cell_type == "markdown"
    nb.cells[answer - 1].source = GXI_TEXT
    nb.cells[answer].source = GXI_SOLUTION
    nb.cells[answer].metadata["nbgrader"]["grade_id"] = "gradient_times_input"
    nb.cells[answer + 1].source = GXI_TEST
    nb.cells[answer + 1].metadata["nbgrader"].update(grade_id="test_gradient_times_input", points=3)
    nbformat.write(nb, path)


# What the instructor writes into demo/attribution.toml for the new exercise: a student who makes its mistake.
GXI_DEMO = """[gradient_only]
[[gradient_only.answer]]
cell = "gradient_times_input"
replace = [["return X.grad * X.detach()", "return X.grad"]]
"""


def test_a_new_assignment_is_authored_built_and_graded_without_touching_the_packages(tmp_path):
    packages = _package_files()
    course = _empty_course(tmp_path)
    _run(["new", "attribution"], course)
    notebook = course / "source" / "attribution" / "01_attribution.ipynb"
    demo = course / "demo" / "attribution.toml"
    assert "[scores_not_probabilities_attribution]" in demo.read_text()
    _author_gradient_times_input(notebook)
    build_log = _run(["build"], course)
    assert "release/attribution: generated" in build_log
    release = (course / "release" / "attribution" / "01_attribution.ipynb").read_text()
    assert "gradient_only" not in release and "X.grad * X.detach()" not in release

    # The example student still changes the example exercise, which is gone: demo-class names what to update.
    stale = subprocess.run(COURSE + ["demo-class"], cwd=course, capture_output=True, text=True, timeout=300)
    assert stale.returncode == 1 and not (course / "submitted").exists()
    assert "demo/attribution.toml [scores_not_probabilities_attribution]" in stale.stderr
    assert "'correct_class_probability'" in stale.stderr
    demo.write_text(GXI_DEMO)
    demo_log = _run(["demo-class"], course)
    assert "wrote 3 demo submissions" in demo_log
    _run(["grade", "--jobs", "2"], course)
    results = _results(course)
    assert _scores(results["solutions_attribution"]) == {"test_gradient_times_input": 3.0}
    assert _scores(results["untouched_attribution"]) == {"test_gradient_times_input": 0.0}
    assert _scores(results["gradient_only"]) == {"test_gradient_times_input": 0.0}
    assert GXI_MESSAGE in " ".join(_parts(results["gradient_only"])["test_gradient_times_input"]["messages"])
    _run(["report"], course)
    assert _package_files() == packages


# ------------------------------------------------------------------------------- another network

# The lab's demo class, reduced: student -> expected scores (tests/test_grading_e2e.py holds the same with
# SqueezeNet) and, for a mistake, the words of its feedback.
LAB_FULL = {"test_correct_class_scores": 2.0, "test_compute_saliency": 4.0,
            "test_max_over_channels": 2.0, "test_maxabs_over_channels": 2.0}
REDUCED_CLASS = {
    "solutions_lab": (LAB_FULL, None),
    "untouched_lab": ({gid: 0.0 for gid in LAB_FULL}, None),
    # These two hand in one notebook each (02, 03): the other notebooks' parts are missing, so 0.
    "accumulated_gradients": ({gid: 0.0 for gid in LAB_FULL}, ("test_compute_saliency", "accumulated")),
    "no_abs": ({**{gid: 0.0 for gid in LAB_FULL}, "test_max_over_channels": 2.0},
               ("test_maxabs_over_channels", "take the absolute value")),
}


def test_the_lab_demo_class_grades_the_same_with_resnet18(tmp_path):
    packages = _package_files()
    course = _empty_course(tmp_path, model="resnet18")
    shutil.copytree(ROOT / "source" / "lab", course / "source" / "lab",
                    ignore=shutil.ignore_patterns("*.png", "*.pdf"))
    (course / "demo").mkdir()
    shutil.copy2(ROOT / "demo" / "lab.toml", course / "demo")
    _run(["build"], course)
    key = next((course / "references").iterdir()).name
    manifest = json.loads((course / "references" / key / "manifest.json").read_text())
    assert sorted(manifest["notebooks"]) == ["lab/01_data_and_model.ipynb", "lab/02_vanilla_saliency.ipynb",
                                             "lab/03_reductions_and_histograms.ipynb"]
    _run(["demo-class", *[arg for name in REDUCED_CLASS for arg in ("--scenario", name)]], course)
    grade_log = _run(["grade", "--jobs", "2"], course)
    assert "network resnet18" in grade_log
    results = _results(course)
    for student, (scores, mistake) in REDUCED_CLASS.items():
        assert _scores(results[student]) == scores, student
        if mistake is not None:
            part, words = mistake
            assert words in " ".join(_parts(results[student])[part]["messages"]), student
    # The references are keyed by ResNet-18's untrained weights, not SqueezeNet's.
    from helpers.model import load_model, weights_fingerprint

    assert key.endswith(weights_fingerprint(load_model("untrained", "cpu", name="resnet18")))
    assert _package_files() == packages
