"""Every visible test in the notebooks can fail, for the mistake its message names.

A visible test that cannot fail teaches nothing and costs the student points at grading (notebook 2 once
compared ``X.grad`` with itself). For each visible ``assert`` (and ``check_close``) of each graded test cell
this module feeds the source notebook's namespace one typical mistake and runs the test cell's visible part:
the assert whose message names that mistake must fire. A coverage test makes sure that every visible assert
has such a mistake, so a new assert needs a new entry in :data:`MISTAKES`.

The cells before the test cell run in this process, as in the notebook (the solutions included; the hidden
tests and the slow figure cell are left out), with the deterministic untrained network.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS\n?", re.S)
#: Cells left out of the namespace: too slow for a unit test (the homework's 250-pass figure cell).
SKIPPED_CELLS = {"make_figures"}


@dataclass(frozen=True)
class Mistake:
    """A typical mistake, the code that makes it, and the words of the assert that must catch it."""

    name: str
    code: str
    fires: str   # a part of the assert's message (in its source and in the error raised)


_SG = '''
def smoothgrad(X, y, model, n=50, noise_pct=0.1, rng=None):
    rng = {rng}
    maps = np.zeros(X.shape[:3], dtype={dtype})
    for i in range(len(X)):
        label = torch.tensor([int(y[i])])
        total = torch.zeros(X.shape[1:3])
        for _ in range(n):
            noisy = helpers.add_noise(X[i], noise_pct, rng)
            grad = compute_saliency(helpers.preprocess(noisy), label, model)
            total += {reduce}
        maps[i] = (total / {count}).numpy()
    return {result}
'''


def _smoothgrad(rng="np.random.default_rng() if rng is None else rng", dtype="np.float32",
                reduce="maxabs_over_channels(grad)[0]", count="n", result="maps") -> str:
    return _SG.format(rng=rng, dtype=dtype, reduce=reduce, count=count, result=result)


_FIGURES = '''
import matplotlib.pyplot as plt
maps5 = maxabs_over_channels(compute_saliency(helpers.preprocess_batch(X[:5]), torch.from_numpy(y[:5]), model))
for stem in ("smoothgrad_maps", "smoothgrad_vs_vanilla"):
    fig = plots.show_saliency_grid(X[:5], maps5, y[:5], class_names, cmap="hot")
    {save}
    plt.close(fig)
'''

#: (notebook, test cell's grade_id) -> the mistakes its visible asserts must catch.
MISTAKES: dict[tuple[str, str], list[Mistake]] = {
    ("lab/01_data_and_model.ipynb", "test_correct_class_scores"): [
        Mistake("returns numpy", "def correct_class_scores(scores, y):\n"
                "    return scores.gather(1, y.view(-1, 1)).squeeze(1).numpy()", "return a torch tensor"),
        Mistake("keeps the class dimension", "def correct_class_scores(scores, y):\n"
                "    return scores.gather(1, y.view(-1, 1))", "squeeze the class dimension"),
        Mistake("the predicted class's score", "def correct_class_scores(scores, y):\n"
                "    return scores.max(dim=1).values", "expected [5.0, 3.0]"),
        Mistake("a fixed number of rows", "def correct_class_scores(scores, y):\n"
                "    return torch.stack([scores[i, y[i]] for i in range(2)])", "expected shape (25,)"),
    ],
    ("lab/02_vanilla_saliency.ipynb", "test_compute_saliency"): [
        Mistake("returns numpy", "def compute_saliency(X, y, model):\n"
                "    X = X.detach().clone().requires_grad_(True)\n"
                "    model(X).gather(1, y.view(-1, 1)).sum().backward()\n"
                "    return X.grad.numpy()", "return X.grad, a torch tensor"),
        Mistake("sums the channels", "def compute_saliency(X, y, model):\n"
                "    X = X.detach().clone().requires_grad_(True)\n"
                "    model(X).gather(1, y.view(-1, 1)).sum().backward()\n"
                "    return X.grad.sum(dim=1)", "expected shape (2, 3, 2, 2)"),
        Mistake("every class score", "def compute_saliency(X, y, model):\n"
                "    X = X.detach().clone().requires_grad_(True)\n"
                "    model(X).sum().backward()\n"
                "    return X.grad", "image 0 has label 3"),
        Mistake("image 0's label for all", "def compute_saliency(X, y, model):\n"
                "    X = X.detach().clone().requires_grad_(True)\n"
                "    model(X)[:, int(y[0])].sum().backward()\n"
                "    return X.grad", "image 1 has label 1"),
        Mistake("no fresh copy: gradients accumulate", "def compute_saliency(X, y, model):\n"
                "    X.requires_grad_(True)\n"
                "    correct = model(X).gather(1, y.view(-1, 1)).squeeze(1)\n"
                "    correct.backward(torch.ones_like(correct))\n"
                "    return X.grad", "are gradients accumulating?"),
        Mistake("keeps two images", "def compute_saliency(X, y, model):\n"
                "    X = X.detach().clone().requires_grad_(True)\n"
                "    model(X).gather(1, y.view(-1, 1)).sum().backward()\n"
                "    return X.grad[:2]", "expected (5, 3, 224, 224)"),
    ],
    ("lab/03_reductions_and_histograms.ipynb", "test_max_over_channels"): [
        Mistake("returns numpy", "def max_over_channels(g):\n    return g.max(dim=1).values.numpy()",
                "return a torch tensor"),
        Mistake("reduces everything", "def max_over_channels(g):\n    return g.max()", "reduce dimension 1 only"),
        Mistake("magnitudes", "def max_over_channels(g):\n    return g.abs().max(dim=1).values",
                "the largest of 0.5, -2.0, 0.1 is 0.5"),
        Mistake("only the first image", "def max_over_channels(g):\n    return g[:1].max(dim=1).values",
                "for the 25 gradients"),
    ],
    ("lab/03_reductions_and_histograms.ipynb", "test_maxabs_over_channels"): [
        Mistake("returns numpy", "def maxabs_over_channels(g):\n    return g.abs().max(dim=1).values.numpy()",
                "return a torch tensor"),
        Mistake("reduces everything", "def maxabs_over_channels(g):\n    return g.abs().max()",
                "expected shape (1, 1, 1), got"),
        Mistake("abs after the max", "def maxabs_over_channels(g):\n    return g.max(dim=1).values.abs()",
                "the largest magnitude of 0.5, -2.0, 0.1 is 2.0"),
        Mistake("only the first image", "def maxabs_over_channels(g):\n    return g[:1].abs().max(dim=1).values",
                "for the 25 gradients"),
    ],
    ("homework/04_smoothgrad.ipynb", "test_smoothgrad"): [
        Mistake("returns a tensor", _smoothgrad(result="torch.from_numpy(maps)"), "return a numpy array"),
        Mistake("keeps an axis", _smoothgrad(result="maps[:, None]"), "expected shape (2, 224, 224)"),
        Mistake("float64", _smoothgrad(dtype="np.float64"), "expected float32"),
        Mistake("signed maps (no abs)", _smoothgrad(reduce="grad[0].max(dim=0).values"),
                "an average of max-abs maps is never negative"),
        Mistake("ignores rng", _smoothgrad(rng="np.random.default_rng()"), "the same seed must give the same maps"),
        Mistake("divides by n + 1", _smoothgrad(count="(n + 1)"), "smoothgrad with noise_pct=0"),
    ],
    ("homework/04_smoothgrad.ipynb", "test_figure_files"): [
        Mistake("saves nothing", "pass", "is missing: save it with plots.save_figure"),
        Mistake("PNG bytes in the PDF", _FIGURES.format(
            save='fig.savefig(stem + ".png"); fig.savefig(stem + ".pdf", format="png")'), "is not a valid"),
        Mistake("an empty figure", _FIGURES.format(save='plots.save_figure(plt.figure(figsize=(1, 1)), stem)'),
                "is suspiciously small"),
    ],
}
#: What the solution's figure cell would have written (quickly: vanilla maps instead of SmoothGrad's).
GOOD_FIGURES = _FIGURES.format(save="plots.save_figure(fig, stem)")


def _cells(notebook: str):
    return nbformat.read(ROOT / "source" / notebook, as_version=4).cells


def _grade_id(cell) -> str | None:
    return (cell.metadata.get("nbgrader") or {}).get("grade_id")


def _visible(source: str) -> str:
    return HIDDEN.sub("", source)


def _test_cell(notebook: str, grade_id: str) -> tuple[int, str]:
    for index, cell in enumerate(_cells(notebook)):
        if _grade_id(cell) == grade_id:
            return index, _visible(cell.source)
    raise LookupError(f"{notebook} has no cell {grade_id!r}")


def _assert_texts(code: str) -> list[str]:
    """The source of each visible assert's message (and of each check_close call)."""
    tree = ast.parse(code)
    texts = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert):
            texts.append(ast.get_source_segment(code, node.msg) if node.msg is not None else "")
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "check_close":
            texts.append(ast.get_source_segment(code, node))
    return texts


