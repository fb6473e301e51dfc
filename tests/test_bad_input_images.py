"""Bad input to :mod:`helpers.images`: a clear error naming the argument, never a silent wrong picture.

Table-driven: each case is a call, the exception type, and a pattern the message must match (the
argument's name and what was expected). Below the table, the formerly silent cases: 16-bit, int32
and float images converted by value range, NaN and integer overflow in ``rescale``.
"""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import assert_refused
from helpers.images import (MAX_ASPECT, add_noise, blur_image, deprocess, preprocess, preprocess_batch, rescale,
                            to_rgb)

U8 = np.full((8, 8, 3), 100, dtype=np.uint8)
BATCH = np.full((2, 8, 8, 3), 100, dtype=np.uint8)
T1 = torch.zeros(1, 3, 8, 8)
NAN_T = T1.clone()
NAN_T[0, 0, 0, 0] = float("nan")


def strip(width: int, height: int) -> Image.Image:
    return Image.new("RGB", (width, height))


CASES = [
    # preprocess: what kind of image
    ("preprocess-none", lambda: preprocess(None), TypeError, r"^img must be a PIL image or a uint8 numpy array"),
    ("preprocess-list", lambda: preprocess([[1, 2, 3]]), TypeError, r"^img must be a PIL image"),
    ("preprocess-float-array", lambda: preprocess(U8 / 255), TypeError, r"^img must have dtype uint8, got float64"),
    ("preprocess-rgba-array", lambda: preprocess(np.zeros((8, 8, 4), np.uint8)), ValueError,
     r"^img must be an RGB image of shape \(H, W, 3\)"),
    ("preprocess-2d-array", lambda: preprocess(np.zeros((8, 8), np.uint8)), ValueError, r"^img must be 3-D"),
    ("preprocess-batch-array", lambda: preprocess(BATCH), ValueError, r"^img must be 3-D, got shape \(2, 8, 8, 3\)"),
    ("preprocess-empty-array", lambda: preprocess(np.zeros((0, 8, 3), np.uint8)), ValueError,
     r"^img must not be empty"),
    ("preprocess-size-0", lambda: preprocess(U8, size=0), ValueError, r"^size must be >= 1, got 0"),
    ("preprocess-size-float", lambda: preprocess(U8, size=2.5), TypeError, r"^size must be an integer"),
    ("preprocess-size-bool", lambda: preprocess(U8, size=True), TypeError, r"^size must be an integer"),
    ("preprocess-size-huge", lambda: preprocess(U8, size=100_000), ValueError, r"^size must be <= 1024"),
    # the 165-byte 1 x 20000 PNG: refused before resizing, not gigabytes later
    ("preprocess-1x20000-pil", lambda: preprocess(strip(20000, 1)), ValueError,
     rf"^img is 20000 x 1 pixels: its long side is more than {MAX_ASPECT} times its short side"),
    ("preprocess-1x5000-array", lambda: preprocess(np.zeros((1, 5000, 3), np.uint8)), ValueError,
     r"^img is 5000 x 1 pixels"),
    ("preprocess-too-many-pixels", lambda: preprocess(Image.new("1", (8000, 8000))), ValueError,
     r"^img is 8000 x 8000 pixels, more than the 50,000,000"),
    ("preprocess-float-image-nan", lambda: preprocess(Image.fromarray(np.full((4, 4), np.nan, np.float32))),
     ValueError, r"^img holds NaN or infinite pixel values"),
    ("to_rgb-array", lambda: to_rgb(U8), TypeError, r"^img must be a PIL image, got a numpy array"),
    ("to_rgb-named", lambda: to_rgb("photo.jpg", name="photo"), TypeError, r"^photo must be a PIL image, got a str"),
    # rescale
    ("rescale-list", lambda: rescale([1.0, 2.0]), TypeError, r"^x must be a torch.Tensor or numpy array, got a list"),
    ("rescale-nan-tensor", lambda: rescale(NAN_T), ValueError, r"^x must be finite, but 1 of its 192 values are NaN"),
    ("rescale-inf-array", lambda: rescale(np.array([0.0, np.inf, 1.0])), ValueError, r"^x must be finite"),
    ("rescale-complex", lambda: rescale(np.array([1 + 2j, 3j])), TypeError, r"^x must hold real numbers .* complex128"),
    ("rescale-complex-tensor", lambda: rescale(torch.tensor([1 + 2j])), TypeError, r"^x must hold real numbers"),
    ("rescale-bool", lambda: rescale(np.array([True, False])), TypeError, r"^x must hold real numbers .* bool"),
    ("rescale-empty", lambda: rescale(np.zeros(0)), ValueError, r"^x must not be empty"),
    # deprocess
    ("deprocess-should_rescale-str", lambda: deprocess(T1, should_rescale="no"), TypeError,
     r"^should_rescale must be True or False, got a str"),
    ("deprocess-should_rescale-int", lambda: deprocess(T1, should_rescale=0), TypeError,
     r"^should_rescale must be True or False, got a int"),
    ("deprocess-nan", lambda: deprocess(NAN_T), ValueError, r"^img must be finite, but 1 of its 192 values"),
    ("deprocess-nan-no-rescale", lambda: deprocess(NAN_T, should_rescale=False), ValueError, r"^img must be finite"),
    ("deprocess-batch", lambda: deprocess(torch.zeros(2, 3, 8, 8)), ValueError, r"^img must hold a single image"),
    ("deprocess-int", lambda: deprocess(torch.zeros(1, 3, 8, 8, dtype=torch.int64)), TypeError,
     r"^img must be a floating-point tensor"),
    ("deprocess-channels-last", lambda: deprocess(torch.zeros(8, 8, 3)), ValueError,
     r"^img must have 3 channels first"),
    ("deprocess-numpy", lambda: deprocess(np.zeros((3, 8, 8), np.float32)), TypeError,
     r"^img must be a torch.Tensor, got a numpy array"),
    # blur_image: bounded sigma (1e6 ran for minutes)
    ("blur-sigma-1e6", lambda: blur_image(T1.clone(), sigma=1e6), ValueError, r"^sigma must be <= 8, got 1000000"),
    ("blur-sigma-0", lambda: blur_image(T1.clone(), sigma=0), ValueError, r"^sigma must be > 0, got 0"),
    ("blur-sigma-nan", lambda: blur_image(T1.clone(), sigma=float("nan")), ValueError, r"^sigma must be finite"),
    ("blur-sigma-str", lambda: blur_image(T1.clone(), sigma="2"), TypeError, r"^sigma must be a number, got a str"),
    ("blur-3d", lambda: blur_image(torch.zeros(3, 8, 8)), ValueError, r"^X must be 4-D"),
    ("blur-int", lambda: blur_image(torch.zeros(1, 3, 8, 8, dtype=torch.uint8)), TypeError,
     r"^X must be a floating-point tensor"),
    # preprocess_batch
    ("batch-float", lambda: preprocess_batch(BATCH / 255), TypeError, r"^X must have dtype uint8"),
    ("batch-channels-first", lambda: preprocess_batch(np.zeros((2, 3, 8, 8), np.uint8)), ValueError,
     r"^X must have shape \(N, H, W, 3\)"),
    ("batch-one-image", lambda: preprocess_batch(U8), ValueError, r"^X must be 4-D"),
    ("batch-device-int", lambda: preprocess_batch(BATCH, device=3), TypeError, r"^device must be a str or torch.device"),
    ("batch-device-name", lambda: preprocess_batch(BATCH, device="gpu"), ValueError,
     r"^device must be 'cpu', 'cuda', 'mps' or 'auto'"),
    # add_noise
    ("noise-negative", lambda: add_noise(U8, -0.1), ValueError, r"^noise_pct must be >= 0"),
    ("noise-nan", lambda: add_noise(U8, float("nan")), ValueError, r"^noise_pct must be finite"),
    ("noise-str", lambda: add_noise(U8, "10%"), TypeError, r"^noise_pct must be a number"),
    ("noise-rng-str", lambda: add_noise(U8, 0.1, rng="seed"), TypeError,
     r"^rng must be None, an int seed or a numpy.random.Generator"),
    ("noise-rng-negative", lambda: add_noise(U8, 0.1, rng=-1), ValueError, r"^rng must be a non-negative int seed"),
    ("noise-float-image", lambda: add_noise(U8 / 255, 0.1), TypeError, r"^x must have dtype uint8"),
    ("noise-batch", lambda: add_noise(BATCH, 0.1), ValueError, r"^x must be 3-D"),
]


