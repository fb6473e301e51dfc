"""SmoothGrad saliency maps for SqueezeNet: the lab's loop and a fast batched version.

This is the instructor's answer to the homework, so it lives in the
``course_tools`` distribution, which students never receive.

The lab's definition (what students implement, and what
:func:`smoothgrad_loop` does literally): for each image ``i`` in order and
each of ``n`` samples, add Gaussian noise in pixel space with
:func:`helpers.images.add_noise` (standard deviation ``noise_pct * X[i].std()``,
rounded to the nearest integer, clipped to 0..255 and converted to uint8),
preprocess the noisy image with
:func:`helpers.images.preprocess`, run SqueezeNet forward, back-propagate the
score of the true class ``y[i]`` to the input, and take the largest absolute
gradient over the colour channels. The SmoothGrad map of image ``i`` is the
mean of its ``n`` maps.

:func:`smoothgrad` computes the same maps in chunks of noisy copies. With the
same numpy seed it draws exactly the same noise as the loop: numpy's
``Generator.normal(0.0, sigma, size)`` is ``0.0 + sigma * z`` with ``z`` the
generator's standard normal stream, and one ``standard_normal((k, 224, 224, 3))``
call yields the same numbers as ``k`` consecutive calls of shape
``(224, 224, 3)``. The noisy uint8 images are therefore bitwise identical to
the loop's; only the convolution arithmetic (batched, channels-last kernels
sum in another order) makes the maps differ, by about 1e-6 of each map's
maximum.

Memory. Forward plus backward to the input keeps about 20 MiB of activations
per 224x224 sample (19.8 MiB of tensors saved for backward, counted with
``torch.autograd.graph.saved_tensors_hooks``; the peak resident memory of one
pass grows by about 21 MiB per sample on CPU, measured with ``ru_maxrss`` in
fresh processes for batches of 4 to 64; see ``benchmarks/README.md``). The
numpy noise of a chunk adds 1.2 MiB per sample (float64) and the input
0.6 MiB, so a chunk costs about :data:`MIB_PER_SAMPLE` = 23 MiB per sample.
The defaults are :data:`DEFAULT_CHUNK_CPU` = 8 (about 185 MiB; batches of 4
to 16 are equally fast on CPU and larger ones are slower) and
:data:`DEFAULT_CHUNK_GPU` = 128 (about 2.9 GiB, under a 4 GB budget).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.func import functional_call

from helpers._validation import (
    describe, require_labels, require_ndarray, require_number, require_rng,
)
from helpers.images import SQUEEZENET_MEAN, SQUEEZENET_STD, add_noise, preprocess

__all__ = [
    "smoothgrad_loop", "smoothgrad", "default_chunk_size",
    "MIB_PER_SAMPLE", "DEFAULT_CHUNK_CPU", "DEFAULT_CHUNK_GPU",
]

#: Approximate peak memory of one noisy sample in a chunk (forward + backward
#: to the input at 224x224, plus its noise and input tensors), in MiB.
MIB_PER_SAMPLE = 23.0
#: Default number of noisy copies per forward/backward pass on CPU (~185 MiB).
DEFAULT_CHUNK_CPU = 8
#: Default number of noisy copies per forward/backward pass on a GPU (~2.9 GiB).
DEFAULT_CHUNK_GPU = 128

_SIZE = 224


def default_chunk_size(device: str | torch.device) -> int:
    """Return the default chunk size for ``device``.

    Parameters
    ----------
    device : str or torch.device
        The device the passes run on.

    Returns
    -------
    int
        :data:`DEFAULT_CHUNK_CPU` on CPU, :data:`DEFAULT_CHUNK_GPU` on any
        accelerator (at most about 4 GB of activations).
    """
    return DEFAULT_CHUNK_CPU if torch.device(device).type == "cpu" else DEFAULT_CHUNK_GPU


def _check_images(X: Any, *, square: bool) -> np.ndarray:
    require_ndarray("X", X, ndim=4, dtype=np.uint8)
    if X.shape[3] != 3:
        raise ValueError(f"X must hold RGB images of shape (N, H, W, 3), got shape {X.shape}")
    if square and X.shape[1:3] != (_SIZE, _SIZE):
        raise ValueError(f"X must have shape (N, {_SIZE}, {_SIZE}, 3) like the lab's images, got {X.shape}")
    return X


def _check_common(X: Any, y: Any, model: Any, n: Any, noise_pct: Any, rng: Any, *, square: bool
                  ) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
    X = _check_images(X, square=square)
    labels = require_labels("y", y, length=X.shape[0])
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {describe(model)}")
    require_number("n", n, low=1, integer=True)
    require_number("noise_pct", noise_pct, low=0)
    return X, labels, require_rng("rng", rng)


def _model_device(model: torch.nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def smoothgrad_loop(X: np.ndarray, y: np.ndarray, model: torch.nn.Module, n: int = 50,
                    noise_pct: float = 0.1, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Compute SmoothGrad maps with the lab's loop, one noisy image at a time.

    This is the reference (ground truth and benchmark baseline) for
    :func:`smoothgrad`: for each image in order and each sample,
    :func:`helpers.images.add_noise`, PIL, :func:`helpers.images.preprocess`,
    forward, ``backward`` of the true class score, and the channel-wise
    maximum of the absolute input gradient; the map is the mean of the ``n``
    sample maps.

    Parameters
    ----------
    X : numpy.ndarray
        uint8 images of shape (N, H, W, 3).
    y : numpy.ndarray
        Integer labels (N,) in 0..999; the class whose score is explained.
    model : torch.nn.Module
        The classifier (its parameters should not require gradients); it
        runs on the device its parameters are on.
    n : int, default 50
        Number of noisy samples per image, >= 1.
    noise_pct : float, default 0.1
        Noise standard deviation as a fraction of each image's pixel standard
        deviation, >= 0.
    rng : numpy.random.Generator or int, optional
        Generator (used in place) or seed; a fresh unseeded one by default.

    Returns
    -------
    numpy.ndarray
        float32 maps of shape (N, H', W') (224x224 for the lab's images).

    Raises
    ------
    TypeError, ValueError
        For arguments of the wrong kind or value; the message names the argument.
    """
    X, labels, rng = _check_common(X, y, model, n, noise_pct, rng, square=False)
    device = _model_device(model)
    maps = []
    for i in range(X.shape[0]):
        total = None
        for _ in range(n):
            noisy = add_noise(X[i], noise_pct, rng)
            x = preprocess(Image.fromarray(noisy)).to(device)
            x.requires_grad_(True)
            scores = model(x)
            scores[0, int(labels[i])].backward()
            sample = x.grad.abs().max(dim=1)[0][0]
            total = sample if total is None else total + sample
        maps.append((total / n).detach().cpu().numpy())
    return np.stack(maps).astype(np.float32, copy=False)


