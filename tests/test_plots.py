"""Tests for :mod:`helpers.plots`: figures of images, maps and histograms, and saving them."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from helpers.plots import (DIVERGING_CMAP, LAB_MAXABS_RANGE, LAB_RAW_RANGE, plot_score_histograms,
                           save_figure, scale_maps, show_image_and_map, show_images, show_map_table,
                           show_saliency_grid, show_smoothgrad_comparison)

# Any warning raised while a test runs (matplotlib layout, numpy, ...) fails it.
pytestmark = pytest.mark.filterwarnings("error")

#: Indices into the lab's 25 images, chosen for their names: "hay" (short),
#: "brown bear, bruin, Ursus arctos" and "toilet tissue, toilet paper, bathroom tissue" (shortened).
PICK = [0, 4, 9]
SHORT_NAMES = ["hay", "brown bear", "toilet tissue"]


@pytest.fixture(autouse=True)
def _close_figures_and_forbid_show(monkeypatch):
    def no_show(*args, **kwargs):
        raise AssertionError("plotting helpers must not call plt.show()")

    monkeypatch.setattr(plt, "show", no_show)
    yield
    plt.close("all")


@pytest.fixture
def batch(dataset):
    return dataset.X[PICK], dataset.y[PICK], dataset.class_names


@pytest.fixture
def maps(rng):
    return rng.random((len(PICK), 224, 224)).astype(np.float32)


def titles_of(fig: Figure) -> list[str]:
    return [ax.get_title() for ax in fig.axes]


def flat(title: str) -> str:
    return title.replace("\n", " ")


# --------------------------------------------------------------------------- #
# show_images
# --------------------------------------------------------------------------- #

def test_show_images_titles_are_short_class_names(batch):
    X, y, names = batch
    fig = show_images(X, y, names)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3
    assert [flat(t) for t in titles_of(fig)] == SHORT_NAMES


def test_show_images_grid_has_one_axes_per_image(dataset):
    fig = show_images(dataset.X[:7], dataset.y[:7], dataset.class_names, ncols=3, title="Seven")
    assert len(fig.axes) == 7          # the two unused cells of the 3x3 grid are removed
    assert fig.get_suptitle() == "Seven"
    assert len(show_images(dataset.X[:2], ncols=10).axes) == 2


def test_show_images_without_labels_and_with_own_titles(batch):
    X, _, _ = batch
    assert titles_of(show_images(X)) == ["", "", ""]
    long = "a very long title that has to be wrapped onto several lines"
    fig = show_images(X, titles=["one", "two", long])
    titles = titles_of(fig)
    assert titles[:2] == ["one", "two"]
    assert "\n" in titles[2] and flat(titles[2]) == long
    assert titles_of(show_images(X[:1], titles=["top\nbottom"])) == ["top\nbottom"]   # own line breaks kept


def test_show_images_falls_back_to_torchvision_names(batch):
    X, _, _ = batch
    fig = show_images(X[:2], [1, 999], class_names={})
    assert [flat(t) for t in titles_of(fig)] == ["goldfish", "toilet tissue"]


def test_show_images_accepts_tensors_and_float_images(batch):
    X, y, names = batch
    assert len(show_images(torch.from_numpy(X), torch.from_numpy(y), names).axes) == 3
    assert len(show_images(X.astype(np.float32) / 255).axes) == 3


@pytest.mark.parametrize("make_X, error, match", [
    (lambda X: X.tolist(), TypeError, "X must be a numpy array or a torch.Tensor"),
    (lambda X: X[:0], ValueError, "X must not be empty"),
    (lambda X: X[0], ValueError, "X must be 4-D"),
    (lambda X: X.transpose(0, 3, 1, 2), ValueError, "X must be RGB with channels last.*channels-first.*deprocess"),
    (lambda X: X.astype(np.int64), TypeError, "X must be uint8"),
    (lambda X: X.astype(np.float32), ValueError, "X holds floats in .*must lie in \\[0, 1\\]"),
    (lambda X: np.full(X.shape, np.nan, np.float32), ValueError, "X must be finite"),
])
def test_show_images_rejects_bad_images(batch, make_X, error, match):
    X, _, _ = batch
    with pytest.raises(error, match=match):
        show_images(make_X(X))


def test_show_images_rejects_bad_labels_titles_and_ncols(batch):
    X, y, names = batch
    with pytest.raises(ValueError, match="labels has 2 labels but 3 images"):
        show_images(X, y[:2])
    with pytest.raises(ValueError, match="labels must hold ImageNet labels in 0..999"):
        show_images(X, [0, 1, 1000])
    with pytest.raises(TypeError, match="labels must be integer class labels"):
        show_images(X, [0.5, 1.0, 2.0])
    with pytest.raises(ValueError, match="either labels .* or titles"):
        show_images(X, y, titles=["a", "b", "c"])
    with pytest.raises(ValueError, match="titles has 2 entries but 3 images"):
        show_images(X, titles=["a", "b"])
    with pytest.raises(TypeError, match="titles must be a list or tuple of str"):
        show_images(X, titles="abc")
    with pytest.raises(TypeError, match=r"titles\[1\] must be a str"):
        show_images(X, titles=["a", 2, "c"])
    with pytest.raises(ValueError, match="ncols must be >= 1"):
        show_images(X, ncols=0)
    with pytest.raises(TypeError, match="ncols must be an integer"):
        show_images(X, ncols=2.0)
    with pytest.raises(TypeError, match="class_names must be a dict"):
        show_images(X, y, class_names=["hay"])


# --------------------------------------------------------------------------- #
# show_image_and_map
# --------------------------------------------------------------------------- #

def test_show_image_and_map_2d(batch, maps):
    X, y, names = batch
    fig = show_image_and_map(X[1], maps[1], label=int(y[1]), class_names=names)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3                     # image, map, colour bar
    assert titles_of(fig)[:2] == ["brown bear", "Saliency map"]
    assert fig.axes[1].get_images()[0].get_cmap().name == "gray"
    fig = show_image_and_map(X[0], torch.from_numpy(maps[0]), title="My hay", colorbar=False, map_title="Scores")
    assert titles_of(fig) == ["My hay", "Scores"]
    from helpers.images import deprocess, preprocess
    assert len(show_image_and_map(deprocess(preprocess(X[0])), maps[0]).axes) == 3   # a PIL image works too


def test_show_image_and_map_diverging_is_centred(batch, rng):
    X, _, _ = batch
    signed = rng.normal(0.001, 0.01, (224, 224))
    fig = show_image_and_map(X[0], signed, cmap="diverging")
    low, high = fig.axes[1].get_images()[0].get_clim()
    assert low == pytest.approx(-high) and high == pytest.approx(np.abs(signed).max())
    assert fig.axes[1].get_images()[0].get_cmap().name == DIVERGING_CMAP


def test_show_image_and_map_multichannel_gradient(batch, rng):
    X, y, names = batch
    grad = torch.tensor(rng.normal(0, 1e-3, (3, 224, 224)), requires_grad=True)
    fig = show_image_and_map(X[2], grad * 2, label=int(y[2]), class_names=names)
    assert len(fig.axes) == 5                     # image, red, green, blue, colour bar
    assert flat(titles_of(fig)[0]) == "toilet tissue"
    assert [flat(t) for t in titles_of(fig)[1:4]] == ["Gradient (red)", "Gradient (green)", "Gradient (blue)"]
    clims = {ax.get_images()[0].get_clim() for ax in fig.axes[1:4]}
    assert len(clims) == 1                        # one shared scale
    (low, high), = clims
    assert low == pytest.approx(-high)
    assert {ax.get_images()[0].get_cmap().name for ax in fig.axes[1:4]} == {DIVERGING_CMAP}


def test_show_image_and_map_rejects_bad_input(batch, maps):
    X, y, _ = batch
    with pytest.raises(ValueError, match="image must be one image .* pass image\\[i\\]"):
        show_image_and_map(X, maps[0])
    with pytest.raises(TypeError, match="image must be a numpy array or a torch.Tensor"):
        show_image_and_map(X[0].tolist(), maps[0])
    with pytest.raises(ValueError, match="saliency_map is 100x224 but image is 224x224"):
        show_image_and_map(X[0], maps[0][:100])
    with pytest.raises(ValueError, match="saliency_map must be \\(H, W\\) or \\(3, H, W\\)"):
        show_image_and_map(X[0], np.zeros((4, 224, 224)))
    with pytest.raises(ValueError, match="saliency_map must be 2-D or 3-D"):
        show_image_and_map(X[0], np.zeros(224))
    with pytest.raises(ValueError, match="saliency_map must be finite"):
        show_image_and_map(X[0], np.full((224, 224), np.inf))
    with pytest.raises(TypeError, match="saliency_map must hold real numbers"):
        show_image_and_map(X[0], np.zeros((224, 224), bool))
    with pytest.raises(ValueError, match="either label .* or title"):
        show_image_and_map(X[0], maps[0], title="hay", label=int(y[0]))
    with pytest.raises(ValueError, match="label must hold ImageNet labels"):
        show_image_and_map(X[0], maps[0], label=-1)
    with pytest.raises(TypeError, match="colorbar must be True or False"):
        show_image_and_map(X[0], maps[0], colorbar="yes")
    with pytest.raises(TypeError, match="title must be a str"):
        show_image_and_map(X[0], maps[0], title=3)


# --------------------------------------------------------------------------- #
# colour maps
# --------------------------------------------------------------------------- #

@pytest.mark.parametrize("cmap, expected", [
    ("gray", "gray"), ("hot", "hot"), ("diverging", DIVERGING_CMAP), ("viridis", "viridis"),
    (matplotlib.colormaps["magma"], "magma"),
])
def test_cmap_choices(batch, maps, cmap, expected):
    X, _, _ = batch
    fig = show_saliency_grid(X, maps, cmap=cmap)
    assert {ax.get_images()[0].get_cmap().name for ax in fig.axes[3:6]} == {expected}


def test_unknown_cmap_is_refused_with_a_suggestion(batch, maps):
    X, _, _ = batch
    with pytest.raises(ValueError, match="cmap must be 'gray', 'hot', 'diverging' .* Did you mean 'hot'"):
        show_saliency_grid(X, maps, cmap="hott")
    with pytest.raises(TypeError, match="cmap must be a colour-map name"):
        show_saliency_grid(X, maps, cmap=3)
    with pytest.raises(ValueError, match="cmap must be"):
        show_image_and_map(X[0], maps[0], cmap="rainbowish")


# --------------------------------------------------------------------------- #
# show_saliency_grid
# --------------------------------------------------------------------------- #

def test_show_saliency_grid(batch, maps):
    X, y, names = batch
    fig = show_saliency_grid(X, torch.from_numpy(maps), y, names)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 6
    assert [flat(t) for t in titles_of(fig)[:3]] == SHORT_NAMES
    assert fig.axes[0].get_ylabel() == "Image" and fig.axes[3].get_ylabel() == "Saliency map"
    clims = [ax.get_images()[0].get_clim() for ax in fig.axes[3:]]
    assert len(set(clims)) == 3                   # each map on its own scale by default


def test_show_saliency_grid_same_scale_and_options(batch, maps):
    X, y, names = batch
    maps = maps * np.array([1.0, 2.0, 3.0], np.float32)[:, None, None]
    fig = show_saliency_grid(X, maps, y, names, map_title="Vanilla", same_scale=True, title="Grid")
    assert len(fig.axes) == 7                     # + one shared colour bar
    assert fig.axes[3].get_ylabel() == "Vanilla" and fig.get_suptitle() == "Grid"
    clims = {ax.get_images()[0].get_clim() for ax in fig.axes[3:6]}
    assert len(clims) == 1
    assert clims.pop()[1] == pytest.approx(maps.max())


def test_show_saliency_grid_constant_and_signed_maps(batch, rng):
    X, _, _ = batch
    show_saliency_grid(X, np.zeros((3, 224, 224)))                       # no warning, no error
    show_saliency_grid(X, np.zeros((3, 224, 224)), cmap="diverging", same_scale=True)
    signed = rng.normal(size=(3, 224, 224))
    fig = show_saliency_grid(X, signed, cmap="coolwarm")                # known diverging map: centred
    for ax, m in zip(fig.axes[3:], signed):
        low, high = ax.get_images()[0].get_clim()
        assert low == pytest.approx(-high) and high == pytest.approx(np.abs(m).max())


@pytest.mark.parametrize("same_scale", [False, True])
def test_an_all_zero_map_is_drawn_as_the_low_end_of_the_colour_map(batch, same_scale):
    X, _, _ = batch
    maps = np.zeros((3, 224, 224))
    maps[1] = 2.5                                                       # a constant positive map
    fig = show_saliency_grid(X, maps, cmap="hot", same_scale=same_scale)
    for ax, m in zip(fig.axes[3:6], maps):
        image = ax.get_images()[0]
        rgba = image.to_rgba(image.get_array())
        if not m.any():
            assert np.allclose(rgba[..., :3], matplotlib.colormaps["hot"](0.0)[:3]), "all-zero: black in 'hot'"
        elif not same_scale:
            assert np.allclose(rgba[..., :3], 1), "a constant positive map is the top of its own scale"
    plt.close(fig)


def test_show_saliency_grid_rejects_bad_input(batch, maps):
    X, y, _ = batch
    with pytest.raises(ValueError, match="maps has 2 maps but X has 3 images"):
        show_saliency_grid(X, maps[:2])
    with pytest.raises(ValueError, match="maps must be \\(N, H, W\\): one 2-D map per image"):
        show_saliency_grid(X, np.zeros((3, 3, 224, 224)))
    with pytest.raises(ValueError, match="maps must be 3-D"):
        show_saliency_grid(X, maps[0])
    with pytest.raises(ValueError, match="maps maps are 224x112 but the images in X are 224x224"):
        show_saliency_grid(X, maps[:, :, :112])
    with pytest.raises(ValueError, match="X must not be empty"):
        show_saliency_grid(X[:0], maps[:0])
    with pytest.raises(TypeError, match="maps must be a numpy array or a torch.Tensor"):
        show_saliency_grid(X, maps.tolist())
    with pytest.raises(ValueError, match="labels has 3 labels but 2 images"):
        show_saliency_grid(X[:2], maps[:2], y)
    with pytest.raises(TypeError, match="same_scale must be True or False"):
        show_saliency_grid(X, maps, same_scale=1)
    with pytest.raises(TypeError, match="map_title must be a str"):
        show_saliency_grid(X, maps, map_title=None)


# --------------------------------------------------------------------------- #
# show_smoothgrad_comparison
# --------------------------------------------------------------------------- #

def test_show_smoothgrad_comparison(batch, maps, rng):
    X, y, names = batch
    vanilla = rng.random(maps.shape)
    fig = show_smoothgrad_comparison(X, maps, vanilla, y, names)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 9
    assert [flat(t) for t in titles_of(fig)[:3]] == SHORT_NAMES
    assert [fig.axes[i].get_ylabel() for i in (0, 3, 6)] == ["Image", "SmoothGrad", "Vanilla gradient"]
    fig = show_smoothgrad_comparison(X, torch.from_numpy(maps), vanilla * 10, y, names, cmap="gray",
                                     same_scale=True)
    assert len(fig.axes) == 11                    # + one colour bar per map row
    smooth_clims = {ax.get_images()[0].get_clim() for ax in fig.axes[3:6]}
    vanilla_clims = {ax.get_images()[0].get_clim() for ax in fig.axes[6:9]}
    assert len(smooth_clims) == 1 and len(vanilla_clims) == 1 and smooth_clims != vanilla_clims


def test_show_smoothgrad_comparison_rejects_bad_input(batch, maps):
    X, y, _ = batch
    with pytest.raises(ValueError, match="vanilla_maps has 2 maps but X has 3 images"):
        show_smoothgrad_comparison(X, maps, maps[:2])
    with pytest.raises(ValueError, match="smoothgrad_maps maps are 224x200"):
        show_smoothgrad_comparison(X, maps[:, :, :200], maps)
    with pytest.raises(ValueError, match="smoothgrad_maps must be finite"):
        show_smoothgrad_comparison(X, np.full_like(maps, np.nan), maps)
    with pytest.raises(ValueError, match="labels must hold ImageNet labels"):
        show_smoothgrad_comparison(X, maps, maps, labels=[0, 1, 5000])
    with pytest.raises(ValueError, match="cmap must be"):
        show_smoothgrad_comparison(X, maps, maps, cmap="nope")


# --------------------------------------------------------------------------- #
# plot_score_histograms
# --------------------------------------------------------------------------- #

def test_histograms_lab_limits(rng):
    raw = torch.tensor(rng.normal(0, 0.03, (2, 3, 32, 32)), requires_grad=True)
    maxabs = raw.detach().abs().amax(dim=1)
    fig = plot_score_histograms(raw * 1, maxabs)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    ax_raw, ax_max = fig.axes
    assert ax_raw.get_xlim() == pytest.approx(LAB_RAW_RANGE)
    assert ax_max.get_xlim() == pytest.approx(LAB_MAXABS_RANGE)
    assert "Raw scores" in ax_raw.get_title() and "Max-abs scores" in ax_max.get_title()
    assert ax_raw.get_xlabel() and ax_raw.get_ylabel() and ax_max.get_xlabel() and ax_max.get_ylabel()


def test_histograms_auto_limits_show_tiny_scores(rng):
    raw = rng.normal(0, 1e-3, (2, 3, 32, 32))
    maxabs = np.abs(raw).max(axis=1)
    lab = plot_score_histograms(raw, maxabs)
    assert any("limits=\"auto\"" in t.get_text() for t in lab.axes[0].texts)   # hint for tiny values
    fig = plot_score_histograms(raw, maxabs, bins=50, limits="auto", title="untrained")
    low, high = fig.axes[0].get_xlim()
    assert low == pytest.approx(-high) and 1e-3 < high < 1e-2
    low, high = fig.axes[1].get_xlim()
    assert low == 0 and 1e-3 < high < 1e-2
    assert fig.get_suptitle() == "untrained"
    fig = plot_score_histograms(raw, maxabs, limits="auto", raw_range=(-1, 1))   # explicit range wins
    assert fig.axes[0].get_xlim() == pytest.approx((-1, 1))
    plot_score_histograms(np.zeros(10), np.zeros(10), limits="auto")           # degenerate data: no error


def test_histograms_reject_bad_input(rng):
    raw = rng.normal(0, 0.05, (3, 8, 8))
    maxabs = np.abs(raw).max(axis=0)
    with pytest.raises(ValueError, match="maxabs_scores must be >= 0"):
        plot_score_histograms(raw, -maxabs)
    with pytest.raises(TypeError, match="raw_scores must be a numpy array or a torch.Tensor"):
        plot_score_histograms([0.1, 0.2], maxabs)
    with pytest.raises(ValueError, match="raw_scores must not be empty"):
        plot_score_histograms(np.zeros(0), maxabs)
    with pytest.raises(ValueError, match="maxabs_scores must be finite"):
        plot_score_histograms(raw, np.full(4, np.nan))
    with pytest.raises(ValueError, match="limits must be one of \\['lab', 'auto'\\]"):
        plot_score_histograms(raw, maxabs, limits="percentile")
    with pytest.raises(ValueError, match="bins must be >= 1"):
        plot_score_histograms(raw, maxabs, bins=0)
    with pytest.raises(TypeError, match="bins must be an integer"):
        plot_score_histograms(raw, maxabs, bins=20.5)
    with pytest.raises(ValueError, match="raw_range must have low < high"):
        plot_score_histograms(raw, maxabs, raw_range=(0.2, -0.2))
    with pytest.raises(TypeError, match="maxabs_range must be a pair"):
        plot_score_histograms(raw, maxabs, maxabs_range=0.25)
    with pytest.raises(ValueError, match=r"maxabs_range\[1\] must be finite"):
        plot_score_histograms(raw, maxabs, maxabs_range=(0, np.inf))


# --------------------------------------------------------------------------- #
# save_figure
# --------------------------------------------------------------------------- #

def test_save_figure_writes_png_and_pdf(batch, maps, tmp_path):
    X, y, names = batch
    fig = show_saliency_grid(X, maps, y, names)
    written = save_figure(fig, tmp_path / "new" / "folder" / "saliency", dpi=40)
    assert written == [tmp_path / "new" / "folder" / "saliency.png", tmp_path / "new" / "folder" / "saliency.pdf"]
    assert written[0].read_bytes().startswith(b"\x89PNG")
    assert written[1].read_bytes().startswith(b"%PDF")
    assert all(p.stat().st_size > 1000 for p in written)
    assert sorted(p.name for p in (tmp_path / "new" / "folder").iterdir()) == ["saliency.pdf", "saliency.png"]


def test_save_figure_suffixes_and_overwriting(tmp_path):
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    first = save_figure(fig, str(tmp_path / "plot.pdf"), dpi=30)
    assert [p.name for p in first] == ["plot.png", "plot.pdf"]
    again = save_figure(fig, tmp_path / "plot.png", formats=".PNG", dpi=30)   # overwriting is fine
    assert again == [tmp_path / "plot.png"] and again[0].read_bytes().startswith(b"\x89PNG")
    kept = save_figure(fig, tmp_path / "run.v2", formats=["svg"])
    assert kept == [tmp_path / "run.v2.svg"] and kept[0].stat().st_size > 0
    assert {p.parent for p in first + again + kept} == {tmp_path}


def test_save_figure_rejects_bad_input(tmp_path):
    fig, _ = plt.subplots(figsize=(2, 2))
    with pytest.raises(TypeError, match="fig must be a matplotlib Figure"):
        save_figure(fig.axes[0], tmp_path / "x")
    with pytest.raises(TypeError, match="path must be a str or os.PathLike"):
        save_figure(fig, 42)
    with pytest.raises(ValueError, match="path must name a file, but .* is a folder"):
        save_figure(fig, tmp_path)
    with pytest.raises(ValueError, match="path must name a file"):
        save_figure(fig, str(tmp_path) + "/")
    with pytest.raises(ValueError, match="path must name a file"):
        save_figure(fig, "")
    with pytest.raises(ValueError, match="path must name a file with a proper name"):
        save_figure(fig, tmp_path / ".png")
    with pytest.raises(ValueError, match="path ends in .jpg, which is not among formats"):
        save_figure(fig, tmp_path / "x.jpg")
    with pytest.raises(ValueError, match=r"formats\[1\] must be one of"):
        save_figure(fig, tmp_path / "x", formats=("png", "docx"))
    with pytest.raises(ValueError, match="formats must name at least one"):
        save_figure(fig, tmp_path / "x", formats=())
    with pytest.raises(TypeError, match=r"formats\[0\] must be a str"):
        save_figure(fig, tmp_path / "x", formats=[1])
    with pytest.raises(TypeError, match="formats must be a str or a list/tuple"):
        save_figure(fig, tmp_path / "x", formats={"png"})
    with pytest.raises(ValueError, match="dpi must be >= 1"):
        save_figure(fig, tmp_path / "x", dpi=0)
    assert list(tmp_path.iterdir()) == []        # nothing was written by the refused calls


def test_plots_leave_the_backend_alone(batch, maps):
    before = matplotlib.get_backend()
    X, y, names = batch
    show_images(X, y, names)
    show_saliency_grid(X, maps)
    assert matplotlib.get_backend() == before


def test_scale_maps_puts_each_map_on_its_own_percentile(rng):
    maps = np.stack([rng.random((10, 10)), 1000 * rng.random((10, 10)), np.zeros((10, 10))])
    maps[1, 0, 0] = -5000.0
    scaled = scale_maps(maps, percentile=90)
    assert scaled.shape == maps.shape and scaled.dtype == np.float32
    for i in range(2):
        top = np.percentile(np.abs(maps[i]), 90)
        np.testing.assert_allclose(scaled[i], np.clip(maps[i] / top, -1, 1), rtol=1e-6)
    assert scaled[1, 0, 0] == -1.0  # clipped, sign kept
    assert (scaled[2] == 0).all()   # an all-zero map stays zero


def test_show_map_table_layout(batch, rng):
    X, y, names = batch
    maps = rng.normal(size=(3, 4, 224, 224))
    fig = show_map_table(np.abs(maps), images=X, row_titles=["a", "b", "c"], col_titles=list("wxyz"),
                         title="four methods")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3 * 5 + 1  # images + maps + colour bar
    assert [ax.get_title() for ax in fig.axes[:5]] == ["Image", "w", "x", "y", "z"]
    assert fig.axes[5].get_ylabel() == "b"
    assert fig.axes[1].images[0].get_clim() == (0.0, 1.0)
    signed = show_map_table(torch.from_numpy(maps), cmap="diverging")
    assert signed.axes[0].images[0].get_clim() == (-1.0, 1.0)
    assert len(signed.axes) == 3 * 4 + 1


def test_show_map_table_rejects_bad_input(batch, rng):
    X, _, _ = batch
    maps = rng.random((3, 2, 224, 224))
    with pytest.raises(ValueError, match="maps must be 4-D"):
        show_map_table(maps[0])
    with pytest.raises(ValueError, match="images has 2 images but maps has 3 rows"):
        show_map_table(maps, images=X[:2])
    with pytest.raises(ValueError, match="col_titles must hold 2 strings"):
        show_map_table(maps, col_titles=["only one"])
    with pytest.raises(TypeError, match="row_titles must be a list or tuple of str"):
        show_map_table(maps, row_titles="abc")
    with pytest.raises(ValueError, match="percentile must be <= 100"):
        scale_maps(maps, percentile=101)
    with pytest.raises(ValueError, match="maps must be finite"):
        show_map_table(np.full((1, 1, 4, 4), np.nan))
