"""Preprocessing, its inverse, rescaling, blurring and noise."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter, gaussian_filter1d

from helpers.images import (IMAGENET_MEAN, IMAGENET_STD, add_noise, blur_image, deprocess, preprocess,
                            preprocess_batch, rescale)


pytestmark = pytest.mark.usefixtures("one_torch_thread", "offline")


def _expected_normalised(img_uint8: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W), normalised, computed independently of the helpers."""
    x = torch.from_numpy(img_uint8.astype(np.float32) / np.float32(255)).permute(2, 0, 1)
    mean = torch.from_numpy(IMAGENET_MEAN)[:, None, None]
    std = torch.from_numpy(IMAGENET_STD)[:, None, None]
    return ((x - mean) / std)[None]


# --------------------------------------------------------------------------- preprocess / deprocess

def test_constants():
    np.testing.assert_allclose(IMAGENET_MEAN, [0.485, 0.456, 0.406])
    np.testing.assert_allclose(IMAGENET_STD, [0.229, 0.224, 0.225])
    assert IMAGENET_MEAN.dtype == IMAGENET_STD.dtype == np.float32


def test_preprocess_shape_dtype_and_values(dataset):
    img = dataset.X[0]
    out = preprocess(img)
    assert out.shape == (1, 3, 224, 224) and out.dtype == torch.float32
    torch.testing.assert_close(out, _expected_normalised(img), rtol=0, atol=1e-6)


def test_preprocess_accepts_pil_and_converts_modes(dataset):
    img = dataset.X[1]
    assert torch.equal(preprocess(Image.fromarray(img)), preprocess(img))
    grey = Image.fromarray(img[..., 0], mode="L")
    out = preprocess(grey)
    assert out.shape == (1, 3, 224, 224)
    # An L image becomes R = G = B, so de-normalised channels agree.
    restored = out[0] * torch.from_numpy(IMAGENET_STD)[:, None, None] + torch.from_numpy(IMAGENET_MEAN)[:, None, None]
    torch.testing.assert_close(restored[0], restored[1], rtol=0, atol=1e-6)
    torch.testing.assert_close(restored[0], restored[2], rtol=0, atol=1e-6)


def test_round_trip_within_one_grey_level(dataset):
    for img in dataset.X:
        back = np.asarray(deprocess(preprocess(img), should_rescale=False))
        assert back.dtype == np.uint8 and back.shape == img.shape
        diff = np.abs(back.astype(int) - img.astype(int))
        assert diff.max() <= 1


def test_deprocess_accepts_3d_and_rescales(dataset):
    x = preprocess(dataset.X[2])
    a = np.asarray(deprocess(x[0], should_rescale=False))
    b = np.asarray(deprocess(x, should_rescale=False))
    np.testing.assert_array_equal(a, b)
    stretched = np.asarray(deprocess(x * 0.1))  # a low-contrast image is stretched to the full range
    assert stretched.min() == 0 and stretched.max() >= 254
    clipped = np.asarray(deprocess(torch.full((1, 3, 4, 4), 100.0), should_rescale=False))
    assert (clipped == 255).all()


def test_deprocess_does_not_touch_its_input(dataset):
    x = preprocess(dataset.X[3]).requires_grad_()
    before = x.detach().clone()
    deprocess(x)
    assert torch.equal(x.detach(), before)


def test_preprocess_batch_equals_stacking_preprocess(dataset):
    batch = preprocess_batch(dataset.X)
    stacked = torch.cat([preprocess(img) for img in dataset.X])
    assert batch.shape == (25, 3, 224, 224) and batch.dtype == torch.float32
    assert batch.is_contiguous()
    assert torch.equal(batch, stacked)
    assert torch.equal(preprocess_batch(dataset.X[:3], device="cpu"), stacked[:3])
    assert preprocess_batch(dataset.X, device=torch.device("cpu")).device.type == "cpu"


def test_preprocess_batch_does_not_modify_the_images(dataset):
    X = dataset.X[:2].copy()
    preprocess_batch(X)
    np.testing.assert_array_equal(X, dataset.X[:2])


@pytest.mark.parametrize("shape, out_hw", [((2, 100, 150, 3), (224, 336)), ((3, 300, 240, 3), (280, 224)),
                                           ((1, 224, 300, 3), (224, 300))])
