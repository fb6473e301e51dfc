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

from ._validation import describe, require_number, to_numpy
from .checks import TOLERANCE, assert_matches_reference, compare_arrays

RECORD_ENV = "SALIENCY_RECORD_REFERENCES"
OUTBOX_ENV = "SALIENCY_GRADING_OUTBOX"
REFERENCES_ENV = "SALIENCY_REFERENCES"
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
FIGURE_MAGIC = {".png": b"\x89PNG\r\n\x1a\n", ".pdf": b"%PDF-"}
MIN_FIGURE_BYTES = 5000
#: Largest image the grader decodes (a PNG of a few hundred bytes can claim gigapixels).
MAX_FIGURE_PIXELS = 40_000_000
#: Default least correlation of a figure's matched rows of panels with the solution's (``require_files``);
#: the measurements behind it: docs/maintainers.md, *How a figure is judged*.
FIGURE_SIMILARITY = 0.95

__all__ = ["HiddenChecks", "check_file", "figure_layout", "reference_key", "same_layout", "serialise", "deserialise"]


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
        array = to_numpy("value", value, keep_float16=True)
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

    def compare(self, name: str, value: Any, *, cell: str, expect: str = "any", tolerance: float = TOLERANCE,
                mistakes: Callable[[], Mapping[str, tuple[Any, str]]] | None = None,
                otherwise: str | None = None, cross_check: Mapping[str, Any] | None = None) -> None:
        """Check (or record, or hand to the grader) one result of the student's code.

        Everything the grader needs to judge this result is declared here, in the
        hidden test that computes it: the expected array type, the tolerance, the
        typical wrong answers with their feedback, and the advice when none of them fits.

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
        tolerance : float, default :data:`helpers.checks.TOLERANCE` (1e-3)
            The fraction of each image's scale, and of each expected value, by which the
            student's values may differ (the rule: :mod:`helpers.checks`).
        mistakes : callable returning a dict, optional
            Evaluated in *record* mode only (it runs the instructor's solution):
            ``{key: (wrong_answer, feedback)}`` for each typical mistake, the wrong
            answer computed as a student making that mistake would. A student whose
            result matches one of them (and not the reference) gets its feedback.
            Recording fails if a mistake cannot be told apart from the right answer.
        otherwise : str, optional
            Feedback when the result is wrong and matches no declared mistake.
        cross_check : dict, optional
            ``{"method": name, **arguments}``: recompute the recorded value independently with the
            instructor's implementation of ``method`` on the course's data and network (plain
            numbers, strings or ``None`` as arguments), so that a slip in the solution cannot become
            every student's reference. Recorded in the check's spec; ``course references`` runs it.
        """
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"name must be a short name of letters, digits, '_', '.', '-', got {name!r}")
        if not isinstance(cell, str) or not _NAME.match(cell):
            raise ValueError(f"cell must be the grade_id of a test cell, got {cell!r}")
        if expect not in ("any", "numpy", "torch"):
            raise ValueError(f"expect must be 'any', 'numpy' or 'torch', got {expect!r}")
        require_number("tolerance", tolerance, low=0)
        if mistakes is not None and not callable(mistakes):
            raise TypeError(f"mistakes must be a function returning {{key: (array, message)}}, got {describe(mistakes)}")
        if otherwise is not None and (not isinstance(otherwise, str) or not otherwise.strip()):
            raise TypeError(f"otherwise must be a non-empty str, got {describe(otherwise)}")
        if cross_check is not None:
            _require_cross_check(cross_check)
        mode = self.mode
        if mode == "grade":
            serialise(value, Path(os.environ[OUTBOX_ENV]) / self.notebook, name)
            return
        folder = self._reference_folder()
        if mode == "record":
            self._record(folder, name, value, cell=cell, expect=expect, tolerance=tolerance,
                         mistakes=mistakes() if mistakes is not None else {}, otherwise=otherwise,
                         cross_check=cross_check)
            return
        if not (folder / f"{name}.json").is_file():
            raise AssertionError(
                f"No reference for check {name!r} in {folder}. Instructors: run `course references` "
                "at the course root to write them (students never run hidden tests)."
            )
        reference, _ = deserialise(folder, name)
        assert_matches_reference(value, np.asarray(reference), name=name, tolerance=tolerance, expect=expect)

    @staticmethod
    def _record(folder: Path, name: str, value: Any, *, cell: str, expect: str, tolerance: float,
                mistakes: Mapping[str, tuple[Any, str]], otherwise: str | None,
                cross_check: Mapping[str, Any] | None = None) -> None:
        """Save the solution's value, its declared mistakes and how to judge them."""
        if not isinstance(mistakes, Mapping):
            raise TypeError(f"mistakes() must return a dict {{key: (array, message)}}, got {describe(mistakes)}")
        reference = to_numpy("value", value, array_like=True)
        messages = {}
        for key, entry in mistakes.items():
            if not isinstance(key, str) or not _NAME.match(key):
                raise ValueError(f"mistake keys must be short names of letters, digits, '_', '.', '-', got {key!r}")
            if not isinstance(entry, tuple) or len(entry) != 2 or not isinstance(entry[1], str) or not entry[1]:
                raise TypeError(f"mistake {key!r} must be a tuple (wrong_answer, feedback message), "
                                f"got {describe(entry)}")
            wrong = to_numpy(f"mistake {key!r}", entry[0], array_like=True)
            if wrong.shape == reference.shape and compare_arrays(wrong, reference, tolerance=tolerance, expect="any").passed:
                # On these inputs the mistake gives the right answer (say, every image is classified
                # correctly): it cannot be told apart, so it is not used.
                print(f"note: check {name!r}: the declared mistake {key!r} gives the right answer here; not used")
                continue
            serialise(wrong, folder, f"{name}.mistake.{key}")
            messages[key] = entry[1]
        serialise(value, folder, name)
        spec = {"cell": cell, "expect": expect, "tolerance": tolerance, "mistakes": messages, "otherwise": otherwise}
        if cross_check is not None:
            spec["cross_check"] = dict(cross_check)
        (folder / f"{name}.spec.json").write_text(json.dumps(spec))

    def require_files(self, names: list[str], *, cell: str, similarity: float = FIGURE_SIMILARITY,
                      match_rows: int = 1) -> None:
        """Ask the grader to check the figure files the notebook saves (PNG or PDF).

        In *record* mode the solution's files give the expected layout (pixel size, page shape) and are
        copied beside the spec (``files.<cell>.<name>``); ``course references`` then adds what they show
        (the grader's code). The grader accepts only files the student's notebook wrote in its run,
        that decode fully, are not blank, have that layout and show what the solution's show in their first
        ``match_rows`` rows of panels. In *check* mode (an instructor running the source notebook) the files
        must be figures, of the recorded layout if there are references.

        Parameters
        ----------
        names : list of str
            Plain ``.png`` or ``.pdf`` file names, in the notebook's folder.
        cell : str
            The nbgrader ``grade_id`` of the test cell this check belongs to.
        similarity : float, default :data:`FIGURE_SIMILARITY` (0.95)
            Least correlation (0..1) of the matched rows' thumbnails with the solution's.
        match_rows : int, default 1
            How many rows of panels, from the top, must look like the solution's: those the exercise fixes
            (its images), which neither a wrong map nor another colour map changes. The rows below count
            for the layout only.
        """
        if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) for n in names):
            raise TypeError(f"names must be a non-empty list of file names, got {describe(names)}")
        for n in names:
            if not _NAME.match(n) or Path(n).suffix.lower() not in FIGURE_MAGIC:
                raise ValueError(f"names must be plain .png or .pdf file names, got {n!r}")
        if not isinstance(cell, str) or not _NAME.match(cell):
            raise ValueError(f"cell must be the grade_id of a test cell, got {cell!r}")
        similarity = float(require_number("similarity", similarity, low=0, high=1))
        match_rows = int(require_number("match_rows", match_rows, low=0, integer=True))
        mode = self.mode
        if mode == "grade":
            return
        folder = self._reference_folder()
        spec_path = folder / f"files.{cell}.spec.json"
        if mode == "record":
            folder.mkdir(parents=True, exist_ok=True)
            files = {}
            for n in names:
                data = Path(n).read_bytes()
                files[n] = figure_layout(data, Path(n).suffix)
                (folder / f"files.{cell}.{n}").write_bytes(data)
            spec = {"cell": cell, "similarity": similarity, "match_rows": match_rows, "files": files}
            spec_path.write_text(json.dumps(spec))
            return
        expected = json.loads(spec_path.read_text()).get("files", {}) if spec_path.is_file() else {}
        problems = [problem for name in names if (problem := check_file(Path(name), expected.get(name)))]
        if problems:
            raise AssertionError("; ".join(problems))


