"""Tests of ``beyond.attribution``: each method against Captum's implementation.

Same model (the untrained SqueezeNet), same inputs (lab images 4, 5, 6,
whose class scores are alive under these weights), same target classes; the
noise tunnel gets exactly Captum's noise (drawn again from the same torch
seed in Captum's order), Integrated Gradients the same baseline and
quadrature. Tolerance: the largest difference, relative to the largest
absolute attribution of each image, must stay below ``TOL`` = 1e-4 (measured
with ``tests``' settings: at most 2.8e-7, from VarGrad, which Captum computes as
E[g^2] - E[g]^2 in float32 while we keep float64 sums; vanilla and
gradient x input are bitwise equal).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from beyond.attribution import (
    IG_METHODS, REDUCTIONS, gradient_times_input, integrated_gradients, integration_points, noise_sigma,
    noise_tunnel, reduce_channels, vanilla_gradient,
)
from helpers.images import preprocess_batch

captum_attr = pytest.importorskip("captum.attr", reason="captum is pinned in requirements.txt")

IMAGES = [4, 5, 6]
TOL = 1e-4

# Captum says so when it turns on requires_grad for an input itself; that is expected here.
pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")


@pytest.fixture(scope="module")
def batch(dataset):
    x = preprocess_batch(dataset.X[IMAGES])
    return x, torch.from_numpy(dataset.y[IMAGES])


def relative_difference(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """Largest |ours - theirs| over each image's largest |theirs|, worst image."""
    ours, theirs = ours.detach(), theirs.detach()
    scale = theirs.abs().flatten(1).amax(dim=1)
    assert (scale > 0).all(), "the test images must have nonzero attributions"
    return float(((ours - theirs).abs().flatten(1).amax(dim=1) / scale).max())


def test_vanilla_gradient_matches_captum_saliency(batch, untrained_model):
    x, t = batch
    theirs = captum_attr.Saliency(untrained_model).attribute(x, target=t, abs=False)
    ours = vanilla_gradient(x, t, untrained_model, chunk_size=2)
    assert ours.shape == x.shape and not ours.requires_grad
    assert relative_difference(ours, theirs) < TOL


def test_gradient_times_input_matches_captum(batch, untrained_model):
    x, t = batch
    theirs = captum_attr.InputXGradient(untrained_model).attribute(x, target=t)
    assert relative_difference(gradient_times_input(x, t, untrained_model), theirs) < TOL


@pytest.mark.parametrize("kind", ["smoothgrad", "smoothgrad_sq", "vargrad"])
def test_noise_tunnel_matches_captum_with_the_same_noise(batch, untrained_model, kind):
    x, t = batch
    n, sigma = 4, 0.3
    torch.manual_seed(11)
    theirs = captum_attr.NoiseTunnel(captum_attr.Saliency(untrained_model)).attribute(
        x, nt_type=kind, nt_samples=n, stdevs=sigma, target=t, abs=False)
    # Captum draws all noise at once: torch.normal(0, sigma) of shape (N * n, 3, H, W), image-major.
    torch.manual_seed(11)
    noise = torch.normal(0, torch.tensor(sigma).repeat((x.shape[0] * n, *x.shape[1:])))
    ours = noise_tunnel(x, t, untrained_model, n=n, noise=noise.view(x.shape[0], n, *x.shape[1:]),
                        chunk_size=5)[kind]  # chunks that span images
    assert relative_difference(ours, theirs) < TOL


def test_noise_tunnel_without_noise_is_the_gradient(batch, untrained_model):
    x, t = batch
    out = noise_tunnel(x, t, untrained_model, n=3, sigma=0.0)
    grad = vanilla_gradient(x, t, untrained_model)
    assert relative_difference(out["smoothgrad"], grad) < 1e-6
    assert relative_difference(out["smoothgrad_sq"], grad ** 2) < 1e-6
    assert float(out["vargrad"].abs().max()) <= 1e-6 * float((grad ** 2).max())


