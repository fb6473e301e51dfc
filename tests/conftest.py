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
