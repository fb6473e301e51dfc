"""Bad input to :mod:`helpers.plots` and :mod:`helpers.checks`: a clear error naming the argument and what
was expected, never a misleading figure or verdict."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from conftest import assert_refused
from helpers.checks import check_close, check_shape, compare_arrays
from helpers.plots import (plot_score_histograms, save_figure, scale_maps, show_image_and_map, show_images,
                           show_saliency_grid, show_smoothgrad_comparison)

X = np.full((2, 8, 8, 3), 120, dtype=np.uint8)
MAPS = np.ones((2, 8, 8), dtype=np.float32)
NAN_MAPS = MAPS.copy()
NAN_MAPS[1, 2, 3] = np.nan
REF = np.arange(6, dtype=np.float64).reshape(2, 3)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _figure_then(call):
    fig = plt.figure()
    return call(fig)


CASES = [
    # show_images
    ("images-list", lambda: show_images([X[0]]), TypeError, r"^X must be a numpy array or a torch.Tensor, got a list"),
    ("images-float-0-255", lambda: show_images(X.astype(np.float32)), ValueError,
     r"^X holds floats in \[120, 120\], but float images must lie in \[0, 1\]"),
    ("images-channels-first", lambda: show_images(X.transpose(0, 3, 1, 2)), ValueError,
     r"^X must be RGB with channels last .* It looks channels-first"),
    ("images-int32", lambda: show_images(X.astype(np.int32)), TypeError, r"^X must be uint8 \(0..255\) or float"),
    ("images-nan", lambda: show_images(np.full((1, 4, 4, 3), np.nan)), ValueError, r"^X must be finite"),
    ("images-ncols-0", lambda: show_images(X, ncols=0), ValueError, r"^ncols must be >= 1"),
    ("images-title-int", lambda: show_images(X, title=3), TypeError, r"^title must be a str or None, got a int"),
    ("images-labels-and-titles", lambda: show_images(X, labels=[1, 2], titles=["a", "b"]), ValueError,
     r"give either labels .* or titles"),
    ("images-titles-count", lambda: show_images(X, titles=["a"]), ValueError, r"^titles has 1 entries but 2 images"),
    ("images-labels-1000", lambda: show_images(X, labels=[1, 1000]), ValueError,
     r"^labels must hold ImageNet labels in 0..999"),
    ("images-class_names-list", lambda: show_images(X, labels=[1, 2], class_names=["a"]), TypeError,
     r"^class_names must be a dict of int to str"),
    # show_saliency_grid / show_smoothgrad_comparison
    ("grid-maps-nan", lambda: show_saliency_grid(X, NAN_MAPS), ValueError,
     r"^maps must be finite, but 1 of its 128 values are NaN or infinite"),
    ("grid-maps-4d", lambda: show_saliency_grid(X, np.ones((2, 3, 8, 8))), ValueError,
     r"^maps must be \(N, H, W\): one 2-D map per image.* Reduce the colour channels"),
    ("grid-maps-count", lambda: show_saliency_grid(X, MAPS[:1]), ValueError, r"^maps has 1 maps but X has 2 images"),
    ("grid-maps-size", lambda: show_saliency_grid(X, np.ones((2, 4, 4))), ValueError,
     r"^maps maps are 4x4 but the images in X are 8x8"),
    ("grid-maps-complex", lambda: show_saliency_grid(X, MAPS.astype(np.complex64)), TypeError,
     r"^maps must hold real numbers"),
    ("grid-maps-bool", lambda: show_saliency_grid(X, MAPS > 0), TypeError, r"^maps must hold real numbers"),
    ("grid-same_scale-str", lambda: show_saliency_grid(X, MAPS, same_scale="yes"), TypeError,
     r"^same_scale must be True or False, got a str"),
    ("grid-cmap-int", lambda: show_saliency_grid(X, MAPS, cmap=3), TypeError, r"^cmap must be a colour-map name"),
    ("grid-cmap-unknown", lambda: show_saliency_grid(X, MAPS, cmap="nope"), ValueError, r"cmap"),
    ("grid-map_title-none", lambda: show_saliency_grid(X, MAPS, map_title=None), TypeError,
     r"^map_title must be a str, got a NoneType"),
    ("comparison-vanilla-nan", lambda: show_smoothgrad_comparison(X, MAPS, NAN_MAPS), ValueError,
     r"^vanilla_maps must be finite"),
    ("comparison-smooth-count", lambda: show_smoothgrad_comparison(X, MAPS[:1], MAPS), ValueError,
     r"^smoothgrad_maps has 1 maps but X has 2 images"),
    # show_image_and_map
    ("image-batch", lambda: show_image_and_map(X, MAPS[0]), ValueError,
     r"^image must be one image of shape \(H, W, 3\), got a batch .* pass image\[i\]"),
    ("image-map-size", lambda: show_image_and_map(X[0], np.ones((4, 4))), ValueError,
     r"^saliency_map is 4x4 but image is"),
    ("image-map-nan-tensor", lambda: show_image_and_map(X[0], torch.full((8, 8), float("inf"))), ValueError,
     r"^saliency_map must be finite"),
    ("image-colorbar-int", lambda: show_image_and_map(X[0], MAPS[0], colorbar=1), TypeError,
     r"^colorbar must be True or False, got a int"),
    # scale_maps and histograms
    ("scale-percentile-0", lambda: scale_maps(MAPS, percentile=0), ValueError, r"^percentile must be > 0"),
    ("scale-percentile-101", lambda: scale_maps(MAPS, percentile=101), ValueError, r"^percentile must be <= 100"),
    ("scale-maps-1d", lambda: scale_maps(np.ones(5)), ValueError, r"^maps must have shape \(..., H, W\)"),
    ("hist-bins-0", lambda: plot_score_histograms(MAPS, MAPS, bins=0), ValueError, r"^bins must be >= 1"),
    ("hist-limits", lambda: plot_score_histograms(MAPS, MAPS, limits="tight"), ValueError,
     r"^limits must be one of \['lab', 'auto'\], got 'tight'"),
    ("hist-maxabs-negative", lambda: plot_score_histograms(MAPS, -MAPS), ValueError,
     r"^maxabs_scores must be >= 0 \(they are absolute values\)"),
    ("hist-raw-range", lambda: plot_score_histograms(MAPS, MAPS, raw_range=(1, 0)), ValueError,
     r"^raw_range must have low < high"),
    ("hist-raw-nan", lambda: plot_score_histograms(NAN_MAPS, MAPS), ValueError, r"^raw_scores must be finite"),
    # save_figure
    ("save-not-a-figure", lambda: save_figure("fig", "out"), TypeError, r"^fig must be a matplotlib Figure"),
    ("save-path-int", lambda: _figure_then(lambda f: save_figure(f, 3)), TypeError,
     r"^path must be a str or os.PathLike"),
    ("save-format-bmp", lambda: _figure_then(lambda f: save_figure(f, "out", formats=["bmp"])), ValueError,
     r"^formats\[0\] must be one of"),
    ("save-formats-empty", lambda: _figure_then(lambda f: save_figure(f, "out", formats=[])), ValueError,
     r"^formats must name at least one file format"),
    ("save-dpi-0", lambda: _figure_then(lambda f: save_figure(f, "out", dpi=0)), ValueError, r"^dpi must be >= 1"),
    # checks
    ("compare-tolerance-negative", lambda: compare_arrays(REF, REF, tolerance=-1), ValueError,
     r"^tolerance must be >= 0"),
    ("compare-tolerance-nan", lambda: compare_arrays(REF, REF, tolerance=float("nan")), ValueError,
     r"^tolerance must be finite"),
    ("compare-expect", lambda: compare_arrays(REF, REF, expect="pandas"), ValueError,
     r"^expect must be one of .* got 'pandas'"),
    ("compare-per_image-str", lambda: compare_arrays(REF, REF, per_image="yes"), TypeError,
     r"^per_image must be True or False, got a str"),
    ("compare-reference-list", lambda: compare_arrays(REF, [1, 2]), TypeError, r"^reference must be a numpy array"),
    ("compare-reference-nan", lambda: compare_arrays(REF, np.array([np.nan])), ValueError,
     r"^reference must be finite"),
    ("compare-name-int", lambda: compare_arrays(REF, REF, name=3), TypeError, r"^name must be a str"),
    ("check_shape-str", lambda: check_shape(REF, "2, 3"), TypeError, r"^expected_shape must be a tuple of ints"),
    ("check_shape-negative", lambda: check_shape(REF, (2, -3)), TypeError,
     r"^expected_shape must hold non-negative ints or None"),
    ("check_close-expected-str", lambda: check_close(REF, "abc"), TypeError,
     r"^expected must be a number or an array of numbers"),
]


@pytest.mark.parametrize("call, exc, pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_clearly(tmp_path, monkeypatch, call, exc, pattern):
    monkeypatch.chdir(tmp_path)
    assert_refused(call, exc, pattern)
    assert not any(tmp_path.iterdir()), "a refused save_figure must not write a file"
