"""Tests of course_tools.figures, the grader's side of handed-in figure files: what a figure shows, judged
against the solution's fingerprint, and the fingerprints added to a reference set just recorded.

The "solution" here is the homework's exercise-5 figure drawn from the lab's first five images with seeded
maps; honest variants (other maps, other colour maps, colour bars, a title, other resolutions) must pass,
forgeries (noise, other images, other figures, content-free or malformed PDFs) must not, and hostile PDFs must
be refused quickly, in the grader's words, without an exception escaping.
"""

from __future__ import annotations

import io
import json
import re
import time
import zlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from helpers import plots  # noqa: E402
from course_tools.figures import (FIGURE_SIMILARITY, compare_figure, figure_fingerprint,  # noqa: E402
                                 fingerprint_recorded_figures)
from course_tools.paths import CourseError  # noqa: E402
from helpers.autograde import RECORD_ENV, HiddenChecks, figure_layout, same_layout  # noqa: E402

ARRANGED = "not arranged as in the figure the exercise asks for"
SHOWS = "does not show what the exercise asks for"
UNREADABLE = "not a figure the grader can read"


def _save(fig, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    options = {"dpi": 150, "bbox_inches": "tight", **kwargs}
    fig.savefig(buffer, format=fmt, **options)
    plt.close(fig)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def draw(dataset):
    """``draw(fmt, **changes)``: the three-row comparison figure as the exercise asks for it, with changes."""
    X, y, class_names = dataset
    rng = np.random.default_rng(4)
    smooth, vanilla = rng.random((2, 5, 224, 224)).astype(np.float32)

    def make(fmt: str, images=None, labels=None, maps=None, save=None, **plot_kwargs):
        fig = plots.show_smoothgrad_comparison(X[:5] if images is None else images,
                                               smooth if maps is None else maps, vanilla,
                                               y[:5] if labels is None else labels, class_names,
                                               **{"cmap": "hot", **plot_kwargs})
        return _save(fig, fmt, **(save or {}))
    return make


@pytest.fixture(scope="module")
def solution(draw):
    files = {fmt: draw(fmt) for fmt in ("png", "pdf")}
    return files, {fmt: figure_fingerprint(data, f".{fmt}") for fmt, data in files.items()}


def _judge(data: bytes, fmt: str, solution) -> str | None:
    files, prints = solution
    layout, expected = figure_layout(data, f".{fmt}"), figure_layout(files[fmt], f".{fmt}")
    if not same_layout(layout, expected):
        return "layout"
    return compare_figure(data, f".{fmt}", prints[fmt])


def test_the_fingerprint_is_a_few_small_numbers(solution):
    _, prints = solution
    png, pdf = prints["png"], prints["pdf"]
    assert png["rows"] == 3 and len(png["thumbnails"]) == 1 and len(png["thumbnails"][0]) == 96 * 16
    assert pdf["rows"] == [5, 5, 5] and len(pdf["thumbnails"]) == 5 and all(len(t) == 256 for t in pdf["thumbnails"])
    assert all(0 <= v <= 255 and isinstance(v, int) for t in png["thumbnails"] + pdf["thumbnails"] for v in t)


@pytest.mark.parametrize("fmt", ["png", "pdf"])
@pytest.mark.parametrize("honest", [
    "solution", "other_maps", "zero_maps", "gray", "viridis", "diverging", "gray_r", "same_scale", "title",
    "dpi_72", "dpi_300", "no_tight_bbox", "transparent",
])
def test_honest_figures_pass(draw, solution, dataset, fmt, honest):
    """A wrong SmoothGrad, another colour map, colour bars, a title or another resolution keep the points."""
    changes = {
        "solution": {}, "other_maps": {"maps": np.random.default_rng(9).random((5, 224, 224))},
        "zero_maps": {"maps": np.zeros((5, 224, 224))}, "gray": {"cmap": "gray"}, "viridis": {"cmap": "viridis"},
        "diverging": {"cmap": "diverging"}, "gray_r": {"cmap": "gray_r"}, "same_scale": {"same_scale": True},
        "title": {"title": "SmoothGrad and vanilla gradients"}, "dpi_72": {"save": {"dpi": 72}},
        "dpi_300": {"save": {"dpi": 300}}, "no_tight_bbox": {"save": {"bbox_inches": None}},
        "transparent": {"save": {"transparent": True}},
    }[honest]
    assert _judge(draw(fmt, **changes), fmt, solution) is None


@pytest.mark.parametrize("fmt", ["png", "pdf"])
def test_the_same_layout_with_other_or_shuffled_images_fails(draw, dataset, solution, fmt):
    X, y, _ = dataset
    for images, labels in ((X[5:10], y[5:10]), (X[5:10], y[:5]), (X[[1, 0, 3, 2, 4]], y[[1, 0, 3, 2, 4]])):
        verdict = _judge(draw(fmt, images=images, labels=labels), fmt, solution)
        assert verdict is not None and SHOWS in verdict
        # the content check is what refuses it: with no row to match (match_rows=0), the layout alone passes
        layout_only = figure_fingerprint(solution[0][fmt], f".{fmt}", match_rows=0)
        assert compare_figure(draw(fmt, images=images, labels=labels), f".{fmt}", layout_only) is None


def test_a_noise_png_of_the_right_size_fails(solution):
    files, _ = solution
    width, height = figure_layout(files["png"], ".png")["width"], figure_layout(files["png"], ".png")["height"]
    noise = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    assert ARRANGED in _judge(_png_bytes(noise), "png", solution)
    # nearly blank (dots on white): decodes, is not one flat colour, shows nothing
    dots = np.full((height, width, 3), 255, np.uint8)
    dots[::7, ::7] = 0
    assert ARRANGED in _judge(_png_bytes(dots), "png", solution)


def test_other_figures_of_the_right_size_fail(dataset, solution):
    X, y, class_names = dataset
    files, _ = solution
    layout = figure_layout(files["png"], ".png")
    rng = np.random.default_rng(1)
    fig, ax = plt.subplots(figsize=(layout["width"] / 150, layout["height"] / 150))
    ax.hist(rng.normal(size=5000), bins=60)
    histogram = _save(fig, "png", bbox_inches=None)
    assert ARRANGED in _judge(histogram, "png", solution)
    # The five images, then ten more where the maps go, as show_images draws them: the right aspect and three
    # rows, but its first row is laid out otherwise (correlation 0.88 where honest figures reach 0.999).
    grid = _save(plots.show_images(X[:15], y[:15], class_names, ncols=5), "png")
    assert SHOWS in _judge(grid, "png", solution)


def test_a_content_free_pdf_of_the_right_page_fails(solution):
    files, _ = solution
    layout = figure_layout(files["pdf"], ".pdf")
    fig = plt.figure(figsize=(layout["width"] / 72, layout["height"] / 72))
    fig.text(0.5, 0.5, " ".join(str(i) for i in range(3000)), color="white", fontsize=1)
    empty = _save(fig, "pdf", bbox_inches=None)
    assert len(empty) > 5000 and figure_layout(empty, ".pdf")["width"] == layout["width"]
    assert ARRANGED in _judge(empty, "pdf", solution)


def test_a_pdf_of_random_images_in_the_grid_fails(dataset, draw, solution):
    noise = np.random.default_rng(2).integers(0, 255, (5, 224, 224, 3), dtype=np.uint8)
    assert SHOWS in _judge(draw("pdf", images=noise), "pdf", solution)


def test_feedback_never_shows_the_fingerprint(dataset, draw, solution):
    X, y, _ = dataset
    _, prints = solution
    verdict = compare_figure(draw("png", images=X[5:10], labels=y[5:10]), ".png", prints["png"])
    assert verdict == "row 1 of panels does not show what the exercise asks for (the images it names, in its order)"
    verdict = compare_figure(draw("pdf", images=X[5:10], labels=y[5:10]), ".pdf", prints["pdf"])
    assert verdict.startswith("panel 1 of row 1 does not show") and "0." not in verdict


def test_arguments_are_checked(solution):
    files, prints = solution
    with pytest.raises(TypeError, match="match_rows must be an integer"):
        figure_fingerprint(files["png"], ".png", match_rows=1.5)
    with pytest.raises(ValueError, match="fewer than match_rows=4"):
        figure_fingerprint(files["png"], ".png", match_rows=4)
    with pytest.raises(ValueError, match="similarity must be <= 1"):
        compare_figure(files["png"], ".png", prints["png"], similarity=1.5)
    with pytest.raises(ValueError, match="fingerprint must be one recorded by figure_fingerprint for a .pdf"):
        compare_figure(files["pdf"], ".pdf", prints["png"])
    with pytest.raises(TypeError, match="data must be bytes"):
        compare_figure("not bytes", ".png", prints["png"])


def test_the_default_threshold_is_pinned():
    assert FIGURE_SIMILARITY == 0.95


# ----------------------------------------------------------------------------- hostile PDFs

def _png_bytes(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _pdf(objects: dict[int, bytes], extra: bytes = b"") -> bytes:
    """A PDF of the given objects (1 is the catalogue), padded past the size a figure needs."""
    body = b"".join(b"%d 0 obj\n%s\nendobj\n" % (n, o) for n, o in objects.items())
    return b"%PDF-1.4\n" + body + extra + b"%" + b"x" * 6000 + b"\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"


def _stream(head: bytes, data: bytes) -> bytes:
    return b"<< %s /Length %d >>\nstream\n%s\nendstream" % (head, len(data), data)


def _figure_pdf(content: bytes, image: bytes | None = None, resources: bytes = b"<< /XObject << /I1 6 0 R >> >>"):
    objects = {1: b"<< /Type /Catalog /Pages 2 0 R >>", 2: b"<< /Type /Pages /Kids [ 3 0 R ] /Count 1 >>",
               3: b"<< /Type /Page /Parent 2 0 R /MediaBox [ 0 0 894 544.4 ] /Resources 4 0 R /Contents 5 0 R >>",
               4: resources, 5: content}
    if image is not None:
        objects[6] = image
    return _pdf(objects)


def _rgb_image(width: int, height: int, data: bytes, head: bytes = b"") -> bytes:
    return _stream(b"/Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceRGB "
                   b"/BitsPerComponent 8 /Filter /FlateDecode /DecodeParms << /Predictor 10 /Colors 3 "
                   b"/Columns %d >> %s" % (width, height, width, head), data)


_PLACED = b"q 168 0 0 168 %d 300 cm /I1 Do Q\n"
_CONTENT = _stream(b"", b"".join(_PLACED % (20 + 174 * i) for i in range(5)))


@pytest.mark.parametrize("name, make, words", [
    ("deep_nesting", lambda: _figure_pdf(_CONTENT, resources=b"<< /XObject " + b"[" * 5000 + b" >>"), "nested"),
    ("unclosed_dictionary", lambda: _figure_pdf(_CONTENT, resources=b"<< /XObject << /I1 6 0 R"), UNREADABLE),
    ("object_defined_twice", lambda: _pdf({1: b"<< /Type /Catalog /Pages 2 0 R >>"}, b"1 0 obj\n<< >>\nendobj\n"),
     "defined twice"),
    ("no_page_tree", lambda: _pdf({1: b"<< /Type /Catalog >>"}), "page tree"),
    ("length_past_the_end", lambda: _figure_pdf(b"<< /Length 999999999 >>\nstream\nq Q\nendstream"), "length"),
    ("content_bomb", lambda: _figure_pdf(_stream(b"/Filter /FlateDecode", zlib.compress(b" " * (40 << 20), 9))),
     "too much"),
    ("huge_image", lambda: _figure_pdf(_CONTENT, _rgb_image(100_000, 100_000, zlib.compress(b"\0" * 100))),
     "decode"),
    ("image_data_is_junk", lambda: _figure_pdf(_CONTENT, _rgb_image(224, 224, b"junk" * 3000)), "decode"),
    ("indexed_image", lambda: _figure_pdf(_CONTENT, _stream(
        b"/Subtype /Image /Width 4 /Height 4 /ColorSpace [ /Indexed /DeviceRGB 1 (\\000\\377) ] "
        b"/BitsPerComponent 8", b"\0" * 16)), "decode"),
    ("digits_forever", lambda: _figure_pdf(_stream(b"/Filter /FlateDecode", zlib.compress(b"1" * (15 << 20), 9))),
     ARRANGED),
    ("placements_of_nothing", lambda: _figure_pdf(_CONTENT), UNREADABLE),
    ("placed_at_a_slant", lambda: _figure_pdf(_stream(b"", b"q 168 1 0 168 20 300 cm /I1 Do Q\n" * 5)), ARRANGED),
])
def test_hostile_pdfs_are_refused_quickly_in_the_graders_words(solution, name, make, words):
    """Each is judged against a one-row fingerprint, so that its five placed images reach the decoder."""
    _, prints = solution
    data = make()
    start = time.perf_counter()
    verdict = compare_figure(data, ".pdf", {**prints["pdf"], "rows": [5]})
    assert time.perf_counter() - start < 5, f"{name} took too long"
    assert verdict is not None and words in verdict, verdict
    assert "Traceback" not in verdict and not re.search(r"\b0\.\d{3}", verdict)


def test_an_image_object_decodes_as_matplotlib_writes_it(solution):
    """The parser's own PDF of five 8 x 8 images: rows are found, images decoded (PNG predictors) and judged."""
    _, prints = solution
    rows = b"".join(bytes([1]) + bytes(range(i * 24, i * 24 + 24)) for i in range(8))   # filter "Sub", 8x8 RGB
    data = _figure_pdf(_CONTENT, _rgb_image(8, 8, zlib.compress(rows)))
    verdict = compare_figure(data, ".pdf", {**prints["pdf"], "rows": [5]})
    assert verdict is not None and SHOWS in verdict     # decoded, compared, and not the lab's images


# ----------------------------------------------------------------------------- a reference set just recorded

def _record(tmp_path, monkeypatch, files: dict[str, bytes], match_rows: int = 1) -> Path:
    """Record ``files`` as a solution's figures through the real hook; returns the notebook's reference folder."""
    work = tmp_path / "solution"
    work.mkdir()
    for name, data in files.items():
        (work / name).write_bytes(data)
    monkeypatch.chdir(work)
    monkeypatch.setenv(RECORD_ENV, str(tmp_path / "refs"))
    HiddenChecks("0" * 64, "1" * 12, "nb").require_files(list(files), cell="test_fig", match_rows=match_rows)
    return next((tmp_path / "refs").iterdir()) / "nb"


def test_the_kernel_records_layouts_and_copies_and_the_grader_adds_the_fingerprints(tmp_path, monkeypatch, solution):
    files, prints = solution
    folder = _record(tmp_path, monkeypatch, {"fig.png": files["png"], "fig.pdf": files["pdf"]})
    spec_path = folder / "files.test_fig.spec.json"
    recorded = json.loads(spec_path.read_text())
    assert all("fingerprint" not in entry for entry in recorded["files"].values())
    assert (folder / "files.test_fig.fig.png").read_bytes() == files["png"]
    assert sorted(fingerprint_recorded_figures(folder.parent)) == ["nb/fig.pdf", "nb/fig.png"]
    completed = json.loads(spec_path.read_text())
    assert completed["files"]["fig.png"] == {**recorded["files"]["fig.png"], "fingerprint": prints["png"]}
    assert completed["files"]["fig.pdf"]["fingerprint"] == prints["pdf"]


def test_a_recorded_figure_that_cannot_be_a_reference_is_refused(tmp_path, monkeypatch, solution):
    files, _ = solution
    folder = _record(tmp_path, monkeypatch, {"fig.png": files["png"]}, match_rows=4)
    with pytest.raises(CourseError, match="nb: the solution's fig.png cannot be .* fewer than match_rows=4"):
        fingerprint_recorded_figures(folder.parent)
    (folder / "files.test_fig.fig.png").unlink()
    with pytest.raises(CourseError, match="fig.png was not copied beside it; run `course references` again"):
        fingerprint_recorded_figures(folder.parent)
    with pytest.raises(CourseError, match="key_dir must be a reference set folder"):
        fingerprint_recorded_figures(tmp_path / "nowhere")


def test_the_student_package_reads_a_png_without_trusting_it():
    from helpers.autograde import read_png

    with pytest.raises(TypeError, match="data must be the bytes of a PNG file"):
        read_png("not bytes")
    with pytest.raises(ValueError, match="does not decode as a PNG image"):
        read_png(b"\x89PNG\r\n\x1a\n" + b"junk" * 2000)
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)   # fully transparent: laid over white
    assert np.asarray(read_png(_png_bytes(rgba))).min() == 255