def _require_cross_check(cross_check: Any) -> None:
    """A cross-check declaration: ``{"method": short name, argument: number, str, bool or None, ...}``."""
    if not isinstance(cross_check, Mapping) or not isinstance(cross_check.get("method"), str) \
            or not _NAME.match(cross_check["method"]):
        raise TypeError(f"cross_check must be a dict with a 'method' name and its arguments, got {describe(cross_check)}")
    for key, value in cross_check.items():
        if not isinstance(key, str) or not (value is None or isinstance(value, (bool, int, float, str))):
            raise TypeError(f"cross_check argument {key!r} must be a number, str, bool or None, got {describe(value)}")


_NUMBER = rb"[-+]?(?:[0-9]{1,12}(?:\.[0-9]{0,12})?|\.[0-9]{1,12})"
_MEDIABOX = re.compile(rb"/MediaBox\s{0,8}\[\s{0,8}(" + _NUMBER + rb")\s{1,8}(" + _NUMBER + rb")\s{1,8}("
                       + _NUMBER + rb")\s{1,8}(" + _NUMBER + rb")\s{0,8}\]")


def figure_layout(data: bytes, suffix: str) -> dict:
    """Decode a saved figure and describe its layout; ``ValueError`` says why it is not a figure.

    Parameters
    ----------
    data : bytes
        The file's content.
    suffix : {".png", ".pdf"}
        Its kind.

    Returns
    -------
    dict
        ``{"kind": "png", "width": w, "height": h}`` or ``{"kind": "pdf", "width": w, "height": h,
        "pages": n}`` (PDF sizes in points).
    """
    suffix = check_figure_bytes(data, suffix)
    if suffix == ".pdf":
        return _pdf_layout(data)
    from PIL import ImageStat

    image = read_png(data)
    if ImageStat.Stat(image.convert("L")).stddev[0] < 1.0:   # from the histogram: no copy in floats
        raise ValueError("the image is blank (one flat colour)")
    return {"kind": "png", "width": int(image.width), "height": int(image.height)}


