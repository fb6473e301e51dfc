"""Handed-in figure files (PNG, PDF), judged on the grader's side: what they show.

A hidden test asks for the figure files an exercise saves with :meth:`helpers.autograde.HiddenChecks.require_files`.
In *record* mode the kernel writes the solution's layout (:func:`helpers.autograde.figure_layout`) and a copy
of each solution file beside the spec (``files.<cell>.<name>``); ``course references`` then describes what
they show with :func:`fingerprint_recorded_figures`, and the grader holds each student's file against that:

* :func:`helpers.autograde.figure_layout`: the file decodes, is not blank and has a page or pixel size (its
  aspect ratio must be the solution's, :func:`helpers.autograde.same_layout`);
* :func:`figure_fingerprint` / :func:`compare_figure`: what it shows. The course's figures are grids of panels
  (images above their saliency maps). The *rows of panels* are found in the picture itself, and the first
  ``match_rows`` of them, the rows that the exercise fixes (its images, which neither a wrong map nor another
  colour map changes), must look like the solution's: the correlation of small grayscale thumbnails must reach
  ``similarity``. The rows below count for the layout only (how many rows of panels there are), so that a
  student whose maps are wrong, or who picked another colour map, still hands in the asked-for figure.

  In a PNG, a row of panels is a band of pixel rows of which at least half the width differs from the
  background colour (taken from the border), at least 5% of the picture high; its thumbnail is the band, cut
  to its ink, shrunk to 96 x 16 grey levels. In a PDF, the panels are the image objects the page draws
  (``w 0 0 h x y cm /Name Do``), grouped into rows by their height on the page; each image of a matched row is
  decoded and shrunk to 16 x 16 grey levels.

This module runs in the instructor's processes only (``course references``, ``course grade``), never in a
student's kernel, and is not part of the ``helpers`` package that students receive.

Every file is hostile. PNGs are decoded by Pillow only after their size is read and checked against
:data:`MAX_FIGURE_PIXELS`. PDFs are never rendered: a small parser reads the objects a matplotlib figure
has (the trailer, catalogue, page, its resources and content streams, image objects), refuses anything
else, bounds every repetition, nesting depth, length and decompressed size, and decodes image objects (PNG
predictors in a Flate stream, as matplotlib writes them) through Pillow, under the same caps. Every refusal
is a :class:`ValueError` or a problem string in the grader's words; neither quotes the file nor the
recorded fingerprint.
"""

from __future__ import annotations

import io
import json
import re
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from helpers._validation import describe, require_number
# The default similarity is declared beside require_files (the exercise's side). Measured on the homework's two
# figures (untrained network, docs/maintainers.md): the image row of every honest variant (any SmoothGrad,
# right or wrong; colour maps hot, gray, viridis, magma, jet, Reds, Greys, gray_r, coolwarm, diverging;
# ``same_scale`` colour bars; a title; dpi 72 to 300; no tight bounding box) correlates >= 0.999 in the PNG
# and >= 0.9999 per image in the PDF; other images, the right images in another order or another layout of
# them, noise and unrelated figures reach at most 0.88.
from helpers.autograde import FIGURE_SIMILARITY, MAX_FIGURE_PIXELS, check_figure_bytes, read_png

from .paths import CourseError

__all__ = ["FIGURE_SIMILARITY", "compare_figure", "figure_fingerprint", "fingerprint_recorded_figures"]

_INK_LEVELS = 2          # a pixel is ink when a channel differs from the background by more than this
_ROW_FILL = 0.5          # a pixel row is part of a row of panels when at least this fraction of it is ink
_ROW_MIN_HEIGHT = 0.05   # ... and the band is at least this fraction of the picture high
_ROW_THUMBNAIL = (96, 16)
_PANEL_THUMBNAIL = (16, 16)
_NUMBER = rb"[-+]?(?:[0-9]{1,12}(?:\.[0-9]{0,12})?|\.[0-9]{1,12})"


# ----------------------------------------------------------------------------- reading a file

def _check_file(data: Any, suffix: Any) -> str:
    """The checks every figure passes before it is decoded (:func:`helpers.autograde.check_figure_bytes`)."""
    return check_figure_bytes(data, suffix)


def _decode_png(data: bytes) -> np.ndarray:
    """RGB pixels (uint8, transparency laid over white) of a PNG within :data:`MAX_FIGURE_PIXELS`."""
    return np.asarray(read_png(data))


