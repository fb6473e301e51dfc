"""Figures of images, saliency maps and score histograms.

Every function returns a :class:`matplotlib.figure.Figure` and never calls
``plt.show()``, so the same code works in a notebook, in a script and in a
headless test.  The figures are made with :func:`matplotlib.pyplot.subplots`,
which means that in a notebook they appear at the end of the cell on their
own; end the call with ``;`` (or assign it, ``fig = show_images(...)``) so
that Jupyter does not also display the returned figure a second time.  In a
script, call ``plt.show()`` or :func:`save_figure` yourself.

Colour maps
-----------
Wherever a ``cmap`` is accepted it may be

* ``"gray"`` or ``"hot"`` (the lab's choices),
* ``"diverging"``: a red-white-blue palette (matplotlib's ``"RdBu_r"``) with
  limits symmetric about 0, for signed maps such as raw gradients
  (positive values red, negative blue, zero white),
* any other matplotlib colour-map name (``"viridis"``, ``"magma"``, ...) or a
  :class:`matplotlib.colors.Colormap`.  Known diverging maps
  (``"coolwarm"``, ``"RdBu"``, ``"bwr"``, ``"seismic"``, ...) are centred at 0
  as well.

Maps and scores may be numpy arrays or torch tensors (they are detached and
moved to the CPU).  Images must be channels-last, either uint8 (0..255) or
floats in [0, 1]; ``np.asarray(helpers.images.deprocess(x))`` turns a
preprocessed tensor back into such a picture.
"""

from __future__ import annotations

import difflib
import os
import textwrap
from pathlib import Path
from typing import Any, Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.colors import Colormap
from matplotlib.figure import Figure

from ._validation import (describe, require_choice, require_flag, require_image, require_images, require_labels,
                          require_maps, require_number, require_range, require_real_array, require_text, to_numpy)
from .data import class_name

__all__ = [
    "DIVERGING_CMAP", "LAB_RAW_RANGE", "LAB_MAXABS_RANGE",
    "show_images", "show_image_and_map", "show_saliency_grid", "show_smoothgrad_comparison",
    "plot_score_histograms", "save_figure", "scale_maps", "show_map_table",
]

#: The palette used for ``cmap="diverging"`` (negative blue, zero white, positive red).
DIVERGING_CMAP = "RdBu_r"
#: The lab's x-axis limits for the histogram of raw (multi-channel) scores.
LAB_RAW_RANGE = (-0.2, 0.2)
#: The lab's x-axis limits for the histogram of max-abs scores.
LAB_MAXABS_RANGE = (0.0, 0.25)

_DIVERGING_NAMES = {
    "RdBu", "coolwarm", "bwr", "seismic", "PiYG", "PRGn", "BrBG", "PuOr", "RdGy",
    "RdYlBu", "RdYlGn", "Spectral", "vlag", "icefire", "berlin", "managua", "vanimo",
}
_PANEL_INCHES = 2.4      # width and height of one image panel
_TITLE_WIDTH = 18        # characters per line of a panel title
_TITLE_FONTSIZE = 10
_ROW_LABEL_FONTSIZE = 11


def _require_class_names(class_names: Any) -> dict[int, str] | None:
    if class_names is not None and not isinstance(class_names, dict):
        raise TypeError(f"class_names must be a dict of int to str, got {describe(class_names)}")
    return class_names


def _resolve_cmap(cmap: Any) -> tuple[Colormap, bool]:
    """Return the colour map and whether it is diverging (to be centred at 0)."""
    if isinstance(cmap, Colormap):
        base = cmap.name[:-2] if cmap.name.endswith("_r") else cmap.name
        return cmap, base in _DIVERGING_NAMES
    if not isinstance(cmap, str):
        raise TypeError(f"cmap must be a colour-map name (str) or a matplotlib Colormap, got {describe(cmap)}")
    if cmap == "diverging":
        return matplotlib.colormaps[DIVERGING_CMAP], True
    if cmap not in matplotlib.colormaps:
        close = difflib.get_close_matches(cmap, list(matplotlib.colormaps) + ["diverging"], n=3)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(
            f"cmap must be 'gray', 'hot', 'diverging' or a matplotlib colour-map name, got {cmap!r}.{hint}"
        )
    base = cmap[:-2] if cmap.endswith("_r") else cmap
    return matplotlib.colormaps[cmap], base in _DIVERGING_NAMES