@pytest.mark.parametrize("call, exc, pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_clearly(call, exc, pattern):
    assert_refused(call, exc, pattern)


def test_a_strip_image_is_refused_fast():
    start = time.perf_counter()
    with pytest.raises(ValueError):
        preprocess(strip(20000, 1))
    with pytest.raises(ValueError):
        blur_image(torch.zeros(1, 3, 8, 8), sigma=1e6)
    assert time.perf_counter() - start < 1.0


# --------------------------------------------------------------------------- formerly silent wrong results

def _png_bytes(img: Image.Image, fmt: str = "PNG") -> Image.Image:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt)
    buffer.seek(0)
    return Image.open(buffer)


def _grey_ramp() -> np.ndarray:
    return np.tile(np.linspace(0, 1, 16), (16, 1))


@pytest.mark.parametrize("kind", ["png-16bit", "tiff-int32", "tiff-float", "tiff-float-0-255", "int32-wide"])
def test_wide_images_are_converted_by_value_range(kind):
    ramp = _grey_ramp()
    if kind == "png-16bit":
        img = _png_bytes(Image.fromarray((ramp * 65535).astype(np.uint16)))
    elif kind == "tiff-int32":
        img = _png_bytes(Image.fromarray((ramp * 65535).astype(np.int32), mode="I"), "TIFF")
    elif kind == "tiff-float":
        img = _png_bytes(Image.fromarray(ramp.astype(np.float32), mode="F"), "TIFF")
    elif kind == "tiff-float-0-255":
        img = _png_bytes(Image.fromarray((ramp * 255).astype(np.float32), mode="F"), "TIFF")
    else:
        img = Image.fromarray((ramp * 1e9 - 5e8).astype(np.int32), mode="I")
    rgb = np.asarray(to_rgb(img))
    assert rgb.shape == (16, 16, 3) and rgb.dtype == np.uint8
    expected = np.rint(ramp * 255)
    assert np.abs(rgb[..., 0].astype(float) - expected).max() <= 1, f"{kind}: {rgb[0, :, 0]}"
    assert (rgb[..., 0] == rgb[..., 2]).all()
    # and preprocess sees the same picture: neither all white nor all black
    x = preprocess(img, size=16)
    assert float(x.std()) > 0.5


def test_rescale_of_integers_does_not_wrap():
    x = np.array([-128, 0, 127], dtype=np.int8)
    np.testing.assert_allclose(rescale(x), [0.0, 128 / 255, 1.0])
    t = torch.tensor([-128, 0, 127], dtype=torch.int8)
    torch.testing.assert_close(rescale(t), torch.tensor([0.0, 128 / 255, 1.0]))


def test_deprocess_still_works_with_a_true_flag():
    img = deprocess(torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)), should_rescale=True)
    arr = np.asarray(img)
    assert arr.min() == 0 and arr.max() == 255
