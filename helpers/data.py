"""Loading the lab's 25 ImageNet validation images, safely.

The file is found in this order: an explicit ``path``, the environment
variable ``SALIENCY_DATA``, the user cache
(``$XDG_CACHE_HOME/saliency-course`` or ``~/.cache/saliency-course``), and
finally a download from the lab's public URL.  Whatever the source, the
file's SHA-256 is checked before anything is read.  ``X`` and ``y`` are read
with pickling switched off; the class-name dictionary (stored as a pickle
inside the ``.npz``) is read by an unpickler that only accepts the handful of
numpy globals needed to rebuild it, so a hostile file cannot run code.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib
import io
import os
import pickle
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._validation import NUM_IMAGENET_CLASSES, describe, require_flag, require_labels, require_number

DATA_URL = "https://raw.githubusercontent.com/CNN-ADF/Task2020/master/resources/imagenet_val_25.npz"
DATA_SHA256 = "35141609d22457c791e8fbe10c2d3b09ed0d6a04b669173e9fbebb0b4915cd3c"
DATA_FILENAME = "imagenet_val_25.npz"
DATA_ENV_VAR = "SALIENCY_DATA"

__all__ = [
    "DATA_URL", "DATA_SHA256", "DATA_ENV_VAR", "DataFileError", "ImageNetVal",
    "load_imagenet_val", "locate_data_file", "cache_dir", "sha256_of",
    "imagenet_class_names", "class_name",
]


class DataFileError(RuntimeError):
    """The data file is missing, damaged, not the lab's file, or unsafe."""


@dataclass(frozen=True)
class ImageNetVal:
    """The lab's images, labels and class names.

    Attributes
    ----------
    X : numpy.ndarray
        uint8 images of shape (N, 224, 224, 3).
    y : numpy.ndarray
        int64 labels of shape (N,).
    class_names : dict of int to str
        Names of the classes, from the file (999 of the 1000 ImageNet classes).
    sha256 : str
        SHA-256 of the file the arrays were read from.
    """

    X: np.ndarray
    y: np.ndarray
    class_names: dict[int, str]
    sha256: str

    def __iter__(self):
        # Allows ``X, y, class_names = load_imagenet_val()`` as in the lab.
        return iter((self.X, self.y, self.class_names))


def cache_dir() -> Path:
    """Return the folder where the course caches its data file."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "saliency-course"


def sha256_of(path: str | os.PathLike) -> str:
    """Return the hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


#: The lab's file has 3,940,548 bytes; a much larger one is refused before it is hashed.
MAX_DATA_BYTES = 64 * 1024 * 1024


def _check_hash(path: Path, origin: str) -> str:
    size = path.stat().st_size
    if size > MAX_DATA_BYTES:
        raise DataFileError(f"{path} ({origin}) is not the lab's data file: it has {size:,} bytes, the lab's "
                            f"{DATA_FILENAME} about 4 MB. Download it again from {DATA_URL}.")
    actual = sha256_of(path)
    if actual != DATA_SHA256:
        raise DataFileError(
            f"{path} ({origin}) is not the lab's data file: its SHA-256 is {actual}, "
            f"expected {DATA_SHA256}. The file may be truncated or a different file. "
            f"Download it again from {DATA_URL}."
        )
    return actual


