"""Comparisons of a student's result with a reference, for the autograder.

The autograder computes a reference array (for example the saliency maps of
the 25 images) and calls :func:`compare_arrays` with the student's value.  The
answer is a :class:`Verdict` whose message says, in plain words, what is
*probably* wrong: a missing ``return``, the wrong reduction axis, a factor of
255, an image order mix-up, gradients accumulated across calls, ...  No
reference value lives in this module, and no message ever shows a value of
the reference: only shapes, counts, image indices, errors relative to the
reference's scale, and ratios.

The checks run in this order, and the first one that fails gives the message:

1. **type** – ``None``, a list or tuple, a torch tensor where a numpy array was
   expected (or the reverse), a value that is not numeric;
2. **shape** – multi-channel gradient instead of a map, wrong reduction axis,
   an extra or missing axis of length 1, a single map for a batch, ...;
3. **dtype** – integers, booleans, half precision or complex numbers where
   floating-point values are expected;
4. **finite** – NaN or infinite values (how many, in which images);
5. **known mistakes** – candidates the grader computed from the raw data
   (``known_mistakes``);
6. **values** – heuristics: all zeros, a constant factor (255, 1/255, ``n``,
   ``n/(n-1)``, a flipped sign), values normalised for display, signed maps,
   transposed maps, gradients accumulated across images, only the last image
   filled in, every image holding the same map, images in the wrong order,
   each image rescaled on its own, a sum or mean over the colour channels
   instead of a maximum, images left at zero; otherwise a generic summary.

Tolerance
---------
One number, ``tolerance`` (default :data:`TOLERANCE`, ``1e-3``), decides.  An
element ``s`` of the student's value passes against the reference element
``r`` of image ``k`` when::

    |s - r| <= tolerance * (scale_k + |r|)
    scale_k  = max(max|reference[k]|, tolerance * max|reference|, 1e-9)

that is, within ``tolerance`` of the image's scale plus ``tolerance`` of the
expected value itself.  Judging each image on its own scale makes maps from
untrained weights (values around ``1e-3``) and maps from pretrained weights
(values around 1) pass or fail alike.  An image whose reference is all zeros
(a "dead" image) borrows ``tolerance`` of the batch's largest value as its
scale: the student's image must then be about zero, to within
``tolerance**2 * max|reference|``.  With ``per_image=False``, or for a
reference with fewer than 3 dimensions, the whole array is a single "image".
``tolerance=0`` asks for exact equality.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ._validation import (describe, require_choice, require_flag, require_ndarray, require_number, require_real_array, require_text,
                          to_numpy)

__all__ = [
    "TOLERANCE", "NUM_CHANNELS",
    "Verdict", "CheckFailed", "compare_arrays", "assert_matches_reference", "check_shape", "check_close",
]

#: The course's one tolerance: the fraction of each image's scale, and of each expected value, by which a
#: student's value may differ (see the module docstring). A hidden check may pass its own ``tolerance``.
TOLERANCE = 1e-3
#: The smallest scale of an image: with it, an all-zero reference asks for values within ``tolerance * 1e-9``.
_SCALE_FLOOR = 1e-9
#: Number of colour channels assumed by the shape and channel heuristics.
NUM_CHANNELS = 3

_EXPECT_CHOICES = ("numpy", "torch", "any")
_AXIS_NAMES = {0: "batch", 1: "channel", 2: "height", 3: "width"}
_MAX_LISTED = 10


class CheckFailed(AssertionError):
    """A visible test found a problem: an :class:`AssertionError` whose message is the whole story.

    In Jupyter (IPython) it is shown as ``AssertionError: <message>`` alone, without the frames of this
    module that raised it: the student's cell and the message are what matter. Everywhere else it behaves as
    the :class:`AssertionError` it is.
    """

    def _render_traceback_(self) -> list[str]:   # IPython's hook for how an exception is displayed
        return [f"AssertionError: {self}"]


@dataclass(frozen=True)
class Verdict:
    """The outcome of a comparison.

    Attributes
    ----------
    passed : bool
        Whether the student's value matches the reference within tolerance.
    message : str
        A plain-words explanation, meant for the student.  It never contains a
        value of the reference.
    details : dict
        A JSON-serialisable summary for the grader's logs: ``stage`` (the check
        that decided: ``"type"``, ``"shape"``, ``"dtype"``, ``"finite"``,
        ``"known_mistake"``, ``"values"`` or ``"ok"``), ``diagnosis`` (a short
        key such as ``"scale"`` or ``"permutation"``), and where computed
        ``max_abs_error``, ``max_rel_error``, ``image_ok``, ``images_differ``,
        ``mistake``, ``ratio``, ``student_shape`` and ``reference_shape``.
        Absolute errors can give away the reference's scale: keep ``details``
        for the grader and show students only ``message``.
    """

    passed: bool
    message: str
    details: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message


# --------------------------------------------------------------------------- #
# Public API
# --------------------------------------------------------------------------- #

def compare_arrays(student: Any, reference: np.ndarray, *, name: str = "your result",
                   tolerance: float = TOLERANCE, per_image: bool = True,
                   expect: str = "numpy",
                   known_mistakes: Mapping[str, tuple[np.ndarray, str]] | None = None) -> Verdict:
    """Compare a student's array with a reference and explain any difference.

    Parameters
    ----------
    student : Any
        The student's value: normally a numpy array, but anything is accepted
        (``None``, lists, torch tensors on any device, with or without grad).
    reference : numpy.ndarray
        The expected values: non-empty, real and finite.  For a batch of maps
        the first axis indexes the images, e.g. shape (N, H, W).
    name : str, default "your result"
        How the messages call the student's value.
    tolerance : float, default :data:`TOLERANCE` (1e-3)
        The fraction of each image's scale, and of each expected value, by
        which the student's values may differ, >= 0; see the module docstring
        for the exact rule and the treatment of all-zero images.
    per_image : bool, default True
        Judge each image (first axis of a reference with 3 or more dimensions)
        on its own scale, and report which images differ.  With ``False`` the
        whole array is judged on one scale.
    expect : {"numpy", "torch", "any"}, default "numpy"
        The kind of array the student should return.  A torch tensor where a
        numpy array is expected (or the reverse) fails, with a hint on how to
        convert; with ``"any"`` both are accepted.
    known_mistakes : Mapping[str, tuple[numpy.ndarray, str]], optional
        Typical wrong answers computed by the grader, each ``name -> (array,
        message)`` with the reference's shape.  If the student matches one
        of them (and not the reference), its message is given.

    Returns
    -------
    Verdict
        ``passed``, a student-friendly ``message`` and JSON-serialisable ``details``.

    Raises
    ------
    TypeError
        If ``reference`` is not a numpy array, or an argument has the wrong type.
    ValueError
        If ``reference`` is empty, not real or not finite, if ``tolerance`` is
        negative or not finite, or if a known mistake does not have the reference's shape.
    """
    reference = _check_reference("reference", reference)
    require_text("name", name, optional=False)
    tolerance = float(require_number("tolerance", tolerance, low=0))
    require_flag("per_image", per_image)
    require_choice("expect", expect, _EXPECT_CHOICES)
    mistakes = _check_known_mistakes(known_mistakes, reference)
    grouped = bool(per_image) and reference.ndim >= 3

    def core(value: np.ndarray, shown_dtype: str) -> Verdict:
        return _compare_converted(value, shown_dtype, reference, name=name, tolerance=tolerance,
                                  grouped=grouped, mistakes=mistakes)

    return _compare_any(student, reference, name=name, expect=expect, core=core)


def assert_matches_reference(student: Any, reference: np.ndarray, **kw: Any) -> Verdict:
    """Raise :class:`AssertionError` with a diagnosis unless ``student`` matches ``reference``.

    Meant for test cells: the error message is the verdict's message, which
    never shows a value of the reference.

    Parameters
    ----------
    student : Any
        The student's value.
    reference : numpy.ndarray
        The expected values.
    **kw
        Keyword arguments of :func:`compare_arrays` (``name``, ``tolerance``,
        ``per_image``, ``expect``, ``known_mistakes``).

    Returns
    -------
    Verdict
        The (passed) verdict.

    Raises
    ------
    CheckFailed
        (an AssertionError) If the comparison fails.
    """
    verdict = compare_arrays(student, reference, **kw)
    if not verdict.passed:
        raise CheckFailed(verdict.message)
    return verdict


def check_shape(value: Any, expected_shape: Sequence[int | None], name: str = "your result") -> None:
    """Raise :class:`AssertionError` unless ``value`` has ``expected_shape``.

    Parameters
    ----------
    value : Any
        A numpy array or torch tensor (anything else fails with a friendly message).
    expected_shape : sequence of int or None
        The expected shape; ``None`` stands for "any length" on that axis.
    name : str, default "your result"
        How the message calls ``value``.

    Raises
    ------
    CheckFailed
        (an AssertionError) If ``value`` has no shape or the wrong one; the message says what is
        probably wrong (e.g. the wrong reduction axis).
    TypeError
        If ``expected_shape`` is not a sequence of non-negative ints (or None).
    """
    require_text("name", name, optional=False)
    if isinstance(expected_shape, (str, bytes)) or not isinstance(expected_shape, Sequence):
        raise TypeError(f"expected_shape must be a tuple of ints, got {describe(expected_shape)}")
    expected = tuple(expected_shape)
    for dim in expected:
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 0):
            raise TypeError(f"expected_shape must hold non-negative ints or None, got {expected!r}")
    if value is None:
        raise CheckFailed(f"{name} is None: did you forget `return`?")
    if isinstance(value, (torch.Tensor, np.ndarray)):
        shape = tuple(int(d) for d in value.shape)
    elif isinstance(value, (list, tuple)):
        raise CheckFailed(f"{name} is a {type(value).__name__} of {len(value)} items, not an array: "
                             "stack the items into one array (np.stack or torch.stack)")
    elif _is_number(value):
        shape = ()
    else:
        raise CheckFailed(f"{name} should be an array of shape {_fmt_shape(expected)}, got {describe(value)}")
    if len(shape) == len(expected) and all(e is None or e == s for e, s in zip(expected, shape)):
        return
    if any(e is None for e in expected):
        want = _fmt_shape("any" if e is None else e for e in expected)
        raise CheckFailed(f"{name} has shape {_fmt_shape(shape)} but shape {want} was expected")
    raise CheckFailed(_shape_message(name, shape, tuple(int(e) for e in expected)))


def check_close(student: Any, expected: Any, name: str = "your result", tolerance: float = TOLERANCE) -> None:
    """Raise :class:`AssertionError` unless ``student`` is close to ``expected``.

    A thin wrapper of :func:`compare_arrays` for visible tests: numpy arrays
    and torch tensors are both accepted (``expect="any"``), and ``expected``
    may be a number, a list or an array.

    Parameters
    ----------
    student : Any
        The student's value.
    expected : array_like
        The expected values (real and finite).
    name : str, default "your result"
        How the message calls ``student``.
    tolerance : float, default :data:`TOLERANCE` (1e-3)
        The fraction of ``expected``'s scale (and of each expected value) by
        which ``student`` may differ (see the module docstring).

    Raises
    ------
    CheckFailed
        (an AssertionError) If the values differ; the message says what is probably wrong. Jupyter shows
        the message alone, without this module's frames.
    TypeError
        If ``expected`` is not numeric.
    """
    expected = to_numpy("expected", expected, array_like=True)
    assert_matches_reference(student, expected, name=name, tolerance=tolerance, expect="any")


# --------------------------------------------------------------------------- #
# Argument checks
# --------------------------------------------------------------------------- #

def _check_reference(arg: str, reference: Any) -> np.ndarray:
    """A non-empty numpy array of real, finite numbers (booleans count as 0/1)."""
    reference = require_ndarray(arg, reference)
    return reference if reference.dtype == np.bool_ else require_real_array(arg, reference)


def _check_known_mistakes(known: Any, reference: np.ndarray) -> list[tuple[str, np.ndarray, str]]:
    if known is None:
        return []
    if not isinstance(known, Mapping):
        raise TypeError(f"known_mistakes must be a mapping name -> (array, message), got {describe(known)}")
    out = []
    for key, entry in known.items():
        if not isinstance(key, str):
            raise TypeError(f"known_mistakes keys must be str, got {describe(key)}")
        if not isinstance(entry, tuple) or len(entry) != 2:
            raise TypeError(f"known_mistakes[{key!r}] must be a tuple (array, message), got {describe(entry)}")
        array, message = entry
        array = _check_reference(f"known_mistakes[{key!r}][0]", array)
        if array.shape != reference.shape:
            raise ValueError(f"known_mistakes[{key!r}][0] must have the reference's shape {reference.shape}, "
                             f"got {array.shape}")
        if not isinstance(message, str) or not message:
            raise TypeError(f"known_mistakes[{key!r}][1] must be a non-empty str, got {describe(message)}")
        out.append((key, array.astype(np.float64), message))
    return out


# --------------------------------------------------------------------------- #
# Stage 1: types
# --------------------------------------------------------------------------- #

def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, complex, np.number, np.bool_)) or isinstance(value, bool)


def _tensor_to_numpy(t: torch.Tensor) -> tuple[np.ndarray, str]:
    # numpy holds float16: keep it, the dtype check names it (bfloat16 arrives as float32; shown names it)
    return to_numpy("value", t, keep_float16=True), str(t.dtype)


def _compare_any(student: Any, reference: np.ndarray, *, name: str, expect: str, core) -> Verdict:
    base = {"student_shape": None, "reference_shape": list(reference.shape)}
    if student is None:
        return Verdict(False, f"{name} is None: did you forget `return`?",
                       {**base, "stage": "type", "diagnosis": "none"})

    if isinstance(student, (list, tuple)):
        kind = type(student).__name__
        msg = (f"{name} is a {kind} of {len(student)} items, not an array: stack the items into one array "
               f"with np.stack(...) (or torch.stack(...) for tensors)")
        converted = _try_stack(student)
        return _with_conversion(msg, converted, core, {**base, "stage": "type", "diagnosis": kind},
                                what="stacked")

    if isinstance(student, torch.Tensor):
        array, shown = _tensor_to_numpy(student)
        if expect == "numpy":
            where = f" on {student.device}" if student.device.type != "cpu" else ""
            msg = (f"{name} is a torch.Tensor{where}, but a numpy array was expected: convert it with "
                   f".detach().cpu().numpy()")
            return _with_conversion(msg, (array, shown), core,
                                    {**base, "stage": "type", "diagnosis": "torch_instead_of_numpy"})
        return core(array, shown)

    if isinstance(student, np.ndarray):
        if expect == "torch":
            msg = f"{name} is a numpy array, but a torch.Tensor was expected: convert it with torch.from_numpy(...)"
            return _with_conversion(msg, (student, str(student.dtype)), core,
                                    {**base, "stage": "type", "diagnosis": "numpy_instead_of_torch"})
        return core(student, str(student.dtype))

    if _is_number(student):
        array = np.asarray(student)
        return core(array, str(array.dtype))

    kind = "a numpy array" if expect == "numpy" else "a torch.Tensor" if expect == "torch" else "an array"
    return Verdict(False, f"{name} should be {kind} of numbers, got {describe(student)}",
                   {**base, "stage": "type", "diagnosis": "not_an_array"})


def _try_stack(items: Sequence[Any]) -> tuple[np.ndarray, str] | None:
    try:
        parts = [_tensor_to_numpy(x)[0] if isinstance(x, torch.Tensor) else x for x in items]
        array = np.asarray(parts)
    except (TypeError, ValueError, RuntimeError):
        return None
    if array.dtype.kind not in "biufc" or array.size == 0:
        return None
    return array, str(array.dtype)


def _with_conversion(msg: str, converted: tuple[np.ndarray, str] | None, core, details: dict,
                     what: str = "converted") -> Verdict:
    if converted is None:
        return Verdict(False, msg + ".", details)
    inner = core(*converted)
    details = {**inner.details, **details, "after_conversion": inner.details.get("stage")}
    if inner.passed:
        return Verdict(False, f"{msg}. Once {what}, the values match the reference.", details)
    return Verdict(False, f"{msg}. Once {what}, there is another problem: {inner.message}", details)


# --------------------------------------------------------------------------- #
# Stages 2 to 6 on a numpy array
# --------------------------------------------------------------------------- #

def _compare_converted(value: np.ndarray, shown_dtype: str, reference: np.ndarray, *, name: str,
                       tolerance: float, grouped: bool,
                       mistakes: list[tuple[str, np.ndarray, str]]) -> Verdict:
    details: dict = {"student_shape": list(value.shape), "reference_shape": list(reference.shape)}

    # 1 (rest). numeric?
    if value.dtype.kind not in "biufc":
        hint = (": did you build it with np.array from a list of tensors? Use torch.stack, or np.stack of "
                "numpy arrays" if value.dtype.kind == "O" else "")
        return Verdict(False, f"{name} does not hold numbers (dtype {value.dtype}){hint}",
                       {**details, "stage": "type", "diagnosis": "not_numeric"})

    # 2. shape
    if value.shape != reference.shape:
        return Verdict(False, _shape_message(name, value.shape, reference.shape),
                       {**details, "stage": "shape", "diagnosis": "shape"})

    # 3. dtype
    problem = _dtype_problem(name, value, shown_dtype, reference)
    if problem is not None:
        return Verdict(False, problem, {**details, "stage": "dtype", "diagnosis": "dtype",
                                        "student_dtype": shown_dtype})

    s = value.astype(np.float64)
    r = reference.astype(np.float64)

    # 4. NaN / Inf
    if not np.isfinite(s).all():
        return Verdict(False, _finite_message(name, s, grouped), {**details, "stage": "finite",
                                                                  "diagnosis": "not_finite"})

    tol = _Tolerance.of(r, tolerance, grouped)
    ok = tol.close(s, r)
    err = np.abs(s - r)
    details["max_abs_error"] = float(err.max())
    details["max_rel_error"] = float((err / tol.scale).max())
    n_groups = s.shape[0] if grouped else 1
    image_ok = ok.reshape(n_groups, -1).all(axis=1)
    if grouped:
        details["image_ok"] = [bool(x) for x in image_ok]
    if ok.all():
        pct = _pct(details["max_rel_error"])
        return Verdict(True, f"{name} matches the reference (largest difference: {pct} of the reference's scale)",
                       {**details, "stage": "ok", "diagnosis": "ok"})
    if grouped:
        details["images_differ"] = [int(i) for i in np.flatnonzero(~image_ok)]

    # 5. known mistakes
    for key, candidate, message in mistakes:
        if _explains(s, candidate, tolerance, grouped):
            return Verdict(False, f"{name} does not match the reference: {message}",
                           {**details, "stage": "known_mistake", "diagnosis": "known_mistake", "mistake": key})

    # 6. heuristics
    found = _diagnose(s, r, tol, grouped, image_ok)
    if found is not None:
        key, hint, extra = found
        return Verdict(False, f"{name} does not match the reference: {hint}",
                       {**details, **extra, "stage": "values", "diagnosis": key})
    return Verdict(False, _generic_message(name, s, r, ok, tol, grouped, image_ok),
                   {**details, "stage": "values", "diagnosis": "generic"})


def _explains(s: np.ndarray, candidate: np.ndarray, tolerance: float, grouped: bool) -> bool:
    """Whether a known mistake explains the student's values.

    Looser than passing: the grader recomputes the mistake itself, and a wrong
    pipeline amplifies tiny numerical differences (a ReLU that flips in one
    image). Each image may differ by ten times the usual tolerance, and with
    three or more images one in five may differ completely.
    """
    close = _Tolerance.of(candidate, tolerance, grouped, loosen=10).close(s, candidate)
    if not grouped:
        return bool(close.mean() >= 0.99)
    per_image = close.reshape(close.shape[0], -1).all(axis=1)
    if per_image.size < 3:
        return bool(per_image.all())
    return bool(per_image.mean() >= 0.8)


@dataclass(frozen=True)
class _Tolerance:
    """The module docstring's rule, applied to one reference: ``|s - r| <= fraction * (scale + |r|)``."""

    fraction: float
    scale: np.ndarray  # broadcastable to the reference, > 0
    grouped: bool = False

    @classmethod
    def of(cls, r: np.ndarray, tolerance: float, grouped: bool, loosen: float = 1.0) -> "_Tolerance":
        """The rule for reference ``r``; ``loosen`` multiplies the allowed difference (not the scale)."""
        a = np.abs(np.asarray(r, dtype=np.float64))
        largest = float(a.max())
        if grouped:
            scale = a.reshape(a.shape[0], -1).max(axis=1)
            scale = np.maximum(scale, tolerance * largest)
            scale = scale.reshape((-1,) + (1,) * (a.ndim - 1))
        else:
            scale = np.full((1,) * a.ndim, largest)
        return cls(loosen * tolerance, np.maximum(scale, _SCALE_FLOOR), grouped)

    @property
    def atol(self) -> np.ndarray:
        """What is allowed where the expected value is 0: ``fraction`` of the scale."""
        return self.fraction * self.scale

    def close(self, s: np.ndarray, r: np.ndarray) -> np.ndarray:
        return np.abs(s - r) <= self.fraction * (self.scale + np.abs(r))

    def image(self, k: int) -> "_Tolerance":
        """The tolerance of image ``k`` alone (grouped tolerances only)."""
        return _Tolerance(self.fraction, self.scale[k], False)

    def allowed(self) -> str:
        whose = "the image's" if self.grouped else "the reference's"
        return f"{_pct(self.fraction)} of {whose} scale plus {_pct(self.fraction)} of the expected value"


