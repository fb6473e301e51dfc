"""The homework's SmoothGrad, several noisy copies per backward pass.

The homework's definition: for each image ``i`` and each of ``n`` samples,
add Gaussian noise in pixel space with :func:`helpers.images.add_noise`
(standard deviation ``noise_pct * X[i].std()``, rounded, clipped to 0..255),
normalise, back-propagate the score of class ``y[i]`` to the input and take
the largest absolute gradient over the colour channels; the map of image
``i`` is the mean of its ``n`` maps.

:func:`smoothgrad` draws the noise in exactly the order of that loop (image
by image, sample by sample, from one generator), so for the same seed the
noisy images are the homework's. Only the convolutions run on ``chunk``
copies at once: the copies do not interact, so one backward pass of their
summed scores gives each copy its own gradient
(:func:`beyond.gradients.class_score_gradients`). Batched convolutions sum in
another order than single ones, so the maps agree with the one-image loop to
about 1e-6 of each map's maximum on most pixels (``tests/test_beyond_smoothgrad.py``).

It answers the homework, so students receive it only with
``course publish --after homework``.
"""

from __future__ import annotations

import numpy as np
import torch

from beyond.gradients import class_score_gradients
from helpers._validation import describe, require_labels, require_ndarray, require_number, require_rng
from helpers.images import add_noise, preprocess_batch

__all__ = ["smoothgrad"]


def _device_of(model: torch.nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def smoothgrad(X: np.ndarray, y: np.ndarray, model: torch.nn.Module, n: int = 50, noise_pct: float = 0.1,
               rng: np.random.Generator | int | None = None, chunk: int = 8) -> np.ndarray:
    """SmoothGrad maps as the homework defines them, ``chunk`` noisy copies per pass.

    Parameters
    ----------
    X : numpy.ndarray
        uint8 images of shape (N, H, W, 3).
    y : numpy.ndarray
        Integer labels (N,) in 0..999: the class whose score is explained.
    model : torch.nn.Module
        The classifier; it runs on the device of its parameters.
    n : int, default 50
        Noisy samples per image, >= 1.
    noise_pct : float, default 0.1
        Noise standard deviation as a fraction of each image's pixel standard deviation, >= 0.
    rng : numpy.random.Generator or int, optional
        Generator (used in place) or seed; a fresh unseeded one by default.
    chunk : int, default 8
        Noisy copies per forward/backward pass, >= 1 (about 22 MiB each on a CPU).

    Returns
    -------
    numpy.ndarray
        float32 maps of shape (N, 224, 224).

    Raises
    ------
    TypeError, ValueError
        For arguments of the wrong kind or value; the message names the argument.
    """
    require_ndarray("X", X, ndim=4, dtype=np.uint8)
    if X.shape[3] != 3:
        raise ValueError(f"X must hold RGB images of shape (N, H, W, 3), got shape {X.shape}")
    labels = require_labels("y", y, length=X.shape[0])
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {describe(model)}")
    require_number("n", n, low=1, integer=True)
    require_number("noise_pct", noise_pct, low=0)
    require_number("chunk", chunk, low=1, integer=True)
    rng = require_rng("rng", rng)
    device = _device_of(model)
    maps = []
    for image, label in zip(X, labels):
        total = None
        for start in range(0, int(n), int(chunk)):
            count = min(int(chunk), int(n) - start)
            noisy = np.stack([add_noise(image, noise_pct, rng) for _ in range(count)])
            grad = class_score_gradients(model, preprocess_batch(noisy, device), int(label))
            sample_maps = grad.abs().amax(dim=1).sum(dim=0)  # the max-abs maps of the chunk, added up
            total = sample_maps if total is None else total + sample_maps
        maps.append((total / int(n)).cpu().numpy())
    return np.stack(maps).astype(np.float32, copy=False)
