"""Reading what a student's sandbox leaves behind, without trusting any of it.

Everything under the job's folder was written (or could have been replaced) by the student's code: result
files of the hidden tests, figure files, and whatever else. The grader reads them only after every process
of the sandbox is dead, and only through :func:`read_regular`:

* relative to a folder opened without following links, and each name a plain file name;
* ``O_NOFOLLOW | O_NONBLOCK``: a symbolic link, FIFO, socket or device is refused, not followed or waited on;
* a regular file with one link only (a hard link to anything else is refused), no larger than a cap
  checked on the open file before reading (a sparse multi-GiB file costs nothing);
* parsed strictly: JSON objects of known keys and types, ``.npy`` arrays without pickles, of a numeric
  dtype and the shape the JSON side states.

Each refusal is a :class:`ResultError` whose message is the grader's own words, fit for the student's
feedback and the report's problem column.
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import numpy as np
import torch

_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,120}$")
MAX_META_BYTES = 64 * 1024
MAX_FIGURE_BYTES = 32 * 2**20
#: Largest length of one axis of a result (a shape is shown in feedback: it must not carry a message).
MAX_DIMENSION = 100_000
_KINDS = {"torch", "numpy", "scalar", "other"}


class ResultError(ValueError):
    """A result or figure file the grader will not use; the message says why, in the grader's words."""


def open_folder(path: Path) -> int:
    """Open a folder the grader made, refusing a link; returns a descriptor for :func:`read_regular`."""
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        raise ResultError("the results folder is missing or was replaced") from None


def read_regular(folder_fd: int, name: str, max_bytes: int, label: str | None = None) -> bytes:
    """The content of the regular file ``name`` in the folder, or :class:`ResultError`.

    ``label`` is what the error messages call the file (default: its name); results of hidden tests are
    called by what they are, since their names would tell students about the hidden tests.
    """
    if not _PLAIN_NAME.match(name):
        raise ValueError(f"name must be a plain file name, got {name!r}")
    shown = label or name
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder_fd)
    except FileNotFoundError:
        raise ResultError(f"{shown} is missing") from None
    except OSError:
        raise ResultError(f"{shown} is not a regular file (a link or something else)") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ResultError(f"{shown} is not a regular file")
        if info.st_nlink != 1:
            raise ResultError(f"{shown} is linked from elsewhere")
        if info.st_size > max_bytes:
            raise ResultError(f"{shown} is too large ({info.st_size} bytes; at most {max_bytes})")
        chunks, left = [], max_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > max_bytes:
            raise ResultError(f"{shown} is too large (at most {max_bytes} bytes)")
        return data
    finally:
        os.close(fd)


def _meta(data: bytes, name: str) -> dict:
    try:
        meta = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ResultError("the result is not valid JSON") from None
    if not isinstance(meta, dict) or meta.get("kind") not in _KINDS or not isinstance(meta.get("type"), str):
        raise ResultError("the result is not one the hidden test wrote")
    shape = meta.get("shape")
    if shape is not None and (not isinstance(shape, list) or len(shape) > 8
                              or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= MAX_DIMENSION
                                         for d in shape)):
        raise ResultError("the result states an invalid shape")
    return meta


def _array(data: bytes, name: str, meta: dict) -> np.ndarray:
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception:  # noqa: BLE001 - any malformed .npy
        raise ResultError("the result is not a valid array file") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "biufc":
        raise ResultError("the result does not hold numbers")
    if meta.get("shape") is not None and list(array.shape) != meta["shape"]:
        raise ResultError("the result does not have the shape it states")
    return array


def read_value(folder: Path, name: str, max_bytes: int) -> tuple[Any, dict]:
    """Read one result of a hidden test (``name.json`` + ``name.npy``) from the sandbox's outbox.

    Parameters
    ----------
    folder : pathlib.Path
        The notebook's outbox folder.
    name : str
        The check's name.
    max_bytes : int
        Largest array file accepted.

    Returns
    -------
    (value, meta)
        A numpy array or torch tensor as the student returned it (``None`` for ``None``; an opaque
        stand-in for anything else), and what the JSON side says of it.
    """
    from helpers.autograde import _Opaque

    fd = open_folder(folder)
    try:
        meta = _meta(read_regular(fd, f"{name}.json", MAX_META_BYTES, "the result's description"), name)
        if meta["kind"] == "other":
            if meta["type"] == "builtins.NoneType":
                return None, meta
            return _Opaque(str(meta.get("description", ""))[:200]), meta
        array = _array(read_regular(fd, f"{name}.npy", max_bytes, "the result's array"), name, meta)
    finally:
        os.close(fd)
    if meta["kind"] == "torch":
        return torch.from_numpy(np.ascontiguousarray(array)), meta
    return array, meta


def read_figure(folder: Path, name: str) -> tuple[bytes, dict]:
    """A figure file the notebook saved (content and layout), or :class:`ResultError` saying what is wrong."""
    from helpers.autograde import figure_layout

    fd = open_folder(folder)
    try:
        data = read_regular(fd, name, MAX_FIGURE_BYTES)
    finally:
        os.close(fd)
    try:
        return data, figure_layout(data, Path(name).suffix)
    except ValueError as err:
        raise ResultError(f"{name}: {err}") from None
