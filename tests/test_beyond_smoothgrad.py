"""``beyond.smoothgrad``: the homework's SmoothGrad, batched, for the notebooks published after the homework."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from beyond.smoothgrad import smoothgrad
from course_tools.smoothgrad import smoothgrad_loop


@pytest.mark.parametrize("chunk", [1, 2, 8])
def test_it_computes_the_homework_loops_maps(dataset, untrained_model, chunk):
    X, y = dataset.X[:2], dataset.y[:2]
    ours = smoothgrad(X, y, untrained_model, n=3, noise_pct=0.15, rng=7, chunk=chunk)
    loop = smoothgrad_loop(X, y, untrained_model, n=3, noise_pct=0.15, rng=np.random.default_rng(7))
    assert ours.shape == (2, 224, 224) and ours.dtype == np.float32
    assert loop.max() > 0
    error = np.abs(ours - loop) / loop.max()   # (the untrained network's map of one image may be all zero)
    assert error.mean() < 1e-4 and error.max() < 5e-2, (error.mean(), error.max())


def test_no_noise_gives_the_vanilla_max_abs_map(dataset, untrained_model):
    from helpers.images import preprocess_batch

    X, y = dataset.X[:1], dataset.y[:1]
    x = preprocess_batch(X).requires_grad_(True)
    untrained_model(x)[0, int(y[0])].backward()
    vanilla = x.grad.abs().amax(dim=1).numpy()
    smooth = smoothgrad(X, y, untrained_model, n=3, noise_pct=0.0, rng=0)
    np.testing.assert_allclose(smooth, vanilla, rtol=1e-4, atol=1e-6 * float(vanilla.max()))


def test_the_same_seed_gives_the_same_maps(dataset, untrained_model):
    X, y = dataset.X[:1], dataset.y[:1]
    first = smoothgrad(X, y, untrained_model, n=2, rng=3)
    assert np.array_equal(first, smoothgrad(X, y, untrained_model, n=2, rng=np.random.default_rng(3)))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(X=np.zeros((1, 224, 224, 3))), TypeError, "X"),
    (dict(X=np.zeros((1, 224, 224, 4), np.uint8)), ValueError, "RGB"),
    (dict(y=np.array([1, 2])), ValueError, "y"),
    (dict(model="squeezenet"), TypeError, "model must be a torch.nn.Module"),
    (dict(n=0), ValueError, "n"),
    (dict(noise_pct=-0.1), ValueError, "noise_pct"),
    (dict(chunk=0), ValueError, "chunk"),
    (dict(rng="seed"), TypeError, "rng"),
])
def test_bad_arguments_are_named(kwargs, error, match):
    args = dict(X=np.zeros((1, 224, 224, 3), np.uint8), y=np.array([1]), model=torch.nn.Conv2d(3, 1, 1),
                n=1, noise_pct=0.1, rng=0, chunk=1)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        smoothgrad(**args)
