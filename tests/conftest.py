"""Shared, seeded fixtures for the package tests.

The data file is read from ``$SALIENCY_DATA`` or ``../shared/data`` (never
downloaded in tests); the model is the explicit, deterministic untrained
SqueezeNet, so tests are offline and the same on every machine.
"""

from __future__ import annotations

import os
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
