"""Tests of ``beyond.sanity``: cascading randomisation and map similarity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from beyond.attribution import vanilla_gradient
from beyond.sanity import (
    cascading_randomization, edge_map, map_similarity, randomization_blocks, randomization_curve, spearman,
    ssim,
)
from helpers.images import preprocess_batch

SQUEEZENET_BLOCKS = ["classifier.1", "features.12", "features.11", "features.10", "features.9",
                     "features.7", "features.6", "features.4", "features.3", "features.0"]


def test_blocks_of_squeezenet_from_the_output_down(untrained_model):
    assert randomization_blocks(untrained_model) == SQUEEZENET_BLOCKS


def test_cascade_randomises_cumulatively_and_leaves_the_model_alone(untrained_model):
    before = {k: v.clone() for k, v in untrained_model.state_dict().items()}
    steps = list(cascading_randomization(untrained_model, seed=3))
    assert [name for name, _ in steps] == ["original", *SQUEEZENET_BLOCKS]
    for k, v in untrained_model.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} of the model was changed"
    for k, (name, model) in enumerate(steps):
        assert not model.training and not any(p.requires_grad for p in model.parameters())
        randomised = set(SQUEEZENET_BLOCKS[:k])
        for pname, p in model.named_parameters():
            block = next((b for b in SQUEEZENET_BLOCKS if pname.startswith(b + ".")), None)
            same = torch.equal(p, before[pname])
            if block in randomised and pname.endswith("weight"):
                assert not same, f"step {name}: {pname} should be new"
            elif block not in randomised:
                assert same, f"step {name}: {pname} should be untouched"
    final = steps[1][1].get_submodule("classifier.1").weight
    assert abs(float(final.std()) - 0.01) < 0.001  # torchvision's N(0, 0.01) for the final convolution


def test_cascade_is_seeded(untrained_model):
    a = [m for _, m in cascading_randomization(untrained_model, seed=1)][-1]
    b = [m for _, m in cascading_randomization(untrained_model, seed=1)][-1]
    c = [m for _, m in cascading_randomization(untrained_model, seed=2)][-1]
    wa, wb, wc = (m.get_submodule("features.0").weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_spearman_matches_scipy(rng):
    a = rng.normal(size=(3, 12, 10))
    b = a + rng.normal(size=a.shape)
    b[0, :2] = 0.0  # ties
    expected = [stats.spearmanr(a[i].ravel(), b[i].ravel()).statistic for i in range(3)]
    np.testing.assert_allclose(spearman(a, b), expected, rtol=1e-12)
    assert np.isnan(spearman(a[:1], np.zeros((1, 12, 10))))[0]


def test_ssim_properties(rng):
    a = rng.random((2, 40, 40))
    np.testing.assert_allclose(ssim(a, a), 1.0)
    noisy = np.clip(a + 0.2 * rng.normal(size=a.shape), 0, 1)
    np.testing.assert_allclose(ssim(a, noisy), ssim(noisy, a))
    assert (ssim(a, noisy) < 0.9).all()
    assert (ssim(a, 1 - a) < 0).all()  # inverted structure


def test_ssim_matches_scikit_image(rng):
    from skimage import metrics   # pinned in requirements.txt: the cross-check always runs
    a = rng.random((2, 48, 40))
    b = np.clip(a + 0.1 * rng.normal(size=a.shape), 0, 1)
    expected = [metrics.structural_similarity(a[i], b[i], data_range=1.0, gaussian_weights=True, sigma=1.5,
                                              use_sample_covariance=False) for i in range(2)]
    np.testing.assert_allclose(ssim(a, b), expected, rtol=1e-10)


def test_edge_map_is_a_scaled_sobel_magnitude():
    X = np.zeros((1, 20, 20, 3), dtype=np.uint8)
    X[0, :, 10:] = 255  # a vertical edge
    e = edge_map(X)
    assert e.shape == (1, 20, 20) and e.dtype == np.float32
    assert e.max() == 1.0 and e[0, :, 9:11].min() == 1.0 and e[0, :, :8].max() == 0.0


def test_similarity_of_identical_and_of_unrelated_attributions(rng):
    a = torch.from_numpy(rng.normal(size=(2, 3, 32, 32)))
    same = map_similarity(a, a)
    for values in same.values():
        np.testing.assert_allclose(values, 1.0)
    other = map_similarity(a, torch.from_numpy(rng.normal(size=(2, 3, 32, 32))))
    assert (np.abs(other["spearman_abs"]) < 0.2).all() and (np.abs(other["spearman_signed"]) < 0.2).all()


def test_randomization_curve(dataset, untrained_model):
    x = preprocess_batch(dataset.X[[4, 5]])
    t = torch.from_numpy(dataset.y[[4, 5]])
    out = randomization_curve(x, t, untrained_model, {"gradient": vanilla_gradient})
    assert out["steps"] == ["original", *SQUEEZENET_BLOCKS]
    sim = out["similarity"]["gradient"]
    assert set(sim) == {"spearman_abs", "spearman_signed", "ssim"}
    assert sim["ssim"].shape == (11, 2)
    np.testing.assert_allclose(sim["spearman_abs"][0], 1.0)  # the original against itself
    assert len(out["attributions"]["gradient"]) == 11
    # Re-initialising the classifier gives another map: similarity drops.
    assert (sim["spearman_abs"][1] < 0.95).all()


@pytest.mark.parametrize("call, match", [
    (lambda m: randomization_blocks("model"), "model must be a torch.nn.Module"),
    (lambda m: list(cascading_randomization(m, seed=-1)), "seed must be >= 0"),
    (lambda m: spearman(np.zeros((1, 4, 4)), np.zeros((1, 4, 5))), "same shape"),
    (lambda m: spearman(np.zeros((4, 4)), np.zeros((4, 4))), "a must be 3-D"),
    (lambda m: ssim(np.full((1, 4, 4), np.nan), np.zeros((1, 4, 4))), "a must be finite"),
    (lambda m: ssim(np.zeros((1, 4, 4)), np.zeros((1, 4, 4)), data_range=0), "data_range must be > 0"),
    (lambda m: edge_map(np.zeros((1, 4, 4, 3))), "X must have dtype uint8"),
    (lambda m: map_similarity(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5)), "one shape"),
    (lambda m: randomization_curve(torch.zeros(1, 3, 8, 8), torch.zeros(1), m, {}), "methods must be"),
])
def test_bad_arguments_are_named(untrained_model, call, match):
    with pytest.raises((TypeError, ValueError), match=match):
        call(untrained_model)


# --------------------------------------------------------------------------- tests that catch planted bugs

def test_spearman_abs_is_computed_on_absolute_maps():
    # b = -a: the magnitudes are identical (spearman_abs 1), the signs opposite (spearman_signed -1).
    # Computing the "absolute" correlation on signed maps would give about -1 here.
    a = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    sim = map_similarity(a, -a)
    np.testing.assert_allclose(sim["spearman_abs"], 1.0)
    np.testing.assert_allclose(sim["spearman_signed"], -1.0)
    np.testing.assert_allclose(sim["ssim"], 1.0)


@pytest.mark.parametrize("axis", [1, 2], ids=["horizontal-edge", "vertical-edge"])
def test_edge_map_sees_edges_along_both_axes(axis):
    # A step from dark to bright along one axis: the edge map must light up at the step whichever the
    # axis (a Sobel filter along one axis only would miss one of the two).
    X = np.zeros((1, 16, 16, 3), dtype=np.uint8)
    index = [slice(None)] * 4
    index[axis] = slice(8, None)
    X[tuple(index)] = 200
    edges = edge_map(X)[0]
    profile = edges.mean(axis=1) if axis == 1 else edges.mean(axis=0)   # along the step's direction
    assert edges.max() == 1.0
    assert profile[7] > 0.9 and profile[8] > 0.9, profile
    assert profile[:5].max() == 0 and profile[11:].max() == 0, profile