def read_png(data: bytes):
    """The decoded RGB ``PIL.Image`` (transparency laid over white) of a PNG within :data:`MAX_FIGURE_PIXELS`;
    ``ValueError`` if it is not one."""
    import io

    from PIL import Image

    if not isinstance(data, bytes):
        raise TypeError(f"data must be the bytes of a PNG file, got {describe(data)}")
    try:
        image = Image.open(io.BytesIO(data), formats=["PNG"])
        width, height = image.size
    except Exception as err:  # noqa: BLE001 - any failure to read the header: not a usable PNG
        raise ValueError(f"it does not decode as a PNG image ({type(err).__name__})") from None
    with image:
        if width * height > MAX_FIGURE_PIXELS:
            raise ValueError(f"it claims {width} x {height} pixels, more than a figure has")
        try:
            image.load()
            if image.mode in ("RGBA", "LA", "PA", "P", "RGBa", "La") or "transparency" in image.info:
                white = Image.new("RGBA", image.size, (255, 255, 255, 255))
                return Image.alpha_composite(white, image.convert("RGBA")).convert("RGB")
            return image.convert("RGB")
        except Exception as err:  # noqa: BLE001 - any decoding failure means: not a usable PNG
            raise ValueError(f"it does not decode as a PNG image ({type(err).__name__})") from None


def _pdf_layout(data: bytes) -> dict:
    if b"%%EOF" not in data[-2048:]:
        raise ValueError("it is not a complete PDF file (no end-of-file marker)")
    pages = len(re.findall(rb"/Type\s{0,8}/Page(?![a-zA-Z])", data))
    box = _MEDIABOX.search(data)
    if pages == 0 or box is None:
        raise ValueError("the PDF has no page")
    x0, y0, x1, y1 = (float(v) for v in box.groups())
    if not (x1 - x0 > 10 and y1 - y0 > 10):
        raise ValueError("the PDF's page is empty")
    return {"kind": "pdf", "width": round(x1 - x0, 1), "height": round(y1 - y0, 1), "pages": pages}


def check_figure_bytes(data: Any, suffix: Any) -> str:
    """The checks every figure file passes before it is decoded; returns the lower-case suffix.

    Raises TypeError if ``data`` is not bytes, ValueError for another suffix than ``.png``/``.pdf``, a file
    that does not start like one, or one too small to hold a figure.
    """
    if not isinstance(data, bytes):
        raise TypeError(f"data must be bytes, got {describe(data)}")
    suffix = str(suffix).lower()
    if suffix not in FIGURE_MAGIC:
        raise ValueError(f"suffix must be '.png' or '.pdf', got {suffix!r}")
    if not data.startswith(FIGURE_MAGIC[suffix]):
        raise ValueError(f"it is not a {suffix[1:].upper()} file")
    if len(data) < MIN_FIGURE_BYTES:
        raise ValueError(f"it is suspiciously small ({len(data)} bytes): is the figure empty?")
    return suffix


def same_layout(found: dict, expected: dict, tolerance: float = 0.15) -> bool:
    """Whether a student's figure has the solution's layout (kind, pages, aspect ratio within ``tolerance``)."""
    if found.get("kind") != expected.get("kind") or found.get("pages", 1) != expected.get("pages", 1):
        return False
    ratio = (found["width"] / found["height"]) / (expected["width"] / expected["height"])
    return abs(ratio - 1.0) <= tolerance


def check_file(path: Path, expected: dict | None = None) -> str | None:
    """Return what is wrong with a handed-in figure file, or ``None`` if it looks right.

    With ``expected`` (a file's entry of a recorded ``require_files`` spec) it must also have that layout.
    What the figure shows is judged by the grader only, with the instructor's tools.
    """
    if not path.is_file():
        return f"{path.name} is missing"
    if path.stat().st_size > 64 * 2**20:
        return f"{path.name} is far too large for a figure"
    try:
        layout = figure_layout(path.read_bytes(), path.suffix)
    except ValueError as err:
        return f"{path.name}: {err}"
    if expected is not None and not same_layout(layout, expected):
        return f"{path.name} does not have the expected layout: make it with the plotting function the exercise names"
    return None
