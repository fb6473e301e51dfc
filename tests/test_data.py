"""Loading the lab's data file: sources, subsets, hash checks and hostile files.

Nothing here touches the network: ``urllib.request.urlopen`` and socket
connections are replaced by functions that fail, and the download path is
tested by serving the real file's bytes from memory.
"""

from __future__ import annotations

import builtins
import hashlib
import http.client
import io
import os
import socket
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest

import helpers.data as hd
from helpers.data import (DATA_ENV_VAR, DATA_FILENAME, DATA_URL, DataFileError, ImageNetVal, cache_dir,
                          class_name, imagenet_class_names, load_imagenet_val, locate_data_file, sha256_of)

REAL_SHA256 = "35141609d22457c791e8fbe10c2d3b09ed0d6a04b669173e9fbebb0b4915cd3c"


def _no_network(*args, **kwargs):
    raise AssertionError("the tests must never touch the network")


@pytest.fixture(autouse=True)
def _offline(data_file, tmp_path, monkeypatch):
    """A private cache, no data/weights environment variables, and no network."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv(DATA_ENV_VAR, raising=False)
    monkeypatch.delenv("SALIENCY_WEIGHTS", raising=False)
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    monkeypatch.setattr(socket.socket, "connect", _no_network)


@pytest.fixture(scope="module")
def real_bytes(data_file) -> bytes:
    return data_file.read_bytes()


def _cache_file() -> Path:
    return cache_dir() / DATA_FILENAME


def _put_in_cache(real_bytes: bytes) -> Path:
    dest = _cache_file()
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(real_bytes)
    return dest


def _corrupt_copy(real_bytes: bytes, path: Path) -> Path:
    data = bytearray(real_bytes)
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def _corrupt_cache(real_bytes: bytes) -> Path:
    _cache_file().parent.mkdir(parents=True, exist_ok=True)
    return _corrupt_copy(real_bytes, _cache_file())


# --------------------------------------------------------------------------- the real file

def test_data_file_is_the_labs_file(data_file):
    assert sha256_of(data_file) == REAL_SHA256 == hd.DATA_SHA256


def test_real_file_shapes_dtypes_and_names(dataset):
    assert isinstance(dataset, ImageNetVal)
    assert dataset.X.dtype == np.uint8 and dataset.X.shape == (25, 224, 224, 3)
    assert dataset.y.dtype == np.int64 and dataset.y.shape == (25,)
    assert dataset.X.flags.c_contiguous and dataset.y.flags.c_contiguous
    assert ((dataset.y >= 0) & (dataset.y < 1000)).all()
    assert len(dataset.class_names) == 999
    assert 134 not in dataset.class_names
    assert set(dataset.class_names) == set(range(1000)) - {134}
    assert all(isinstance(k, int) and isinstance(v, str) and v for k, v in dataset.class_names.items())
    assert dataset.sha256 == REAL_SHA256
    # The images are real photographs, not blank arrays.
    assert dataset.X.std() > 30


def test_unpacks_like_the_lab(dataset):
    X, y, names = dataset
    assert X is dataset.X and y is dataset.y and names is dataset.class_names
    with pytest.raises(AttributeError):
        dataset.X = None  # frozen


def test_class_name_prefers_the_file_and_falls_back_to_torchvision(dataset):
    names = imagenet_class_names()
    assert isinstance(names, tuple) and len(names) == 1000
    assert all(isinstance(n, str) and n for n in names)
    # 134 is missing from the file: both calls use torchvision's list.
    assert class_name(134) == names[134]
    assert class_name(134, dataset.class_names) == names[134]
    # The file's own (longer) name wins where it has one.
    assert dataset.class_names[0] != names[0]
    assert class_name(0, dataset.class_names) == dataset.class_names[0]
    assert class_name(0) == names[0]
    assert class_name(np.int64(1)) == names[1]
    assert class_name(999) == names[999]


@pytest.mark.parametrize("bad, error", [
    (1000, ValueError), (-1, ValueError), ([1, 2], ValueError), ("3", TypeError), (True, TypeError),
    (2.0, TypeError), (None, TypeError),
])
def test_class_name_bad_label(bad, error):
    with pytest.raises(error, match=r"^label "):
        class_name(bad)


def test_class_name_bad_class_names():
    with pytest.raises(TypeError, match=r"^class_names must be a dict"):
        class_name(3, ["a", "b"])


# --------------------------------------------------------------------------- subsets

def test_num_gives_the_first_rows(dataset, data_file):
    sub = load_imagenet_val(5, path=data_file)
    np.testing.assert_array_equal(sub.X, dataset.X[:5])
    np.testing.assert_array_equal(sub.y, dataset.y[:5])
    assert sub.X.flags.c_contiguous


def _row_indices(sub_X: np.ndarray, full_X: np.ndarray) -> list[int]:
    flat = full_X.reshape(len(full_X), -1)
    out = []
    for row in sub_X.reshape(len(sub_X), -1):
        hits = np.flatnonzero((flat == row).all(axis=1))
        assert len(hits) == 1, "every returned image must be exactly one of the file's images"
        out.append(int(hits[0]))
    return out


def test_seeded_subset_is_deterministic_and_a_subset(dataset, data_file):
    a = load_imagenet_val(7, path=data_file, seed=3)
    b = load_imagenet_val(7, path=data_file, seed=3)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    assert a.X.shape == (7, 224, 224, 3) and a.y.shape == (7,)
    idx = _row_indices(a.X, dataset.X)
    assert len(set(idx)) == 7
    np.testing.assert_array_equal(a.y, dataset.y[idx])  # labels travel with their images
    assert idx != list(range(7)), "a seeded subset should not just be the first rows"


def test_different_seeds_differ(data_file):
    a = load_imagenet_val(7, path=data_file, seed=3)
    b = load_imagenet_val(7, path=data_file, seed=4)
    assert not np.array_equal(a.y, b.y) or not np.array_equal(a.X, b.X)


def test_seed_without_num_permutes_everything(dataset, data_file):
    perm = load_imagenet_val(path=data_file, seed=11)
    idx = _row_indices(perm.X, dataset.X)
    assert sorted(idx) == list(range(25)) and idx != list(range(25))
    np.testing.assert_array_equal(perm.y, dataset.y[idx])


@pytest.mark.parametrize("num", [0, 26, -1, 100])
def test_num_out_of_range(num, data_file):
    with pytest.raises(ValueError, match=r"^num must be"):
        load_imagenet_val(num, path=data_file)


@pytest.mark.parametrize("num", [2.5, "3", True])
def test_num_wrong_type(num, data_file):
    with pytest.raises(TypeError, match=r"^num must be an integer"):
        load_imagenet_val(num, path=data_file)


def test_bad_seed(data_file):
    with pytest.raises(ValueError, match=r"^seed must be >= 0"):
        load_imagenet_val(3, path=data_file, seed=-1)
    with pytest.raises(TypeError, match=r"^seed must be an integer"):
        load_imagenet_val(3, path=data_file, seed="1")


@pytest.mark.parametrize("bad", [123, b"/tmp/x.npz", ["a"], 1.5])
def test_path_of_wrong_type(bad):
    with pytest.raises(TypeError, match=r"^path must be a str or os.PathLike"):
        load_imagenet_val(path=bad)
    with pytest.raises(TypeError, match=r"^path must be a str or os.PathLike"):
        locate_data_file(bad)


def test_missing_explicit_path_and_directory(tmp_path):
    with pytest.raises(DataFileError, match=r"does not exist or is not a file"):
        load_imagenet_val(path=tmp_path / "nope.npz")
    with pytest.raises(DataFileError, match=r"is a folder, not the data file"):
        load_imagenet_val(path=tmp_path)


# --------------------------------------------------------------------------- source order

def test_explicit_path_beats_env_and_cache(data_file, tmp_path, monkeypatch, real_bytes):
    bad = _corrupt_copy(real_bytes, tmp_path / "bad.npz")
    monkeypatch.setenv(DATA_ENV_VAR, str(bad))
    _corrupt_cache(real_bytes)
    assert locate_data_file(data_file) == Path(data_file)
    assert locate_data_file(str(data_file)) == Path(data_file)
    assert load_imagenet_val(2, path=data_file).X.shape[0] == 2


def test_a_bad_explicit_path_is_not_silently_replaced(tmp_path, monkeypatch, data_file, real_bytes):
    bad = _corrupt_copy(real_bytes, tmp_path / "bad.npz")
    monkeypatch.setenv(DATA_ENV_VAR, str(data_file))
    _put_in_cache(real_bytes)
    with pytest.raises(DataFileError, match=r"the path you passed"):
        locate_data_file(bad)


def test_env_beats_cache(data_file, tmp_path, monkeypatch, real_bytes):
    _corrupt_cache(real_bytes)
    monkeypatch.setenv(DATA_ENV_VAR, str(data_file))
    assert locate_data_file() == Path(data_file)
    assert load_imagenet_val(3).X.shape == (3, 224, 224, 3)


def test_bad_env_file_is_not_silently_replaced_by_the_cache(tmp_path, monkeypatch, real_bytes):
    _put_in_cache(real_bytes)
    monkeypatch.setenv(DATA_ENV_VAR, str(_corrupt_copy(real_bytes, tmp_path / "bad.npz")))
    with pytest.raises(DataFileError, match=r"\$SALIENCY_DATA"):
        locate_data_file()
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path / "missing.npz"))
    with pytest.raises(DataFileError, match=r"does not exist"):
        locate_data_file()


def test_empty_env_var_is_ignored(monkeypatch, real_bytes):
    cached = _put_in_cache(real_bytes)
    monkeypatch.setenv(DATA_ENV_VAR, "")
    assert locate_data_file() == cached


def test_cache_used_when_nothing_else_is_given(real_bytes, dataset, tmp_path):
    cached = _put_in_cache(real_bytes)
    assert cached == tmp_path / "xdg-cache" / "saliency-course" / DATA_FILENAME
    assert locate_data_file() == cached
    got = load_imagenet_val()
    np.testing.assert_array_equal(got.X, dataset.X)
    np.testing.assert_array_equal(got.y, dataset.y)


def test_cache_dir_falls_back_to_home(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "saliency-course"


def test_damaged_cache_file_is_refused(real_bytes):
    _corrupt_cache(real_bytes)
    with pytest.raises(DataFileError, match=r"the course cache"):
        locate_data_file()


def test_no_source_and_no_download(tmp_path):
    with pytest.raises(DataFileError, match=r"No data file found.*SALIENCY_DATA"):
        locate_data_file(download=False)
    with pytest.raises(DataFileError, match=r"No data file found"):
        load_imagenet_val(download=False)


# --------------------------------------------------------------------------- download (served from memory)

class _FakeResponse(io.BytesIO):
    """A urlopen response streaming ``payload``; optionally cut off like a dropped connection."""

    def __init__(self, payload: bytes, on_read=None, incomplete_after: int | None = None):
        super().__init__(payload)
        self.on_read = on_read
        self.incomplete_after = incomplete_after
        self.sent = 0

    def read(self, n=-1):
        if self.on_read is not None:
            self.on_read()
        if self.incomplete_after is not None and self.sent >= self.incomplete_after:
            raise http.client.IncompleteRead(b"", len(self.getvalue()) - self.sent)
        chunk = super().read(n if self.incomplete_after is None else min(n, self.incomplete_after - self.sent))
        self.sent += len(chunk)
        return chunk


def _serve(monkeypatch, payload: bytes, **kwargs):
    calls = []

    def fake_urlopen(url, *args, **kw):
        calls.append(url)
        return _FakeResponse(payload, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    return calls


def test_download_used_last_and_lands_atomically(monkeypatch, real_bytes, dataset):
    dest = _cache_file()
    seen_final_during_download = []
    calls = _serve(monkeypatch, real_bytes, on_read=lambda: seen_final_during_download.append(dest.exists()))
    renames = []
    real_replace = os.replace

    def spy_replace(src, dst):
        renames.append((Path(src), Path(dst), Path(src).stat().st_size))
        return real_replace(src, dst)

    monkeypatch.setattr(hd.os, "replace", spy_replace)
    got = load_imagenet_val()
    assert calls == [DATA_URL]
    # While the bytes were streaming, the final file did not exist yet...
    assert seen_final_during_download and not any(seen_final_during_download)
    # ... it appeared with one rename, from a temporary file in the same folder, complete.
    assert len(renames) == 1
    src, dst, size = renames[0]
    assert dst == dest and src.parent == dest.parent and src != dest
    assert size == len(real_bytes)
    assert sorted(p.name for p in dest.parent.iterdir()) == [DATA_FILENAME]
    assert dest.read_bytes() == real_bytes
    np.testing.assert_array_equal(got.X, dataset.X)
    # Now that it is cached, no second download happens.
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    assert locate_data_file() == dest


def test_truncated_download_raises_and_leaves_nothing(monkeypatch, real_bytes):
    _serve(monkeypatch, real_bytes[: len(real_bytes) // 2])
    with pytest.raises(DataFileError, match=r"SHA-256"):
        load_imagenet_val()
    folder = _cache_file().parent
    assert not _cache_file().exists()
    assert list(folder.iterdir()) == []


def test_dropped_connection_raises_and_leaves_nothing(monkeypatch, real_bytes):
    _serve(monkeypatch, real_bytes, incomplete_after=(1 << 20) + 5)
    with pytest.raises(DataFileError, match=r"Could not download"):
        locate_data_file()
    assert list(_cache_file().parent.iterdir()) == []


def test_offline_download_error_says_what_to_do(monkeypatch):
    def refuse(url, *args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    with pytest.raises(DataFileError) as info:
        load_imagenet_val()
    text = str(info.value)
    assert "no route to host" in text and "path=" in text and DATA_ENV_VAR in text and DATA_FILENAME in text
    assert not _cache_file().exists()
    assert list(_cache_file().parent.iterdir()) == []


# --------------------------------------------------------------------------- wrong files

def test_flipped_byte_is_refused(tmp_path, real_bytes):
    bad = _corrupt_copy(real_bytes, tmp_path / DATA_FILENAME)
    with pytest.raises(DataFileError, match=r"is not the lab's data file: its SHA-256 is [0-9a-f]{64}") as info:
        load_imagenet_val(path=bad)
    assert str(bad) in str(info.value)


@pytest.mark.parametrize("keep", [0, 100, 0.5, -1])
def test_truncated_file_is_refused(tmp_path, real_bytes, keep):
    n = int(len(real_bytes) * keep) if isinstance(keep, float) else (keep if keep >= 0 else len(real_bytes) - 1)
    bad = tmp_path / DATA_FILENAME
    bad.write_bytes(real_bytes[:n])
    with pytest.raises(DataFileError, match=r"truncated"):
        load_imagenet_val(path=bad)


# --------------------------------------------------------------------------- crafted files (hash patched)

def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


def _write_npz(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, raw in members.items():
            zf.writestr(name, raw)
    return path


def _object_scalar(value) -> np.ndarray:
    arr = np.empty((), dtype=object)
    arr[()] = value
    return arr


@pytest.fixture(scope="module")
def real_members(data_file) -> dict[str, bytes]:
    with zipfile.ZipFile(data_file) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _accept_hash_of(monkeypatch, path: Path) -> None:
    monkeypatch.setattr(hd, "DATA_SHA256", sha256_of(path))


def test_crafted_copy_with_patched_hash_loads(monkeypatch, tmp_path, real_members, dataset):
    """Control for the tests below: a re-zipped copy of the real arrays is accepted once its hash is."""
    path = _write_npz(tmp_path / "copy.npz", real_members)
    with pytest.raises(DataFileError):
        load_imagenet_val(path=path)
    _accept_hash_of(monkeypatch, path)
    got = load_imagenet_val(path=path)
    np.testing.assert_array_equal(got.X, dataset.X)
    assert got.class_names == dataset.class_names


class _OpenMarker:
    """Unpickling this creates ``marker`` (through builtins.open)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


