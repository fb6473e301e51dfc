"""Small argument checks shared by the public functions of :mod:`helpers` and the instructor tools.

This is the one validation layer: argument checks, the conversion of tensors
to numpy arrays (:func:`to_numpy`), the checks of images, maps and a model
against its inputs live here, and every public function of :mod:`helpers`,
:mod:`beyond` and the instructor tools uses them rather than a copy of its own.

Every check raises :class:`TypeError` for a value of the wrong kind and
:class:`ValueError` for a value of the right kind but the wrong shape, range or
content.  Messages always name the argument and say what was expected, so
that a student reading a traceback knows what to change.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

NUM_IMAGENET_CLASSES = 1000


def describe(value: Any) -> str:
    """Return a short description of ``value`` for error messages."""
    if isinstance(value, torch.Tensor):
        return f"a torch.Tensor of shape {tuple(value.shape)} and dtype {value.dtype} on {value.device}"
    if isinstance(value, np.ndarray):
        return f"a numpy array of shape {value.shape} and dtype {value.dtype}"
    return f"a {type(value).__name__}"


def to_numpy(name: str, value: Any, *, keep_float16: bool = False, array_like: bool = False) -> np.ndarray:
    """Return ``value`` as a numpy array: the one conversion of tensors used everywhere.

    Tensors are detached and moved to the CPU. bfloat16 (which numpy cannot
    hold) becomes float32; so does float16 unless ``keep_float16`` (the
    autograder keeps it, to tell a student that half precision lost accuracy).
    Arrays are returned as they are. Anything else is refused, unless
    ``array_like``: then numbers and (nested) lists go through :func:`numpy.asarray`.
    """
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16 or (value.dtype == torch.float16 and not keep_float16):
            value = value.float()
        return value.numpy()
    if isinstance(value, np.ndarray):
        return value
    if array_like and value is not None and not isinstance(value, (str, bytes)):
        try:
            return np.asarray(value)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} must be a number or an array of numbers, got {describe(value)}") from err
    what = "a number or an array of numbers" if array_like else "a numpy array or a torch.Tensor"
    raise TypeError(f"{name} must be {what}, got {describe(value)}")


def require_real_array(name: str, value: Any, *, ndim: int | Sequence[int] | None = None,
                       finite: bool = True) -> np.ndarray:
    """A non-empty array (or tensor, converted) of real numbers, finite unless ``finite=False``.

    Booleans and complex numbers are refused (TypeError); NaN or infinite
    values are refused (ValueError) with their count, because one of them
    silently spoils every statistic of the array.
    """
    arr = require_ndarray(name, to_numpy(name, value), ndim=ndim)
    if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.integer)
                                     or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"{name} must hold real numbers (integer or float), got dtype {arr.dtype}")
    if finite and np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise ValueError(f"{name} must be finite, but {bad} of its {arr.size} values are NaN or infinite")
    return arr


def require_flag(name: str, value: Any) -> bool:
    """Check a True/False switch: strings such as ``'no'`` and numbers are refused, not taken as true."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {describe(value)}")
    return bool(value)


