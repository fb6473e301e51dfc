"""Tests of course_tools.results: what a sandbox leaves is read strictly, never through a link."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from course_tools.results import ResultError, read_figure, read_value  # noqa: E402
from helpers.autograde import serialise  # noqa: E402

CAP = 2**20


@pytest.fixture
def outbox(tmp_path):
    folder = tmp_path / "outbox"
    folder.mkdir()
    return folder


def test_a_result_the_hidden_test_wrote_is_read_back(outbox):
    serialise(torch.arange(6.0).reshape(2, 3), outbox, "check")
    value, meta = read_value(outbox, "check", CAP)
    assert isinstance(value, torch.Tensor) and value.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert meta["kind"] == "torch"


def test_none_and_other_values(outbox):
    serialise(None, outbox, "nothing")
    serialise("a string", outbox, "text")
    assert read_value(outbox, "nothing", CAP)[0] is None
    assert "str" in repr(read_value(outbox, "text", CAP)[0]) or read_value(outbox, "text", CAP)[1]["kind"] == "other"


def _secret(tmp_path: Path) -> Path:
    secret = tmp_path / "reference.npy"
    np.save(secret, np.ones(3))
    return secret


def _forge(outbox: Path, name: str, npy_maker) -> None:
    (outbox / f"{name}.json").write_text(json.dumps({"type": "numpy.ndarray", "kind": "numpy", "shape": [3]}))
    npy_maker(outbox / f"{name}.npy")


@pytest.mark.parametrize("attack, message", [
    ("symlink", "not a regular file"),
    ("hardlink", "linked from elsewhere"),
    ("fifo", "not a regular file"),
    ("folder", "not a regular file"),
    ("sparse", "too large"),
    ("pickle", "not a valid array"),
    ("strings", "does not hold numbers"),
    ("shape", "shape it states"),
])
def test_forged_or_planted_array_files_are_refused(tmp_path, outbox, attack, message):
    secret = _secret(tmp_path)
    makers = {
        "symlink": lambda p: p.symlink_to(secret),
        "hardlink": lambda p: os.link(secret, p),
        "fifo": lambda p: os.mkfifo(p),
        "folder": lambda p: p.mkdir(),
        "sparse": lambda p: open(p, "wb").truncate(2**31),
        "pickle": lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True),
        "strings": lambda p: np.save(p, np.array(["a", "b", "c"])),
        "shape": lambda p: np.save(p, np.ones(4)),
    }
    _forge(outbox, "check", makers[attack])
    with pytest.raises(ResultError, match=message):
        read_value(outbox, "check", CAP)


@pytest.mark.parametrize("content, message", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2, 3]", "not one the hidden test wrote"),
    (b'{"kind": "numpy"}', "not one the hidden test wrote"),
    (b'{"type": "x", "kind": "numpy", "shape": [-1]}', "invalid shape"),
    (b'{"type": "x", "kind": "numpy", "shape": "big"}', "invalid shape"),
    (b"\xff\xfe", "not valid JSON"),
])
def test_malformed_result_descriptions_are_refused(outbox, content, message):
    (outbox / "check.json").write_bytes(content)
    np.save(outbox / "check.npy", np.ones(3))
    with pytest.raises(ResultError, match=message):
        read_value(outbox, "check", CAP)


def test_a_linked_outbox_folder_is_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    serialise(np.ones(3), real, "check")
    (tmp_path / "outbox").symlink_to(real)
    with pytest.raises(ResultError, match="missing or was replaced"):
        read_value(tmp_path / "outbox", "check", CAP)


def test_a_missing_result(outbox):
    with pytest.raises(ResultError, match="missing"):
        read_value(outbox, "check", CAP)


def _png(path: Path, size=(8, 3), blank=False) -> None:
    fig, ax = plt.subplots(figsize=size)
    if not blank:
        ax.imshow(np.random.default_rng(0).random((20, 50)))
    else:
        ax.axis("off")
    fig.savefig(path)
    plt.close(fig)


def test_a_real_figure_is_accepted_with_its_layout(tmp_path):
    _png(tmp_path / "fig.png")
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.plot([0, 1], [1, 0])
    fig.savefig(tmp_path / "fig.pdf")
    plt.close(fig)
    _, png = read_figure(tmp_path, "fig.png")
    _, pdf = read_figure(tmp_path, "fig.pdf")
    assert png["kind"] == "png" and png["width"] / png["height"] == pytest.approx(8 / 3, rel=0.02)
    assert pdf == {"kind": "pdf", "width": 576.0, "height": 216.0, "pages": 1}


@pytest.mark.parametrize("name, make, message", [
    ("magic.png", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 5000), "does not decode"),
    ("blank.png", lambda p: _png(p, blank=True), "blank"),
    ("tiny.png", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n"), "suspiciously small"),
    ("fake.pdf", lambda p: p.write_bytes(b"%PDF-1.4\n" + b"x" * 6000), "not a complete PDF"),
    ("nopage.pdf", lambda p: p.write_bytes(b"%PDF-1.4\n" + b"x" * 6000 + b"\n%%EOF\n"), "no page"),
    ("text.png", lambda p: p.write_bytes(b"hello" * 2000), "not a PNG"),
])
def test_files_that_only_look_like_figures_are_refused(tmp_path, name, make, message):
    make(tmp_path / name)
    with pytest.raises(ResultError, match=message):
        read_figure(tmp_path, name)


def test_a_decompression_bomb_is_refused_without_decoding(tmp_path):
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (20000, 3000)).save(buffer, format="PNG")
    (tmp_path / "bomb.png").write_bytes(buffer.getvalue() + b"\0" * 6000)
    with pytest.raises(ResultError, match="more than a figure has"):
        read_figure(tmp_path, "bomb.png")


def test_errors_never_name_the_hidden_check(tmp_path, outbox):
    """A check's name tells about the hidden test: refusals call the files by what they are."""
    secret = _secret(tmp_path)
    for attack in ("link", "json", "missing"):
        name = f"hidden_check_{attack}"
        if attack == "link":
            _forge(outbox, name, lambda p: p.symlink_to(secret))
        elif attack == "json":
            (outbox / f"{name}.json").write_text("{broken")
        with pytest.raises(ResultError) as info:
            read_value(outbox, name, CAP)
        assert name not in str(info.value) and "hidden_check" not in str(info.value)
