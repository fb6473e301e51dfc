"""Bad input to the loaders (:mod:`helpers.data`, :mod:`helpers.model`): a clear error naming the argument
or the file, nothing downloaded, and no file of the user's changed or deleted."""

from __future__ import annotations

import os
import time
import warnings

import pytest
import torch

import helpers.model
from conftest import assert_refused, file_states
from helpers.data import DataFileError, class_name, load_imagenet_val, locate_data_file
from helpers.model import WeightsUnavailableError, choose_device, load_squeezenet, weights_fingerprint

pytestmark = pytest.mark.usefixtures("offline")


@pytest.fixture
def files(tmp_path, monkeypatch):
    """A user's folder with the kinds of bad files people pass, and an empty cache."""
    monkeypatch.delenv("SALIENCY_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    user = tmp_path / "user"
    user.mkdir()
    (user / "empty.npz").write_bytes(b"")
    (user / "notes.npz").write_text("not a zip")
    (user / "folder.npz").mkdir()
    (user / "model.pth").write_bytes(b"\x80\x02not torch")
    with open(user / "huge.pth", "wb") as fh:   # sparse: 3 GiB on paper, nothing on disk
        fh.truncate(3 << 30)
    with open(user / "huge.npz", "wb") as fh:
        fh.truncate(3 << 30)
    (user / "weights.txt").write_text("hello")
    return user


def _cache_is_a_file(files):
    cache = files.parent / "cache"
    cache.mkdir()
    (cache / "saliency-course").write_text("I am a file where a folder should be")
    return load_imagenet_val()


def _cuda_5(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    return choose_device("cuda:5")


CASES = [
    # load_imagenet_val / locate_data_file
    ("download-no-string", lambda f, m: load_imagenet_val(download="no"), TypeError,
     r"^download must be True or False, got a str"),
    ("download-int", lambda f, m: load_imagenet_val(download=0), TypeError, r"^download must be True or False"),
    ("locate-download-str", lambda f, m: locate_data_file(download="false"), TypeError,
     r"^download must be True or False"),
    ("num-0", lambda f, m: load_imagenet_val(0), ValueError, r"^num must be >= 1, got 0"),
    ("num-float", lambda f, m: load_imagenet_val(2.0), TypeError, r"^num must be an integer, got a float"),
    ("num-bool", lambda f, m: load_imagenet_val(True), TypeError, r"^num must be an integer"),
    ("num-str", lambda f, m: load_imagenet_val("5"), TypeError, r"^num must be an integer, got a str"),
    ("seed-negative", lambda f, m: load_imagenet_val(seed=-1), ValueError, r"^seed must be >= 0"),
    ("seed-float", lambda f, m: load_imagenet_val(seed=0.5), TypeError, r"^seed must be an integer"),
    ("path-int", lambda f, m: load_imagenet_val(path=3), TypeError, r"^path must be a str or os.PathLike, got a int"),
    ("path-missing", lambda f, m: load_imagenet_val(path=f / "nope.npz"), DataFileError,
     r"nope.npz \(the path you passed\) does not exist"),
    ("path-folder", lambda f, m: load_imagenet_val(path=f / "folder.npz"), DataFileError,
     r"folder.npz \(the path you passed\) is a folder, not the data file"),
    ("path-empty-file", lambda f, m: load_imagenet_val(path=f / "empty.npz"), DataFileError,
     r"empty.npz \(the path you passed\) is not the lab's data file: its SHA-256"),
    ("path-text-file", lambda f, m: load_imagenet_val(path=f / "notes.npz"), DataFileError,
     r"notes.npz .* is not the lab's data file"),
    ("path-3GiB", lambda f, m: load_imagenet_val(path=f / "huge.npz"), DataFileError,
     r"huge.npz .* it has 3,221,225,472 bytes"),
    ("env-folder", lambda f, m: (m.setenv("SALIENCY_DATA", str(f / "folder.npz")), load_imagenet_val()),
     DataFileError, r"\(\$SALIENCY_DATA\) is a folder"),
    ("cache-is-a-file", lambda f, m: _cache_is_a_file(f), DataFileError,
     r"^Cannot write the data file into the cache folder .*saliency-course"),
    ("no-file-no-download", lambda f, m: load_imagenet_val(download=False), DataFileError,
     r"^No data file found: pass path=..., set SALIENCY_DATA"),
    # class_name
    ("class_name-1000", lambda f, m: class_name(1000), ValueError, r"^label must hold ImageNet labels in 0..999"),
    ("class_name-negative", lambda f, m: class_name(-1), ValueError, r"^label must hold ImageNet labels"),
    ("class_name-str", lambda f, m: class_name("cat"), TypeError, r"^label must be integer class labels"),
    ("class_name-float", lambda f, m: class_name(3.0), TypeError, r"^label must be integer class labels"),
    ("class_name-two", lambda f, m: class_name([1, 2]), ValueError, r"^label must be a single class index"),
    ("class_name-names-list", lambda f, m: class_name(1, ["a", "b"]), TypeError,
     r"^class_names must be a dict of int to str, got a list"),
    # load_squeezenet
    ("weights-int", lambda f, m: load_squeezenet(3, "cpu"), TypeError,
     r"^weights must be 'pretrained', 'untrained' or a path to a .pth file, got a int"),
    ("weights-txt", lambda f, m: load_squeezenet(str(f / "weights.txt"), "cpu"), ValueError,
     r"^weights must be 'pretrained', 'untrained' or a path to a .pth file, got '.*weights.txt'"),
    ("weights-typo", lambda f, m: load_squeezenet("pretrianed", "cpu"), ValueError,
     r"^weights must be 'pretrained', 'untrained' or a path"),
    ("weights-missing", lambda f, m: load_squeezenet(str(f / "gone.pth"), "cpu"), WeightsUnavailableError,
     r"^weights file .*gone.pth does not exist"),
    ("weights-wrong-hash", lambda f, m: load_squeezenet(str(f / "model.pth"), "cpu"), WeightsUnavailableError,
     r"model.pth is not torchvision's SqueezeNet 1.1 file: its SHA-256 starts with"),
    ("weights-3GiB", lambda f, m: load_squeezenet(str(f / "huge.pth"), "cpu"), WeightsUnavailableError,
     r"huge.pth is not torchvision's SqueezeNet 1.1 file: it has 3,221,225,472 bytes"),
    ("weights-env-garbage", lambda f, m: (m.setenv("SALIENCY_WEIGHTS", "yes"), load_squeezenet(device="cpu")),
     ValueError, r"^weights must be 'pretrained', 'untrained' or a path to a .pth file, got 'yes'"),
    ("progress-str", lambda f, m: load_squeezenet("untrained", "cpu", progress="no"), TypeError,
     r"^progress must be True or False"),
    ("device-name", lambda f, m: load_squeezenet("untrained", "gpu"), ValueError,
     r"^device must be 'cpu', 'cuda', 'mps' or 'auto', got 'gpu'"),
    ("device-int", lambda f, m: load_squeezenet("untrained", 0), TypeError, r"^device must be a str or torch.device"),
    ("device-cuda-5-of-1", lambda f, m: _cuda_5(m), ValueError,
     r"^device='cuda:5' names GPU 5, but this machine has 1 \(cuda:0 to cuda:0\)"),
    ("device-mps-3", lambda f, m: (m.setattr(torch.backends.mps, "is_available", lambda: True),
                                   choose_device("mps:3")), ValueError, r"^device='mps:3': there is only one MPS"),
    ("fingerprint-not-a-model", lambda f, m: weights_fingerprint({"w": 1}), TypeError,
     r"^model must be a torch.nn.Module, got a dict"),
]


@pytest.mark.parametrize("call, exc, pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_clearly(files, monkeypatch, call, exc, pattern):
    before = file_states(files)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_refused(lambda: call(files, monkeypatch), exc, pattern)
    assert file_states(files) == before, "a refused call changed or deleted the user's files"


def test_no_cuda_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert_refused(lambda: choose_device("cuda:0"), ValueError, r"^device='cuda' was asked for but this machine has no")


def test_large_files_are_refused_before_reading(files):
    start = time.perf_counter()
    for call in (lambda: load_squeezenet(str(files / "huge.pth"), "cpu"),
                 lambda: load_imagenet_val(path=files / "huge.npz")):
        with pytest.raises((WeightsUnavailableError, DataFileError)):
            call()
    assert time.perf_counter() - start < 1.0, "a 3 GiB file must be refused by its size, not hashed"
    assert os.path.getsize(files / "huge.pth") == 3 << 30
