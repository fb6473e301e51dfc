"""Sanity checks for saliency maps: model randomisation (Adebayo et al., 2018).

If a saliency map explains the *model*, destroying the model's learned
weights must change the map. The cascading randomisation test re-initialises
the layers one block at a time, from the classifier down to the first
convolution, recomputes the maps after each step and measures how similar
they still are to the original ones. A method that passes loses its
similarity quickly; one whose maps stay the same is explaining the image
(edges, contrast), not the network. An edge detector, which never looks at
the model, is the control: its similarity is 1 at every step.

Similarity measures, per image (:func:`map_similarity`):

* Spearman rank correlation of the absolute maps (max-abs over channels) and
  of the signed maps (sum over channels);
* SSIM (Wang et al., 2004) of the absolute maps, each scaled to [0, 1].
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Iterator

import numpy as np
import torch
from scipy import ndimage

from helpers._validation import describe, require_ndarray, require_number, require_real_array

__all__ = [
    "randomization_blocks", "cascading_randomization", "spearman", "ssim", "map_similarity",
    "edge_map", "randomization_curve",
]


def randomization_blocks(model: torch.nn.Module) -> list[str]:
    """Names of the model's blocks with parameters, from the output down to the input.

    For SqueezeNet 1.1: ``classifier.1`` (the final 1x1 convolution), the
    eight Fire modules ``features.12`` ... ``features.3``, and ``features.0``
    (the first convolution): 10 blocks.

    Parameters
    ----------
    model : torch.nn.Module
        A model whose top-level children are ``Sequential`` stages (like
        torchvision's SqueezeNet), or any model (its direct children are used).

    Returns
    -------
    list of str
        Module names, output side first.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {describe(model)}")
    names = []
    for stage_name, stage in model.named_children():
        children = list(stage.named_children()) if isinstance(stage, torch.nn.Sequential) else [("", stage)]
        for child_name, child in children:
            if any(True for _ in child.parameters()):
                names.append(f"{stage_name}.{child_name}" if child_name else stage_name)
    return names[::-1]


def _reinitialise(module: torch.nn.Module, generator: torch.Generator, is_final: bool) -> None:
    """Torchvision's SqueezeNet initialisation, seeded: kaiming-uniform convs, N(0, 0.01) final conv, zero biases."""
    for m in module.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            with torch.no_grad():
                if is_final:
                    torch.nn.init.normal_(m.weight, mean=0.0, std=0.01, generator=generator)
                else:
                    torch.nn.init.kaiming_uniform_(m.weight, generator=generator)
                if m.bias is not None:
                    m.bias.zero_()
        elif any(True for _ in m.parameters(recurse=False)):
            raise ValueError(f"cannot re-initialise a {type(m).__name__}: only convolutions and linear layers")


def cascading_randomization(model: torch.nn.Module, seed: int = 0
                            ) -> Iterator[tuple[str, torch.nn.Module]]:
    """Yield the original model, then copies with more and more blocks randomised.

    Step 0 is ``("original", copy of model)``; step ``k`` has the first ``k``
    blocks of :func:`randomization_blocks` (output side first) re-initialised
    with torchvision's initialisation, seeded. The model itself is never
    changed; each step is a new copy in eval mode with frozen parameters.

    Parameters
    ----------
    model : torch.nn.Module
        The trained model.
    seed : int, default 0
        Seed of the new weights.

    Yields
    ------
    (str, torch.nn.Module)
        The name of the block randomised last (``"original"`` first) and the model.
    """
    blocks = randomization_blocks(model)
    require_number("seed", seed, low=0, integer=True)
    current = copy.deepcopy(model).eval()
    for p in current.parameters():
        p.requires_grad_(False)
    yield "original", copy.deepcopy(current)
    device = next(current.parameters()).device
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    for k, name in enumerate(blocks):
        block = current.get_submodule(name)
        cpu_block = copy.deepcopy(block).to("cpu")
        _reinitialise(cpu_block, generator, is_final=k == 0)
        with torch.no_grad():
            for p, q in zip(block.parameters(), cpu_block.parameters()):
                p.copy_(q.to(device))
        yield name, copy.deepcopy(current)


def _as_maps(name: str, value: Any) -> np.ndarray:
    return require_real_array(name, value, ndim=3).astype(np.float64, copy=False)


def _pair(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_maps("a", a), _as_maps("b", b)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape (N, H, W), got {a.shape} and {b.shape}")
    return a, b


def spearman(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> np.ndarray:
    """Spearman rank correlation of two stacks of maps, image by image.

    Ties get their average rank (as :func:`scipy.stats.spearmanr`). A constant
    map has no ranking: its correlation is NaN.

    Parameters
    ----------
    a, b : numpy.ndarray or torch.Tensor
        Maps of shape (N, H, W).

    Returns
    -------
    numpy.ndarray
        (N,) correlations in [-1, 1].
    """
    from scipy.stats import rankdata

    a, b = _pair(a, b)
    ra = rankdata(a.reshape(a.shape[0], -1), axis=1)
    rb = rankdata(b.reshape(b.shape[0], -1), axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    denom = np.sqrt((ra * ra).sum(axis=1) * (rb * rb).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (ra * rb).sum(axis=1) / np.where(denom > 0, denom, 1), np.nan)


def ssim(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor, data_range: float = 1.0,
         sigma: float = 1.5) -> np.ndarray:
    """Structural similarity (Wang et al., 2004) of two stacks of maps, image by image.

    Gaussian-weighted local means, variances and covariance (``sigma`` 1.5,
    truncated at 3.5 sigma: an 11x11 window), ``K1 = 0.01``, ``K2 = 0.03``,
    averaged over the whole map; the same settings as
    ``skimage.metrics.structural_similarity(gaussian_weights=True,
    use_sample_covariance=False)``, which the tests compare with when it is
    installed.

    Parameters
    ----------
    a, b : numpy.ndarray or torch.Tensor
        Maps of shape (N, H, W), on the scale ``data_range``.
    data_range : float, default 1.0
        The range the maps can span (1 for maps scaled to [0, 1]).
    sigma : float, default 1.5
        Standard deviation of the Gaussian window, in pixels.

    Returns
    -------
    numpy.ndarray
        (N,) SSIM values, 1 for identical maps.
    """
    a, b = _pair(a, b)
    require_number("data_range", data_range, low=0, low_inclusive=False)
    require_number("sigma", sigma, low=0, low_inclusive=False)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    out = np.empty(a.shape[0])
    for i in range(a.shape[0]):
        def blur(img: np.ndarray) -> np.ndarray:
            return ndimage.gaussian_filter(img, sigma=sigma, truncate=3.5, mode="reflect")
        x, y = a[i], b[i]
        mx, my = blur(x), blur(y)
        vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
        s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        pad = int(3.5 * sigma + 0.5)  # like skimage: ignore the border where the window leaves the map
        out[i] = s[pad:-pad, pad:-pad].mean() if min(x.shape) > 2 * pad else s.mean()
    return out


def _unit_scale(maps: np.ndarray) -> np.ndarray:
    lo = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - lo
    return (maps - lo) / np.where(span > 0, span, 1.0)


def map_similarity(original: torch.Tensor | np.ndarray, other: torch.Tensor | np.ndarray) -> dict[str, np.ndarray]:
    """How similar two sets of (N, 3, H, W) attributions are, image by image.

    Parameters
    ----------
    original, other : torch.Tensor or numpy.ndarray
        Attributions of the same shape (N, 3, H, W).

    Returns
    -------
    dict of str to numpy.ndarray
        ``spearman_abs`` (of the max-abs maps), ``spearman_signed`` (of the
        channel sums) and ``ssim`` (of the max-abs maps scaled to [0, 1]), each (N,).
    """
    from .attribution import reduce_channels

    a = torch.from_numpy(np.ascontiguousarray(require_real_array("original", original, ndim=4), dtype=np.float64))
    b = torch.from_numpy(np.ascontiguousarray(require_real_array("other", other, ndim=4), dtype=np.float64))
    if a.shape != b.shape:
        raise ValueError(f"original and other must be (N, 3, H, W) attributions of one shape, "
                         f"got {tuple(a.shape)} and {tuple(b.shape)}")
    abs_a, abs_b = reduce_channels(a, "max_abs").numpy(), reduce_channels(b, "max_abs").numpy()
    return {
        "spearman_abs": spearman(abs_a, abs_b),
        "spearman_signed": spearman(reduce_channels(a, "signed_sum").numpy(),
                                    reduce_channels(b, "signed_sum").numpy()),
        "ssim": ssim(_unit_scale(abs_a), _unit_scale(abs_b)),
    }


def edge_map(X: np.ndarray) -> np.ndarray:
    """Sobel edge magnitude of each image's grey version: a 'saliency map' that ignores the model.

    Parameters
    ----------
    X : numpy.ndarray
        uint8 images (N, H, W, 3).

    Returns
    -------
    numpy.ndarray
        float32 maps (N, H, W), each scaled to [0, 1].
    """
    require_ndarray("X", X, ndim=4, dtype=np.uint8)
    if X.shape[3] != 3:
        raise ValueError(f"X must hold RGB images (N, H, W, 3), got shape {X.shape}")
    grey = X.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    gx = ndimage.sobel(grey, axis=2, mode="reflect")
    gy = ndimage.sobel(grey, axis=1, mode="reflect")
    return _unit_scale(np.hypot(gx, gy)).astype(np.float32)


def randomization_curve(inputs: torch.Tensor, target: torch.Tensor, model: torch.nn.Module,
                        methods: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.nn.Module], torch.Tensor]],
                        seed: int = 0, keep_attributions: bool = True) -> dict[str, Any]:
    """Run the cascading randomisation test for several methods.

    Parameters
    ----------
    inputs : torch.Tensor
        Normalised images (N, 3, H, W).
    target : torch.Tensor
        Their classes (N,).
    model : torch.nn.Module
        The trained model (not modified).
    methods : dict of str to callable
        ``name -> f(inputs, target, model)`` returning (N, 3, H, W)
        attributions. A method with noise should fix its seed inside ``f``, so
        that every step sees the same noise.
    seed : int, default 0
        Seed of the random weights.
    keep_attributions : bool, default True
        Also return every step's attributions (for figures).

    Returns
    -------
    dict
        ``steps`` (names, "original" first), and for each method
        ``similarity[method][measure]``: an array (steps, N); with
        ``keep_attributions``, ``attributions[method]``: a list of tensors, one per step.
    """
    if not isinstance(methods, dict) or not methods or not all(callable(f) for f in methods.values()):
        raise TypeError(f"methods must be a non-empty dict of name -> callable, got {describe(methods)}")
    steps: list[str] = []
    first: dict[str, torch.Tensor] = {}
    rows: dict[str, dict[str, list[np.ndarray]]] = {m: {} for m in methods}
    kept: dict[str, list[torch.Tensor]] = {m: [] for m in methods}
    for name, randomised in cascading_randomization(model, seed=seed):
        steps.append(name)
        for method, f in methods.items():
            attr = f(inputs, target, randomised).detach().cpu()
            if name == "original":
                first[method] = attr
            for measure, values in map_similarity(first[method], attr).items():
                rows[method].setdefault(measure, []).append(values)
            if keep_attributions:
                kept[method].append(attr)
    out: dict[str, Any] = {"steps": steps,
                           "similarity": {m: {k: np.stack(v) for k, v in r.items()} for m, r in rows.items()}}
    if keep_attributions:
        out["attributions"] = kept
    return out