def test_non_224_sizes_fall_back_to_the_lab_resize(rng, shape, out_hw):
    X = rng.integers(0, 256, size=shape, dtype=np.uint8)
    batch = preprocess_batch(X)
    assert batch.shape == (shape[0], 3) + out_hw
    assert torch.equal(batch, torch.cat([preprocess(x) for x in X]))
    # The lab's resize is PIL's bilinear resize of the shorter side to 224.
    for i, x in enumerate(X):
        resized = np.asarray(Image.fromarray(x).resize(out_hw[::-1], Image.BILINEAR))
        torch.testing.assert_close(batch[i:i + 1], _expected_normalised(resized), rtol=0, atol=1e-5)


def test_preprocess_size_argument(dataset):
    out = preprocess(dataset.X[0], size=112)
    assert out.shape == (1, 3, 112, 112)
    with pytest.raises(ValueError, match=r"^size must be >= 1"):
        preprocess(dataset.X[0], size=0)
    with pytest.raises(TypeError, match=r"^size must be an integer"):
        preprocess(dataset.X[0], size=112.0)


@pytest.mark.parametrize("bad, error, pattern", [
    (np.zeros((8, 8, 3), dtype=np.float32), TypeError, r"^img must have dtype uint8"),
    (np.zeros((8, 8), dtype=np.uint8), ValueError, r"^img must be 3-D"),
    (np.zeros((8, 8, 4), dtype=np.uint8), ValueError, r"^img must be an RGB image"),
    (np.zeros((1, 8, 8, 3), dtype=np.uint8), ValueError, r"^img must be 3-D"),
    (torch.zeros(8, 8, 3, dtype=torch.uint8), TypeError, r"^img must be a PIL image"),
    ([[0, 0, 0]], TypeError, r"^img must be a PIL image"),
])
def test_preprocess_bad_inputs(bad, error, pattern):
    with pytest.raises(error, match=pattern):
        preprocess(bad)


@pytest.mark.parametrize("bad, error, pattern", [
    (np.zeros((2, 8, 8, 3), dtype=np.float32), TypeError, r"^X must have dtype uint8"),
    (np.zeros((8, 8, 3), dtype=np.uint8), ValueError, r"^X must be 4-D"),
    (np.zeros((2, 8, 8, 1), dtype=np.uint8), ValueError, r"^X must have shape \(N, H, W, 3\)"),
    (np.zeros((0, 224, 224, 3), dtype=np.uint8), ValueError, r"^X must not be empty"),
    (torch.zeros(2, 224, 224, 3, dtype=torch.uint8), TypeError, r"^X must be a numpy array"),
])
def test_preprocess_batch_bad_inputs(bad, error, pattern):
    with pytest.raises(error, match=pattern):
        preprocess_batch(bad)


@pytest.mark.parametrize("bad, error, pattern", [
    (torch.zeros(224, 224), ValueError, r"^img must be 3-D or 4-D"),
    (torch.zeros(2, 3, 8, 8), ValueError, r"^img must hold a single image, got a batch of 2"),
    (torch.zeros(1, 1, 8, 8), ValueError, r"^img must have 3 channels first"),
    (torch.zeros(8, 8, 3), ValueError, r"^img must have 3 channels first"),
    (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), TypeError, r"^img must be a floating-point tensor"),
    (np.zeros((1, 3, 8, 8), dtype=np.float32), TypeError, r"^img must be a torch.Tensor"),
])
def test_deprocess_bad_inputs(bad, error, pattern):
    with pytest.raises(error, match=pattern):
        deprocess(bad)


# --------------------------------------------------------------------------- rescale

def test_rescale_maps_to_unit_interval(rng):
    t = torch.from_numpy(rng.normal(3.0, 5.0, size=(3, 10, 10)))
    out = rescale(t)
    assert isinstance(out, torch.Tensor) and out.shape == t.shape
    assert out.min().item() == 0.0 and out.max().item() == pytest.approx(1.0, abs=1e-12)
    torch.testing.assert_close(out, (t - t.min()) / (t.max() - t.min()))

    a = rng.uniform(-2, 7, size=(5, 6)).astype(np.float32)
    out_np = rescale(a)
    assert isinstance(out_np, np.ndarray) and out_np.dtype == np.float32
    assert out_np.min() == 0.0 and out_np.max() == pytest.approx(1.0, abs=1e-6)
    # Order is kept: rescaling is increasing and linear.
    np.testing.assert_array_equal(np.argsort(out_np, axis=None), np.argsort(a, axis=None))


