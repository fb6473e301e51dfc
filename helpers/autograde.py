"""The hook that the notebooks' hidden tests call.

A hidden test hands a student's result to :meth:`HiddenChecks.compare`.
What happens next depends on who runs the notebook, chosen by environment
variables that only the instructor tools set:

``SALIENCY_RECORD_REFERENCES=<dir>``
    *record*: the instructor's solutions are running; the value is saved as
    the reference (with the comparison settings and optional context arrays
    used for diagnostics).
``SALIENCY_GRADING_OUTBOX=<dir>``
    *grade*: a student's submission is being autograded; the value is only
    serialised to the outbox. A separate process, which the student's code
    never touched, compares it with the references and decides the score.
neither
    *check*: the value is compared here, in the kernel, with the references
    under ``SALIENCY_REFERENCES`` (or ``references/`` at the course root), and
    a failure raises :class:`AssertionError` with a diagnostic. This is what
    an instructor sees when running a source notebook. Without references
    the check says how to make them.

Reference sets are keyed by the data file's hash and the weights'
fingerprint, so that references made with pretrained and untrained weights
never mix. This module holds no reference values.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from ._validation import describe, require_number
from .checks import assert_matches_reference

RECORD_ENV = "SALIENCY_RECORD_REFERENCES"
OUTBOX_ENV = "SALIENCY_GRADING_OUTBOX"
REFERENCES_ENV = "SALIENCY_REFERENCES"
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")

__all__ = ["HiddenChecks", "FixedNoise", "check_file", "reference_key", "serialise", "deserialise"]


def reference_key(data_sha256: str, weights_fingerprint: str) -> str:
    """Name of the reference set for one data file and one set of weights."""
    for arg, value in (("data_sha256", data_sha256), ("weights_fingerprint", weights_fingerprint)):
        if not isinstance(value, str) or not re.fullmatch(r"[0-9a-f]{8,64}", value):
            raise ValueError(f"{arg} must be a lowercase hex string, got {value!r}")
    return f"data-{data_sha256[:12]}_weights-{weights_fingerprint}"


def serialise(value: Any, folder: Path, name: str) -> None:
    """Write ``value`` as ``name.npy`` (if it is array-like) and ``name.json`` (what it was).

    The JSON side records the Python type, so that the grader can tell a
    student who returned a tensor where an array was expected. Nothing is
    pickled.
    """
    folder.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {"type": type(value).__module__ + "." + type(value).__qualname__}
    array = None
    if isinstance(value, torch.Tensor):
        meta.update(kind="torch", dtype=str(value.dtype), shape=list(value.shape),
                    requires_grad=bool(value.requires_grad))
        array = value.detach().to("cpu")
        if array.dtype == torch.bfloat16:
            array = array.float()
        array = array.numpy()
    elif isinstance(value, np.ndarray):
        meta.update(kind="numpy", dtype=str(value.dtype), shape=list(value.shape))
        array = value
    elif isinstance(value, (bool, int, float, np.generic)):
        meta.update(kind="scalar")
        array = np.asarray(value)
    else:
        meta.update(kind="other", description=describe(value)[:200])
    if array is not None:
        if array.dtype == object:
            meta.update(kind="other", description="an object array")
        else:
            np.save(folder / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
    (folder / f"{name}.json").write_text(json.dumps(meta))


def deserialise(folder: Path, name: str) -> tuple[Any, dict]:
    """Read back what :func:`serialise` wrote: the value (a stand-in of the original kind) and its metadata."""
    meta_path = folder / f"{name}.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"no recorded value named {name!r} in {folder}")
    meta = json.loads(meta_path.read_text())
    npy = folder / f"{name}.npy"
    if meta.get("kind") in ("torch", "numpy", "scalar") and npy.is_file():
        array = np.load(npy, allow_pickle=False)
        if meta["kind"] == "torch":
            return torch.from_numpy(array), meta
        return array, meta
    return None if meta.get("type") == "builtins.NoneType" else _Opaque(meta.get("description", "")), meta


class _Opaque:
    """Stands for a value that could not be serialised (a list, a string...)."""

    def __init__(self, description: str) -> None:
        self.description = description

    def __repr__(self) -> str:
        return self.description


def _course_root(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        if (folder / "nbgrader_config.py").is_file():
            return folder
    return None


class HiddenChecks:
    """What the hidden tests of one notebook run call to check a student's value.

    Parameters
    ----------
    data_sha256 : str
        Hash of the data file in use (``load_imagenet_val().sha256``).
    weights_fingerprint : str
        Fingerprint of the model's weights (:func:`helpers.model.weights_fingerprint`).
    notebook : str
        Short name of the notebook, e.g. ``"02_vanilla_saliency"``.
    """

    def __init__(self, data_sha256: str, weights_fingerprint: str, notebook: str) -> None:
        self.key = reference_key(data_sha256, weights_fingerprint)
        if not isinstance(notebook, str) or not _NAME.match(notebook):
            raise ValueError(f"notebook must be a short name of letters, digits, '_', '.', '-', got {notebook!r}")
        self.notebook = notebook

    @property
    def mode(self) -> str:
        """``"record"``, ``"grade"`` or ``"check"`` (see the module docstring)."""
        if os.environ.get(RECORD_ENV):
            return "record"
        if os.environ.get(OUTBOX_ENV):
            return "grade"
        return "check"

    def _reference_folder(self) -> Path:
        if os.environ.get(RECORD_ENV):
            base = Path(os.environ[RECORD_ENV])
        elif os.environ.get(REFERENCES_ENV):
            base = Path(os.environ[REFERENCES_ENV])
        else:
            root = _course_root(Path.cwd())
            base = (root or Path.cwd()) / "references"
        return base / self.key / self.notebook

    def compare(self, name: str, value: Any, *, cell: str, expect: str = "any", rtol: float = 1e-3,
                mistakes: str | None = None,
                context: Callable[[], Mapping[str, Any]] | None = None) -> None:
        """Check (or record, or hand to the grader) one result of the student's code.

        Parameters
        ----------
        name : str
            Name of this check, unique within the notebook.
        value : object
            The student's result.
        cell : str
            The nbgrader ``grade_id`` of the test cell this check belongs to.
        expect : {"any", "numpy", "torch"}
            Which array type the exercise asks for.
        rtol : float
            Tolerance relative to each image's largest reference value.
        mistakes : str, optional
            Family of typical mistakes to look for when it fails (used by the grader).
        context : callable returning a dict of arrays, optional
            Evaluated in *record* mode only: extra arrays the grader uses to
            name a mistake (for example the gradient of the predicted class).
        """
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"name must be a short name of letters, digits, '_', '.', '-', got {name!r}")
        if not isinstance(cell, str) or not cell:
            raise ValueError(f"cell must be the grade_id of a test cell, got {cell!r}")
        if expect not in ("any", "numpy", "torch"):
            raise ValueError(f"expect must be 'any', 'numpy' or 'torch', got {expect!r}")
        require_number("rtol", rtol, low=0)
        mode = self.mode
        if mode == "grade":
            serialise(value, Path(os.environ[OUTBOX_ENV]) / self.notebook, name)
            return
        folder = self._reference_folder()
        if mode == "record":
            serialise(value, folder, name)
            spec = {"cell": cell, "expect": expect, "rtol": rtol, "mistakes": mistakes, "context": []}
            if context is not None:
                for ctx_name, ctx_value in dict(context()).items():
                    serialise(ctx_value, folder, f"{name}.context.{ctx_name}")
                    spec["context"].append(ctx_name)
            (folder / f"{name}.spec.json").write_text(json.dumps(spec))
            return
        if not (folder / f"{name}.json").is_file():
            raise AssertionError(
                f"No reference for check {name!r} in {folder}. Instructors: run `course references` "
                "at the course root to write them (students never run hidden tests)."
            )
        reference, _ = deserialise(folder, name)
        assert_matches_reference(value, np.asarray(reference), name=name, rtol=rtol, expect=expect)


    def require_files(self, names: list[str], *, cell: str) -> None:
        """Ask the grader to check that the student saved these files (valid PNG or PDF, not tiny).

        The files are checked outside the student's kernel, in the folder the
        notebook ran in.
        """
        if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) for n in names):
            raise TypeError(f"names must be a non-empty list of file names, got {describe(names)}")
        if not isinstance(cell, str) or not cell:
            raise ValueError(f"cell must be the grade_id of a test cell, got {cell!r}")
        mode = self.mode
        if mode == "grade":
            return
        if mode == "record":
            folder = self._reference_folder()
            folder.mkdir(parents=True, exist_ok=True)
            spec = {"cell": cell, "files": list(names)}
            (folder / f"files.{cell}.spec.json").write_text(json.dumps(spec))
            return
        problems = [problem for name in names if (problem := check_file(Path(name)))]
        if problems:
            raise AssertionError("; ".join(problems))


_MAGIC = {".png": b"\x89PNG", ".pdf": b"%PDF"}
MIN_FIGURE_BYTES = 5000


def check_file(path: Path) -> str | None:
    """Return what is wrong with a handed-in figure file, or ``None`` if it looks right."""
    if not path.is_file():
        return f"{path.name} is missing"
    magic = _MAGIC.get(path.suffix.lower())
    with open(path, "rb") as fh:
        head = fh.read(8)
    if magic is not None and not head.startswith(magic):
        return f"{path.name} is not a valid {path.suffix[1:].upper()} file"
    if path.stat().st_size < MIN_FIGURE_BYTES:
        return f"{path.name} is suspiciously small ({path.stat().st_size} bytes): is the figure empty?"
    return None


class FixedNoise:
    """A stand-in random generator whose every draw is the same fixed pattern.

    ``normal(loc, scale, size)`` returns ``loc + scale * Z`` where ``Z``
    depends only on the seed and the trailing shape, whatever the order or
    the number of calls. A SmoothGrad that draws its noise from the
    generator it is given therefore returns the same maps however it orders
    its draws, which lets the grader compare noisy results exactly.

    Parameters
    ----------
    seed : int
        Seed of the fixed pattern.
    """

    def __init__(self, seed: int) -> None:
        require_number("seed", seed, low=0, integer=True)
        self.seed = int(seed)
        self._patterns: dict[tuple, np.ndarray] = {}

    def _pattern(self, shape: tuple) -> np.ndarray:
        # One pattern per image-like trailing shape, tiled over leading axes.
        tail = tuple(shape[-3:]) if len(shape) >= 3 else tuple(shape)
        if tail not in self._patterns:
            self._patterns[tail] = np.random.default_rng(self.seed).standard_normal(tail)
        return np.broadcast_to(self._patterns[tail], shape).copy()

    def standard_normal(self, size: Any = None, dtype: Any = np.float64) -> np.ndarray | float:
        """Fixed standard normal values of the requested shape."""
        if size is None:
            return float(self._pattern((1,))[0])
        shape = (size,) if isinstance(size, (int, np.integer)) else tuple(size)
        return self._pattern(shape).astype(dtype, copy=False)

    def normal(self, loc: Any = 0.0, scale: Any = 1.0, size: Any = None) -> np.ndarray | float:
        """``loc + scale * Z`` with the fixed pattern ``Z``, like ``Generator.normal``."""
        if size is None:
            size = np.broadcast(np.asarray(loc), np.asarray(scale)).shape or None
        z = self.standard_normal(size)
        return loc + scale * z