# --------------------------------------------------------------------------- #
# Drawing helpers
# --------------------------------------------------------------------------- #

def _short_title(name: str, *, shorten: bool = True) -> str:
    """First comma-separated part of a class name, wrapped to a few short lines."""
    if shorten:
        name = name.split(",")[0].strip() or name
    lines = [wrapped for line in name.splitlines() for wrapped in (textwrap.wrap(line, _TITLE_WIDTH) or [""])]
    return "\n".join(lines) or name


def _titles_for(n: int, labels: Any, class_names: Any, titles: Any,
                labels_name: str = "labels", titles_name: str = "titles") -> list[str] | None:
    """Panel titles from explicit ``titles`` or from class ``labels`` (not both)."""
    class_names = _require_class_names(class_names)
    if titles is not None and labels is not None:
        raise ValueError(f"give either {labels_name} (class indices) or {titles_name} (your own text), not both")
    if titles is not None:
        if isinstance(titles, str) or not isinstance(titles, (list, tuple)):
            raise TypeError(f"{titles_name} must be a list or tuple of str, got {describe(titles)}")
        if len(titles) != n:
            raise ValueError(f"{titles_name} has {len(titles)} entries but {n} images were given; "
                             "lengths must match")
        for i, t in enumerate(titles):
            if not isinstance(t, str):
                raise TypeError(f"{titles_name}[{i}] must be a str, got {describe(t)}")
        return [_short_title(t, shorten=False) for t in titles]
    if labels is None:
        return None
    labels = require_labels(labels_name, labels, length=n)
    return [_short_title(class_name(int(label), class_names)) for label in labels]