def require_text(name: str, value: Any, *, optional: bool = True) -> str | None:
    """Check a str (or ``None`` when ``optional``)."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str{' or None' if optional else ''}, got {describe(value)}")
    return value


def require_finite_tensor(name: str, value: torch.Tensor) -> torch.Tensor:
    """Refuse a floating tensor holding NaN or infinite values (a gradient of it means nothing)."""
    if value.is_floating_point() or value.is_complex():
        bad = int((~torch.isfinite(value.detach())).sum())
        if bad:
            raise ValueError(f"{name} must be finite, but {bad} of its {value.numel()} values are NaN or infinite")
    return value


def require_model(name: str, model: Any, *, inputs: torch.Tensor | None = None,
                  inputs_name: str = "inputs") -> torch.nn.Module:
    """Check a model for computing gradients, and that it fits ``inputs``.

    Refused, each with the fix in the message: an object that is not a
    ``torch.nn.Module``; a model in training mode (dropout and batch-norm then
    change the maps from call to call); parameters in half precision (their
    gradients are too coarse for saliency maps); and, given ``inputs``, a
    floating dtype or a device that differs from the model's.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {describe(model)}")
    training = [n or type(m).__name__ for n, m in model.named_modules() if m.training]
    if training:
        raise ValueError(f"{name} is in training mode (dropout and batch-norm then change the maps on every "
                         f"call; first in training mode: {training[0]!r}): call {name}.eval() first")
    params = [p for p in model.parameters() if p.is_floating_point()]
    if not params:
        return model
    dtype, device = params[0].dtype, params[0].device
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name} has {dtype} parameters; gradients in half precision are too coarse for "
                        f"saliency maps: call {name}.float() first")
    if inputs is not None:
        if inputs.is_floating_point() and inputs.dtype != dtype:
            raise TypeError(f"{inputs_name} has dtype {inputs.dtype} but {name}'s parameters are {dtype}: "
                            f"convert with {inputs_name}.to({dtype}) (float32 is the lab's)")
        if inputs.device != device:
            raise ValueError(f"{inputs_name} is on {inputs.device} but {name} is on {device}: move one to the "
                             f"other with .to(device)")
    return model


def require_ndarray(name: str, value: Any, *, ndim: int | Sequence[int] | None = None,
                    dtype: Any = None, allow_tensor: bool = False) -> np.ndarray:
    """Check that ``value`` is a numpy array (optionally of given ndim and dtype)."""
    if allow_tensor and isinstance(value, torch.Tensor):
        value = to_numpy(name, value)
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {describe(value)}")
    _check_ndim(name, value.ndim, value.shape, ndim)
    if dtype is not None and value.dtype != np.dtype(dtype):
        raise TypeError(f"{name} must have dtype {np.dtype(dtype)}, got {value.dtype}")
    if value.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {value.shape}")
    return value


def require_tensor(name: str, value: Any, *, ndim: int | Sequence[int] | None = None,
                   floating: bool = False) -> torch.Tensor:
    """Check that ``value`` is a non-empty torch tensor (optionally of given ndim)."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {describe(value)}")
    _check_ndim(name, value.dim(), tuple(value.shape), ndim)
    if floating and not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    if value.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(value.shape)}")
    return value


def _check_ndim(name: str, ndim: int, shape: tuple, expected: int | Sequence[int] | None) -> None:
    if expected is None:
        return
    allowed = (expected,) if isinstance(expected, int) else tuple(expected)
    if ndim not in allowed:
        want = " or ".join(f"{d}-D" for d in allowed)
        raise ValueError(f"{name} must be {want}, got shape {shape} ({ndim}-D)")


def require_labels(name: str, labels: Any, *, length: int | None = None) -> np.ndarray:
    """Check integer ImageNet labels in ``0..999``; return them as an int64 numpy array."""
    if isinstance(labels, torch.Tensor):
        labels = to_numpy(name, labels)
    if isinstance(labels, (list, tuple)):
        # An empty list has no integer dtype; report it as empty (ValueError), not as the wrong kind.
        labels = np.asarray(labels) if len(labels) else np.zeros(0, dtype=np.int64)
    if isinstance(labels, (int, np.integer)) and not isinstance(labels, bool):
        labels = np.asarray([labels])
    if not isinstance(labels, np.ndarray) or not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"{name} must be integer class labels (array, tensor or list of ints), got {describe(labels)}")
    if labels.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {labels.shape}")
    if labels.size == 0:
        raise ValueError(f"{name} must not be empty")
    bad = labels[(labels < 0) | (labels >= NUM_IMAGENET_CLASSES)]
    if bad.size:
        raise ValueError(f"{name} must hold ImageNet labels in 0..{NUM_IMAGENET_CLASSES - 1}, got {bad.tolist()[:5]}")
    if length is not None and labels.shape[0] != length:
        raise ValueError(f"{name} has {labels.shape[0]} labels but {length} images were given; lengths must match")
    return labels.astype(np.int64)


def require_number(name: str, value: Any, *, low: float | None = None, high: float | None = None,
                   integer: bool = False, low_inclusive: bool = True) -> float:
    """Check a real (or integer) scalar in an optional range."""
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise TypeError(f"{name} must be {'an integer' if integer else 'a number'}, got {describe(value)}")
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (value < low or (value == low and not low_inclusive)):
        raise ValueError(f"{name} must be {'>=' if low_inclusive else '>'} {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return value


def require_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """Check that ``value`` is one of the strings in ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def require_rng(name: str, value: Any) -> np.random.Generator:
    """Return a numpy Generator: ``None`` gives a fresh one, an int seeds one."""
    if value is None:
        return np.random.default_rng()
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"{name} must be a non-negative int seed, got {value}")
        return np.random.default_rng(int(value))
    if isinstance(value, np.random.Generator):
        return value
    if callable(getattr(value, "normal", None)):
        # Duck-typed generators (anything with .normal()) are accepted too.
        return value
    raise TypeError(f"{name} must be None, an int seed or a numpy.random.Generator, got {describe(value)}")