class _SystemMarker:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def _evil_label_maps(marker: Path):
    return {
        "open-as-label-map": _object_scalar(_OpenMarker(marker)),
        "open-inside-dict": _object_scalar({0: "tench", 1: _OpenMarker(marker)}),
        "system-as-label-map": _object_scalar(_SystemMarker(marker)),
        "system-as-dict-key": _object_scalar({_SystemMarker(marker): "x"}),
    }


def test_crafted_payload_is_armed(tmp_path):
    """The payload really runs code when unpickled without restrictions (so the next test means something)."""
    marker = tmp_path / "armed"
    raw = _npy_bytes(_evil_label_maps(marker)["open-as-label-map"])
    assert not marker.exists()
    opened = np.load(io.BytesIO(raw), allow_pickle=True).item()
    opened.close()
    assert marker.exists()


@pytest.mark.parametrize("variant", list(_evil_label_maps(Path("x"))))
def test_malicious_pickle_is_refused_and_runs_nothing(monkeypatch, tmp_path, real_members, variant):
    marker = tmp_path / "PWNED"
    members = dict(real_members)
    members["label_map.npy"] = _npy_bytes(_evil_label_maps(marker)[variant])
    path = _write_npz(tmp_path / "evil.npz", members)
    _accept_hash_of(monkeypatch, path)
    with pytest.raises(DataFileError, match=r"not allowed"):
        load_imagenet_val(path=path)
    assert not marker.exists()


