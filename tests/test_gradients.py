"""The saliency pipeline gets the right numbers.

The source notebooks' own solutions (``compute_saliency`` of notebook 2, the
channel reductions of notebook 3, executed from their solution cells) are checked on
tiny models whose input gradients are known: a linear model, finite
differences on a small conv net, the channel reductions, and batch
independence on the real (untrained) SqueezeNet.
"""

from __future__ import annotations

import json
from pathlib import Path


import numpy as np
import pytest
import torch
from torch import nn

from helpers.images import preprocess_batch


pytestmark = pytest.mark.usefixtures("one_torch_thread", "offline")


ROOT = Path(__file__).resolve().parents[1]


def solution(notebook: str, grade_id: str, name: str):
    """The function ``name`` as defined in the source notebook's solution cell ``grade_id``.

    These tests pin what the kit's solutions compute, independently of the references recorded from them
    (which every test run regenerates from the same solutions): a changed solution must still pass them.
    """
    nb = json.loads((ROOT / "source" / "lab" / notebook).read_text())
    (cell,) = [c for c in nb["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id]
    namespace = {"torch": torch, "np": np}
    exec(compile("".join(cell["source"]), f"{notebook}:{grade_id}", "exec"), namespace)
    return namespace[name]


_compute_saliency = solution("02_vanilla_saliency.ipynb", "compute_saliency", "compute_saliency")
_maxabs = solution("03_reductions_and_histograms.ipynb", "maxabs_over_channels", "maxabs_over_channels")
_max = solution("03_reductions_and_histograms.ipynb", "max_over_channels", "max_over_channels")


def lab_gradients(X: torch.Tensor, y: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """Gradient of each image's correct-class score with respect to the image: the lab's solution."""
    model.eval()
    return _compute_saliency(X, y, model)


def saliency_max(grad: torch.Tensor) -> torch.Tensor:
    """The lab's saliency map (solution of notebook 3): max over channels of the absolute gradient."""
    return _maxabs(grad)


def signed_max(grad: torch.Tensor) -> torch.Tensor:
    """The signed maximum over channels (solution of notebook 3)."""
    return _max(grad)


# --------------------------------------------------------------------------- linear model

def _linear_model(H: int, W: int, classes: int, generator: torch.Generator) -> nn.Sequential:
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * H * W, classes))
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(classes, 3 * H * W, generator=generator))
        model[1].bias.copy_(torch.randn(classes, generator=generator))
    return model


def test_linear_model_gradient_is_the_weight_row():
    g = torch.Generator().manual_seed(0)
    N, H, W, C = 4, 5, 6, 10
    model = _linear_model(H, W, C, g)
    X = torch.randn(N, 3, H, W, generator=g)
    y = torch.tensor([3, 0, 9, 3])
    grad = lab_gradients(X, y, model)
    assert grad.shape == X.shape
    weight = model[1].weight.detach()
    for i in range(N):
        torch.testing.assert_close(grad[i], weight[y[i]].view(3, H, W), rtol=0, atol=0)
    # The gradient does not depend on the input for a linear model.
    torch.testing.assert_close(lab_gradients(X * 5 - 2, y, model), grad, rtol=0, atol=0)


def test_linear_model_gradient_of_a_single_image():
    # With N = 1, squeeze() leaves a 0-d score; backward(ones_like) must still work.
    g = torch.Generator().manual_seed(1)
    model = _linear_model(3, 3, 4, g)
    X = torch.randn(1, 3, 3, 3, generator=g)
    grad = lab_gradients(X, torch.tensor([2]), model)
    torch.testing.assert_close(grad[0], model[1].weight.detach()[2].view(3, 3, 3), rtol=0, atol=0)


def test_channel_reductions_on_known_weights():
    """Hand-made weights: max and max-abs over channels give maps known in advance."""
    H, W = 2, 3
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * H * W, 2, bias=False))
    row = torch.tensor([
        [[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]],    # channel R
        [[-4.0, 1.0, 0.25], [2.0, -5.0, -0.5]],  # channel G
        [[2.0, 0.5, -3.0], [-1.0, 1.0, -2.0]],   # channel B
    ])
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].weight[1] = row.reshape(-1)
    grad = lab_gradients(torch.zeros(1, 3, H, W), torch.tensor([1]), model)
    expected_max = torch.tensor([[[2.0, 1.0, 0.5], [2.0, 3.0, -0.5]]])
    expected_abs = torch.tensor([[[4.0, 2.0, 3.0], [2.0, 5.0, 2.0]]])
    assert torch.equal(signed_max(grad), expected_max)
    assert torch.equal(saliency_max(grad), expected_abs)
    assert saliency_max(grad).shape == (1, H, W)


