"""The wider family of gradient attributions, for the companion notebooks.

Every method here explains the score of one class per image with respect to
the model's *input*: float tensors of shape (N, 3, H, W), already normalised
(:func:`helpers.images.preprocess_batch`). They return attributions of the
same shape, one number per input value, and :func:`reduce_channels` turns
them into the 2-D maps the labs plot. Each gradient they need comes from
:func:`beyond.gradients.class_score_gradients`, in chunks of ``chunk_size``
inputs per forward/backward pass.

* :func:`vanilla_gradient` - the lab's gradient of the class score.
* :func:`gradient_times_input` - gradient times input (Shrikumar et al., 2016).
* :func:`noise_tunnel` - from one set of ``n`` noisy gradients per image:
  SmoothGrad (mean gradient, Smilkov et al., 2017), SmoothGrad with squared
  gradients (mean of squares, Hooker et al., 2019) and VarGrad (variance,
  Adebayo et al., 2018). The noise is Gaussian with one standard deviation
  ``sigma`` in input units, added to the normalised input without clipping,
  as in the papers and in Captum's ``NoiseTunnel``. (The lab's homework adds
  noise to the uint8 pixels and averages max-abs maps instead: see
  :mod:`beyond.smoothgrad`.)
* :func:`integrated_gradients` - Integrated Gradients (Sundararajan et al.,
  2017) along the straight path from a baseline, with Gauss-Legendre or
  Riemann quadrature, as Captum computes it.

``tests/test_attribution.py`` checks each one against Captum's
implementation of the same method on the same inputs (with the same noise
for the noise tunnel and the same baseline and quadrature for IG).

This module answers the homework (SmoothGrad): like the rest of the
``beyond`` package it reaches students only with ``course publish --after
homework``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from beyond.gradients import class_score_gradients
from helpers._validation import (describe, require_choice, require_finite_tensor, require_model, require_number,
                                 require_tensor)

__all__ = [
    "REDUCTIONS", "NOISE_TUNNEL_KINDS", "IG_METHODS",
    "vanilla_gradient", "gradient_times_input", "noise_tunnel", "integrated_gradients",
    "integration_points", "reduce_channels", "noise_sigma",
]

#: How :func:`reduce_channels` turns (N, 3, H, W) attributions into (N, H, W) maps.
REDUCTIONS = ("signed_sum", "abs_sum", "max", "max_abs")
#: What :func:`noise_tunnel` returns.
NOISE_TUNNEL_KINDS = ("smoothgrad", "smoothgrad_sq", "vargrad")
#: Quadratures of :func:`integrated_gradients` (Captum's names).
IG_METHODS = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle")

#: Inputs per forward/backward pass by default (about 20 MiB of activations each at 224x224).
DEFAULT_CHUNK = 16


def _check_inputs(inputs: Any, target: Any, model: Any) -> tuple[torch.Tensor, torch.Tensor]:
    require_tensor("inputs", inputs, ndim=4, floating=True)
    if inputs.shape[1] != 3:
        raise ValueError(f"inputs must have 3 colour channels, shape (N, 3, H, W), got {tuple(inputs.shape)}")
    require_finite_tensor("inputs", inputs)
    require_model("model", model, inputs=inputs)
    if isinstance(target, (list, tuple, np.ndarray)):
        target = torch.as_tensor(np.asarray(target))
    require_tensor("target", target, ndim=1)
    if target.dtype in (torch.bool,) or target.is_floating_point() or target.is_complex():
        raise TypeError(f"target must hold integer class indices, got dtype {target.dtype}")
    if target.shape[0] != inputs.shape[0]:
        raise ValueError(f"target has {target.shape[0]} classes but inputs has {inputs.shape[0]} images; "
                         "give one class per image")
    if int(target.min()) < 0:
        raise ValueError(f"target must hold class indices >= 0, got {int(target.min())}")
    return inputs, target.to(device=inputs.device, dtype=torch.long)


def _chunk(chunk_size: Any) -> int:
    if chunk_size is None:
        return DEFAULT_CHUNK
    return int(require_number("chunk_size", chunk_size, low=1, integer=True))


def vanilla_gradient(inputs: torch.Tensor, target: torch.Tensor, model: torch.nn.Module,
                     chunk_size: int | None = None) -> torch.Tensor:
    """The gradient of each image's ``target`` score with respect to its input.

    Parameters
    ----------
    inputs : torch.Tensor
        Normalised images (N, 3, H, W), float.
    target : torch.Tensor or array-like
        One class index per image (N,).
    model : torch.nn.Module
        The classifier, in eval mode; its parameters get no gradients.
    chunk_size : int, optional
        Images per forward/backward pass (default 16).

    Returns
    -------
    torch.Tensor
        Attributions (N, 3, H, W), detached, on the inputs' device.
    """
    inputs, target = _check_inputs(inputs, target, model)
    return class_score_gradients(model, inputs, target, chunk_size=_chunk(chunk_size))


def gradient_times_input(inputs: torch.Tensor, target: torch.Tensor, model: torch.nn.Module,
                         chunk_size: int | None = None) -> torch.Tensor:
    """Gradient times input: each input value weighted by its gradient.

    For a linear model ``w . x`` this is each feature's contribution
    ``w_i x_i``; for a network it is the first-order term of that idea.
    Zero inputs (here: pixels equal to the dataset mean) get zero attribution.

    Parameters
    ----------
    inputs, target, model, chunk_size
        As for :func:`vanilla_gradient`.

    Returns
    -------
    torch.Tensor
        Attributions (N, 3, H, W).
    """
    inputs, target = _check_inputs(inputs, target, model)
    return class_score_gradients(model, inputs, target, chunk_size=_chunk(chunk_size)) * inputs.detach()


def noise_sigma(inputs: torch.Tensor, noise_level: float) -> float:
    """SmoothGrad's noise standard deviation: ``noise_level * (max - min)`` of the inputs.

    Smilkov et al. set the noise relative to the input's range; 0.1 to 0.2
    worked best for them.

    Parameters
    ----------
    inputs : torch.Tensor
        The normalised inputs (any shape).
    noise_level : float
        Fraction of the range, >= 0.

    Returns
    -------
    float
        The standard deviation in input units.
    """
    require_tensor("inputs", inputs, floating=True)
    require_number("noise_level", noise_level, low=0)
    return float(noise_level * (inputs.max() - inputs.min()))


def noise_tunnel(inputs: torch.Tensor, target: torch.Tensor, model: torch.nn.Module, n: int = 25,
                 sigma: float = 0.5, *, noise: torch.Tensor | None = None,
                 generator: torch.Generator | None = None, chunk_size: int | None = None
                 ) -> dict[str, torch.Tensor]:
    """SmoothGrad, SmoothGrad-squared and VarGrad from the same noisy gradients.

    For each image ``x`` and sample ``j``: ``g_j = grad f(x + e_j)`` with
    ``e_j ~ N(0, sigma^2)`` per input value. Then SmoothGrad is the mean of
    the ``g_j``, SmoothGrad-squared the mean of ``g_j ** 2`` and VarGrad
    their variance (dividing by ``n``, as Captum does). Sums are kept in
    float64.

    Parameters
    ----------
    inputs, target, model
        As for :func:`vanilla_gradient`.
    n : int, default 25
        Noisy samples per image, >= 1.
    sigma : float, default 0.5
        Noise standard deviation in input units, >= 0 (see :func:`noise_sigma`;
        the normalised images span about 4.8 units, so 0.5 is about 10%).
    noise : torch.Tensor, optional
        The noise to add, shape (N, n, 3, H, W) (``sigma`` is then ignored).
        Lets two implementations be compared on the same noise.
    generator : torch.Generator, optional
        Seeded generator for the noise (on the inputs' device); the global
        torch generator by default.
    chunk_size : int, optional
        Noisy inputs per forward/backward pass (default 16).

    Returns
    -------
    dict of str to torch.Tensor
        ``"smoothgrad"``, ``"smoothgrad_sq"`` and ``"vargrad"``, each (N, 3, H, W), float32.
    """
    inputs, target = _check_inputs(inputs, target, model)
    n = int(require_number("n", n, low=1, integer=True))
    chunk = _chunk(chunk_size)
    if noise is not None:
        require_tensor("noise", noise, ndim=5, floating=True)
        if tuple(noise.shape) != (inputs.shape[0], n, *inputs.shape[1:]):
            raise ValueError(f"noise must have shape (N, n, 3, H, W) = {(inputs.shape[0], n, *inputs.shape[1:])}, "
                             f"got {tuple(noise.shape)}")
    else:
        require_number("sigma", sigma, low=0)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {describe(generator)}")
    total = torch.zeros(inputs.shape, dtype=torch.float64, device=inputs.device)
    total_sq = torch.zeros_like(total)
    pairs = inputs.shape[0] * n  # noisy copies in image-major order, processed in chunks that may span images
    for start in range(0, pairs, chunk):
        stop = min(start + chunk, pairs)
        image = torch.arange(start, stop, device=inputs.device) // n
        if noise is not None:
            e = noise.flatten(0, 1)[start:stop].to(inputs.device, inputs.dtype)
        else:
            e = torch.randn((stop - start, *inputs.shape[1:]), generator=generator,
                            device=inputs.device, dtype=inputs.dtype).mul_(float(sigma))
        g = class_score_gradients(model, inputs.detach()[image] + e, target[image]).double()
        total.index_add_(0, image, g)
        total_sq.index_add_(0, image, g * g)
    mean = total / n
    mean_sq = total_sq / n
    return {"smoothgrad": mean.float(), "smoothgrad_sq": mean_sq.float(),
            "vargrad": (mean_sq - mean * mean).clamp_min(0).float()}


def integration_points(steps: int, method: str = "gausslegendre") -> tuple[np.ndarray, np.ndarray]:
    """Points ``alpha`` in [0, 1] and weights for integrating along the path.

    Parameters
    ----------
    steps : int
        Number of points, >= 1 (>= 2 for ``riemann_trapezoid``).
    method : str
        One of :data:`IG_METHODS`.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        ``alphas`` and ``weights`` (float64, summing to 1).
    """
    steps = int(require_number("steps", steps, low=1, integer=True))
    require_choice("method", method, IG_METHODS)
    if method == "gausslegendre":
        x, w = np.polynomial.legendre.leggauss(steps)
        return 0.5 * (x + 1.0), 0.5 * w
    if method == "riemann_trapezoid":
        if steps < 2:
            raise ValueError(f"steps must be >= 2 for riemann_trapezoid, got {steps}")
        alphas = np.linspace(0.0, 1.0, steps)
        weights = np.full(steps, 1.0 / (steps - 1))
        weights[[0, -1]] /= 2
        return alphas, weights
    offset = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}[method]
    return (np.arange(steps) + offset) / steps, np.full(steps, 1.0 / steps)


def integrated_gradients(inputs: torch.Tensor, target: torch.Tensor, model: torch.nn.Module,
                         baseline: torch.Tensor | float | None = None, steps: int = 32,
                         method: str = "gausslegendre", chunk_size: int | None = None) -> torch.Tensor:
    """Integrated Gradients: ``(x - x0) * integral of grad f(x0 + a (x - x0)) da`` over [0, 1].

    The attributions of an image add up (approximately, by the quadrature)
    to ``f(x) - f(x0)``: the score's change from the baseline to the image.

    Parameters
    ----------
    inputs, target, model
        As for :func:`vanilla_gradient`.
    baseline : torch.Tensor or float, optional
        The reference input ``x0``: a tensor broadcastable to ``inputs`` (e.g.
        a black image, ``helpers.preprocess_batch(np.zeros_like(X))``) or a
        number; 0 (the dataset's mean colour, in normalised units) by default.
    steps : int, default 32
        Points on the path (forward/backward passes per image).
    method : str, default "gausslegendre"
        Quadrature, one of :data:`IG_METHODS`.
    chunk_size : int, optional
        Path points per forward/backward pass (default 16).

    Returns
    -------
    torch.Tensor
        Attributions (N, 3, H, W), float32.
    """
    inputs, target = _check_inputs(inputs, target, model)
    alphas, weights = integration_points(steps, method)
    chunk = _chunk(chunk_size)
    if baseline is None:
        base = torch.zeros_like(inputs)
    elif isinstance(baseline, torch.Tensor):
        try:
            base = torch.broadcast_to(baseline.to(inputs.device, inputs.dtype), inputs.shape)
        except RuntimeError as err:
            raise ValueError(f"baseline of shape {tuple(baseline.shape)} cannot broadcast to the inputs' shape "
                             f"{tuple(inputs.shape)}") from err
    else:
        base = torch.full_like(inputs, float(require_number("baseline", baseline)))
    delta = (inputs - base).detach()
    total = torch.zeros(inputs.shape, dtype=torch.float64, device=inputs.device)
    alpha_t = torch.as_tensor(alphas, dtype=inputs.dtype, device=inputs.device)
    weight_t = torch.as_tensor(weights, dtype=torch.float64, device=inputs.device)
    per_chunk = max(1, chunk)
    for i in range(inputs.shape[0]):
        for s in range(0, len(alphas), per_chunk):
            a = alpha_t[s:s + per_chunk].view(-1, 1, 1, 1)
            path = base[i:i + 1] + a * delta[i:i + 1]
            g = class_score_gradients(model, path, target[i:i + 1].expand(path.shape[0]))
            total[i] += (g.double() * weight_t[s:s + per_chunk].view(-1, 1, 1, 1)).sum(dim=0)
    return (total * delta.double()).float()


def reduce_channels(attributions: torch.Tensor | np.ndarray, how: str = "max_abs") -> torch.Tensor:
    """Reduce (N, 3, H, W) attributions to (N, H, W) maps over the colour channels.

    Parameters
    ----------
    attributions : torch.Tensor or numpy.ndarray
        Attributions of shape (N, 3, H, W).
    how : str, default "max_abs"
        ``"signed_sum"`` (sum, keeps the sign: evidence for and against),
        ``"abs_sum"`` (sum of absolute values), ``"max"`` (the largest signed
        value, the lab's first reduction) or ``"max_abs"`` (the largest
        absolute value, the lab's second).

    Returns
    -------
    torch.Tensor
        Maps (N, H, W) on the attributions' device.
    """
    if isinstance(attributions, np.ndarray):
        attributions = torch.from_numpy(attributions)
    require_tensor("attributions", attributions, ndim=4, floating=True)
    if attributions.shape[1] != 3:
        raise ValueError(f"attributions must have shape (N, 3, H, W), got {tuple(attributions.shape)}")
    require_choice("how", how, REDUCTIONS)
    a = attributions.detach()
    if how == "signed_sum":
        return a.sum(dim=1)
    if how == "abs_sum":
        return a.abs().sum(dim=1)
    if how == "max":
        return a.amax(dim=1)
    return a.abs().amax(dim=1)
