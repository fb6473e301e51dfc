"""The ungraded companion notebooks in ``notebooks/``.

nbval already runs them top to bottom (``pytest`` collects ``notebooks/``
with ``--nbval-lax``), with the lab's data, the current weights and
``SALIENCY_QUICK=1``. These tests cover what that run does not: the
committed files are clean, the notebooks stay apart from the graded
material, the set-up check explains a missing data file and missing weights
without raising and without touching the network, the own-image notebook
handles a photo that is not a 224 x 224 lab image, and each notebook of the
"beyond the lab" series draws its figures within the time budget.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SETUP_CHECK = NOTEBOOKS / "00_setup_check.ipynb"
OWN_IMAGE = NOTEBOOKS / "try_your_own_image.ipynb"
#: Companions that need only the students' ``helpers`` package.
HELPERS_ONLY = [SETUP_CHECK, OWN_IMAGE]
#: "Beyond the lab": for after the homework (they compute SmoothGrad with the instructor's
#: ``course_tools``), and the number of figures each draws.
BEYOND_THE_LAB = {NOTEBOOKS / "sanity_checks.ipynb": 2, NOTEBOOKS / "smoothgrad_knobs.ipynb": 3,
                  NOTEBOOKS / "gradient_family.ipynb": 2}
COMPANIONS = HELPERS_ONLY + list(BEYOND_THE_LAB)
#: Seconds one notebook may take under the test suite (SALIENCY_QUICK=1) on a quiet 2-core CPU; on a busy
#: machine the budget (and the per-cell limit) grows with the measured slowdown (``machine_slowdown``).
BUDGET_S = 60

# Inserted as the first cell of a copy of a notebook: any connection attempt fails loudly in the output.
NO_NETWORK_CELL = """
import socket

def _no_network(*args, **kwargs):
    raise AssertionError("NETWORK ACCESS ATTEMPTED")