# ----------------------------------------------------------------------------- what the figure shows

def figure_fingerprint(data: bytes, suffix: str, match_rows: int = 1) -> dict:
    """Describe what the solution's figure shows, for :func:`compare_figure` (record mode).

    Parameters
    ----------
    data : bytes
        The solution's figure file.
    suffix : {".png", ".pdf"}
        Its kind.
    match_rows : int, default 1
        How many rows of panels, from the top, a student's figure must show as the solution's does.

    Returns
    -------
    dict
        ``{"kind", "match_rows", "rows", "thumbnails"}``: the number of rows of panels (PNG) or the number of
        panels in each row (PDF), and the grey-level thumbnails (lists of ints 0..255) of the matched rows
        (PNG) or of each of their panels (PDF).

    Raises
    ------
    ValueError
        If the file is not a figure (:func:`helpers.autograde.figure_layout`), or it has fewer than
        ``match_rows`` rows of panels.
    """
    suffix = _check_file(data, suffix)
    match_rows = int(require_number("match_rows", match_rows, low=0, integer=True))
    if suffix == ".png":
        pixels = _decode_png(data)
        rows = _panel_rows(pixels)
        thumbnails = [_row_thumbnail(pixels, row) for row in rows[:match_rows]]
        counts: Any = len(rows)
    else:
        panels = _PdfFigure(data).panel_rows()
        rows, counts = panels, [len(row) for row in panels]
        thumbnails = [thumb for row in panels[:match_rows] for thumb in (p.thumbnail() for p in row)]
    if len(rows) < match_rows:
        raise ValueError(f"the figure has {len(rows)} rows of panels, fewer than match_rows={match_rows}")
    return {"kind": suffix[1:], "match_rows": match_rows, "rows": counts,
            "thumbnails": [t.round().astype(int).ravel().tolist() for t in thumbnails]}


def compare_figure(data: bytes, suffix: str, fingerprint: dict, similarity: float = FIGURE_SIMILARITY) -> str | None:
    """What keeps a student's figure from being the solution's, in the grader's words, or ``None``.

    Parameters
    ----------
    data : bytes
        The student's file (already accepted by :func:`helpers.autograde.figure_layout`).
    suffix : {".png", ".pdf"}
        Its kind.
    fingerprint : dict
        The solution's, from :func:`figure_fingerprint`.
    similarity : float, default :data:`FIGURE_SIMILARITY`
        Least correlation (0..1) of each matched thumbnail with the solution's.
    """
    suffix = _check_file(data, suffix)
    similarity = require_number("similarity", similarity, low=0, high=1)
    expected_thumbnails = _check_fingerprint(fingerprint, suffix)
    arranged = "its panels are not arranged as in the figure the exercise asks for"
    try:
        if suffix == ".png":
            pixels = _decode_png(data)
            rows = _panel_rows(pixels)
            if len(rows) != fingerprint["rows"]:
                return f"{arranged} (rows of panels found: {len(rows)})"
            found = [_row_thumbnail(pixels, row) for row in rows[:len(expected_thumbnails)]]
            labels = [f"row {i + 1} of panels" for i in range(len(found))]
        else:
            panels = _PdfFigure(data).panel_rows()
            counts, expected, matched = [len(row) for row in panels], fingerprint["rows"], fingerprint["match_rows"]
            # Rows below the matched ones may hold more images than the solution's: colour bars (same_scale).
            if len(counts) != len(expected) or counts[:matched] != expected[:matched] \
                    or any(n < m for n, m in zip(counts[matched:], expected[matched:])):
                return f"{arranged} (images found in each row of panels: {counts or 'none'})"
            found, labels = [], []
            for r, row in enumerate(panels):
                for c, panel in enumerate(row):
                    if len(found) < len(expected_thumbnails):
                        found.append(panel.thumbnail())
                        labels.append(f"panel {c + 1} of row {r + 1}")
    except ValueError as err:
        return f"it is not a figure the grader can read ({err}): save it with plots.save_figure"
    except Exception as err:  # noqa: BLE001 - the file is hostile: whatever it trips, it is not a figure
        return f"it is not a figure the grader can read ({type(err).__name__}): save it with plots.save_figure"
    for label, mine, theirs in zip(labels, found, expected_thumbnails):
        if _correlation(mine.ravel(), theirs) < similarity:
            return f"{label} does not show what the exercise asks for (the images it names, in its order)"
    return None