def test_noise_tunnel_is_reproducible_with_a_generator(batch, untrained_model):
    x, t = batch
    a = noise_tunnel(x[:1], t[:1], untrained_model, n=2, sigma=0.5, generator=torch.Generator().manual_seed(3))
    b = noise_tunnel(x[:1], t[:1], untrained_model, n=2, sigma=0.5, generator=torch.Generator().manual_seed(3))
    c = noise_tunnel(x[:1], t[:1], untrained_model, n=2, sigma=0.5, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a["smoothgrad"], b["smoothgrad"])
    assert not torch.equal(a["smoothgrad"], c["smoothgrad"])


@pytest.mark.parametrize("method", IG_METHODS)
def test_integrated_gradients_matches_captum(batch, untrained_model_f64, dataset, method):
    # Captum's Riemann points come from torch.linspace in float32, ours in float64: with 8 intervals
    # (9 points for the trapezoid) every point is a multiple of 1/8 or 1/16, exact in both. (With other
    # counts the points differ by ~5e-8, which can flip a ReLU and change a patch by up to 2e-2.)
    # In float64: Captum runs all path points in one batch, we in chunks of 3, and in float32 the different
    # convolution algorithms' rounding flips a few near-zero ReLUs of the (biased) untrained network.
    x, t = batch
    x, untrained_model = x.double(), untrained_model_f64
    steps = 9 if method == "riemann_trapezoid" else 8
    black = preprocess_batch(np.zeros_like(dataset.X[IMAGES])).double()
    theirs = captum_attr.IntegratedGradients(untrained_model).attribute(
        x, baselines=black, target=t, n_steps=steps, method=method)
    ours = integrated_gradients(x, t, untrained_model, baseline=black, steps=steps, method=method, chunk_size=3)
    if method == "riemann_trapezoid":
        # Captum 0.9 puts its n points at linspace(0, 1, n) but weighs them 1/n (halved at the ends), so its
        # weights sum to (n - 1)/n; the trapezoid rule's spacing is 1/(n - 1), and ours sum to 1.
        theirs = theirs * steps / (steps - 1)
    assert relative_difference(ours, theirs) < TOL


def test_integrated_gradients_completeness(batch, untrained_model):
    # The attributions add up to f(x) - f(baseline), up to the quadrature's error.
    x, t = batch
    ig = integrated_gradients(x, t, untrained_model, baseline=0.0, steps=64)
    with torch.no_grad():
        gain = (untrained_model(x) - untrained_model(torch.zeros_like(x))).gather(1, t.view(-1, 1))[:, 0]
    np.testing.assert_allclose(ig.flatten(1).sum(dim=1).numpy(), gain.numpy(), rtol=0.02,
                               atol=0.02 * float(gain.abs().max()))


@pytest.mark.parametrize("method", IG_METHODS)
def test_integration_points_integrate_polynomials(method):
    alphas, weights = integration_points(16, method)
    assert alphas.min() >= 0 and alphas.max() <= 1
    assert weights.sum() == pytest.approx(1.0)
    assert (weights * alphas).sum() == pytest.approx(0.5, abs=0.04)  # the integral of a over [0, 1]


def test_reductions():
    a = torch.tensor([[1.0, -3.0, 2.0]]).view(1, 3, 1, 1)
    got = {how: float(reduce_channels(a, how)) for how in REDUCTIONS}
    assert got == {"signed_sum": 0.0, "abs_sum": 6.0, "max": 2.0, "max_abs": 3.0}
    assert reduce_channels(a.numpy()).shape == (1, 1, 1)


def test_noise_sigma_is_relative_to_the_range():
    x = torch.tensor([-2.0, 0.0, 3.0])
    assert noise_sigma(x, 0.1) == pytest.approx(0.5)