def _download(dest: Path, url: str = DATA_URL, timeout: float = 60.0) -> None:
    """Download ``url`` to ``dest`` atomically, checking the hash before the rename."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".download-", suffix=".npz", dir=dest.parent)
    except OSError as err:  # the cache folder (or a parent) is a file, or not writable
        raise DataFileError(
            f"Cannot write the data file into the cache folder {dest.parent} ({err.strerror or err}): "
            f"if a file of that name is in the way, rename it; or pass path=... or set {DATA_ENV_VAR}."
        ) from err
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                out.write(chunk)
        _check_hash(tmp, f"downloaded from {url}")
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError, TimeoutError, http.client.HTTPException) as err:
        # HTTPException covers http.client.IncompleteRead: the connection closed mid-file.
        raise DataFileError(
            f"Could not download the data file from {url} ({err}). If this machine is offline, "
            f"download {DATA_FILENAME} elsewhere, then pass its path as load_imagenet_val(path=...) "
            f"or set the environment variable {DATA_ENV_VAR}=/path/to/{DATA_FILENAME}."
        ) from err
    finally:
        if tmp.exists():
            tmp.unlink()


def locate_data_file(path: str | os.PathLike | None = None, *, download: bool = True) -> Path:
    """Find the data file (explicit path, environment, cache, download) and check its hash.

    Parameters
    ----------
    path : str or os.PathLike, optional
        An explicit path to ``imagenet_val_25.npz``.
    download : bool, default True
        Download into the cache when no other source has the file.

    Returns
    -------
    pathlib.Path
        Path to a file whose SHA-256 matches :data:`DATA_SHA256`.

    Raises
    ------
    DataFileError
        If the chosen file is missing or its hash is wrong, or the download fails.
    """
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {describe(path)}")
    download = require_flag("download", download)
    candidates: list[tuple[Path, str]] = []
    if path is not None:
        candidates.append((Path(path), "the path you passed"))
    elif os.environ.get(DATA_ENV_VAR):
        candidates.append((Path(os.environ[DATA_ENV_VAR]), f"${DATA_ENV_VAR}"))
    if candidates:
        chosen, origin = candidates[0]
        if not chosen.is_file():
            what = "is a folder, not the data file" if chosen.is_dir() else "does not exist or is not a file"
            raise DataFileError(f"{chosen} ({origin}) {what}: expected the path of {DATA_FILENAME}.")
        _check_hash(chosen, origin)
        return chosen
    cached = cache_dir() / DATA_FILENAME
    if cached.is_file():
        _check_hash(cached, "the course cache")
        return cached
    if not download:
        raise DataFileError(
            f"No data file found: pass path=..., set {DATA_ENV_VAR}, or put {DATA_FILENAME} in {cached.parent}."
        )
    _download(cached)
    return cached


_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("_codecs", "encode"),
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds numpy arrays and scalars and nothing else."""

    def find_class(self, module: str, name: str) -> Any:  # noqa: D401 - pickle API
        if (module, name) not in _ALLOWED_GLOBALS:
            raise DataFileError(
                f"the class-name pickle asks for {module}.{name}, which is not allowed; "
                "the file may be malicious and was not loaded"
            )
        if module.startswith("numpy.core") or module.startswith("numpy._core"):
            # numpy 2 moved numpy.core to numpy._core; import the new home to avoid a warning.
            real = "numpy._core.multiarray" if hasattr(np, "_core") else "numpy.core.multiarray"
            return getattr(importlib.import_module(real), name)
        return getattr(importlib.import_module(module), name)


def _read_label_map(archive: zipfile.ZipFile) -> dict[int, str]:
    try:
        raw = archive.read("label_map.npy")
    except KeyError as err:
        raise DataFileError("the data file has no label_map array") from err
    stream = io.BytesIO(raw)
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
    else:
        shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
    if dtype != np.dtype(object) or shape != ():
        raise DataFileError(f"label_map must be a 0-d object array, got shape {shape} and dtype {dtype}")
    try:
        obj = RestrictedUnpickler(stream).load()
    except DataFileError:
        raise
    except Exception as err:  # a damaged pickle
        raise DataFileError(f"could not read the class names: {err}") from err
    mapping = obj.item() if isinstance(obj, np.ndarray) else obj
    if not isinstance(mapping, dict):
        raise DataFileError(f"label_map must hold a dict, got {type(mapping).__name__}")
    names: dict[int, str] = {}
    for key, value in mapping.items():
        if (isinstance(key, bool) or not isinstance(key, (int, np.integer))
                or not 0 <= key < NUM_IMAGENET_CLASSES or not isinstance(value, str)):
            raise DataFileError(
                f"label_map must map ImageNet labels 0..{NUM_IMAGENET_CLASSES - 1} to names, "
                f"got an entry {describe(key)} -> {describe(value)}"
            )
        names[int(key)] = str(value)
    return names


