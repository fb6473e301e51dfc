"""Tests of :mod:`helpers.checks` on seeded synthetic gradients.

A raw gradient ``G`` of shape (5, 3, 8, 8) with signed values stands for the
gradient of the scores with respect to 5 images; the reference saliency maps
are ``abs(G).max(1)``.  Each typical student mistake must fail with a hint
that names it, correct answers must pass, and no message may show a value of
the reference.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from helpers.checks import (TOLERANCE, Verdict, assert_matches_reference, check_close, check_shape,
                            compare_arrays)

N, C, H, W = 5, 3, 8, 8


@pytest.fixture
def grad(rng) -> np.ndarray:
    return rng.standard_normal((N, C, H, W)).astype(np.float32)


@pytest.fixture
def ref(grad) -> np.ndarray:
    return np.abs(grad).max(axis=1)


def reference_strings(ref: np.ndarray) -> list[str]:
    """Ways a message could spell some of the reference's values."""
    out = []
    values = [ref.max(), ref.min(), ref.flat[0], ref.flat[ref.size // 2], ref[-1].max()]
    for v in values:
        out += [repr(float(v)), repr(v), str(v), f"{float(v):.6g}", f"{float(v):.5g}"]
    return [s for s in out if len(s) >= 5]


def assert_fails(verdict: Verdict, *hints: str, ref: np.ndarray | None = None) -> None:
    assert isinstance(verdict, Verdict)
    assert not verdict.passed, verdict.message
    for hint in hints:
        assert hint in verdict.message, f"{hint!r} not in {verdict.message!r}"
    json.dumps(verdict.details)
    if ref is not None:
        for s in reference_strings(ref):
            assert s not in verdict.message, f"reference value {s} leaked into {verdict.message!r}"


# --------------------------------------------------------------------------- #
# Correct answers
# --------------------------------------------------------------------------- #

def test_exact_answer_passes(ref):
    verdict = compare_arrays(ref.copy(), ref)
    assert verdict.passed, verdict.message
    assert verdict.details["stage"] == "ok"
    assert verdict.details["image_ok"] == [True] * N
    assert "matches the reference" in verdict.message
    json.dumps(verdict.details)


def test_small_float_noise_passes(ref, rng):
    noisy = ref * (1 + 1e-6 * rng.standard_normal(ref.shape))
    assert compare_arrays(noisy, ref).passed
    assert compare_arrays(noisy.astype(np.float64), ref).passed


def test_float64_reduction_of_float64_gradient_passes(grad, ref):
    assert compare_arrays(np.abs(grad.astype(np.float64)).max(1), ref).passed


def test_tolerance_is_relative_to_scale(ref, rng):
    noise = 1e-4 * rng.standard_normal(ref.shape)
    for scale in (1.0, 1e-3, 1e3):
        r = ref * scale
        assert compare_arrays(r * (1 + noise), r).passed
        assert not compare_arrays(r + 1e-2 * scale * rng.standard_normal(r.shape), r).passed


def test_tiny_reference_with_a_dead_image(ref, rng):
    tiny = (ref * 1e-4).astype(np.float32)
    tiny[2] = 0.0
    good = tiny * (1 + 1e-6 * rng.standard_normal(tiny.shape))
    assert compare_arrays(good, tiny).passed
    # The dead image must stay about zero: within 1e-6 of the batch's largest value.
    nearly = good.copy()
    nearly[2] = 1e-9 * tiny.max()
    assert compare_arrays(nearly, tiny).passed
    wrong = good.copy()
    wrong[2] = 1e-2 * tiny.max() * rng.random((H, W))
    verdict = compare_arrays(wrong, tiny)
    assert_fails(verdict, "image 2", ref=tiny)
    assert verdict.details["images_differ"] == [2]


def test_each_image_is_judged_on_its_own_scale(ref):
    r = ref.copy()
    r[0] *= 1e-2
    slightly = r.copy()
    slightly[0] *= 1 + 1e-4
    assert compare_arrays(slightly, r).passed
    off = r.copy()
    off[0] += 0.05 * r[0].max()  # small next to the other images, 5% of image 0
    assert_fails(compare_arrays(off, r), "image 0", ref=r)
    assert compare_arrays(off, r, per_image=False).passed


def test_all_zero_reference_needs_zeros():
    zeros = np.zeros((2, 4, 4), dtype=np.float32)
    assert compare_arrays(np.zeros_like(zeros), zeros).passed
    assert not compare_arrays(np.full_like(zeros, 1e-6), zeros).passed


def test_one_tolerance_is_the_fraction_of_the_scale_and_of_each_value():
    """|s - r| <= tolerance * (scale + |r|): exactly at the edge passes, just beyond fails."""
    ref = np.array([[[0.0, 1.0], [2.0, 4.0]]])   # one image, scale 4
    allowed = TOLERANCE * (4.0 + np.abs(ref))
    assert compare_arrays(ref + allowed * (1 - 1e-9), ref).passed
    assert not compare_arrays(ref + allowed * (1 + 1e-6), ref).passed
    assert compare_arrays(ref + 0.05, ref, tolerance=0.05).passed
    assert_fails(compare_arrays(ref + 0.05, ref, tolerance=0.01), "1% of the image's scale plus 1% of the expected value",
                 ref=ref)
    assert compare_arrays(ref.copy(), ref, tolerance=0).passed
    assert not compare_arrays(np.nextafter(ref, 10), ref, tolerance=0).passed


def test_a_dead_image_borrows_the_tolerance_of_the_largest_value(ref):
    r = ref.copy()
    r[1] = 0.0
    big = float(np.abs(r).max())
    near_zero = r.copy()
    near_zero[1] = 0.5 * TOLERANCE ** 2 * big
    assert compare_arrays(near_zero, r).passed
    near_zero[1] = 2 * TOLERANCE ** 2 * big
    assert_fails(compare_arrays(near_zero, r), "image 1", ref=r)


def test_lower_dimensional_references():
    scores = np.array([2.5, -1.0, 0.25])
    assert compare_arrays(scores * (1 + 1e-6), scores).passed
    assert_fails(compare_arrays(scores * 2, scores), "2 times too large")
    one_map = np.abs(np.arange(12.0).reshape(3, 4) - 5)
    assert compare_arrays(one_map.copy(), one_map).passed


def test_single_value_reference_gives_nothing_away():
    expected = np.asarray(2.5)
    assert compare_arrays(2.5 * (1 + 1e-6), expected).passed
    verdict = compare_arrays(5.0, expected)
    assert_fails(verdict, "differs from the expected value by more than the tolerance")
    assert "times too" not in verdict.message and "%" not in verdict.message.split("allowed")[0]


def test_whole_array_wording_without_per_image(ref, rng):
    verdict = compare_arrays(ref + 0.1 * rng.standard_normal(ref.shape), ref, per_image=False)
    assert_fails(verdict, "of the reference's scale", ref=ref)
    assert "image_ok" not in verdict.details and "Differing" not in verdict.message


# --------------------------------------------------------------------------- #
# Types
# --------------------------------------------------------------------------- #

def test_none(ref):
    verdict = compare_arrays(None, ref)
    assert_fails(verdict, "None", "did you forget `return`?")
    assert verdict.details["stage"] == "type"


def test_torch_tensor_where_numpy_expected(ref):
    tensor = torch.from_numpy(ref).requires_grad_(True)
    verdict = compare_arrays(tensor, ref)
    assert_fails(verdict, "torch.Tensor", ".detach().cpu().numpy()", "the values match", ref=ref)
    assert verdict.details["stage"] == "type"
    wrong = compare_arrays(torch.from_numpy(ref * 255), ref)
    assert_fails(wrong, ".detach().cpu().numpy()", "255 times too large", ref=ref)


def test_torch_accepted_when_allowed(ref):
    assert compare_arrays(torch.from_numpy(ref), ref, expect="any").passed
    assert compare_arrays(torch.from_numpy(ref), ref, expect="torch").passed
    assert compare_arrays(ref, ref, expect="any").passed


def test_numpy_where_torch_expected(ref):
    assert_fails(compare_arrays(ref, ref, expect="torch"), "torch.from_numpy")


def test_list_of_maps(ref):
    assert_fails(compare_arrays(list(ref), ref), "list of 5 items", "np.stack", "the values match")
    assert_fails(compare_arrays(tuple(torch.from_numpy(m) for m in ref), ref), "tuple", "np.stack")


@pytest.mark.parametrize("value, hint", [
    ({"a": 1}, "got a dict"),
    ("maps", "got a str"),
    (np.array(["a", "b"]), "does not hold numbers"),
    (np.array([object(), object()]), "does not hold numbers"),
])
def test_not_numeric(ref, value, hint):
    assert_fails(compare_arrays(value, ref), hint, ref=ref)


def test_single_number(ref):
    assert_fails(compare_arrays(float(ref.sum()), ref), "single number")
    assert_fails(compare_arrays(torch.tensor(1.0), ref, expect="any"), "single number")


# --------------------------------------------------------------------------- #
# Shapes
# --------------------------------------------------------------------------- #

@pytest.fixture
def grad_rect(rng) -> np.ndarray:
    return rng.standard_normal((N, C, 6, 8)).astype(np.float32)


def test_multichannel_gradient(grad, ref):
    verdict = compare_arrays(np.abs(grad), ref)
    assert_fails(verdict, "multi-channel gradient", "channel axis (dim=1)", ref=ref)
    assert verdict.details["stage"] == "shape"


@pytest.mark.parametrize("axis, where", [(0, "batch axis"), (2, "height axis"), (3, "width axis")])
def test_wrong_reduction_axis(grad_rect, axis, where):
    reference = np.abs(grad_rect).max(1)
    verdict = compare_arrays(np.abs(grad_rect).max(axis), reference)
    assert_fails(verdict, "wrong axis", "channel axis is 1 for (N,3,H,W)", where, ref=reference)


def test_wrong_axis_on_square_maps(grad, ref):
    assert_fails(compare_arrays(np.abs(grad).max(2), ref), "wrong axis")
    assert_fails(compare_arrays(np.abs(grad).max(3), ref), "wrong axis")


def test_wrong_axis_channels_last(grad_rect):
    reference = np.abs(grad_rect).max(1)
    last = np.abs(grad_rect).transpose(0, 2, 3, 1)  # (N, H, W, 3)
    assert_fails(compare_arrays(last.max(2), reference), "wrong axis")  # (N, H, 3)
    assert_fails(compare_arrays(last, reference), "channels-last")


def test_one_map_for_several_images(ref):
    assert_fails(compare_arrays(ref[-1], ref), "only one map returned")


def test_extra_and_missing_batch_axis(ref):
    assert_fails(compare_arrays(ref[None], ref), "extra leading batch axis", ".squeeze(0)")
    assert_fails(compare_arrays(ref[:2][:, None], ref[:2]), "extra axis of length 1 at position 1")
    assert_fails(compare_arrays(ref[0], ref[:1]), "batch axis of length 1 is missing")


def test_other_shapes(ref, grad):
    assert_fails(compare_arrays(ref[:2], ref), "2 maps but there are 5 images")
    assert_fails(compare_arrays(ref[:, :4, :4], ref), "4x4 but should be 8x8")
    assert_fails(compare_arrays(ref.reshape(N, -1), ref), "reshape")
    assert_fails(compare_arrays(np.zeros(7), ref), "expected shape (5, 8, 8), got (7,)")
    assert_fails(compare_arrays(ref, np.abs(grad)), "reduced over the channel axis")


# --------------------------------------------------------------------------- #
# Dtypes and non-finite values
# --------------------------------------------------------------------------- #

@pytest.mark.parametrize("convert, hint", [
    (lambda r: r.astype(np.int64), "integer dtype int64"),
    (lambda r: (r * 50).astype(np.uint8), "8-bit image"),
    (lambda r: r > 1, "True/False"),
    (lambda r: r.astype(np.float16), "half-precision"),
    (lambda r: r.astype(np.complex64), "complex"),
    (lambda r: torch.from_numpy(r).to(torch.bfloat16), "half-precision"),
])
def test_wrong_dtype(ref, convert, hint):
    verdict = compare_arrays(convert(ref), ref, expect="any")
    assert_fails(verdict, hint, ref=ref)
    assert verdict.details["stage"] == "dtype"


def test_nan_and_inf(ref):
    bad = ref.copy()
    bad[1, 0, :3] = np.nan
    bad[3, 2, 2] = np.inf
    verdict = compare_arrays(bad, ref)
    assert_fails(verdict, "3 NaN values", "1 infinite value", "images [1, 3]", "division by zero", ref=ref)
    assert verdict.details["stage"] == "finite"


# --------------------------------------------------------------------------- #
# Known mistakes from the grader
# --------------------------------------------------------------------------- #

@pytest.fixture
def mistakes(grad):
    return {
        "no abs": (grad.max(1), "take the absolute value of the gradient before the max (no abs)"),
        "sum": (np.abs(grad).sum(1), "you summed over the channels (sum) instead of the max"),
        "mean": (np.abs(grad).mean(1), "you averaged over the channels (mean) instead of the max"),
        "accumulated": (np.abs(np.cumsum(grad, 0)).max(1), "the gradient was never zeroed (accumulated)"),
    }


@pytest.mark.parametrize("key", ["no abs", "sum", "mean", "accumulated"])
def test_known_mistakes(ref, mistakes, key):
    student = mistakes[key][0] * (1 + 1e-6)
    verdict = compare_arrays(student, ref, known_mistakes=mistakes)
    assert_fails(verdict, f"({key})", ref=ref)
    assert verdict.details["stage"] == "known_mistake"
    assert verdict.details["mistake"] == key


def test_known_mistakes_do_not_hide_a_right_answer(ref):
    same = {"identical": (ref.copy(), "never shown")}
    assert compare_arrays(ref.copy(), ref, known_mistakes=same).passed


# --------------------------------------------------------------------------- #
# Heuristics on values
# --------------------------------------------------------------------------- #

def test_no_abs_heuristic(grad, ref):
    assert_fails(compare_arrays(grad.max(1), ref), "signed",
                 "absolute value before the max over channels", ref=ref)


def test_sum_and_mean_over_channels_heuristic(grad, ref):
    assert_fails(compare_arrays(np.abs(grad).sum(1), ref), "sum over the 3 colour channels", ref=ref)
    assert_fails(compare_arrays(np.abs(grad).mean(1), ref), "mean over the 3 colour channels", ref=ref)


@pytest.mark.parametrize("factor, hints", [
    (255.0, ["255 times too large"]),
    (1 / 255, ["255 times too small"]),
    (50.0, ["50 times too large", "average"]),           # SmoothGrad: sum instead of mean over 50 samples
    (1 / 7, ["7 times too small", "average divided by the wrong count"]),
    (-1.0, ["sign is flipped"]),
    (-3.0, ["sign is flipped", "3 times too large"]),
    (1.25, ["1.25 times too large", "5/4"]),
    (1.7, ["1.7 times too large"]),
])
def test_constant_factor(ref, factor, hints):
    verdict = compare_arrays((ref * factor).astype(np.float32), ref)
    assert_fails(verdict, *hints, ref=ref)
    assert verdict.details["ratio"] == pytest.approx(factor, rel=1e-4)


def test_smoothgrad_off_by_one_count_fails(ref):
    # 50/49 is too close to 49/48 to name reliably, but it must fail and say "too large".
    assert_fails(compare_arrays(ref * (50 / 49), ref), "times too large", ref=ref)


def test_normalised_maps(ref):
    assert_fails(compare_arrays(ref / ref.max(), ref), "rescaled for display", ref=ref)
    per_image = ref / ref.max(axis=(1, 2), keepdims=True)
    assert_fails(compare_arrays(per_image, ref), "each map peaks at exactly 1", ref=ref)
    lo, hi = ref.min(), ref.max()
    assert_fails(compare_arrays((ref - lo) / (hi - lo), ref), "rescaled for display", ref=ref)


def test_each_image_scaled_differently(ref):
    factors = np.array([1.0, 2.0, 0.5, 3.0, 1.5]).reshape(-1, 1, 1)
    assert_fails(compare_arrays(ref * factors, ref), "each image is off by its own constant factor", ref=ref)


def test_only_last_image_filled(ref):
    zeros_then_last = np.zeros_like(ref)
    zeros_then_last[-1] = ref[-1]
    verdict = compare_arrays(zeros_then_last, ref)
    assert_fails(verdict, "only the last image is filled in", "overwriting the result inside the loop",
                 "images [0, 1, 2, 3] are all zeros", ref=ref)
    assert verdict.details["image_ok"] == [False] * 4 + [True]


def test_every_entry_is_the_last_image(ref):
    overwritten = np.repeat(ref[-1:], N, axis=0)
    assert_fails(compare_arrays(overwritten, ref), "only the last image is filled in",
                 "every image holds the last image's map", ref=ref)


def test_every_entry_is_the_first_image(ref):
    assert_fails(compare_arrays(np.repeat(ref[:1], N, axis=0), ref), "every image holds the map of image 0",
                 ref=ref)


def test_wrong_order(ref):
    swapped = ref[[0, 2, 1, 3, 4]]
    verdict = compare_arrays(swapped, ref)
    assert_fails(verdict, "images are in the wrong order", "image 1 holds the map of image 2", ref=ref)
    assert verdict.details["permutation"] == [0, 2, 1, 3, 4]
    assert_fails(compare_arrays(ref[::-1], ref), "wrong order", "reversed", ref=ref)


def test_accumulated_gradients(ref):
    verdict = compare_arrays(np.cumsum(ref, axis=0), ref)
    assert_fails(verdict, "gradients accumulated across calls", "zero X.grad", "fresh tensor", ref=ref)


def test_zero_images_are_named(ref):
    student = ref.copy()
    student[[1, 3]] = 0
    assert_fails(compare_arrays(student, ref), "images [1, 3] are all zeros", ref=ref)


def test_all_zeros(ref):
    assert_fails(compare_arrays(np.zeros_like(ref), ref), "every value is zero", ref=ref)


def test_transposed_maps(ref):
    assert_fails(compare_arrays(ref.transpose(0, 2, 1), ref), "transposed", ref=ref)


def test_generic_message(ref, rng):
    student = ref.copy()
    student[3] += 0.1 * ref.max() * rng.random((H, W))
    verdict = compare_arrays(student, ref, name="saliency")
    assert_fails(verdict, "saliency does not match", "of the reference's scale", "allowed",
                 "Differing: image 3", "matching: images [0, 1, 2, 4]", ref=ref)
    assert verdict.details["diagnosis"] == "generic"
    assert verdict.details["images_differ"] == [3]
    assert verdict.details["max_abs_error"] > 0


def test_messages_never_show_reference_values(grad, ref, rng, mistakes):
    students = [None, list(ref), torch.from_numpy(ref * 2), ref[0], np.abs(grad), ref.astype(int),
                np.where(ref > 1, np.nan, ref), grad.max(1), np.zeros_like(ref), ref * 255, ref / ref.max(),
                np.cumsum(ref, 0), ref[::-1], ref + rng.standard_normal(ref.shape), ref - 1]
    for student in students:
        for kw in ({}, {"known_mistakes": mistakes}, {"tolerance": 0.01}):
            verdict = compare_arrays(student, ref, **kw)
            assert_fails(verdict, ref=ref)


# --------------------------------------------------------------------------- #
# assert_matches_reference, check_shape, check_close
# --------------------------------------------------------------------------- #

def test_assert_matches_reference(ref):
    verdict = assert_matches_reference(ref.copy(), ref, name="maps")
    assert verdict.passed
    with pytest.raises(AssertionError, match="255 times too large") as info:
        assert_matches_reference(ref * 255, ref, name="maps")
    for s in reference_strings(ref):
        assert s not in str(info.value)


def test_check_shape(ref, grad):
    check_shape(ref, (N, H, W))
    check_shape(torch.from_numpy(ref), (None, H, W))
    with pytest.raises(AssertionError, match="multi-channel gradient"):
        check_shape(np.abs(grad), (N, H, W), name="saliency")
    with pytest.raises(AssertionError, match="forget `return`"):
        check_shape(None, (N, H, W))
    with pytest.raises(AssertionError, match=r"\(any, 8, 8\)"):
        check_shape(ref[:, :4], (None, H, W))
    with pytest.raises(AssertionError, match="list of 5 items"):
        check_shape(list(ref), (N, H, W))
    with pytest.raises(TypeError, match="expected_shape"):
        check_shape(ref, "5, 8, 8")


def test_check_close(ref):
    check_close(torch.from_numpy(ref), ref)
    check_close(np.float32(0.5), 0.5)
    check_close(np.array([1.0, 2.0]), [1.0, 2.0])
    with pytest.raises(AssertionError, match="2 times too large"):
        check_close(ref * 2, ref, name="saliency")
    with pytest.raises(TypeError, match="expected"):
        check_close(ref, None)


# --------------------------------------------------------------------------- #
# Argument validation and the Verdict
# --------------------------------------------------------------------------- #

def test_argument_validation(ref):
    with pytest.raises(TypeError, match="reference must be a numpy array"):
        compare_arrays(ref, ref.tolist())
    with pytest.raises(TypeError, match="reference must be a numpy array"):
        compare_arrays(ref, torch.from_numpy(ref))
    with pytest.raises(ValueError, match="reference must not be empty"):
        compare_arrays(ref, np.zeros((0, 8, 8)))
    with pytest.raises(ValueError, match="reference must be finite"):
        compare_arrays(ref, np.where(ref > 1, np.nan, ref))
    with pytest.raises(TypeError, match="reference must hold real numbers"):
        compare_arrays(ref, ref.astype(complex))
    with pytest.raises(ValueError, match="tolerance must be >= 0"):
        compare_arrays(ref, ref, tolerance=-1e-3)
    with pytest.raises(ValueError, match="tolerance must be finite"):
        compare_arrays(ref, ref, tolerance=float("inf"))
    with pytest.raises(TypeError, match="tolerance must be a number"):
        compare_arrays(ref, ref, tolerance="small")
    with pytest.raises(ValueError, match="expect must be one of"):
        compare_arrays(ref, ref, expect="tensor")
    with pytest.raises(TypeError, match="per_image must be True or False"):
        compare_arrays(ref, ref, per_image="yes")
    with pytest.raises(TypeError, match="name must be a str"):
        compare_arrays(ref, ref, name=3)
    with pytest.raises(TypeError, match="known_mistakes must be a mapping"):
        compare_arrays(ref, ref, known_mistakes=[ref])
    with pytest.raises(TypeError, match=r"known_mistakes\['x'\] must be a tuple"):
        compare_arrays(ref, ref, known_mistakes={"x": ref})
    with pytest.raises(ValueError, match=r"must have the reference's shape \(5, 8, 8\)"):
        compare_arrays(ref, ref, known_mistakes={"x": (ref[0], "msg")})
    with pytest.raises(TypeError, match=r"known_mistakes\['x'\]\[1\] must be a non-empty str"):
        compare_arrays(ref, ref, known_mistakes={"x": (ref, "")})


def test_verdict_is_frozen_and_prints_its_message(ref):
    verdict = compare_arrays(ref * 2, ref)
    assert str(verdict) == verdict.message
    with pytest.raises(dataclasses.FrozenInstanceError):
        verdict.passed = True


def test_a_failed_check_shows_the_message_alone_in_jupyter(tmp_path):
    """In a notebook, a failing check_close shows the student's message, not helpers/checks.py's frames."""
    import nbformat

    from course_tools.notebooks import execute_notebook
    from helpers.checks import CheckFailed, check_close

    with pytest.raises(AssertionError):   # still an AssertionError everywhere else
        check_close([1.0, 2.0], [1.0, 3.0], name="my values")
    assert issubclass(CheckFailed, AssertionError)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from helpers.checks import check_close\ncheck_close([1.0, 2.0], [1.0, 3.0], name='my values')")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "nb.ipynb")
    result = execute_notebook(tmp_path / "nb.ipynb", write_to=tmp_path / "out.ipynb")
    assert result.error is not None
    (error,) = [o for o in nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[0].outputs
                if o.output_type == "error"]
    shown = "\n".join(error.traceback)
    assert shown.startswith("AssertionError: my values")
    assert "checks.py" not in shown and len(error.traceback) == 1