def _noise_seed(rng: Any) -> int:
    if not callable(getattr(rng, "integers", None)):
        raise TypeError(f"rng must be a numpy.random.Generator or an int seed to seed the device noise, "
                        f"got {describe(rng)}; or pass generator=torch.Generator(...)")
    return int(rng.integers(0, 2**63 - 1))


class _ConstantNoise:
    """A stand-in generator for :func:`_add_noise_rounds`: every draw is ``loc + 0.7``."""

    def normal(self, loc: float = 0.0, scale: float = 1.0, size: Any = None) -> np.ndarray:
        return loc + np.full(size, 0.7)


def _add_noise_rounds() -> bool:
    """Whether :func:`helpers.images.add_noise` rounds (``np.rint``) or truncates (``astype``).

    The fast path must turn noisy pixels into uint8 exactly as the lab's
    ``add_noise`` does, so it asks: a pixel of 0 plus a noise of 0.7 rounds
    to 1 and truncates to 0.
    """
    probe = np.array([[[0, 0, 0], [2, 2, 2]]], dtype=np.uint8)  # std 1
    try:
        return bool(add_noise(probe, 1.0, _ConstantNoise())[0, 0, 0] == 1)
    except TypeError:  # a helpers version that accepts only numpy Generators
        pass
    for seed in range(1000):  # a seed whose first draw lies in (0.5, 1): rint -> 1, astype -> 0
        first = np.random.default_rng(seed).normal(0.0, 1.0, size=probe.shape)[0, 0, 0]
        if 0.5 < first < 1.0:
            return bool(add_noise(probe, 1.0, np.random.default_rng(seed))[0, 0, 0] == 1)
    return True  # pragma: no cover - some seed always qualifies