# --------------------------------------------------------------------------- #
# Messages for shapes, dtypes, NaNs
# --------------------------------------------------------------------------- #

def _fmt_shape(shape: Sequence[Any]) -> str:
    shape = tuple(shape)
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _shape_message(name: str, got: tuple[int, ...], want: tuple[int, ...]) -> str:
    got, want = tuple(int(d) for d in got), tuple(int(d) for d in want)
    return f"{name} has shape {_fmt_shape(got)} but shape {_fmt_shape(want)} was expected: {_shape_hint(got, want)}"


def _drop(shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    return shape[:axis] + shape[axis + 1:]


def _shape_hint(got: tuple[int, ...], want: tuple[int, ...]) -> str:
    c = NUM_CHANNELS
    if got == ():
        return ("you returned a single number, not an array (did you call .sum(), .max() or .item() "
                "without choosing an axis?)")

    if len(want) == 3:
        n, h, w = want
        # Multi-channel array instead of one map per image.
        if len(got) == 4 and got[0] == n and got[2:] == (h, w) and got[1] > 1:
            return "you returned the multi-channel gradient; reduce over the channel axis (dim=1)"
        if len(got) == 4 and got[0] == n and got[1:3] == (h, w) and got[3] > 1:
            return ("you returned a channels-last multi-channel array; reduce over the channel axis "
                    "(dim=1 of the (N, 3, H, W) gradient)")
        # Reduced over another axis than the channels.
        axes = [ax for ax in (0, 2, 3) if got == _drop((n, c, h, w), ax)]
        if axes:
            which = " or ".join(f"the {_AXIS_NAMES[ax]} axis (dim={ax})" for ax in axes)
            return (f"you reduced over the wrong axis: the channel axis is 1 for (N,3,H,W) tensors "
                    f"(this looks like a reduction over {which})")
        for ax in (0, 1, 2):
            if got == _drop((n, h, w, c), ax):
                return ("you reduced over the wrong axis: the channel axis is 1 for (N,3,H,W) tensors "
                        "(this looks like a reduction over a spatial axis)")
        if n > 1 and got == (h, w):
            return (f"only one map returned, but there are {n} images: return one map per image, "
                    f"stacked into shape {_fmt_shape(want)}")

    # An extra or missing axis of length 1.
    if len(got) == len(want) + 1:
        for i in range(len(got)):
            if got[i] == 1 and _drop(got, i) == want:
                if i == 0:
                    return "there is an extra leading batch axis of length 1; remove it with [0] or .squeeze(0)"
                return (f"there is an extra axis of length 1 at position {i}; remove it with .squeeze({i}) "
                        f"(or reduce with keepdim=False)")
    if len(got) == len(want) - 1:
        for i in range(len(want)):
            if want[i] == 1 and _drop(want, i) == got:
                if i == 0:
                    return "the batch axis of length 1 is missing; add it with [None] or .unsqueeze(0)"
                return (f"the axis of length 1 at position {i} is missing; add it with .unsqueeze({i}) "
                        f"(or reduce with keepdim=True)")

    if len(want) == 3 and len(got) == 3:
        n, h, w = want
        if got == (n, w, h):
            return "height and width are swapped (a transpose or permute mix-up?)"
        if got[1:] == (h, w):
            return f"you returned {got[0]} maps but there are {n} images"
        if got[0] == n:
            return (f"your maps are {got[1]}x{got[2]} but should be {h}x{w} (did you resize, crop or pool "
                    f"them?)")
    if len(want) == 4 and want[1] == c:
        n, _, h, w = want
        if got == (n, h, w):
            return "you reduced over the channel axis, but the full (N, 3, H, W) array was expected"
        if got == (n, h, w, c):
            return "the channels are last; (N, 3, H, W) was expected (use .permute(0, 3, 1, 2))"
    if sorted(got) == sorted(want):
        return "the axes are in a different order (a transpose or permute mix-up?)"
    if math.prod(got) == math.prod(want):
        return "the number of values is right but the shape is not (a reshape or view mix-up?)"
    return f"expected shape {_fmt_shape(want)}, got {_fmt_shape(got)}"


def _dtype_problem(name: str, value: np.ndarray, shown_dtype: str, reference: np.ndarray) -> str | None:
    kind = value.dtype.kind
    if kind == "c":
        return (f"{name} holds complex numbers (dtype {shown_dtype}), but real values were expected "
                f"(take np.abs(...) or .real, and look for an FFT or a square root of a negative number)")
    if reference.dtype.kind != "f":
        return None
    if kind == "b":
        return (f"{name} holds True/False values (dtype {shown_dtype}), but floating-point values were "
                f"expected: did you return a comparison instead of the values?")
    if kind in "iu":
        hint = ("did you convert the map to an 8-bit image?" if value.dtype == np.uint8
                else "did you cast with .astype(int) or .long(), or use integer arithmetic?")
        return (f"{name} has integer dtype {shown_dtype}, but floating-point values were expected: {hint} "
                f"Return the floating-point values")
    half = value.dtype.itemsize < 4 or shown_dtype == str(torch.bfloat16)  # bfloat16 arrives as float32
    if half and reference.dtype.itemsize >= 4:
        return (f"{name} has half-precision dtype {shown_dtype}, which loses accuracy: compute and return "
                f"float32 (.float() for tensors, .astype(np.float32) for arrays)")
    return None


def _finite_message(name: str, s: np.ndarray, grouped: bool) -> str:
    nan = int(np.isnan(s).sum())
    inf = int(np.isinf(s).sum())
    parts = []
    if nan:
        parts.append(f"{nan} NaN value{'s' if nan != 1 else ''}")
    if inf:
        parts.append(f"{inf} infinite value{'s' if inf != 1 else ''}")
    where = ""
    if grouped:
        bad = np.flatnonzero((~np.isfinite(s)).reshape(s.shape[0], -1).any(axis=1))
        where = f" (in {_fmt_images(bad)})"
    return (f"{name} contains {' and '.join(parts)}{where}: look for a division by zero (e.g. normalising a "
            f"map whose maximum is 0) or a log of 0")


# --------------------------------------------------------------------------- #
# Stage 6: heuristics on values
# --------------------------------------------------------------------------- #

def _pct(x: float) -> str:
    return f"{100 * x:.3g}%"


def _fmt_images(indices: Sequence[int] | np.ndarray) -> str:
    idx = [int(i) for i in indices]
    if len(idx) == 1:
        return f"image {idx[0]}"
    shown = ", ".join(str(i) for i in idx[:_MAX_LISTED])
    more = f", ... ({len(idx)} in all)" if len(idx) > _MAX_LISTED else ""
    return f"images [{shown}{more}]"


def _fit_ratio(s: np.ndarray, r: np.ndarray) -> float | None:
    rr = float(np.vdot(r, r))
    if rr == 0.0:
        return None
    return float(np.vdot(s, r)) / rr


def _fits_scaled(s: np.ndarray, r: np.ndarray, k: float, tol: _Tolerance, grouped: bool) -> bool:
    target = k * r
    return bool(_Tolerance.of(target, tol.fraction, grouped).close(s, target).all())


def _near(x: float, target: float, rel: float) -> bool:
    return abs(x - target) <= rel * abs(target)


def _describe_ratio(k: float) -> tuple[str, str]:
    """Return (diagnosis key, plain-words hint) for ``student ≈ k * reference``."""
    mag = abs(k)
    if k < 0 and _near(mag, 1.0, 2e-3):
        return "sign_flipped", ("the sign is flipped: your values are the negatives of the expected ones "
                                "(a minus sign too many?)")
    prefix = "the sign is flipped and " if k < 0 else ""
    large = mag > 1
    f = mag if large else 1 / mag
    word = "too large" if large else "too small"
    if _near(f, 255.0, 5e-3):
        why = ("did you forget to divide by 255, or multiply by 255 once too often?" if large
               else "did you divide by 255 once too often?")
        return "scale_255", f"{prefix}values are 255 times {word}: a 0..255 versus 0..1 pixel scale mix-up? ({why})"
    n = round(f)
    if 2 <= n <= 100 and _near(f, n, 5e-3):
        if large:
            why = (f"looks like a sum where an average was expected, or an average divided by the wrong count "
                   f"(did you forget to divide by {n}?)")
        else:
            why = f"looks like an average divided by the wrong count (divided by {n} once too often?)"
        return "scale_integer", f"{prefix}values are {n} times {word}: {why}"
    for m in range(3, 101):
        if _near(f, m / (m - 1), 1e-5):
            how = f"by {m - 1} instead of {m}" if large else f"by {m} instead of {m - 1}"
            return "scale_off_by_one", (f"{prefix}values are {f:.4g} times {word} (= {m}/{m - 1}): looks like "
                                        f"an average divided by the wrong count ({how}?)")
    shown = f"{f:.3g}" if f >= 1.01 else f"{f:.5f}".rstrip("0")   # never "1 times"
    return "scale", f"{prefix}values are {shown} times {word} (off by a constant factor)"


def _diagnose(s: np.ndarray, r: np.ndarray, tol: _Tolerance, grouped: bool,
              image_ok: np.ndarray) -> tuple[str, str, dict] | None:
    n = s.shape[0] if grouped else 1
    zero_s = np.abs(s) <= tol.atol  # student element is about zero

    # All zeros.
    if zero_s.all():
        return "all_zeros", ("every value is zero: is the gradient reaching the input (requires_grad=True, "
                             "backward called), and do you store the result?"), {}

    # A single value: a ratio would fit anything, and would give the expected value away.
    if r.size == 1:
        return None

    # Normalised for display (maximum exactly 1, linearly or min-max rescaled).
    normalised = _normalised(s, r, tol, grouped)
    if normalised is not None:
        return normalised

    # A constant factor over everything.
    k = _fit_ratio(s, r)
    if k is not None and k != 0 and _fits_scaled(s, r, k, tol, grouped):
        key, hint = _describe_ratio(k)
        return key, hint, {"ratio": k}

    # Signed maps where the reference is non-negative.
    if r.min() >= 0 and (s < -tol.atol).any():
        return "signed", ("your maps are signed (some values are negative): take the absolute value before "
                          "the max over channels"), {}

    # Height and width swapped (square maps).
    if s.ndim >= 2 and s.shape[-1] == s.shape[-2] and tol.close(s, np.swapaxes(r, -1, -2)).all():
        return "transposed", "your maps are transposed (height and width are swapped)", {}

    if grouped and n >= 2:
        found = _diagnose_images(s, r, tol, image_ok, zero_s)
        if found is not None:
            return found

    channel = _channel_reduction(s, r, tol)
    if channel is not None:
        return channel

    if grouped and n >= 2:
        zero_images = zero_s.reshape(n, -1).all(axis=1) & ~image_ok
        if zero_images.any():
            return "zero_images", (f"{_fmt_images(np.flatnonzero(zero_images))} "
                                   f"{'is' if zero_images.sum() == 1 else 'are'} all zeros but should not be "
                                   f"(did the loop skip {'it' if zero_images.sum() == 1 else 'them'}?)"), {}
    return None


def _normalised(s: np.ndarray, r: np.ndarray, tol: _Tolerance, grouped: bool) -> tuple[str, str, dict] | None:
    """Values rescaled so that the largest is exactly 1 (each image, or the whole array)."""
    layouts = [s.shape[0]] if grouped else []
    layouts.append(1)
    for n in layouts:
        sf, rf = s.reshape(n, -1), r.reshape(n, -1)
        if not np.all(np.abs(np.abs(sf).max(axis=1) - 1) <= 1e-5):
            continue
        trivial = True
        for i in range(n):
            a = np.stack([rf[i], np.ones_like(rf[i])], axis=1)
            coef, *_ = np.linalg.lstsq(a, sf[i], rcond=None)
            if np.any(np.abs(sf[i] - a @ coef) > tol.fraction):   # rescaled maps peak at 1: their scale
                break
            trivial = trivial and abs(coef[0] - 1) <= 1e-2 and abs(coef[1]) <= 1e-2
        else:
            if not trivial:
                how = "each map peaks at exactly 1" if n > 1 else "the largest value is exactly 1"
                return "normalised", (f"your values look rescaled for display ({how}): "
                                      f"return the raw values, without normalising them"), {}
    return None


def _diagnose_images(s: np.ndarray, r: np.ndarray, tol: _Tolerance, image_ok: np.ndarray,
                     zero_s: np.ndarray) -> tuple[str, str, dict] | None:
    n = s.shape[0]

    # Gradients accumulated across images: image k is the sum of images 0..k.
    cum = np.cumsum(r, axis=0)
    if _Tolerance.of(cum, tol.fraction, True).close(s, cum).all():
        return "accumulated", ("gradients accumulated across calls: image k looks like the sum of the maps of "
                               "images 0..k; zero X.grad (X.grad.zero_() or X.grad = None) or use a fresh tensor "
                               "for each image"), {}

    # Which reference image does each student image match?
    match = np.zeros((n, n), dtype=bool)
    for i in range(n):
        match[i] = tol.close(s[i][None], r).reshape(n, -1).all(axis=1)

    zero_images = zero_s.reshape(n, -1).all(axis=1)
    if image_ok[-1] and not image_ok[:-1].any():
        others = np.arange(n - 1)
        if zero_images[:-1].all():
            detail = f"{_fmt_images(others)} {'is' if n == 2 else 'are'} all zeros"
        elif match[:-1, -1].all():
            detail = "every image holds the last image's map"
        else:
            detail = f"{_fmt_images(others)} {'does' if n == 2 else 'do'} not match"
        return "only_last", (f"only the last image is filled in (are you overwriting the result inside the "
                             f"loop?): {detail}"), {}

    same = np.flatnonzero(match.all(axis=0))
    if same.size:
        j = int(same[0])
        return "same_map", (f"every image holds the map of image {j}: did you compute one map and reuse it, "
                            f"or index the batch with a fixed number inside the loop?"), {"source_image": j}

    # A permutation of the reference's images.
    used: set[int] = set()
    perm = []
    for i in range(n):
        options = [int(j) for j in np.flatnonzero(match[i]) if int(j) not in used]
        if not options:
            break
        j = i if i in options else options[0]
        used.add(j)
        perm.append(j)
    if len(perm) == n and perm != list(range(n)):
        if perm == list(range(n))[::-1]:
            how = "they are reversed"
        else:
            moved = [(i, j) for i, j in enumerate(perm) if i != j]
            how = "; ".join(f"image {i} holds the map of image {j}" for i, j in moved[:_MAX_LISTED])
            if len(moved) > _MAX_LISTED:
                how += f"; ... ({len(moved)} misplaced in all)"
        return "permutation", (f"images are in the wrong order: {how} (check how you index, sort or "
                               f"concatenate the maps)"), {"permutation": perm}

    # Each image off by its own factor (e.g. divided by its own maximum).
    factors = []
    for i in range(n):
        ki = _fit_ratio(s[i], r[i])
        if ki is None:
            if not zero_s[i].all():
                return None
            continue
        if ki == 0 or not _fits_scaled(s[i], r[i], ki, tol.image(i), False):
            factors = []
            break
        factors.append(ki)
    if len(factors) >= 2:
        return "per_image_scale", ("each image is off by its own constant factor: did you normalise or rescale "
                                   "each map separately (e.g. divide by its maximum)? Return the raw values"), {}
    return None


def _channel_reduction(s: np.ndarray, r: np.ndarray, tol: _Tolerance) -> tuple[str, str, dict] | None:
    """A sum (or mean) over the colour channels where the reference takes their maximum."""
    if r.min() < 0:
        return None
    c = NUM_CHANNELS
    atol = np.broadcast_to(tol.atol, r.shape)
    big = r > 10 * atol
    if not big.any():
        return None
    small = ~big
    # Where the maximum is about zero, so are the sum and the mean.
    if not np.all(np.abs(s[small]) <= c * (r[small] + atol[small])):
        return None
    ratio = s[big] / r[big]
    slack = tol.fraction
    med = float(np.median(ratio))
    if ratio.min() >= 1 - slack and ratio.max() <= c * (1 + slack) and med > 1.1:
        return "channel_sum", (f"your values are between 1 and {c} times the expected ones everywhere: it looks "
                               f"like a sum over the {c} colour channels where the maximum over channels was "
                               f"expected"), {}
    if ratio.min() >= 1 / c * (1 - slack) and ratio.max() <= 1 + slack and med < 0.9:
        return "channel_mean", (f"your values are between 1/{c} and 1 times the expected ones everywhere: it "
                                f"looks like a mean over the {c} colour channels where the maximum over channels "
                                f"was expected"), {}
    return None


def _generic_message(name: str, s: np.ndarray, r: np.ndarray, ok: np.ndarray, tol: _Tolerance,
                     grouped: bool, image_ok: np.ndarray) -> str:
    if ok.size == 1:
        return (f"{name} does not match the reference: it differs from the expected value by more than the "
                f"tolerance (allowed: {tol.allowed()})")
    bad = int((~ok).sum())
    rel = float((np.abs(s - r) / tol.scale).max())
    msg = (f"{name} does not match the reference: {bad} of {ok.size} values are off by more than the tolerance; "
           f"the largest difference is {_pct(rel)} of the reference's scale (allowed: {tol.allowed()})")
    if grouped:
        wrong = np.flatnonzero(~image_ok)
        right = np.flatnonzero(image_ok)
        msg += f". Differing: {_fmt_images(wrong)}"
        if right.size:
            msg += f"; matching: {_fmt_images(right)}"
        msg += f" (of {s.shape[0]})"
    return msg