def _members_with(real_members, **arrays) -> dict[str, bytes]:
    members = dict(real_members)
    for name, value in arrays.items():
        if value is None:
            members.pop(f"{name}.npy")
        else:
            members[f"{name}.npy"] = _npy_bytes(value)
    return members


def _real(name, real_members):
    return np.load(io.BytesIO(real_members[f"{name}.npy"]), allow_pickle=True)


CRAFTED = {
    "X float32": lambda X, y: dict(X=X.astype(np.float32)),
    "X int64": lambda X, y: dict(X=X.astype(np.int64)),
    "X small images": lambda X, y: dict(X=X[:, :32, :32]),
    "X channels first": lambda X, y: dict(X=np.ascontiguousarray(X.transpose(0, 3, 1, 2))),
    "X 3-D": lambda X, y: dict(X=X[0]),
    "X grey": lambda X, y: dict(X=X[..., 0]),
    "X no images": lambda X, y: dict(X=X[:0], y=y[:0]),
    "X object": lambda X, y: dict(X=np.array([X[0], "a"], dtype=object)),
    "y int32": lambda X, y: dict(y=y.astype(np.int32)),
    "y float": lambda X, y: dict(y=y.astype(np.float64)),
    "y too short": lambda X, y: dict(y=y[:24]),
    "y 2-D": lambda X, y: dict(y=y[:, None]),
    "y label 1000": lambda X, y: dict(y=np.where(np.arange(25) == 3, 1000, y)),
    "y label -1": lambda X, y: dict(y=np.where(np.arange(25) == 3, -1, y)),
    "y missing": lambda X, y: dict(y=None),
    "X missing": lambda X, y: dict(X=None),
    "label_map missing": lambda X, y: dict(label_map=None),
    "label_map 1-D": lambda X, y: dict(label_map=np.array([{0: "a"}, {1: "b"}], dtype=object)),
    "label_map strings": lambda X, y: dict(label_map=np.array("tench")),
    "label_map list": lambda X, y: dict(label_map=_object_scalar(["tench", "goldfish"])),
    "label_map str key": lambda X, y: dict(label_map=_object_scalar({"zero": "tench"})),
    "label_map key 1000": lambda X, y: dict(label_map=_object_scalar({1000: "tench"})),
    "label_map tuple key": lambda X, y: dict(label_map=_object_scalar({(1, 2): "tench"})),
    "label_map int value": lambda X, y: dict(label_map=_object_scalar({0: 5})),
}