@pytest.mark.parametrize("call, match", [
    (lambda x, t, m: vanilla_gradient(x[0], t, m), "inputs must be 4-D"),
    (lambda x, t, m: vanilla_gradient(x, t[:2], m), "target has 2 classes but inputs has 3 images"),
    (lambda x, t, m: vanilla_gradient(x, t.float(), m), "target must hold integer class indices"),
    (lambda x, t, m: vanilla_gradient(x, t, "model"), "model must be a torch.nn.Module"),
    (lambda x, t, m: vanilla_gradient(x, t + 1000, m), "target holds class"),
    (lambda x, t, m: noise_tunnel(x, t, m, n=0), "n must be >= 1"),
    (lambda x, t, m: noise_tunnel(x, t, m, sigma=-1.0), "sigma must be >= 0"),
    (lambda x, t, m: noise_tunnel(x, t, m, n=2, noise=torch.zeros(3, 3, 3, 224, 224)), "noise must have shape"),
    (lambda x, t, m: integrated_gradients(x, t, m, method="simpson"), "method must be one of"),
    (lambda x, t, m: integrated_gradients(x, t, m, baseline=torch.zeros(2, 3, 224, 224)), "cannot broadcast"),
    (lambda x, t, m: integrated_gradients(x, t, m, steps=1, method="riemann_trapezoid"), "steps must be >= 2"),
    (lambda x, t, m: reduce_channels(x, "mean"), "how must be one of"),
    (lambda x, t, m: vanilla_gradient(x, t, m, chunk_size=0), "chunk_size must be >= 1"),
])
def test_bad_arguments_are_named(batch, untrained_model, call, match):
    x, t = batch
    with pytest.raises((TypeError, ValueError), match=match):
        call(x, t, untrained_model)


# --------------------------------------------------------------------------- tests that catch planted bugs

class _Quadratic(torch.nn.Module):
    """score_c(x) = sum(w_c * x**2): not homogeneous of degree one, so the path matters."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(2),
                                                dtype=torch.float64), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x[:, None] ** 2 * self.w[None]).flatten(2).sum(dim=2)


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_middle"])
def test_integrated_gradients_walks_the_path(method):
    # From a zero baseline: IG_i = x_i * int_0^1 2 w_i (a x_i) da = w_i x_i**2 exactly, while the gradient
    # at the image times the image is 2 w_i x_i**2. Evaluating every path point at the image itself would
    # return the latter.
    model = _Quadratic().eval()
    x = torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    t = torch.tensor([1, 3])
    ig = integrated_gradients(x, t, model, baseline=0.0, steps=8, method=method)
    expected = (model.w[t] * x ** 2).float()
    torch.testing.assert_close(ig, expected, rtol=1e-5 if method == "gausslegendre" else 1e-2, atol=1e-6)
    assert not torch.allclose(ig, gradient_times_input(x, t, model).float(), rtol=0.1)


def test_the_untrained_network_is_not_homogeneous_so_ig_differs_from_gradient_times_input(batch, untrained_model):
    x, t = batch
    ig = integrated_gradients(x, t, untrained_model, baseline=0.0, steps=16)
    gxi = gradient_times_input(x, t, untrained_model)
    assert relative_difference(ig, gxi) > 0.05


def test_on_a_homogeneous_network_ig_from_zero_is_gradient_times_input(batch, untrained_model_f64):
    # The old degenerate case, kept on purpose: with zero biases SqueezeNet (ReLU and pooling only) is
    # positively homogeneous, f(a x) = a f(x), so its gradient is constant along the ray from 0 and
    # IG from a zero baseline equals gradient x input whatever the quadrature.
    import copy

    homogeneous = copy.deepcopy(untrained_model_f64)
    with torch.no_grad():
        for module in homogeneous.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.bias.zero_()
    x, t = batch
    x = x[:1].double()
    ig = integrated_gradients(x, t[:1], homogeneous, baseline=0.0, steps=3, method="riemann_right")
    gxi = gradient_times_input(x, t[:1], homogeneous).float()
    assert relative_difference(ig, gxi) < 1e-4