def test_channel_reductions_match_numpy_on_a_random_linear_model():
    g = torch.Generator().manual_seed(2)
    N, H, W, C = 3, 7, 5, 6
    model = _linear_model(H, W, C, g)
    X = torch.randn(N, 3, H, W, generator=g)
    y = torch.tensor([5, 1, 1])
    grad = lab_gradients(X, y, model)
    rows = model[1].weight.detach().numpy()[y.numpy()].reshape(N, 3, H, W)
    np.testing.assert_array_equal(saliency_max(grad).numpy(), np.abs(rows).max(axis=1))
    np.testing.assert_array_equal(signed_max(grad).numpy(), rows.max(axis=1))
    assert (saliency_max(grad) >= 0).all()


# --------------------------------------------------------------------------- finite differences

def _small_convnet(generator: torch.Generator) -> nn.Sequential:
    model = nn.Sequential(
        nn.Conv2d(3, 6, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 5),
    ).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64))
    return model


def test_gradients_match_central_finite_differences():
    g = torch.Generator().manual_seed(3)
    model = _small_convnet(g)
    N, H, W = 3, 8, 8
    X = torch.randn(N, 3, H, W, generator=g, dtype=torch.float64)
    y = torch.tensor([4, 0, 2])
    grad = lab_gradients(X, y, model)
    assert grad.dtype == torch.float64
    assert grad.abs().max() > 1e-3  # not a trivially zero gradient

    def score(Z: torch.Tensor, i: int) -> float:
        with torch.no_grad():
            return model(Z)[i, y[i]].item()

    rng = np.random.default_rng(3)
    eps = 1e-6
    for _ in range(12):
        i, c, h, w = (int(rng.integers(n)) for n in (N, 3, H, W))
        plus, minus = X.clone(), X.clone()
        plus[i, c, h, w] += eps
        minus[i, c, h, w] -= eps
        numeric = (score(plus, i) - score(minus, i)) / (2 * eps)
        assert grad[i, c, h, w].item() == pytest.approx(numeric, rel=1e-5, abs=1e-8)
        # The score of image i does not move when another image is perturbed.
        j = (i + 1) % N
        assert score(plus, j) == score(X, j)

    # Channel reductions of the checked gradient.
    np.testing.assert_array_equal(saliency_max(grad).numpy(), np.abs(grad.numpy()).max(axis=1))
    np.testing.assert_array_equal(signed_max(grad).numpy(), grad.numpy().max(axis=1))


def test_gradients_are_the_sum_over_a_batch_of_each_images_gradient():
    """backward(ones) over the batch = per-image gradients (no image's score depends on another)."""
    g = torch.Generator().manual_seed(4)
    model = _small_convnet(g)
    X = torch.randn(4, 3, 6, 6, generator=g, dtype=torch.float64)
    y = torch.tensor([1, 2, 3, 4])
    together = lab_gradients(X, y, model)
    for i in range(4):
        alone = lab_gradients(X[i:i + 1], y[i:i + 1], model)
        torch.testing.assert_close(together[i:i + 1], alone, rtol=1e-12, atol=1e-14)


def test_model_parameters_collect_no_gradient():
    g = torch.Generator().manual_seed(5)
    model = _small_convnet(g)
    for p in model.parameters():
        p.requires_grad_(False)
    grad = lab_gradients(torch.randn(2, 3, 5, 5, generator=g, dtype=torch.float64), torch.tensor([0, 1]), model)
    assert grad is not None and grad.shape == (2, 3, 5, 5)
    assert all(p.grad is None for p in model.parameters())


# --------------------------------------------------------------------------- the real SqueezeNet

def test_squeezenet_gradients_are_batch_independent(untrained_model_f64, dataset):
    # float64: in float32, the convolution algorithms chosen for batches of 1 and 2 round differently,
    # which can flip a near-zero ReLU of the biased untrained network.
    untrained_model = untrained_model_f64
    X = preprocess_batch(dataset.X[:2]).double()
    with torch.no_grad():
        scores = untrained_model(X)
    # The untrained net's ReLU output is zero for many classes; use each image's top class so the
    # gradient is not trivially zero.
    y = scores.argmax(dim=1)
    assert (scores.gather(1, y.view(-1, 1)) > 0).all()

    together = lab_gradients(X, y, untrained_model)
    assert together.shape == X.shape
    for i in range(2):
        alone = lab_gradients(X[i:i + 1], y[i:i + 1], untrained_model)
        scale = alone.abs().max()
        assert scale > 0
        assert (together[i] - alone[0]).abs().max() <= 1e-6 * scale

    # Changing image 1 does not change image 0's gradient.
    X_other = X.clone()
    X_other[1] = torch.flip(X[1], dims=(2,))
    changed = lab_gradients(X_other, y, untrained_model)
    assert (changed[0] - together[0]).abs().max() <= 1e-6 * together[0].abs().max()
    assert not torch.allclose(changed[1], together[1])

    # The saliency maps are 2-D per image, non-negative, and not constant.
    maps = saliency_max(together)
    assert maps.shape == (2, 224, 224) and (maps >= 0).all() and maps.std() > 0
    # The model was not changed by the backward passes.
    assert all(p.grad is None and not p.requires_grad for p in untrained_model.parameters())