@pytest.mark.parametrize("case", list(CRAFTED))
def test_crafted_arrays_of_wrong_shape_or_dtype(monkeypatch, tmp_path, real_members, case):
    X, y = _real("X", real_members), _real("y", real_members)
    path = _write_npz(tmp_path / "crafted.npz", _members_with(real_members, **CRAFTED[case](X, y)))
    _accept_hash_of(monkeypatch, path)
    with pytest.raises(DataFileError):
        load_imagenet_val(path=path)


def test_not_a_zip_with_patched_hash(monkeypatch, tmp_path):
    path = tmp_path / "garbage.npz"
    path.write_bytes(b"this is not a zip file at all" * 100)
    _accept_hash_of(monkeypatch, path)
    with pytest.raises(DataFileError, match=r"could not be read"):
        load_imagenet_val(path=path)


def test_damaged_pickle_with_patched_hash(monkeypatch, tmp_path, real_members):
    members = dict(real_members)
    members["label_map.npy"] = real_members["label_map.npy"][:2000]
    path = _write_npz(tmp_path / "cut.npz", members)
    _accept_hash_of(monkeypatch, path)
    with pytest.raises(DataFileError):
        load_imagenet_val(path=path)


def test_sha256_of_reads_in_chunks(tmp_path):
    data = os.urandom((1 << 20) * 2 + 17)
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_of(path) == hashlib.sha256(data).hexdigest()
    assert sha256_of(str(path)) == hashlib.sha256(data).hexdigest()


def test_the_tests_cache_is_private(tmp_path):
    """The cache the tests use lives under tmp_path, never in the user's home."""
    assert cache_dir() == tmp_path / "xdg-cache" / "saliency-course"
