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
the loop's (the tests check this), and only the convolution arithmetic differs:
batched and channels-last kernels sum in another order. Most pixels then
agree to about 1e-6 of the image's maximum, but where rounding pushes a ReLU
input or a max-pooling tie to the other side, the gradient of that unit takes
another route and a small patch of the map changes, by up to about 2e-2 of
the maximum (the mean difference stays below 1e-4 of the maximum; measured
on the untrained SqueezeNet, see ``tests/test_fast_smoothgrad.py``). The
same happens between any two convolution implementations, e.g. CPU and GPU.

Memory. Forward plus backward to the input keeps about 20 MiB of activations
per 224x224 sample: 19.8 MiB of tensors saved for backward (counted with
``torch.autograd.graph.saved_tensors_hooks``); the peak resident memory of one
forward/backward grows by 21 MiB per sample on CPU (``ru_maxrss`` in fresh
processes, batches of 4 to 64). The chunk's noise (float64, 1.2 MiB per
sample) and input (0.6 MiB) come on top, hence :data:`MIB_PER_SAMPLE` = 23 MiB.
A whole :func:`smoothgrad` call on CPU, measured in fresh processes as the
peak RSS above the RSS before the call, took 148, 265, 451 and 801 MiB for
chunks of 4, 8, 16 and 32: 60 to 100 MiB fixed (oneDNN primitives, weight
copies) plus 22 MiB per sample. The defaults are :data:`DEFAULT_CHUNK_CPU` = 8
(265 MiB; chunks of 4 and 8 were the fastest on a 2-core CPU, 16 and more are
slower) and :data:`DEFAULT_CHUNK_GPU` = 128: on an H200 its peak
``torch.cuda.max_memory_allocated`` was 2.7 GiB (21.5 MiB per sample, under a
4 GB budget), and larger chunks were at most 8% faster
(``benchmarks/results/gpu_check_h200.json``).
"""

from __future__ import annotations

import queue
import threading
from functools import partial
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.func import functional_call

from beyond.gradients import class_score_gradients
from helpers._validation import (
    describe, require_labels, require_model, require_ndarray, require_number, require_rng,
)
from helpers.model import choose_device
from helpers.images import IMAGENET_MEAN, IMAGENET_STD, add_noise, preprocess

__all__ = [
    "smoothgrad_loop", "smoothgrad", "default_chunk_size",
    "MIB_PER_SAMPLE", "DEFAULT_CHUNK_CPU", "DEFAULT_CHUNK_GPU",
]

#: Approximate peak memory of one noisy sample in a chunk (forward + backward
#: to the input at 224x224, plus its noise and input tensors), in MiB.
MIB_PER_SAMPLE = 23.0
#: Default number of noisy copies per forward/backward pass on CPU (~265 MiB in all).
DEFAULT_CHUNK_CPU = 8
#: Default number of noisy copies per forward/backward pass on a GPU (2.7 GiB measured on an H200).
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
    require_model("model", model)
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
    the gradient of the true class score with respect to that one image
    (forward and backward, through the shared
    :func:`beyond.gradients.class_score_gradients`), and the channel-wise
    maximum of the absolute input gradient; the map is the mean of the ``n``
    sample maps.

    Parameters
    ----------
    X : numpy.ndarray
        uint8 images of shape (N, H, W, 3).
    y : numpy.ndarray
        Integer labels (N,) in 0..999; the class whose score is explained.
    model : torch.nn.Module
        The classifier; it runs on the device its parameters are on (and
        its parameters get no gradients).
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
            grad = class_score_gradients(model, x, int(labels[i]))
            sample = grad.abs().max(dim=1)[0][0]
            total = sample if total is None else total + sample
        maps.append((total / n).detach().cpu().numpy())
    return np.stack(maps).astype(np.float32, copy=False)


#: Draw the numpy noise of the next chunk in a background thread while the
#: current chunk runs through the model (numpy releases the GIL while drawing).
#: ``None``: only on accelerators (on a CPU the thread competes with the
#: convolutions for the same cores and measured slightly slower). It holds up
#: to two chunks of float64 noise in host memory besides the one in use
#: (2 x 1.2 MiB per sample: 300 MiB for a GPU chunk of 128).
PREFETCH: bool | None = None


def _segments(start: int, stop: int, n: int) -> list[tuple[int, int, int]]:
    """Split the noisy copies ``start:stop`` into runs of one image: ``(image, first, end)``, chunk-local."""
    out = []
    pos = start
    while pos < stop:
        i = pos // n
        end = min(stop, (i + 1) * n)
        out.append((i, pos - start, end - start))
        pos = end
    return out


class _NoiseDraws:
    """The numpy standard normal draws of each chunk, in order, optionally prefetched by a thread.

    Exactly ``sum(sizes)`` images' worth of numbers are drawn, in the order the
    loop draws them, so the generator ends in the loop's state (unless an
    error stops the computation midway).
    """

    def __init__(self, rng: Any, sizes: list[int], prefetch: bool) -> None:
        self._rng, self._sizes, self._next = rng, sizes, 0
        self._thread: threading.Thread | None = None
        if prefetch:
            self._queue: queue.Queue = queue.Queue(maxsize=1)
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._produce, name="smoothgrad-noise", daemon=True)
            self._thread.start()

    def _draw(self, k: int) -> np.ndarray:
        return np.asarray(self._rng.standard_normal((k, _SIZE, _SIZE, 3)), dtype=np.float64)

    def _produce(self) -> None:
        for k in self._sizes:
            try:
                item: Any = self._draw(k)
            except BaseException as err:  # noqa: BLE001 - handed to the consumer
                item = err
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if self._stop.is_set() or isinstance(item, BaseException):
                return

    def next(self) -> np.ndarray:
        """The draws of the next chunk, shape (k, 224, 224, 3), float64."""
        k = self._sizes[self._next]
        self._next += 1
        if self._thread is None:
            return self._draw(k)
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()


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
    (:func:`beyond.gradients.class_score_gradients` of the true-class scores
    with respect to the input only; no parameter gradients), reduced to
    ``abs().amax(channel)`` and added to per-image float64 sums, which are
    divided by ``n`` at the end.

    With ``noise_on_device=False`` (the default) the noise is drawn from the
    numpy generator ``rng`` exactly as :func:`smoothgrad_loop` draws it, so
    the same seed gives bitwise the same noisy images, and maps equal to the
    loop's up to the convolutions' floating-point summation order: about 1e-6
    of each map's maximum for most pixels, up to about 2e-2 in the rare patches
    where rounding re-routes a ReLU or max-pooling gradient (see the module
    docstring).

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
        :func:`default_chunk_size` of the device (8 on CPU, about 265 MiB;
        128 on GPU, 2.7 GiB); see :data:`MIB_PER_SAMPLE`.
    device : str or torch.device, optional
        Where to run; the model's device by default.
    noise_on_device : bool, default False
        Draw the noise with ``torch.randn`` and a seeded ``torch.Generator``
        on ``device`` (float32) instead of numpy: faster on a GPU, since no
        noise crosses the bus. This does NOT reproduce the numpy stream (nor
        the loop's maps sample for sample; the maps agree only statistically),
        but it is reproducible: the same ``generator`` seed, or the same
        ``rng`` seed, gives the same noise on the same device, hence the same
        maps (on CUDA, bitwise only if cuDNN picks deterministic kernels, e.g.
        with ``torch.backends.cudnn.deterministic = True``).
    generator : torch.Generator, optional
        Generator on ``device`` for ``noise_on_device=True`` (used in place).
        By default one is created and seeded with ``rng.integers(2**63 - 1)``.
    channels_last : bool, default True
        Run the convolutions in channels-last layout (on a 2-core CPU with
        oneDNN, SqueezeNet's forward and backward ran 1.3 to 2 times faster
        than in NCHW). Set False to keep the model's layout.

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
    # choose_device: a clear ValueError for a device this machine lacks ('cuda:5' on one GPU), not CUDA's.
    dev = _model_device(model) if device is None else choose_device(device)
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

    def place(t: torch.Tensor) -> torch.Tensor:
        t = t.to(dev)
        return t.contiguous(memory_format=torch.channels_last) if channels_last and t.dim() == 4 else t

    state = {name: place(p.detach()) for name, p in model.named_parameters()}
    state.update({name: b.to(dev) for name, b in model.named_buffers()})
    forward = partial(functional_call, model, state)  # forward(x): the model with the weights of state
    mean = torch.as_tensor(IMAGENET_MEAN, device=dev)[:, None, None]
    std = torch.as_tensor(IMAGENET_STD, device=dev)[:, None, None]
    sums = torch.zeros((num, _SIZE, _SIZE), dtype=torch.float64, device=dev)

    X_dev = torch.from_numpy(np.ascontiguousarray(X)).to(dev)
    bounds = [(a, min(a + chunk, total)) for a in range(0, total, chunk)]
    if noise_on_device:
        if generator is None:
            generator = torch.Generator(device=dev)
            generator.manual_seed(_noise_seed(rng))
        draws = None
    else:
        prefetch = (dev.type != "cpu") if PREFETCH is None else PREFETCH
        draws = _NoiseDraws(rng, [b - a for a, b in bounds], prefetch=prefetch and len(bounds) > 1)
    images: dict[int, torch.Tensor] = {}  # float version of the images of the current chunk

    def image(i: int, dtype: torch.dtype) -> torch.Tensor:
        if i not in images:
            for old in [j for j in images if j < i]:
                del images[old]
            images[i] = X_dev[i].to(dtype)
        return images[i]

    try:
        for start, stop in bounds:
            k = stop - start
            if noise_on_device:
                z = torch.randn((k, _SIZE, _SIZE, 3), generator=generator, device=dev, dtype=torch.float32)
            else:
                # One draw for the chunk = the loop's k draws of one image, in order;
                # the float64 arithmetic below is exactly rounded on any device.
                z = torch.from_numpy(draws.next()).to(dev)
            # x + sigma * z per image (float64 for numpy noise, as add_noise computes; its
            # "0.0 + sigma * z" only turns -0.0 into +0.0, which cannot change x + noise),
            # then round (rint and torch.round both round half to even) if add_noise
            # rounds, clip to 0..255 and convert to uint8.
            for i, a, b in _segments(start, stop, n):
                z[a:b].mul_(float(sigma[i])).add_(image(i, z.dtype))
            if rounds:
                z.round_()
            noisy = z.clamp_(0, 255).to(torch.uint8)
            del z
            # NHWC -> NCHW view, i.e. channels-last in memory; normalise like preprocess.
            x = noisy.permute(0, 3, 1, 2).to(torch.float32).div_(255).sub_(mean).div_(std)
            x = x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
            del noisy
            # each copy's class, given on the CPU: checked there, then copied to the device once
            grad = class_score_gradients(forward, x, labels[np.arange(start, stop) // n])
            del x
            # max over channels of |grad|, without reducing over the innermost (channel) axis
            maps = torch.maximum(grad[:, 0].abs(), grad[:, 1].abs())
            maps = torch.maximum(maps, grad[:, 2].abs(), out=maps)
            del grad
            # per-image float64 sums; plain reductions (not index_add_, which uses atomics on CUDA)
            for i, a, b in _segments(start, stop, n):
                sums[i].add_(maps[a:b].sum(dim=0, dtype=torch.float64))
    finally:
        if draws is not None:
            draws.close()
    return (sums / n).to(torch.float32).cpu().numpy()