def fingerprint_recorded_figures(key_dir: Path) -> list[str]:
    """Complete the figure specs of a reference set just recorded: the fingerprint of each solution file.

    ``require_files`` in *record* mode writes ``<notebook>/files.<cell>.spec.json`` with each file's layout,
    and a copy of the file as ``files.<cell>.<name>`` beside it; this adds ``"fingerprint"`` (from
    :func:`figure_fingerprint`, with the spec's ``match_rows``) to each file's entry, so that the grader
    needs no more than the spec.

    Parameters
    ----------
    key_dir : pathlib.Path
        The reference set, ``references/<key>`` or its recording folder.

    Returns
    -------
    list of str
        ``<notebook>/<file>`` of each figure fingerprinted.

    Raises
    ------
    CourseError
        If a spec names a file that was not copied, or the solution's file is not a figure with at least
        ``match_rows`` rows of panels.
    """
    key_dir = Path(key_dir)
    if not key_dir.is_dir():
        raise CourseError(f"key_dir must be a reference set folder, got {key_dir}")
    done = []
    for spec_path in sorted(key_dir.glob("*/files.*.spec.json")):
        spec = json.loads(spec_path.read_text())
        cell, files = spec.get("cell"), spec.get("files")
        if not isinstance(cell, str) or not isinstance(files, dict) or "match_rows" not in spec:
            raise CourseError(f"{spec_path}: not a figure spec written by require_files; run `course references` again")
        for name, entry in files.items():
            copy = spec_path.parent / f"files.{cell}.{name}"
            if not copy.is_file():
                raise CourseError(f"{spec_path}: the solution's {name} was not copied beside it; "
                                  "run `course references` again")
            try:
                entry["fingerprint"] = figure_fingerprint(copy.read_bytes(), Path(name).suffix, spec["match_rows"])
            except (TypeError, ValueError) as err:
                raise CourseError(f"{spec_path.parent.name}: the solution's {name} cannot be the reference of "
                                  f"what a figure shows: {err}") from None
            done.append(f"{spec_path.parent.name}/{name}")
        spec_path.write_text(json.dumps(spec))
    return done


def _check_fingerprint(fingerprint: Any, suffix: str) -> list[np.ndarray]:
    """The thumbnails of a fingerprint recorded by :func:`figure_fingerprint` for a ``suffix`` file."""
    size = int(np.prod(_ROW_THUMBNAIL if suffix == ".png" else _PANEL_THUMBNAIL))
    ok = isinstance(fingerprint, dict) and fingerprint.get("kind") == suffix[1:] \
        and isinstance(fingerprint.get("match_rows"), int) and isinstance(fingerprint.get("thumbnails"), list) \
        and all(isinstance(t, list) and len(t) == size for t in fingerprint["thumbnails"]) \
        and (isinstance(fingerprint.get("rows"), int) if suffix == ".png" else
             isinstance(fingerprint.get("rows"), list) and all(isinstance(n, int) for n in fingerprint["rows"]))
    if not ok:
        raise ValueError(f"fingerprint must be one recorded by figure_fingerprint for a {suffix} file, "
                         f"got {describe(fingerprint)}")
    return [np.asarray(t, dtype=np.float64) for t in fingerprint["thumbnails"]]


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two equally long vectors; 0 when either is flat (or their lengths differ)."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        return 0.0
    a, b = a - a.mean(), b - b.mean()
    norm = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / norm) if norm > 0 else 0.0


def _thumbnail(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(pixels).convert("L").resize(size, Image.BOX), dtype=np.float64)


def _ink(pixels: np.ndarray) -> np.ndarray:
    """Where the picture differs from its background (the commonest colour of its border)."""
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    colours, counts = np.unique(border, axis=0, return_counts=True)
    background = colours[counts.argmax()].astype(np.int16)
    ink = np.zeros(pixels.shape[:2], dtype=bool)
    for channel in range(pixels.shape[2]):
        ink |= np.abs(pixels[..., channel].astype(np.int16) - background[channel]) > _INK_LEVELS
    return ink