@pytest.mark.parametrize("value", [0.0, 5.0, -3.25])
def test_rescale_constant_gives_zeros(value):
    t = torch.full((2, 3), value)
    out = rescale(t)
    assert torch.equal(out, torch.zeros(2, 3)) and not torch.isnan(out).any()
    out_np = rescale(np.full((4,), value))
    np.testing.assert_array_equal(out_np, np.zeros(4))


def test_rescale_bad_inputs():
    with pytest.raises(TypeError, match=r"^x must be a torch.Tensor or numpy array"):
        rescale([1, 2, 3])
    with pytest.raises(ValueError, match=r"^x must not be empty"):
        rescale(torch.zeros(0))
    with pytest.raises(ValueError, match=r"^x must not be empty"):
        rescale(np.zeros((2, 0)))


# --------------------------------------------------------------------------- blur_image

@pytest.mark.parametrize("sigma", [1, 0.5, 2.5])
def test_blur_image_in_place_matches_scipy(dataset, sigma):
    X = preprocess_batch(dataset.X[:2])
    original = X.clone()
    ptr = X.data_ptr()
    out = blur_image(X, sigma=sigma)
    assert out is X and X.data_ptr() == ptr
    assert not torch.equal(X, original)
    expected = gaussian_filter1d(gaussian_filter1d(original.numpy(), sigma, axis=2), sigma, axis=3)
    np.testing.assert_allclose(X.numpy(), expected, rtol=0, atol=1e-6)
    # Blurring is separable: the same as a 2-D Gaussian over H and W only (channels and images apart).
    np.testing.assert_allclose(X.numpy(), gaussian_filter(original.numpy(), sigma=(0, 0, sigma, sigma)),
                               rtol=0, atol=1e-5)