def _check_rgb_values(name: str, arr: np.ndarray) -> np.ndarray:
    """Check the dtype and value range of channels-last RGB image data."""
    if arr.shape[-1] != 3:
        hint = ""
        if arr.ndim >= 3 and arr.shape[-3] == 3:
            hint = (" It looks channels-first (3, H, W): transpose it to (H, W, 3), or for a "
                    "preprocessed tensor use np.asarray(helpers.images.deprocess(x)).")
        raise ValueError(f"{name} must be RGB with channels last (..., H, W, 3), got shape {arr.shape}.{hint}")
    if arr.dtype == np.uint8:
        return arr
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"{name} must be uint8 (0..255) or float (0..1), got dtype {arr.dtype}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite, but it holds NaN or infinite values")
    low, high = float(arr.min()), float(arr.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(
            f"{name} holds floats in [{low:.3g}, {high:.3g}], but float images must lie in [0, 1]. "
            "Pass uint8 images, divide by 255, or use np.asarray(helpers.images.deprocess(x)) "
            "for a preprocessed tensor."
        )
    return arr


def require_images(name: str, X: Any) -> np.ndarray:
    """A batch of RGB images (N, H, W, 3), uint8 or float in [0, 1]."""
    arr = require_ndarray(name, to_numpy(name, X), ndim=4)
    return _check_rgb_values(name, arr)


def require_image(name: str, image: Any) -> np.ndarray:
    """One RGB image (H, W, 3), uint8 or float in [0, 1], or a PIL image."""
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    arr = to_numpy(name, image)
    if isinstance(arr, np.ndarray) and arr.ndim == 4:
        raise ValueError(f"{name} must be one image of shape (H, W, 3), got a batch of shape {arr.shape}; "
                         f"pass {name}[i]")
    arr = require_ndarray(name, arr, ndim=3)
    return _check_rgb_values(name, arr)


def require_maps(name: str, maps: Any, X: np.ndarray, images_name: str = "X") -> np.ndarray:
    """One 2-D map per image, (N, H, W), matching the images' count and size."""
    arr = to_numpy(name, maps)
    if isinstance(arr, np.ndarray) and arr.ndim == 4:
        raise ValueError(
            f"{name} must be (N, H, W): one 2-D map per image, got shape {arr.shape}. "
            "Reduce the colour channels to one map per image first."
        )
    arr = require_real_array(name, arr, ndim=3)
    if arr.shape[0] != X.shape[0]:
        raise ValueError(f"{name} has {arr.shape[0]} maps but {images_name} has {X.shape[0]} images; "
                         "the counts must match")
    if arr.shape[1:] != X.shape[1:3]:
        raise ValueError(f"{name} maps are {arr.shape[1]}x{arr.shape[2]} but the images in {images_name} are "
                         f"{X.shape[1]}x{X.shape[2]}; each map must have its image's height and width")
    return arr


def require_range(name: str, value: Any) -> tuple[float, float]:
    """A pair ``(low, high)`` of finite numbers with ``low < high``."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{name} must be a pair (low, high) of numbers, got {describe(value)}")
    low = float(require_number(f"{name}[0]", value[0]))
    high = float(require_number(f"{name}[1]", value[1]))
    if not low < high:
        raise ValueError(f"{name} must have low < high, got ({low}, {high})")
    return low, high