_NAMESPACES: dict[tuple[str, int], dict] = {}


def _namespace(notebook: str, upto: int) -> dict:
    """The notebook's globals after its code cells before ``upto`` (visible parts only), cached."""
    key = (notebook, upto)
    if key not in _NAMESPACES:
        namespace: dict = {"__name__": "__main__"}
        for cell in _cells(notebook)[:upto]:
            if cell.cell_type != "code" or _grade_id(cell) in SKIPPED_CELLS:
                continue
            exec(compile(_visible(cell.source), f"<{notebook} cell>", "exec"), namespace)
            plt.close("all")
        _NAMESPACES[key] = namespace
    return dict(_NAMESPACES[key])


@pytest.fixture(autouse=True)
def _notebook_environment(data_file, tmp_path, monkeypatch):
    monkeypatch.setenv("SALIENCY_DATA", str(data_file))
    monkeypatch.setenv("SALIENCY_WEIGHTS", "untrained")
    monkeypatch.chdir(tmp_path)   # figure files land here
    matplotlib.use("Agg")
    yield
    plt.close("all")


def _run_visible_test(notebook: str, grade_id: str, before: str = "") -> None:
    index, visible = _test_cell(notebook, grade_id)
    namespace = _namespace(notebook, index)
    if grade_id == "test_figure_files":
        exec(before or GOOD_FIGURES, namespace)
    else:
        exec(before, namespace)
    exec(compile(visible, f"<{notebook} {grade_id}>", "exec"), namespace)