def _panel_rows(pixels: np.ndarray) -> list[tuple[int, int, int, int]]:
    """The rows of panels of a picture, top to bottom, as ``(top, bottom, left, right)`` pixel bounds."""
    ink = _ink(pixels)
    full = np.append(ink.mean(axis=1) >= _ROW_FILL, False)
    rows, start = [], None
    for y, inside in enumerate(full):
        if inside and start is None:
            start = y
        elif not inside and start is not None:
            if y - start >= _ROW_MIN_HEIGHT * ink.shape[0]:
                columns = np.flatnonzero(ink[start:y].any(axis=0))
                rows.append((start, y, int(columns[0]), int(columns[-1]) + 1))
            start = None
    return rows


def _row_thumbnail(pixels: np.ndarray, row: tuple[int, int, int, int]) -> np.ndarray:
    top, bottom, left, right = row
    return _thumbnail(pixels[top:bottom, left:right], _ROW_THUMBNAIL)


# ----------------------------------------------------------------------------- PDF, strictly and boundedly

#: Bounds of the PDF reader: objects in a file, bytes of one object's dictionary, nesting, decompressed content.
MAX_PDF_OBJECTS = 100_000
_MAX_DICT_BYTES = 64 * 1024
_MAX_DEPTH = 8
_MAX_CONTENT_BYTES = 16 * 2**20
_MAX_PANELS = 1000
_MAX_PANEL_PIXELS = 16_000_000
_WHITESPACE = b" \t\r\n\f\x00"
_DELIMITERS = b"()<>[]{}/%"
_OBJECT = re.compile(rb"(?<![0-9])([0-9]{1,7})[ \t\r\n]{1,8}0[ \t\r\n]{1,8}obj(?![A-Za-z])")
_REF = re.compile(rb"([0-9]{1,7})[ \t\r\n]{1,8}([0-9]{1,5})[ \t\r\n]{1,8}R(?![A-Za-z])")
_NUMBER_TOKEN = re.compile(_NUMBER)
_STREAM_START = re.compile(rb"[ \t\r\n]{0,8}stream(?:\r\n|\n)")
_STREAM_END = re.compile(rb"[ \t\r\n]{0,8}endstream")
_PLACEMENT = re.compile(rb"(?<![A-Za-z0-9.])" + rb"\s{1,8}".join([b"(" + _NUMBER + b")"] * 6)
                        + rb"\s{1,8}cm\s{0,8}/([A-Za-z0-9_.+-]{1,64})\s{1,8}Do(?![A-Za-z0-9])")


class _Name(str):
    """A PDF name (``/Image``), told apart from a string."""


class _Ref(int):
    """A reference to object number ``int(self)`` (``12 0 R``)."""


class _Panel:
    """One image the page draws: where (PDF points) and how to decode it."""

    def __init__(self, figure: "_PdfFigure", number: int, x: float, y: float, width: float, height: float):
        self.figure, self.number, self.x, self.y, self.width, self.height = figure, number, x, y, width, height

    def thumbnail(self) -> np.ndarray:
        return _thumbnail(self.figure.image(self.number), _PANEL_THUMBNAIL)