socket.socket.connect = _no_network
socket.socket.connect_ex = _no_network
socket.create_connection = _no_network
socket.getaddrinfo = _no_network
"""


def _code_cells(nb):
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def _execute(nb: nbformat.NotebookNode, cwd: Path, env: dict[str, str], slowdown: float) -> str:
    """Run ``nb`` in a fresh kernel of this interpreter; return all its text output."""
    env = {**env, "PATH": os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")}
    client = NotebookClient(nb, timeout=round(BUDGET_S * slowdown), kernel_name="python3",
                            resources={"metadata": {"path": str(cwd)}})
    client.execute(env=env)   # raises CellExecutionError if any cell fails
    texts = []
    for cell in _code_cells(nb):
        for out in cell.outputs:
            if out.output_type == "stream":
                texts.append(out.text)
            elif "data" in out and "text/plain" in out.data:
                texts.append(out.data["text/plain"])
    return "".join(texts)


@pytest.fixture
def offline_env(tmp_path) -> dict[str, str]:
    """Empty caches, no pretrained weights and downloads switched off."""
    # MPLBACKEND is dropped so that the kernel draws figures inline, as in Jupyter.
    env = {k: v for k, v in os.environ.items() if k not in ("SALIENCY_DATA", "SALIENCY_WEIGHTS", "MPLBACKEND")}
    env.update(XDG_CACHE_HOME=str(tmp_path / "xdg"), TORCH_HOME=str(tmp_path / "torch"), SALIENCY_OFFLINE="1")
    return env


@pytest.mark.parametrize("path", COMPANIONS, ids=lambda p: p.name)
def test_committed_notebook_is_valid_and_clean(path):
    assert path.is_file(), f"{path} is missing"
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    colab, title = nb.cells[0], nb.cells[1]
    assert colab.cell_type == "code" and colab.source.startswith("# Colab set-up"), \
        "the first cell must be the Colab set-up cell (`course colab` writes it)"
    assert title.cell_type == "markdown" and title.source.startswith("# "), \
        "the second cell must be markdown with the notebook's title"
    for index, cell in enumerate(nb.cells):
        assert "execution" not in cell.metadata, f"cell {index} carries execution timing metadata"
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {index} carries outputs: strip them before committing"
            assert cell.execution_count is None, f"cell {index} has an execution count"


@pytest.mark.parametrize("path", COMPANIONS, ids=lambda p: p.name)
def test_notebook_stays_apart_from_the_graded_material(path):
    nb = nbformat.read(path, as_version=4)
    code = "\n".join(cell.source for cell in _code_cells(nb)[1:])   # after the Colab cell
    # course_tools: the instructor's package is never published; the notebooks beyond the lab use `beyond`.
    markers = ["autograde", "HiddenChecks", "BEGIN SOLUTION", "nbgrader", "google.colab", "course_tools"]
    for marker in markers:
        assert marker not in code, f"{path.name} must not use {marker!r}"
    if path in BEYOND_THE_LAB or path == OWN_IMAGE:   # they hold working answers to the homework
        intro = nb.cells[1].source
        assert "after" in intro and "homework" in intro, "say in the introduction that it is for after the homework"
    if path == OWN_IMAGE:
        first_words = nb.cells[1].source.split("\n\n")[1]
        assert first_words.startswith("**Open this notebook only after you have handed in the homework"), \
            "say it at the top, before anything else"


@pytest.mark.parametrize("path", list(BEYOND_THE_LAB), ids=lambda p: p.name)
def test_beyond_the_lab_notebook_draws_its_figures_in_time(path, tmp_path, data_file, slowdown):
    import time

    nb = nbformat.read(path, as_version=4)
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env.update(SALIENCY_DATA=str(data_file), SALIENCY_WEIGHTS="untrained", SALIENCY_QUICK="1")
    budget = BUDGET_S * slowdown
    start = time.perf_counter()
    _execute(nb, tmp_path, env, slowdown)
    seconds = time.perf_counter() - start
    assert seconds < budget, (f"{path.name} took {seconds:.0f} s with SALIENCY_QUICK=1 (budget {budget:.0f} s: "
                              f"{BUDGET_S} s on a quiet machine, times its measured slowdown now)")
    figures = [out for cell in _code_cells(nb) for out in cell.outputs if "data" in out and "image/png" in out.data]
    assert len(figures) >= BEYOND_THE_LAB[path], f"{path.name} drew {len(figures)} figures"
    errors = [out for cell in _code_cells(nb) for out in cell.outputs if out.output_type == "error"]
    assert not errors


def test_own_image_notebook_runs_headless_by_default():
    nb = nbformat.read(OWN_IMAGE, as_version=4)
    code = "\n".join(cell.source for cell in _code_cells(nb))
    assert "\nIMAGE_PATH = None " in "\n" + code, "IMAGE_PATH must default to None (a lab image) for CI"
    assert "weights_source == \"untrained\"" in code, "the notebook must warn about untrained weights"


def test_setup_check_explains_missing_data_and_weights_offline(tmp_path, offline_env, slowdown):
    nb = nbformat.read(SETUP_CHECK, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(NO_NETWORK_CELL))
    missing = tmp_path / "nowhere" / "imagenet_val_25.npz"
    output = _execute(nb, tmp_path, {**offline_env, "SALIENCY_DATA": str(missing)}, slowdown)
    text = " ".join(output.split())       # the summary wraps long lines

    assert "NETWORK ACCESS ATTEMPTED" not in text, output
    assert "Downloads of missing files are switched off." in text
    assert f"PROBLEM: {missing} ($SALIENCY_DATA) does not exist" in text, output
    assert f"1. Data: SALIENCY_DATA={missing} is not usable" in text, output
    hub_file = Path(offline_env["TORCH_HOME"]) / "hub" / "checkpoints" / "squeezenet1_1-b8a52dc0.pth"
    assert f"2. Weights ('pretrained'): weights file {hub_file} does not exist" in text, output
    assert "SALIENCY_WEIGHTS=untrained" in text, "the weights message must say how to choose the alternatives"
    assert "Not ready yet: fix these 2 things" in text, output
    assert "Ready for the lab." not in text


def test_own_image_notebook_crops_an_upright_photo(tmp_path, offline_env, slowdown):
    # A 600 x 400 photo stored sideways, with the EXIF tag that says how to turn it upright.
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (400, 600, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6                      # orientation: rotate 90 degrees clockwise to display
    photo.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "sideways.jpg", exif=exif.tobytes())

    nb = nbformat.read(OWN_IMAGE, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(NO_NETWORK_CELL))
    settings = next(cell for cell in _code_cells(nb) if "IMAGE_PATH = None" in cell.source)
    settings.source = (settings.source.replace("IMAGE_PATH = None", "IMAGE_PATH = 'sideways.jpg'", 1)
                       .replace("N_COPIES = 16", "N_COPIES = 2", 1))
    output = _execute(nb, tmp_path, {**offline_env, "SALIENCY_WEIGHTS": "untrained"}, slowdown)

    assert "NETWORK ACCESS ATTEMPTED" not in output, output
    assert "sideways.jpg: 600 x 400 pixels" in output, output
    assert "UNTRAINED" in output
    pictures = [out for cell in _code_cells(nb) for out in cell.outputs
                if "data" in out and "image/png" in out.data]
    assert len(pictures) == 3, f"expected the crop, the vanilla map and the comparison, got {len(pictures)} figures"