def smoothgrad(X: np.ndarray, y: np.ndarray, model: torch.nn.Module, n: int = 50,
               noise_pct: float = 0.1, rng: np.random.Generator | int | None = None,
               chunk_size: int | None = None, device: str | torch.device | None = None,
               noise_on_device: bool = False, generator: torch.Generator | None = None,
               *, channels_last: bool = True) -> np.ndarray:
    """Compute SmoothGrad maps in chunks of noisy copies: the lab's maps, fast.

    The ``N * n`` noisy copies are processed in loop order (image-major,
    sample-minor) in chunks of ``chunk_size``; a chunk may span two or more
    images. Each chunk is made noisy, normalised like
    :func:`helpers.images.preprocess_batch`, run forward and backward
    (``torch.autograd.grad`` of the sum of the gathered true-class scores with
    respect to the input only; no parameter gradients), reduced to
    ``abs().amax(channel)`` and added to per-image float64 sums, which are
    divided by ``n`` at the end.

    With ``noise_on_device=False`` (the default) the noise is drawn from the
    numpy generator ``rng`` exactly as :func:`smoothgrad_loop` draws it, so
    the same seed gives bitwise the same noisy images and maps equal to the
    loop's up to floating-point summation order (about 1e-6 of each map's
    maximum).

    Parameters
    ----------
    X : numpy.ndarray
        uint8 images of shape (N, 224, 224, 3).
    y : numpy.ndarray
        Integer labels (N,) in 0..999.
    model : torch.nn.Module
        The classifier. It is not modified: its parameters and buffers are
        passed, moved to ``device`` (and to channels-last layout), through
        :func:`torch.func.functional_call`.
    n : int, default 50
        Number of noisy samples per image, >= 1.
    noise_pct : float, default 0.1
        Noise standard deviation as a fraction of each image's pixel standard
        deviation, >= 0.
    rng : numpy.random.Generator or int, optional
        Generator (used in place, like the loop's) or seed. With
        ``noise_on_device=True`` and no ``generator`` it only supplies the
        seed of the torch generator.
    chunk_size : int, optional
        Noisy copies per forward/backward pass, >= 1. Default
        :func:`default_chunk_size` of the device (8 on CPU, about 185 MiB;
        128 on GPU, about 2.9 GiB); see :data:`MIB_PER_SAMPLE`.
    device : str or torch.device, optional
        Where to run; the model's device by default.
    noise_on_device : bool, default False
        Draw the noise with ``torch.randn`` and a seeded ``torch.Generator``
        on ``device`` (float32) instead of numpy: faster on a GPU, since no
        noise crosses the bus. This does NOT reproduce the numpy stream (nor
        the loop's maps sample for sample; the maps agree only statistically),
        but it is reproducible: the same ``generator`` seed, or the same
        ``rng`` seed, gives the same maps on the same device.
    generator : torch.Generator, optional
        Generator on ``device`` for ``noise_on_device=True`` (used in place).
        By default one is created and seeded with ``rng.integers(2**63 - 1)``.
    channels_last : bool, default True
        Run the convolutions in channels-last layout (about 1.5 to 2 times
        faster on CPU with oneDNN). Set False to keep the model's layout.

    Returns
    -------
    numpy.ndarray
        float32 maps of shape (N, 224, 224).

    Raises
    ------
    TypeError, ValueError
        For arguments of the wrong kind or value; the message names the argument.
    """
    X, labels, rng = _check_common(X, y, model, n, noise_pct, rng, square=True)
    if device is None:
        dev = _model_device(model)
    elif isinstance(device, (str, torch.device)):
        try:
            dev = torch.device(device)
        except RuntimeError as err:
            raise ValueError(f"device must be a device name such as 'cpu' or 'cuda', got {device!r}") from err
    else:
        raise TypeError(f"device must be a str or torch.device, got {describe(device)}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but this machine has no usable CUDA GPU")
    if chunk_size is None:
        chunk_size = default_chunk_size(dev)
    require_number("chunk_size", chunk_size, low=1, integer=True)
    if not isinstance(noise_on_device, bool):
        raise TypeError(f"noise_on_device must be a bool, got {describe(noise_on_device)}")
    if not isinstance(channels_last, bool):
        raise TypeError(f"channels_last must be a bool, got {describe(channels_last)}")
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {describe(generator)}")
        if not noise_on_device:
            raise ValueError("generator is only used with noise_on_device=True; pass rng for numpy noise")
        if generator.device.type != dev.type:
            raise ValueError(f"generator must be on the device {dev}, got one on {generator.device}")

    rounds = _add_noise_rounds()
    num, total = X.shape[0], X.shape[0] * int(n)
    chunk = min(int(chunk_size), total)
    # The same sigma as add_noise computes: noise_pct * x.std(), image by image.
    sigma = np.array([noise_pct * X[i].std() for i in range(num)], dtype=np.float64)

    fmt = torch.channels_last if channels_last else torch.preserve_format

    def place(t: torch.Tensor) -> torch.Tensor:
        t = t.to(dev)
        return t.contiguous(memory_format=torch.channels_last) if channels_last and t.dim() == 4 else t

    state = {name: place(p.detach()) for name, p in model.named_parameters()}
    state.update({name: b.to(dev) for name, b in model.named_buffers()})
    labels_t = torch.from_numpy(labels).to(dev)
    mean = torch.as_tensor(SQUEEZENET_MEAN, device=dev)[:, None, None]
    std = torch.as_tensor(SQUEEZENET_STD, device=dev)[:, None, None]
    sums = torch.zeros((num, _SIZE, _SIZE), dtype=torch.float64, device=dev)

    X_host = torch.from_numpy(np.ascontiguousarray(X))
    if noise_on_device:
        X_dev = X_host.to(dev)
        sigma_dev = torch.from_numpy(sigma).to(dev, torch.float32)
        if generator is None:
            generator = torch.Generator(device=dev)
            generator.manual_seed(_noise_seed(rng))
    else:
        sigma_host = torch.from_numpy(sigma)

    for start in range(0, total, chunk):
        stop = min(start + chunk, total)
        k = stop - start
        owner = torch.arange(start, stop) // n  # image of each noisy copy
        if noise_on_device:
            owner_dev = owner.to(dev)
            z = torch.randn((k, _SIZE, _SIZE, 3), generator=generator, device=dev, dtype=torch.float32)
            z.mul_(sigma_dev[owner_dev].view(k, 1, 1, 1)).add_(X_dev[owner_dev])
            if rounds:
                z.round_()
            noisy = z.clamp_(0, 255).to(torch.uint8)
        else:
            # One draw for the chunk = the loop's k draws of one image, in order.
            # float64 throughout: x + sigma * z, round (rint: half to even, like
            # torch.round) if add_noise rounds, clip, convert, as add_noise does.
            # add_noise's "0.0 + sigma * z" only turns -0.0 into +0.0, which
            # cannot change x + noise.
            z = torch.from_numpy(rng.standard_normal((k, _SIZE, _SIZE, 3)))
            z.mul_(sigma_host[owner].view(k, 1, 1, 1)).add_(X_host[owner])
            if rounds:
                z.round_()
            noisy = z.clamp_(0, 255).to(torch.uint8).to(dev, non_blocking=True)
            owner_dev = owner.to(dev)
        # NHWC -> NCHW view: already channels-last in memory; normalise like preprocess.
        x = noisy.permute(0, 3, 1, 2).to(torch.float32).div_(255).sub_(mean).div_(std)
        x = x.contiguous(memory_format=fmt) if channels_last else x.contiguous()
        x.requires_grad_(True)
        with torch.enable_grad():
            scores = functional_call(model, state, (x,))
            picked = scores.gather(1, labels_t[owner_dev].view(-1, 1)).sum()
            (grad,) = torch.autograd.grad(picked, x)
        sums.index_add_(0, owner_dev, grad.abs().amax(dim=1).to(torch.float64))
        del scores, picked, grad, x, z, noisy
    return (sums / n).to(torch.float32).cpu().numpy()