class _PdfFigure:
    """The one page of a PDF a matplotlib figure makes, read for the images it draws (``ValueError`` if not)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.decoded_pixels = 0   # of the images decoded so far: at most MAX_FIGURE_PIXELS in all
        self.offsets: dict[int, int] = {}
        for match in _OBJECT.finditer(data):
            number = int(match.group(1))
            if number in self.offsets:
                raise ValueError("an object is defined twice")
            if len(self.offsets) >= MAX_PDF_OBJECTS:
                raise ValueError("too many objects")
            self.offsets[number] = match.end()

    # -- the objects
    def _parse(self, pos: int, end: int | None = None, depth: int = 0) -> tuple[Any, int]:
        """One object at ``pos`` (all of it before ``end``, by default :data:`_MAX_DICT_BYTES` on)."""
        data = self.data
        end = min(len(data), pos + _MAX_DICT_BYTES) if end is None else end
        pos = self._skip(pos, end)
        if pos >= end:
            raise ValueError("an object is cut short")
        if depth > _MAX_DEPTH:
            raise ValueError("objects are nested too deeply")
        head = data[pos:pos + 2]
        if head == b"<<":
            out, pos = {}, pos + 2
            while True:
                pos = self._skip(pos, end)
                if data[pos:pos + 2] == b">>":
                    return out, pos + 2
                key, pos = self._parse(pos, end, depth + 1)
                if not isinstance(key, _Name):
                    raise ValueError("a dictionary key is not a name")
                out[str(key)], pos = self._parse(pos, end, depth + 1)
        if head[:1] == b"[":
            items, pos = [], pos + 1
            while True:
                pos = self._skip(pos, end)
                if data[pos:pos + 1] == b"]":
                    return items, pos + 1
                item, pos = self._parse(pos, end, depth + 1)
                items.append(item)
        if head[:1] == b"/":
            stop = pos + 1
            while stop < end and data[stop] not in _WHITESPACE and data[stop] not in _DELIMITERS:
                stop += 1
            return _Name(data[pos + 1:stop].decode("latin-1")), stop
        if head[:1] == b"(":
            return self._literal(pos, end)
        if head[:1] == b"<":
            stop = data.find(b">", pos, end)
            if stop < 0:
                raise ValueError("a hex string is not closed")
            return data[pos + 1:stop], stop + 1
        ref = _REF.match(data, pos, end)
        if ref:
            return _Ref(int(ref.group(1))), ref.end()
        number = _NUMBER_TOKEN.match(data, pos, end)
        if number:
            text = number.group(0)
            return (float(text) if b"." in text else int(text)), number.end()
        for word, value in ((b"true", True), (b"false", False), (b"null", None)):
            if data.startswith(word, pos):
                return value, pos + len(word)
        raise ValueError("an object holds something a figure does not")

    def _skip(self, pos: int, end: int) -> int:
        data = self.data
        while pos < end:
            if data[pos] in _WHITESPACE:
                pos += 1
            elif data[pos:pos + 1] == b"%":
                stop = min(x for x in (data.find(b"\n", pos, end), data.find(b"\r", pos, end), end) if x >= 0)
                pos = stop
            else:
                break
        return pos

    def _literal(self, pos: int, end: int) -> tuple[bytes, int]:
        data, depth, out, pos = self.data, 1, bytearray(), pos + 1
        while pos < end:
            char = data[pos]
            if char == 0x5C:   # backslash: the next byte is escaped
                out += data[pos:pos + 2]
                pos += 2
                continue
            if char == 0x28:
                depth += 1
            elif char == 0x29:
                depth -= 1
                if depth == 0:
                    return bytes(out), pos + 1
            out.append(char)
            pos += 1
        raise ValueError("a string is not closed")

    def object(self, number: Any) -> Any:
        if not isinstance(number, int) or number not in self.offsets:
            raise ValueError("a reference points to no object")
        return self._parse(self.offsets[number])[0]

    def _resolve(self, value: Any) -> Any:
        return self.object(value) if isinstance(value, _Ref) else value

    def _dict(self, value: Any, what: str) -> dict:
        value = self._resolve(value)
        if not isinstance(value, dict):
            raise ValueError(f"its {what} is not a dictionary")
        return value

    def stream(self, number: int, max_bytes: int) -> tuple[dict, bytes]:
        """An object's dictionary and its stream's raw bytes."""
        if number not in self.offsets:
            raise ValueError("a reference points to no object")
        head, pos = self._parse(self.offsets[number])
        if not isinstance(head, dict):
            raise ValueError("a stream has no dictionary")
        length = self._resolve(head.get("Length"))
        if isinstance(length, bool) or not isinstance(length, int) or not 0 <= length <= max_bytes:
            raise ValueError("a stream has no valid length")
        match = _STREAM_START.match(self.data, pos)
        if not match:
            raise ValueError("a stream is missing")
        start = match.end()
        if not _STREAM_END.match(self.data, start + length):
            raise ValueError("a stream does not end where its length says")
        return head, self.data[start:start + length]

    def _decoded(self, head: dict, raw: bytes, max_bytes: int) -> bytes:
        filters = head.get("Filter")
        filters = filters if isinstance(filters, list) else [] if filters is None else [filters]
        if filters == []:
            return raw
        if filters != ["FlateDecode"] or head.get("DecodeParms") is not None:
            raise ValueError("a stream is compressed in a way matplotlib does not use")
        inflater = zlib.decompressobj()
        try:
            out = inflater.decompress(raw, max_bytes)
        except zlib.error:
            raise ValueError("a stream does not decompress") from None
        if inflater.unconsumed_tail:
            raise ValueError("a stream decompresses to too much")
        return out

    # -- the page
    def page(self) -> dict:
        start = self.data.rfind(b"trailer", max(0, len(self.data) - 4096))
        if start < 0:
            raise ValueError("it has no trailer")
        trailer, _ = self._parse(start + len(b"trailer"))
        if not isinstance(trailer, dict):
            raise ValueError("its trailer is not a dictionary")
        catalog = self._dict(trailer.get("Root"), "catalogue")
        pages = self._dict(catalog.get("Pages"), "page tree")
        kids = self._resolve(pages.get("Kids"))
        if not isinstance(kids, list) or len(kids) != 1:
            raise ValueError("it does not have exactly one page")
        page = self._dict(kids[0], "page")
        if page.get("Type") != "Page":
            raise ValueError("its page is not a page")
        return page

    def panel_rows(self) -> list[list[_Panel]]:
        """The images the page draws upright, in rows from the top and from the left within a row."""
        page = self.page()
        resources = self._dict(page.get("Resources"), "resources")
        xobjects = self._dict(resources.get("XObject", {}), "image list")
        contents = self._resolve(page.get("Contents"))
        contents = contents if isinstance(contents, list) else [page.get("Contents")]
        if not 1 <= len(contents) <= 16 or not all(isinstance(c, _Ref) for c in contents):
            raise ValueError("its page has no content")
        text = b"\n".join(self._decoded(*self.stream(c, 4 * _MAX_CONTENT_BYTES), _MAX_CONTENT_BYTES) for c in contents)
        panels = []
        for match in _PLACEMENT.finditer(text):
            a, b, c, d, x, y = (float(v) for v in match.groups()[:6])
            target = xobjects.get(match.group(7).decode("latin-1"))
            if not isinstance(target, _Ref) or b != 0 or c != 0 or a <= 0 or d <= 0:
                continue
            panels.append(_Panel(self, int(target), x, y, a, d))
            if len(panels) > _MAX_PANELS:
                raise ValueError("it draws too many images")
        panels.sort(key=lambda p: -(p.y + p.height / 2))
        rows: list[list[_Panel]] = []
        for panel in panels:
            centre = panel.y + panel.height / 2
            if rows and abs(rows[-1][0].y + rows[-1][0].height / 2 - centre) < rows[-1][0].height / 2:
                rows[-1].append(panel)
            else:
                rows.append([panel])
        return [sorted(row, key=lambda p: p.x) for row in rows]

    def image(self, number: int) -> np.ndarray:
        """Decode an RGB or grey image object as matplotlib writes it (Flate with PNG predictors), as RGB."""
        from PIL import Image

        head, raw = self.stream(number, 64 * 2**20)
        width, height, space = head.get("Width"), head.get("Height"), head.get("ColorSpace")
        if head.get("Subtype") != "Image" or head.get("BitsPerComponent") != 8 or space not in ("DeviceRGB", "DeviceGray") \
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (width, height)) \
                or width * height > _MAX_PANEL_PIXELS or head.get("SMask") is not None:
            raise ValueError("an image is not one the grader can decode")
        channels = 3 if space == "DeviceRGB" else 1
        self.decoded_pixels += width * height
        if self.decoded_pixels > MAX_FIGURE_PIXELS:
            raise ValueError("its images hold more pixels than a figure has")
        if head.get("Filter") is None:
            if len(raw) != width * height * channels:
                raise ValueError("an image has the wrong number of bytes")
            pixels = np.frombuffer(raw, dtype=np.uint8).reshape(height, width, channels)
        else:
            params = self._resolve(head.get("DecodeParms"))
            if head.get("Filter") != "FlateDecode" or not isinstance(params, dict) \
                    or not isinstance(params.get("Predictor"), int) or params.get("Predictor") < 10 \
                    or params.get("Colors", 1) != channels or params.get("Columns", 1) != width \
                    or params.get("BitsPerComponent", 8) != 8:
                raise ValueError("an image is compressed in a way the grader does not decode")
            png = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8,
                                                                        2 if channels == 3 else 0, 0, 0, 0))
                   + _chunk(b"IDAT", raw) + _chunk(b"IEND", b""))
            try:
                with Image.open(io.BytesIO(png), formats=["PNG"]) as image:
                    image.load()
                    pixels = np.asarray(image)
            except Exception as err:  # noqa: BLE001 - any decoding failure: not an image the grader can use
                raise ValueError(f"an image does not decode ({type(err).__name__})") from None
        pixels = pixels.reshape(height, width, -1)
        return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