def _bare(ax: Axes) -> None:
    """Hide ticks and frame, but keep the y-label usable as a row label."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _limits(maps: np.ndarray, diverging: bool) -> tuple[float, float]:
    """Colour limits covering ``maps``: symmetric about 0 if ``diverging``."""
    if diverging:
        top = float(np.abs(maps).max())
        top = top if top > 0 else 1.0
        return -top, top
    low, high = float(maps.min()), float(maps.max())
    if low == high:
        # A constant map has no range of its own: measure it from zero, so that an all-zero map is the
        # colour map's low end (black in "hot" and "gray") and a constant positive map its high end.
        low, high = min(low, 0.0), max(high, 0.0)
        if low == high:
            high = 1.0
    return low, high


def _draw_map_row(fig: Figure, axes: Sequence[Axes], maps: np.ndarray, cmap: Colormap, diverging: bool,
                  same_scale: bool, row_label: str | None) -> None:
    shared = _limits(maps, diverging) if same_scale else None
    image = None
    for ax, m in zip(axes, maps):
        vmin, vmax = shared if shared is not None else _limits(m, diverging)
        image = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        _bare(ax)
    if row_label:
        axes[0].set_ylabel(row_label, fontsize=_ROW_LABEL_FONTSIZE)
    if same_scale and image is not None:
        fig.colorbar(image, ax=list(axes), shrink=0.9, pad=0.01, aspect=15)


def _draw_image_row(axes: Sequence[Axes], X: np.ndarray, titles: list[str] | None,
                    row_label: str | None) -> None:
    for i, (ax, x) in enumerate(zip(axes, X)):
        ax.imshow(x, interpolation="nearest")
        _bare(ax)
        if titles is not None:
            ax.set_title(titles[i], fontsize=_TITLE_FONTSIZE)
    if row_label:
        axes[0].set_ylabel(row_label, fontsize=_ROW_LABEL_FONTSIZE)


# --------------------------------------------------------------------------- #
# Public figures
# --------------------------------------------------------------------------- #

def show_images(X: np.ndarray | torch.Tensor, labels: Any = None, class_names: dict[int, str] | None = None,
                titles: Sequence[str] | None = None, ncols: int | None = None,
                title: str | None = None) -> Figure:
    """Show a row (or grid) of images, titled with their class names.

    Parameters
    ----------
    X : numpy.ndarray or torch.Tensor
        Images of shape (N, H, W, 3), uint8 (0..255) or float in [0, 1].
    labels : array-like of int, optional
        ImageNet class of each image (0..999); the panels are titled with the
        class names, shortened to their first comma-separated part
        (``"toilet tissue, toilet paper, ..."`` becomes ``"toilet tissue"``)
        and wrapped.
    class_names : dict of int to str, optional
        The lab's names (from :func:`helpers.data.load_imagenet_val`);
        torchvision's 1000 names fill any gap.
    titles : sequence of str, optional
        Your own panel titles instead of class names (wrapped, not shortened).
        Give ``labels`` or ``titles``, not both; with neither, no titles.
    ncols : int, optional
        Images per row. By default one row for up to 6 images, else 5 per row.
        A value above N is treated as N.
    title : str, optional
        A title for the whole figure.

    Returns
    -------
    matplotlib.figure.Figure
        One axes per image, in order.

    Raises
    ------
    TypeError
        If ``X`` is not an array/tensor of uint8 or float, or ``labels``,
        ``titles``, ``class_names`` or ``ncols`` are of the wrong kind.
    ValueError
        If ``X`` is empty, not (N, H, W, 3) or outside [0, 1] as floats; if the
        number of labels or titles differs from N, or labels are not in 0..999.
    """
    X = require_images("X", X)
    n = X.shape[0]
    panel_titles = _titles_for(n, labels, class_names, titles)
    title = require_text("title", title)
    if ncols is None:
        ncols = n if n <= 6 else 5
    else:
        require_number("ncols", ncols, low=1, integer=True)
        ncols = min(int(ncols), n)
    nrows = -(-n // ncols)
    title_lines = max((t.count("\n") + 1 for t in panel_titles), default=0) if panel_titles else 0
    height = _PANEL_INCHES + 0.2 * title_lines + 0.1
    fig, axes = plt.subplots(nrows, ncols, figsize=(_PANEL_INCHES * ncols, height * nrows + (0.4 if title else 0)),
                             squeeze=False, layout="compressed")
    flat = list(axes.ravel())
    _draw_image_row(flat[:n], X, panel_titles, None)
    for ax in flat[n:]:
        fig.delaxes(ax)
    if title:
        fig.suptitle(title)
    return fig


def show_image_and_map(image: np.ndarray | torch.Tensor, saliency_map: np.ndarray | torch.Tensor,
                       title: str | None = None, cmap: str | Colormap | None = None, *,
                       label: int | None = None, class_names: dict[int, str] | None = None,
                       map_title: str | None = None, colorbar: bool = True) -> Figure:
    """Show one image beside its saliency map (or beside its three gradient channels).

    Two kinds of map are accepted:

    * a 2-D map of shape (H, W), e.g. a saliency map, drawn as one heatmap
      with ``cmap`` (default ``"gray"``; ``"diverging"`` centres it at 0);
    * a multi-channel gradient of shape (3, H, W) (channels first, as torch
      gives it). Its values are **signed**, so each colour channel (red,
      green, blue) gets its own panel, drawn with a diverging palette
      (default ``"diverging"``: negative blue, zero white, positive red)
      on one colour scale shared by the three panels and symmetric about 0.

    Parameters
    ----------
    image : numpy.ndarray, torch.Tensor or PIL.Image.Image
        One image of shape (H, W, 3), uint8 or float in [0, 1] (a PIL image,
        such as :func:`helpers.images.deprocess` returns, is converted to RGB).
    saliency_map : numpy.ndarray or torch.Tensor
        (H, W) or (3, H, W), finite real values, same H and W as ``image``.
    title : str, optional
        Title of the image panel (wrapped, not shortened). Give ``title`` or
        ``label``, not both.
    cmap : str or Colormap, optional
        Colour map of the map panels (see the module notes). ``None`` means
        ``"gray"`` for a 2-D map and ``"diverging"`` for a (3, H, W) gradient.
    label : int, optional
        ImageNet class of the image; the image panel is titled with its name.
    class_names : dict of int to str, optional
        The lab's class names.
    map_title : str, optional
        Title of the map panel; default ``"Saliency map"`` (2-D) or
        ``"Gradient"`` (3 channels, suffixed with the channel's colour).
    colorbar : bool, default True
        Add a colour bar for the map panel(s).

    Returns
    -------
    matplotlib.figure.Figure
        Axes in order: image, map (or the red, green and blue gradient
        panels), then the colour bar if any.

    Raises
    ------
    TypeError
        For an image or map of the wrong kind or dtype, or a bad ``cmap`` type.
    ValueError
        For a wrong shape, a map whose size differs from the image's, a
        non-finite map, an unknown colour map, or a label outside 0..999.
    """
    image = require_image("image", image)
    m = to_numpy("saliency_map", saliency_map)
    if isinstance(m, np.ndarray) and m.ndim == 3 and m.shape[0] != 3:
        raise ValueError(f"saliency_map must be (H, W) or (3, H, W) with channels first, got shape {m.shape}")
    m = require_real_array("saliency_map", m, ndim=(2, 3))
    if m.shape[-2:] != image.shape[:2]:
        raise ValueError(f"saliency_map is {m.shape[-2]}x{m.shape[-1]} but image is "
                         f"{image.shape[0]}x{image.shape[1]}; the map must have the image's height and width")
    multi = m.ndim == 3
    cmap_obj, diverging = _resolve_cmap(cmap if cmap is not None else ("diverging" if multi else "gray"))
    diverging = diverging or multi
    colorbar = require_flag("colorbar", colorbar)
    panel_titles = _titles_for(1, label, class_names, None if title is None else [require_text("title", title)],
                               labels_name="label", titles_name="title")
    map_title = require_text("map_title", map_title)
    if map_title is None:
        map_title = "Gradient" if multi else "Saliency map"

    maps = m if multi else m[None]
    ncols = 1 + maps.shape[0]
    width = _PANEL_INCHES * ncols + (0.6 if colorbar else 0)
    fig, axes = plt.subplots(1, ncols, figsize=(width, _PANEL_INCHES + 0.5), squeeze=False, layout="compressed")
    axes = list(axes[0])
    _draw_image_row(axes[:1], image[None], panel_titles, None)
    vmin, vmax = _limits(maps, diverging)
    shown = None
    channel_names = ("red", "green", "blue")
    for i, (ax, channel) in enumerate(zip(axes[1:], maps)):
        shown = ax.imshow(channel, cmap=cmap_obj, vmin=vmin, vmax=vmax, interpolation="nearest")
        _bare(ax)
        text = f"{map_title} ({channel_names[i]})" if multi else map_title
        ax.set_title(_short_title(text, shorten=False), fontsize=_TITLE_FONTSIZE)
    if colorbar and shown is not None:
        fig.colorbar(shown, ax=axes[1:], shrink=0.85, pad=0.02, aspect=15)
    return fig


def show_saliency_grid(X: np.ndarray | torch.Tensor, maps: np.ndarray | torch.Tensor, labels: Any = None,
                       class_names: dict[int, str] | None = None, cmap: str | Colormap = "hot",
                       map_title: str = "Saliency map", *, same_scale: bool = False,
                       title: str | None = None) -> Figure:
    """Show images (top row) above their saliency maps (bottom row), as in the lab.

    Parameters
    ----------
    X : numpy.ndarray or torch.Tensor
        Images of shape (N, H, W, 3), uint8 or float in [0, 1].
    maps : numpy.ndarray or torch.Tensor
        One 2-D map per image, shape (N, H, W), finite real values.
    labels : array-like of int, optional
        ImageNet class of each image; the top row is titled with the names.
    class_names : dict of int to str, optional
        The lab's class names.
    cmap : str or Colormap, default "hot"
        Colour map of the maps (see the module notes); ``"diverging"`` draws
        signed maps centred at 0.
    map_title : str, default "Saliency map"
        Label written to the left of the map row.
    same_scale : bool, default False
        Draw all maps on one colour scale and add one colour bar; by default
        each map is stretched over its own range (as ``plt.imshow`` does in
        the lab), which shows where each map is large but not how the maps
        compare.
    title : str, optional
        A title for the whole figure.

    Returns
    -------
    matplotlib.figure.Figure
        2N axes: the N images, then the N maps, then the colour bar if
        ``same_scale``.

    Raises
    ------
    TypeError
        For arguments of the wrong kind or dtype.
    ValueError
        If the batch is empty, shapes are wrong, the numbers or sizes of
        images and maps differ, maps are not finite, labels are not in 0..999,
        or ``cmap`` is unknown.
    """
    X = require_images("X", X)
    maps = require_maps("maps", maps, X)
    cmap_obj, diverging = _resolve_cmap(cmap)
    same_scale = require_flag("same_scale", same_scale)
    map_title = require_text("map_title", map_title, optional=False)
    title = require_text("title", title)
    n = X.shape[0]
    panel_titles = _titles_for(n, labels, class_names, None)
    fig, axes = plt.subplots(2, n, figsize=(_PANEL_INCHES * n + (0.6 if same_scale else 0.3),
                                            2 * _PANEL_INCHES + 0.35 + (0.4 if title else 0)),
                             squeeze=False, layout="compressed")
    _draw_image_row(axes[0], X, panel_titles, "Image")
    _draw_map_row(fig, axes[1], maps, cmap_obj, diverging, same_scale, map_title)
    if title:
        fig.suptitle(title)
    return fig


def show_smoothgrad_comparison(X: np.ndarray | torch.Tensor, smoothgrad_maps: np.ndarray | torch.Tensor,
                               vanilla_maps: np.ndarray | torch.Tensor, labels: Any = None,
                               class_names: dict[int, str] | None = None, cmap: str | Colormap = "hot", *,
                               same_scale: bool = False, title: str | None = None) -> Figure:
    """Compare SmoothGrad with vanilla gradients: images, SmoothGrad maps, vanilla maps.

    Parameters
    ----------
    X : numpy.ndarray or torch.Tensor
        Images of shape (N, H, W, 3), uint8 or float in [0, 1].
    smoothgrad_maps, vanilla_maps : numpy.ndarray or torch.Tensor
        One 2-D map per image each, shape (N, H, W), finite real values.
    labels : array-like of int, optional
        ImageNet class of each image; the top row is titled with the names.
    class_names : dict of int to str, optional
        The lab's class names.
    cmap : str or Colormap, default "hot"
        Colour map of both map rows (see the module notes).
    same_scale : bool, default False
        Within each map row, draw all maps on one colour scale with one colour
        bar per row. The two rows keep their own scales, since averaged
        (SmoothGrad) maps are usually smaller than single gradients.
    title : str, optional
        A title for the whole figure.

    Returns
    -------
    matplotlib.figure.Figure
        3N axes (images, SmoothGrad maps, vanilla maps, each left to right),
        then two colour bars if ``same_scale``. The rows are labelled
        "Image", "SmoothGrad" and "Vanilla gradient".

    Raises
    ------
    TypeError
        For arguments of the wrong kind or dtype.
    ValueError
        If the batch is empty, shapes are wrong, the numbers or sizes of
        images and maps differ, maps are not finite, labels are not in 0..999,
        or ``cmap`` is unknown.
    """
    X = require_images("X", X)
    smooth = require_maps("smoothgrad_maps", smoothgrad_maps, X)
    vanilla = require_maps("vanilla_maps", vanilla_maps, X)
    cmap_obj, diverging = _resolve_cmap(cmap)
    same_scale = require_flag("same_scale", same_scale)
    title = require_text("title", title)
    n = X.shape[0]
    panel_titles = _titles_for(n, labels, class_names, None)
    fig, axes = plt.subplots(3, n, figsize=(_PANEL_INCHES * n + (0.6 if same_scale else 0.3),
                                            3 * _PANEL_INCHES + 0.35 + (0.4 if title else 0)),
                             squeeze=False, layout="compressed")
    _draw_image_row(axes[0], X, panel_titles, "Image")
    _draw_map_row(fig, axes[1], smooth, cmap_obj, diverging, same_scale, "SmoothGrad")
    _draw_map_row(fig, axes[2], vanilla, cmap_obj, diverging, same_scale, "Vanilla gradient")
    if title:
        fig.suptitle(title)
    return fig


def scale_maps(maps: np.ndarray | torch.Tensor, percentile: float = 99.0) -> np.ndarray:
    """Scale each 2-D map by its own ``percentile`` of absolute values, clipped to [-1, 1].

    Maps of different methods have different units (a gradient, a gradient
    times a pixel, a squared gradient); scaled like this they share one colour
    scale, on which 1 means "as large as this map's top 1%".

    Parameters
    ----------
    maps : numpy.ndarray or torch.Tensor
        Maps of shape (..., H, W), finite real values.
    percentile : float, default 99.0
        Which percentile of ``|map|`` becomes 1, in (0, 100].

    Returns
    -------
    numpy.ndarray
        float32 maps of the same shape, in [-1, 1] (in [0, 1] if no value was negative).
    """
    arr = require_real_array("maps", maps, ndim=None).astype(np.float64)
    if arr.ndim < 2:
        raise ValueError(f"maps must have shape (..., H, W), got shape {arr.shape}")
    require_number("percentile", percentile, low=0, high=100, low_inclusive=False)
    flat = np.abs(arr).reshape(*arr.shape[:-2], -1)
    top = np.percentile(flat, percentile, axis=-1)[..., None, None]
    top = np.where(top > 0, top, np.abs(arr).max(axis=(-2, -1), keepdims=True))
    return np.clip(arr / np.where(top > 0, top, 1.0), -1.0, 1.0).astype(np.float32)


def show_map_table(maps: np.ndarray | torch.Tensor, *, images: np.ndarray | torch.Tensor | None = None,
                   row_titles: Sequence[str] | None = None, col_titles: Sequence[str] | None = None,
                   cmap: str | Colormap = "hot", percentile: float = 99.0, title: str | None = None) -> Figure:
    """A table of maps (rows x columns), each scaled by :func:`scale_maps`, on one colour scale.

    Typical uses: rows are images and columns are methods, or rows are
    methods and columns are reductions or steps of an experiment.

    Parameters
    ----------
    maps : numpy.ndarray or torch.Tensor
        Maps of shape (R, C, H, W).
    images : numpy.ndarray or torch.Tensor, optional
        One RGB image per row, (R, H, W, 3) uint8 or float in [0, 1], shown in
        an extra first column.
    row_titles, col_titles : sequence of str, optional
        Labels of the R rows (left) and C columns (top).
    cmap : str or Colormap, default "hot"
        Colour map; a diverging one (or ``"diverging"``) shows signed maps on
        [-1, 1] centred at 0, any other shows [0, 1] (negative values clip to 0:
        reduce signed maps with an absolute value first).
    percentile : float, default 99.0
        Passed to :func:`scale_maps`.
    title : str, optional
        A title for the whole figure.

    Returns
    -------
    matplotlib.figure.Figure
        One axis per panel (images first in each row) and the colour bar last.
    """
    arr = require_real_array("maps", maps, ndim=4)
    rows, cols = arr.shape[:2]
    if images is not None:
        images = require_images("images", images)
        if images.shape[0] != rows:
            raise ValueError(f"images has {images.shape[0]} images but maps has {rows} rows; one image per row")
    cmap_obj, diverging = _resolve_cmap(cmap)
    title = require_text("title", title)
    for name, labels, count in (("row_titles", row_titles, rows), ("col_titles", col_titles, cols)):
        if labels is None:
            continue
        if isinstance(labels, str) or not isinstance(labels, (list, tuple)):
            raise TypeError(f"{name} must be a list or tuple of str, got {describe(labels)}")
        if len(labels) != count or not all(isinstance(t, str) for t in labels):
            raise ValueError(f"{name} must hold {count} strings, got {len(labels)} entries")
    scaled = scale_maps(arr, percentile)
    extra = images is not None
    fig, axes = plt.subplots(rows, cols + extra, squeeze=False, layout="compressed",
                             figsize=(0.55 * _PANEL_INCHES * (cols + extra) + 0.6,
                                      0.55 * _PANEL_INCHES * rows + 0.4 + (0.4 if title else 0)))
    shown = None
    for r in range(rows):
        if extra:
            axes[r, 0].imshow(images[r], interpolation="nearest")
            _bare(axes[r, 0])
        for c in range(cols):
            ax = axes[r, c + extra]
            shown = ax.imshow(scaled[r, c], cmap=cmap_obj, vmin=-1.0 if diverging else 0.0, vmax=1.0,
                              interpolation="nearest")
            _bare(ax)
            if r == 0 and col_titles is not None:
                ax.set_title(_short_title(col_titles[c], shorten=False), fontsize=_TITLE_FONTSIZE)
        if row_titles is not None:
            label = "\n".join(textwrap.wrap(row_titles[r], 12)) or row_titles[r]  # rows are short: wrap early
            axes[r, 0].set_ylabel(label, fontsize=_ROW_LABEL_FONTSIZE)
    if extra and col_titles is not None:
        axes[0, 0].set_title("Image", fontsize=_TITLE_FONTSIZE)
    bar = fig.colorbar(shown, ax=list(axes.ravel()), shrink=0.8, pad=0.01, aspect=25)
    bar.set_label(f"1 = {percentile:g}th percentile of |map|")
    if title:
        fig.suptitle(title)
    return fig


def _draw_histogram(ax: Axes, values: np.ndarray, bins: int, lo: float, hi: float, color: str) -> None:
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    ax.stairs(counts, edges, fill=True, color=color, alpha=0.85)
    ax.set_xlim(lo, hi)
    ax.set_ylim(bottom=0)
    notes = []
    outside = values.size - int(counts.sum())
    if outside:
        notes.append(f"{100 * outside / values.size:.1f}% of values\noutside this range")
    spread = float(np.percentile(np.abs(values), 99.5))
    if 0 < spread < 0.02 * max(abs(lo), abs(hi)):
        notes.append("values are tiny for this range:\ntry limits=\"auto\"")
    if notes:
        ax.text(0.98, 0.97, "\n".join(notes), transform=ax.transAxes, ha="right", va="top",
                fontsize=8, color="0.3")
    ax.grid(axis="y", alpha=0.3)


def plot_score_histograms(raw_scores: np.ndarray | torch.Tensor, maxabs_scores: np.ndarray | torch.Tensor,
                          bins: int = 200, raw_range: tuple[float, float] | None = None,
                          maxabs_range: tuple[float, float] | None = None, *,
                          limits: str = "lab", title: str | None = None) -> Figure:
    """Histograms of raw (multi-channel) scores and of max-abs scores, side by side.

    Parameters
    ----------
    raw_scores : numpy.ndarray or torch.Tensor
        The signed per-channel scores, any shape (e.g. (N, 3, H, W)); all
        values are pooled. Finite real numbers.
    maxabs_scores : numpy.ndarray or torch.Tensor
        The max-abs scores, any shape (e.g. (N, H, W)); all values pooled.
        Finite and >= 0.
    bins : int, default 200
        Number of bins in each histogram (1..10000).
    raw_range : (float, float), optional
        x-limits of the raw histogram (centred on 0 by default).
    maxabs_range : (float, float), optional
        x-limits of the max-abs histogram.
    limits : {"lab", "auto"}, default "lab"
        Where a range is not given: ``"lab"`` uses the lab's limits,
        :data:`LAB_RAW_RANGE` (-0.2, 0.2) and :data:`LAB_MAXABS_RANGE`
        (0, 0.25), chosen for the pretrained weights; ``"auto"`` uses the
        data's 99.5th percentile of the absolute values (raw: symmetric about
        0; max-abs: from 0), so that much smaller scores, such as the ~1e-3
        of an untrained network, are visible too. An explicit range always wins.
    title : str, optional
        A title for the whole figure.

    Returns
    -------
    matplotlib.figure.Figure
        Two axes: raw scores (left) and max-abs scores (right). Values outside
        a range are not drawn; their share is written in the panel's corner.

    Raises
    ------
    TypeError
        If the scores are not numeric arrays/tensors, or ``bins`` or a range is
        of the wrong kind.
    ValueError
        If the scores are empty or not finite, max-abs scores are negative,
        ``bins`` is out of range, a range has low >= high, or ``limits`` is not
        "lab" or "auto".
    """
    raw = require_real_array("raw_scores", raw_scores, ndim=None).astype(np.float64, copy=False).ravel()
    maxabs = require_real_array("maxabs_scores", maxabs_scores, ndim=None).astype(np.float64, copy=False).ravel()
    if maxabs.min() < 0:
        raise ValueError(f"maxabs_scores must be >= 0 (they are absolute values), got a minimum of {maxabs.min():.3g}")
    bins = int(require_number("bins", bins, low=1, high=10_000, integer=True))
    require_choice("limits", limits, ("lab", "auto"))
    title = require_text("title", title)
    if raw_range is not None:
        raw_range = require_range("raw_range", raw_range)
    elif limits == "lab":
        raw_range = LAB_RAW_RANGE
    else:
        top = float(np.percentile(np.abs(raw), 99.5)) or float(np.abs(raw).max()) or 1.0
        raw_range = (-top, top)
    if maxabs_range is not None:
        maxabs_range = require_range("maxabs_range", maxabs_range)
    elif limits == "lab":
        maxabs_range = LAB_MAXABS_RANGE
    else:
        top = float(np.percentile(maxabs, 99.5)) or float(maxabs.max()) or 1.0
        maxabs_range = (0.0, top)

    fig, (ax_raw, ax_max) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    _draw_histogram(ax_raw, raw, bins, *raw_range, color="tab:blue")
    if raw_range[0] < 0 < raw_range[1]:
        ax_raw.axvline(0, color="0.2", linewidth=0.8, linestyle="--")
    ax_raw.set_title(f"Raw scores, all channels ({raw.size:,} values)")
    ax_raw.set_xlabel("score (signed)")
    ax_raw.set_ylabel("number of values")
    _draw_histogram(ax_max, maxabs, bins, *maxabs_range, color="tab:red")
    ax_max.set_title(f"Max-abs scores ({maxabs.size:,} values)")
    ax_max.set_xlabel("score (max over channels of |score|)")
    ax_max.set_ylabel("number of values")
    for ax in (ax_raw, ax_max):
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 3))
    if title:
        fig.suptitle(title)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike, formats: str | Sequence[str] = ("png", "pdf"),
                dpi: float = 150) -> list[Path]:
    """Save ``fig`` once per format, next to each other, and return the files written.

    ``path`` names the file without its format: ``"figures/saliency"`` (or
    ``"figures/saliency.png"``) with the default formats writes
    ``figures/saliency.png`` and ``figures/saliency.pdf``. Missing parent
    folders are created; existing files of those names are overwritten. Only
    the suffix is changed, so nothing is written outside ``path``'s folder.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure to save (as returned by the functions of this module).
    path : str or os.PathLike
        Target file name. It may end in one of ``formats`` (the suffix is then
        replaced for each format); a suffix that is not a picture format, as
        in ``"run.v2"``, is kept as part of the name.
    formats : str or sequence of str, default ("png", "pdf")
        File formats matplotlib can write (``"png"``, ``"pdf"``, ``"svg"``, ...).
    dpi : float, default 150
        Resolution of raster formats, in dots per inch (1..1200).

    Returns
    -------
    list of pathlib.Path
        The written files, in the order of ``formats``.

    Raises
    ------
    TypeError
        If ``fig`` is not a Figure, ``path`` not a str or PathLike, ``formats``
        not a str or sequence of str, or ``dpi`` not a number.
    ValueError
        If ``path`` is empty or names a folder, its suffix is a picture format
        not in ``formats``, a format is unknown, or ``dpi`` is out of range.
    """
    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure, got {describe(fig)}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {describe(path)}")
    raw_path = os.fspath(path)
    if isinstance(raw_path, bytes):
        raise TypeError("path must be a str or os.PathLike of str, got bytes")
    if isinstance(formats, str):
        formats = (formats,)
    if not isinstance(formats, (list, tuple)):
        raise TypeError(f"formats must be a str or a list/tuple of str, got {describe(formats)}")
    if not formats:
        raise ValueError("formats must name at least one file format, got an empty sequence")
    supported = fig.canvas.get_supported_filetypes()
    wanted: list[str] = []
    for i, fmt in enumerate(formats):
        if not isinstance(fmt, str):
            raise TypeError(f"formats[{i}] must be a str, got {describe(fmt)}")
        fmt = fmt.lower().lstrip(".")
        if fmt not in supported:
            raise ValueError(f"formats[{i}] must be one of {sorted(supported)}, got {formats[i]!r}")
        if fmt not in wanted:
            wanted.append(fmt)
    dpi = require_number("dpi", dpi, low=1, high=1200)

    if raw_path.strip() == "" or raw_path.endswith(("/", os.sep)):
        raise ValueError(f"path must name a file (without or with one of {wanted} as suffix), got {raw_path!r}")
    target = Path(raw_path).expanduser()
    if target.is_dir():
        raise ValueError(f"path must name a file, but {str(target)!r} is a folder; "
                         f"add a file name, e.g. {str(target / 'figure')!r}")
    suffix = target.suffix.lower().lstrip(".")
    if suffix in wanted:
        stem = target.name[: -len(target.suffix)]
    elif suffix in supported:
        raise ValueError(f"path ends in .{suffix}, which is not among formats {wanted}; "
                         f"drop the suffix or add {suffix!r} to formats")
    else:
        stem = target.name
    if stem in ("", ".", "..") or stem.startswith("."):
        raise ValueError(f"path must name a file with a proper name, got {raw_path!r}")
    folder = target.parent
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in wanted:
        out = folder / f"{stem}.{fmt}"
        fig.savefig(out, format=fmt, dpi=dpi, bbox_inches="tight")
        written.append(out)
    return written