CASES = [(nb, gid, m) for (nb, gid), mistakes in MISTAKES.items() for m in mistakes]


@pytest.mark.parametrize("notebook,grade_id", list(MISTAKES))
def test_the_solution_passes_the_visible_tests(notebook, grade_id):
    _run_visible_test(notebook, grade_id)


@pytest.mark.parametrize("notebook,grade_id,mistake", CASES,
                         ids=[f"{gid}-{m.name}" for _, gid, m in CASES])
def test_the_visible_test_catches_the_mistake_it_names(notebook, grade_id, mistake):
    with pytest.raises(AssertionError) as caught:
        _run_visible_test(notebook, grade_id, before=mistake.code)
    assert mistake.fires in str(caught.value), (
        f"{mistake.name}: expected the assert about {mistake.fires!r} to fire, got {str(caught.value)[:300]!r}")


def test_every_visible_assert_has_a_mistake_that_fires_it():
    graded = [(f"{nb.parent.name}/{nb.name}", _grade_id(cell))
              for nb in sorted((ROOT / "source").glob("*/*.ipynb"))
              for cell in nbformat.read(nb, as_version=4).cells
              if (cell.metadata.get("nbgrader") or {}).get("grade") and cell.cell_type == "code"]
    assert sorted(graded) == sorted(MISTAKES), "every graded test cell needs its mistakes in MISTAKES"
    for (notebook, grade_id), mistakes in MISTAKES.items():
        texts = _assert_texts(_test_cell(notebook, grade_id)[1])
        for text in texts:
            covering = [m.name for m in mistakes if m.fires in text]
            assert covering, f"{notebook} {grade_id}: no mistake fires the assert {text[:80]!r}"
        for m in mistakes:
            matching = [t for t in texts if m.fires in t]
            assert len(matching) == 1, f"{m.name}: {m.fires!r} must name exactly one assert, names {len(matching)}"
