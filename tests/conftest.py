"""Shared, seeded fixtures for the package tests.

The data file is read from ``$SALIENCY_DATA`` or ``../shared/data`` (never
downloaded in tests); the model is the explicit, deterministic untrained
SqueezeNet, so tests are offline and the same on every machine.
"""

from __future__ import annotations

import os
import socket
import time
import urllib.request
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data" / "imagenet_val_25.npz"


def data_path() -> Path:
    """Where the tests find the lab's data file."""
    env = os.environ.get("SALIENCY_DATA")
    return Path(env) if env else SHARED_DATA


@pytest.fixture(scope="session")
def data_file() -> Path:
    path = data_path()
    if not path.is_file():
        pytest.fail(f"the data file is needed for the tests: set SALIENCY_DATA or put it at {SHARED_DATA}")
    return path


@pytest.fixture(scope="session")
def dataset(data_file):
    from helpers.data import load_imagenet_val

    return load_imagenet_val(path=data_file)


@pytest.fixture(scope="session")
def untrained_model():
    from helpers.model import load_squeezenet

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_squeezenet("untrained", "cpu")


@pytest.fixture(scope="session")
def untrained_model_f64(untrained_model):
    """The untrained network in float64: comparisons across batch sizes or libraries then see no ReLU or
    max-pool decision flipped by float32 rounding (its non-zero biases put many activations near 0)."""
    import copy

    return copy.deepcopy(untrained_model).double()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _seed_torch():
    torch.manual_seed(0)
    yield


def no_network(*args, **kwargs):
    """Stands in for every way out: the tests must never touch the network."""
    raise AssertionError("the tests must never touch the network")


@pytest.fixture
def offline(monkeypatch):
    """Make any network access fail loudly."""
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(torch.hub, "urlopen", no_network)  # torch.hub imported the name itself
    monkeypatch.setattr(socket.socket, "connect", no_network)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors: one intra-op thread is fastest and avoids OpenMP spin-waits on a busy 2-core CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def assert_refused(call, exc: type[BaseException], pattern: str) -> BaseException:
    """Run ``call`` and check it raises ``exc`` whose message matches ``pattern`` (the argument's name and
    what was expected), and is a message, not a bare repr."""
    import re

    with pytest.raises(exc) as info:
        call()
    message = str(info.value)
    assert re.search(pattern, message), f"message {message!r} does not match {pattern!r}"
    return info.value


def file_states(*roots: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``roots`` with its size and SHA-256, to prove a refusal changed or deleted nothing."""
    import hashlib

    states = {}
    for root in roots:
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for p in paths:
            states[str(p)] = (p.stat().st_size, hashlib.sha256(p.read_bytes()).digest()
                              if p.stat().st_size < (64 << 20) else b"large")
    return states


@pytest.fixture(scope="session")
def untrained_references(data_file, untrained_model) -> Path:
    """This course's reference set for the untrained network, written once per session (as ``course
    references`` does) and shared by every test that builds a temporary course."""
    from course_tools.references import make_references, outdated
    from helpers.autograde import reference_key
    from helpers.data import sha256_of
    from helpers.model import weights_fingerprint

    key = reference_key(sha256_of(data_file), weights_fingerprint(untrained_model))
    dest = ROOT / "references" / key
    if not (dest / "manifest.json").is_file() or outdated(ROOT, dest):
        env = {"SALIENCY_DATA": str(data_file), "SALIENCY_WEIGHTS": "untrained"}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            made = make_references(ROOT, env=env, log=lambda line: None)
        assert made == dest, f"references written to {made}, expected {dest}"
    return dest


def make_course_copy(folder: Path, references: Path) -> Path:
    """A temporary course made from the real one: settings, ``source/``, the example students of ``demo/``, the
    student versions (``course release``) and a copy of ``references`` (the set made from this very ``source/``)."""
    import shutil
    import subprocess
    import sys

    folder.mkdir(parents=True, exist_ok=True)
    for name in ("nbgrader_config.py", "course.toml"):
        shutil.copy2(ROOT / name, folder)
    shutil.copytree(ROOT / "source", folder / "source",
                    ignore=shutil.ignore_patterns("*.png", "*.pdf", ".ipynb_checkpoints"))
    shutil.copytree(ROOT / "demo", folder / "demo")
    (folder / "release").mkdir(exist_ok=True)
    shutil.copytree(references, folder / "references" / references.name)
    result = subprocess.run([sys.executable, "-m", "course_tools", "release"], cwd=folder, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, f"course release failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    return folder


#: Seconds of one forward and backward pass of the untrained SqueezeNet on one image, with one thread, on the
#: quiet 2-core machine where the tests' time budgets were set (24 passes/s).
QUIET_PASS_SECONDS = 1 / 24


def machine_slowdown(passes: int = 6) -> float:
    """How many times slower than :data:`QUIET_PASS_SECONDS` this machine runs a pass now (at least 1).

    The time budgets of tests that run whole notebooks are multiplied by it, so that they hold the notebooks
    to the same work on a busy machine (a shared lab server at a load of 5 on 2 cores runs a pass 3-8 times
    slower) instead of failing there.
    """
    from helpers.model import load_squeezenet

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_squeezenet("untrained", "cpu")
    x = torch.zeros(1, 3, 224, 224)
    times = []
    for _ in range(passes):
        xx = x.clone().requires_grad_(True)
        start = time.perf_counter()
        model(xx)[0, 0].backward()
        times.append(time.perf_counter() - start)
    return max(1.0, float(np.median(times[1:])) / QUIET_PASS_SECONDS)


@pytest.fixture
def slowdown() -> float:
    """:func:`machine_slowdown`, measured just before the test."""
    return machine_slowdown()