def _read_arrays(path: Path) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = {"X", "y", "label_map"} - set(npz.files)
            if missing:
                raise DataFileError(f"{path} lacks the arrays {sorted(missing)}")
            X, y = npz["X"], npz["y"]
        with zipfile.ZipFile(path) as archive:
            names = _read_label_map(archive)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise DataFileError(f"{path} could not be read as the lab's .npz file: {err}") from err
    if X.dtype != np.uint8 or X.ndim != 4 or X.shape[1:] != (224, 224, 3) or X.shape[0] == 0:
        raise DataFileError(f"X must be uint8 of shape (N, 224, 224, 3) with N >= 1, got {X.dtype} {X.shape}")
    if y.dtype != np.int64 or y.shape != (X.shape[0],):
        raise DataFileError(f"y must be int64 of shape ({X.shape[0]},), got {y.dtype} {y.shape}")
    if y.min() < 0 or y.max() >= NUM_IMAGENET_CLASSES:
        raise DataFileError("y holds labels outside 0..999")
    return X, y, names


def load_imagenet_val(num: int | None = None, *, path: str | os.PathLike | None = None,
                      seed: int | None = None, download: bool = True) -> ImageNetVal:
    """Load the lab's ImageNet validation images, labels and class names.

    Parameters
    ----------
    num : int, optional
        Return only this many images (1..25). With ``seed`` they are a random
        subset; without it, the first ``num`` in file order.
    path : str or os.PathLike, optional
        Explicit path to ``imagenet_val_25.npz``. Otherwise ``$SALIENCY_DATA``,
        then the user cache, then a download (see :func:`locate_data_file`).
    seed : int, optional
        Seed for choosing (and ordering) the subset.
    download : bool, default True
        Allow downloading the file when no local copy is found.

    Returns
    -------
    ImageNetVal
        ``X`` uint8 (num, 224, 224, 3), ``y`` int64 (num,), ``class_names`` and
        the file's ``sha256``. It unpacks as ``X, y, class_names``.

    Raises
    ------
    DataFileError
        If the file is missing, not the lab's file, damaged or unsafe.
    """
    if num is not None:
        require_number("num", num, low=1, integer=True)
    if seed is not None:
        require_number("seed", seed, low=0, integer=True)
    file = locate_data_file(path, download=download)
    X, y, names = _read_arrays(file)
    total = X.shape[0]
    if num is not None:
        require_number("num", num, low=1, high=total, integer=True)
    if seed is not None:
        require_number("seed", seed, low=0, integer=True)
        order = np.random.default_rng(seed).permutation(total)
        if num is not None:
            order = order[:num]
        X, y = X[order], y[order]
    elif num is not None:
        X, y = X[:num], y[:num]
    return ImageNetVal(X=np.ascontiguousarray(X), y=np.ascontiguousarray(y), class_names=names,
                       sha256=DATA_SHA256)


_ALL_NAMES: dict[str, tuple[str, ...]] = {}


def imagenet_class_names() -> tuple[str, ...]:
    """Return the names of all 1000 ImageNet classes, by index, from the network's weights' metadata.

    The network is the one ``$SALIENCY_MODEL`` names (SqueezeNet 1.1 by default); every network of
    :data:`helpers.model.NETWORKS` is an ImageNet-1k classifier with the same list.
    """
    from .model import network, network_metadata

    name = network().name
    if name not in _ALL_NAMES:
        _ALL_NAMES[name] = network_metadata(name)["categories"]
    return _ALL_NAMES[name]


def class_name(label: int, class_names: dict[int, str] | None = None) -> str:
    """Name a class: from ``class_names`` (the lab's dict) if given and present, else torchvision's list.

    Parameters
    ----------
    label : int
        ImageNet class index in 0..999.
    class_names : dict of int to str, optional
        The lab's names, as returned by :func:`load_imagenet_val`.
    """
    labels = require_labels("label", label).tolist()
    if len(labels) != 1:
        raise ValueError(f"label must be a single class index, got {len(labels)} labels")
    (index,) = labels
    if class_names is not None:
        if not isinstance(class_names, dict):
            raise TypeError(f"class_names must be a dict of int to str, got {describe(class_names)}")
        if index in class_names:
            return class_names[index]
    return imagenet_class_names()[index]