def test_blur_image_default_sigma_and_leaf_with_grad(rng):
    X = torch.from_numpy(rng.normal(size=(1, 3, 16, 16)).astype(np.float32)).requires_grad_()
    original = X.detach().clone()
    blur_image(X)
    expected = gaussian_filter1d(gaussian_filter1d(original.numpy(), 1, axis=2), 1, axis=3)
    np.testing.assert_allclose(X.detach().numpy(), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("X, sigma, error, pattern", [
    (torch.zeros(3, 8, 8), 1, ValueError, r"^X must be 4-D"),
    (torch.zeros(1, 3, 8, 8, dtype=torch.long), 1, TypeError, r"^X must be a floating-point tensor"),
    (np.zeros((1, 3, 8, 8), dtype=np.float32), 1, TypeError, r"^X must be a torch.Tensor"),
    (torch.zeros(1, 3, 8, 8), 0, ValueError, r"^sigma must be > 0"),
    (torch.zeros(1, 3, 8, 8), -1.0, ValueError, r"^sigma must be > 0"),
    (torch.zeros(1, 3, 8, 8), "1", TypeError, r"^sigma must be a number"),
])
def test_blur_image_bad_inputs(X, sigma, error, pattern):
    with pytest.raises(error, match=pattern):
        blur_image(X, sigma=sigma)


# --------------------------------------------------------------------------- add_noise

@pytest.fixture
def mid_grey(rng) -> np.ndarray:
    """A mid-grey image (values 100..156): noise of a few grey levels is never clipped."""
    return rng.integers(100, 157, size=(64, 64, 3), dtype=np.uint8)


@pytest.mark.parametrize("noise_pct", [0.1, 0.2, 0.5])
def test_add_noise_has_the_documented_spread(mid_grey, noise_pct):
    out = add_noise(mid_grey, noise_pct, rng=np.random.default_rng(2024))
    assert out.dtype == np.uint8 and out.shape == mid_grey.shape
    noise = out.astype(np.float64) - mid_grey
    sigma = noise_pct * mid_grey.std()
    assert sigma > 1.5  # not a degenerate check
    # Rounding to integers adds variance 1/12; the sample std of 12288 draws is within ~2%.
    assert noise.std() == pytest.approx(np.sqrt(sigma ** 2 + 1 / 12), rel=0.03)
    assert abs(noise.mean()) < 0.1 * sigma  # zero-mean, no systematic darkening


def test_add_noise_tiny_noise_changes_nothing(mid_grey):
    # A noise level far below one grey level must not move the pixels.
    out = add_noise(mid_grey, 1e-4, rng=0)
    np.testing.assert_array_equal(out, mid_grey)


def test_add_noise_is_clipped(rng):
    img = np.zeros((32, 32, 3), dtype=np.uint8)
    img[:, 16:] = 255
    out = add_noise(img, 2.0, rng=rng)
    assert out.dtype == np.uint8
    # Half the noise is negative on the black half and positive on the white half: clipped, not wrapped.
    assert (out[:, :16] == 0).mean() > 0.4 and (out[:, 16:] == 255).mean() > 0.4
    assert out[:, :16].mean() < 128 < out[:, 16:].mean()


def test_add_noise_seeded_and_reproducible(dataset):
    img = dataset.X[4]
    a = add_noise(img, 0.2, np.random.default_rng(7))
    b = add_noise(img, 0.2, np.random.default_rng(7))
    c = add_noise(img, 0.2, 7)
    d = add_noise(img, 0.2, np.int64(7))
    e = add_noise(img, 0.2, 8)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(a, d)
    assert not np.array_equal(a, e)
    assert not np.array_equal(a, img)
    gen = np.random.default_rng(7)
    first, second = add_noise(img, 0.2, gen), add_noise(img, 0.2, gen)
    assert not np.array_equal(first, second)  # a shared generator moves on


def test_add_noise_zero_returns_the_image(dataset):
    img = dataset.X[5]
    out = add_noise(img, 0, rng=1)
    np.testing.assert_array_equal(out, img)
    assert out.dtype == np.uint8
    out[0, 0, 0] ^= 1  # a new array: the caller's image is not shared
    assert out[0, 0, 0] != img[0, 0, 0]


def test_add_noise_does_not_modify_the_input(dataset):
    img = dataset.X[6].copy()
    add_noise(img, 0.3, rng=3)
    np.testing.assert_array_equal(img, dataset.X[6])


@pytest.mark.parametrize("x, noise_pct, rng, error, pattern", [
    (np.zeros((8, 8, 3), dtype=np.float32), 0.1, 0, TypeError, r"^x must have dtype uint8"),
    (np.zeros((8, 8, 3), dtype=np.int64), 0.1, 0, TypeError, r"^x must have dtype uint8"),
    (np.zeros((2, 8, 8, 3), dtype=np.uint8), 0.1, 0, ValueError, r"^x must be 3-D"),
    (np.zeros((8, 8), dtype=np.uint8), 0.1, 0, ValueError, r"^x must be 3-D"),
    (np.zeros((8, 8, 4), dtype=np.uint8), 0.1, 0, ValueError, r"^x must be one RGB image"),
    (torch.zeros(8, 8, 3, dtype=torch.uint8), 0.1, 0, TypeError, r"^x must be a numpy array"),
    (np.zeros((8, 8, 3), dtype=np.uint8), -0.1, 0, ValueError, r"^noise_pct must be >= 0"),
    (np.zeros((8, 8, 3), dtype=np.uint8), float("nan"), 0, ValueError, r"^noise_pct must be finite"),
    (np.zeros((8, 8, 3), dtype=np.uint8), "0.1", 0, TypeError, r"^noise_pct must be a number"),
    (np.zeros((8, 8, 3), dtype=np.uint8), True, 0, TypeError, r"^noise_pct must be a number"),
    (np.zeros((8, 8, 3), dtype=np.uint8), 0.1, 1.5, TypeError, r"^rng must be None, an int seed"),
    (np.zeros((8, 8, 3), dtype=np.uint8), 0.1, "seed", TypeError, r"^rng must be None, an int seed"),
    (np.zeros((8, 8, 3), dtype=np.uint8), 0.1, True, TypeError, r"^rng must be None, an int seed"),
    (np.zeros((8, 8, 3), dtype=np.uint8), 0.1, -3, ValueError, r"^rng must be a non-negative"),
])
def test_add_noise_bad_inputs(x, noise_pct, rng, error, pattern):
    with pytest.raises(error, match=pattern):
        add_noise(x, noise_pct, rng)


def test_preprocess_batch_refuses_an_unavailable_or_unknown_device(dataset):
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda"):
            preprocess_batch(dataset.X[:1], device="cuda")
    with pytest.raises(ValueError, match="device"):
        preprocess_batch(dataset.X[:1], device="tpu")
    assert preprocess_batch(dataset.X[:1], device="cpu").device.type == "cpu"
