"""The argument checks in :mod:`helpers._validation` raise as documented.

TypeError for a value of the wrong kind, ValueError for the right kind with the
wrong shape, range or content; every message names the argument.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers._validation import (NUM_IMAGENET_CLASSES, describe, require_choice, require_image, require_images,
                                 require_labels, require_maps, require_ndarray, require_number, require_range,
                                 require_rng, require_tensor, to_numpy)


# --------------------------------------------------------------------------- describe

def test_describe_names_shape_dtype_and_type():
    assert describe(np.zeros((2, 3), dtype=np.uint8)) == "a numpy array of shape (2, 3) and dtype uint8"
    text = describe(torch.zeros(4, 5))
    assert "torch.Tensor" in text and "(4, 5)" in text and "torch.float32" in text and "cpu" in text
    assert describe([1, 2]) == "a list"
    assert describe(None) == "a NoneType"


# --------------------------------------------------------------------------- require_labels

@pytest.mark.parametrize("labels", [
    [0, 5, 999],
    (0, 5, 999),
    np.array([0, 5, 999], dtype=np.int32),
    np.array([0, 5, 999], dtype=np.uint16),
    torch.tensor([0, 5, 999]),
])
def test_require_labels_accepts_integer_containers(labels):
    out = require_labels("y", labels)
    assert isinstance(out, np.ndarray) and out.dtype == np.int64
    np.testing.assert_array_equal(out, [0, 5, 999])


def test_require_labels_accepts_a_single_int():
    out = require_labels("label", 7)
    assert out.dtype == np.int64 and out.tolist() == [7]
    assert require_labels("label", np.int16(3)).tolist() == [3]


@pytest.mark.parametrize("bad", [[-1], [NUM_IMAGENET_CLASSES], [3, 1000, 5], np.array([0, -7])])
def test_require_labels_rejects_labels_outside_0_999(bad):
    with pytest.raises(ValueError, match=r"^y must hold ImageNet labels in 0\.\.999"):
        require_labels("y", bad)


def test_require_labels_reports_the_bad_values():
    with pytest.raises(ValueError, match=r"\[1000, -2\]"):
        require_labels("y", [1, 1000, -2])


def test_require_labels_mismatched_length():
    with pytest.raises(ValueError, match=r"y has 3 labels but 2 images were given"):
        require_labels("y", [1, 2, 3], length=2)
    assert require_labels("y", [1, 2], length=2).tolist() == [1, 2]


@pytest.mark.parametrize("bad", [True, [True, False], np.array([True]), [1.0, 2.0], np.array([0.5]),
                                 "3", None, {1: 2}, torch.tensor([1.0])])
def test_require_labels_rejects_non_integers_and_bools(bad):
    with pytest.raises(TypeError, match=r"^y must be integer class labels"):
        require_labels("y", bad)


@pytest.mark.parametrize("empty", [[], (), np.zeros(0, dtype=np.int64), torch.zeros(0, dtype=torch.long)])
def test_require_labels_rejects_empty(empty):
    with pytest.raises(ValueError, match=r"^y must not be empty"):
        require_labels("y", empty)


def test_require_labels_rejects_2d():
    with pytest.raises(ValueError, match=r"^y must be 1-D, got shape \(2, 2\)"):
        require_labels("y", np.array([[1, 2], [3, 4]]))


# --------------------------------------------------------------------------- require_number

@pytest.mark.parametrize("value", [0, 3, 2.5, np.float32(1.5), np.int64(4)])
def test_require_number_accepts_real_numbers(value):
    assert require_number("sigma", value) == value


@pytest.mark.parametrize("value", [True, False, np.bool_(True), "1", None, [1], complex(1, 0), torch.tensor(1.0)])
def test_require_number_rejects_non_numbers_including_bool(value):
    with pytest.raises(TypeError, match=r"^sigma must be a number"):
        require_number("sigma", value)


def test_require_number_integer_rejects_floats_and_bool():
    with pytest.raises(TypeError, match=r"^num must be an integer, got a float"):
        require_number("num", 2.0, integer=True)
    with pytest.raises(TypeError, match=r"^num must be an integer, got a bool"):
        require_number("num", True, integer=True)
    assert require_number("num", np.int8(3), integer=True) == 3


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -np.inf])
def test_require_number_rejects_non_finite(value):
    with pytest.raises(ValueError, match=r"^sigma must be finite"):
        require_number("sigma", value)


def test_require_number_range():
    with pytest.raises(ValueError, match=r"^num must be >= 1, got 0"):
        require_number("num", 0, low=1)
    with pytest.raises(ValueError, match=r"^num must be <= 25, got 26"):
        require_number("num", 26, high=25)
    with pytest.raises(ValueError, match=r"^sigma must be > 0, got 0"):
        require_number("sigma", 0, low=0, low_inclusive=False)
    assert require_number("num", 1, low=1, high=25) == 1
    assert require_number("num", 25, low=1, high=25) == 25
    assert require_number("sigma", 1e-9, low=0, low_inclusive=False) == 1e-9


# --------------------------------------------------------------------------- require_ndarray / require_tensor

def test_require_ndarray_checks_type_ndim_dtype_and_emptiness():
    good = np.zeros((2, 3), dtype=np.uint8)
    assert require_ndarray("x", good, ndim=2, dtype=np.uint8) is good
    with pytest.raises(TypeError, match=r"^x must be a numpy array, got a list"):
        require_ndarray("x", [[1]])
    with pytest.raises(ValueError, match=r"^x must be 3-D, got shape \(2, 3\) \(2-D\)"):
        require_ndarray("x", good, ndim=3)
    with pytest.raises(ValueError, match=r"^x must be 3-D or 4-D"):
        require_ndarray("x", good, ndim=(3, 4))
    with pytest.raises(TypeError, match=r"^x must have dtype uint8, got float64"):
        require_ndarray("x", good.astype(float), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"^x must not be empty, got shape \(0, 3\)"):
        require_ndarray("x", np.zeros((0, 3)))


def test_require_ndarray_tensor_only_when_allowed():
    t = torch.arange(6).reshape(2, 3)
    with pytest.raises(TypeError, match=r"^x must be a numpy array, got a torch.Tensor"):
        require_ndarray("x", t)
    out = require_ndarray("x", t, allow_tensor=True, ndim=2)
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, np.arange(6).reshape(2, 3))


def test_require_tensor_checks_type_ndim_float_and_emptiness():
    good = torch.zeros(1, 3, 4, 4)
    assert require_tensor("X", good, ndim=4, floating=True) is good
    with pytest.raises(TypeError, match=r"^X must be a torch.Tensor, got a numpy array"):
        require_tensor("X", np.zeros((1, 3, 4, 4)))
    with pytest.raises(ValueError, match=r"^X must be 4-D, got shape \(3, 4\) \(2-D\)"):
        require_tensor("X", torch.zeros(3, 4), ndim=4)
    with pytest.raises(TypeError, match=r"^X must be a floating-point tensor, got dtype torch.int64"):
        require_tensor("X", torch.zeros(1, 3, 4, 4, dtype=torch.long), floating=True)
    with pytest.raises(ValueError, match=r"^X must not be empty"):
        require_tensor("X", torch.zeros(0, 3, 4, 4), ndim=4)


# --------------------------------------------------------------------------- require_choice / require_rng

def test_require_choice():
    assert require_choice("mode", "max", ["max", "abs"]) == "max"
    for bad in ["Max", "", None, 1]:
        with pytest.raises(ValueError, match=r"^mode must be one of \['max', 'abs'\]"):
            require_choice("mode", bad, ["max", "abs"])


def test_require_rng_none_int_generator():
    a = require_rng("rng", 5).normal(size=4)
    b = require_rng("rng", np.int64(5)).normal(size=4)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, np.random.default_rng(5).normal(size=4))
    gen = np.random.default_rng(1)
    assert require_rng("rng", gen) is gen
    assert isinstance(require_rng("rng", None), np.random.Generator)


@pytest.mark.parametrize("bad", [True, 1.5, "3", object(), [1], np.float64(2.0)])
def test_require_rng_rejects_wrong_kinds(bad):
    with pytest.raises(TypeError, match=r"^rng must be None, an int seed or a numpy.random.Generator"):
        require_rng("rng", bad)


def test_require_rng_accepts_duck_typed_generators():
    class Fixed:
        def normal(self, loc=0.0, scale=1.0, size=None):
            return np.full(size, loc, dtype=float)

    fixed = Fixed()
    assert require_rng("rng", fixed) is fixed


def test_require_rng_rejects_negative_seed_naming_the_argument():
    with pytest.raises(ValueError, match=r"^rng must be a non-negative int seed, got -1"):
        require_rng("rng", -1)


# --------------------------------------------------------------------------- to_numpy: the one conversion

def test_to_numpy_detaches_and_moves_tensors_and_returns_arrays_as_they_are():
    t = torch.ones(2, 3, requires_grad=True) * 2
    out = to_numpy("x", t)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and (out == 2).all()
    arr = np.zeros(3)
    assert to_numpy("x", arr) is arr


def test_to_numpy_half_precision():
    assert to_numpy("x", torch.ones(2, dtype=torch.bfloat16)).dtype == np.float32
    assert to_numpy("x", torch.ones(2, dtype=torch.float16)).dtype == np.float32
    assert to_numpy("x", torch.ones(2, dtype=torch.float16), keep_float16=True).dtype == np.float16
    assert to_numpy("x", torch.ones(2, dtype=torch.bfloat16), keep_float16=True).dtype == np.float32


def test_to_numpy_array_likes_only_when_asked():
    with pytest.raises(TypeError, match="^x must be a numpy array or a torch.Tensor, got a list"):
        to_numpy("x", [1.0, 2.0])
    assert to_numpy("x", [1.0, 2.0], array_like=True).tolist() == [1.0, 2.0]
    assert to_numpy("x", 3, array_like=True).shape == ()
    for bad in (None, "abc", b"abc"):
        with pytest.raises(TypeError, match="^x must be a number or an array of numbers"):
            to_numpy("x", bad, array_like=True)


# --------------------------------------------------------------------------- images, maps, ranges

def test_require_images_and_image_accept_uint8_and_unit_floats():
    X = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    assert require_images("X", X) is X
    assert require_image("image", np.full((4, 4, 3), 0.5)).shape == (4, 4, 3)
    with pytest.raises(ValueError, match="channels-first"):
        require_images("X", np.zeros((2, 3, 4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"X holds floats in \[2, 2\], but float images must lie in \[0, 1\]"):
        require_images("X", np.full((1, 2, 2, 3), 2.0))
    with pytest.raises(ValueError, match=r"pass image\[i\]"):
        require_image("image", X)


def test_require_maps_match_the_images():
    X = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    assert require_maps("maps", torch.zeros(2, 4, 4), X).shape == (2, 4, 4)
    with pytest.raises(ValueError, match="maps has 3 maps but X has 2 images"):
        require_maps("maps", np.zeros((3, 4, 4)), X)
    with pytest.raises(ValueError, match="Reduce the colour channels"):
        require_maps("maps", np.zeros((2, 3, 4, 4)), X)


def test_require_range():
    assert require_range("r", (0, 1)) == (0.0, 1.0)
    with pytest.raises(ValueError, match="r must have low < high"):
        require_range("r", [1, 1])
    with pytest.raises(TypeError, match=r"r must be a pair \(low, high\)"):
        require_range("r", "01")
