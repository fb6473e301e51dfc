"""Small argument checks shared by the public functions of :mod:`helpers` and the instructor tools.

This is the one validation layer: argument checks, the conversion of tensors
to numpy arrays, and the checks of a model against its inputs live here, and
every public function uses them rather than a copy of its own.

Every check raises :class:`TypeError` for a value of the wrong kind and
:class:`ValueError` for a value of the right kind but the wrong shape, range or
content.  Messages always name the argument and say what was expected, so
that a student reading a traceback knows what to change.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

NUM_IMAGENET_CLASSES = 1000


def describe(value: Any) -> str:
    """Return a short description of ``value`` for error messages."""
    if isinstance(value, torch.Tensor):
        return f"a torch.Tensor of shape {tuple(value.shape)} and dtype {value.dtype} on {value.device}"
    if isinstance(value, np.ndarray):
        return f"a numpy array of shape {value.shape} and dtype {value.dtype}"
    return f"a {type(value).__name__}"


def to_numpy(name: str, value: Any) -> np.ndarray:
    """Return ``value`` as a numpy array: tensors are detached and moved to the CPU.

    Half-precision tensors (bfloat16, float16) become float32, which numpy can
    hold exactly. Anything that is neither a tensor nor an array is refused.
    """
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype in (torch.bfloat16, torch.float16):
            value = value.float()
        return value.numpy()
    if isinstance(value, np.ndarray):
        return value
    raise TypeError(f"{name} must be a numpy array or a torch.Tensor, got {describe(value)}")


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
        value = value.detach().cpu().numpy()
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
        labels = labels.detach().cpu().numpy()
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
