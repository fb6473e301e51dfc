"""Image preprocessing for the network (ImageNet's normalisation), its inverse for display, and noise.

The per-image functions follow the lab's code (``preprocess``, ``deprocess``,
``rescale``, ``blur_image``).  :func:`preprocess_batch` is the fast path used
for whole batches: it gives exactly the same tensor as stacking
:func:`preprocess` over the images, without going through PIL.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image, ImageOps

from ._validation import (describe, require_flag, require_ndarray, require_number, require_real_array,
                          require_rng, require_tensor)

from .model import DEFAULT_NETWORK, network_metadata

#: Per-channel mean of the ImageNet training images (RGB, values in 0..1), as the pretrained weights'
#: metadata gives it (torchvision's preprocessing of every network in :data:`helpers.model.NETWORKS`).
IMAGENET_MEAN = np.array(network_metadata(DEFAULT_NETWORK)["mean"], dtype=np.float32)
#: Per-channel standard deviation of the ImageNet training images (RGB), from the same metadata.
IMAGENET_STD = np.array(network_metadata(DEFAULT_NETWORK)["std"], dtype=np.float32)

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "preprocess", "deprocess", "rescale",
    "blur_image", "preprocess_batch", "add_noise", "to_rgb", "MAX_PIXELS", "MAX_ASPECT",
]

#: Largest image (in pixels) the course decodes: 50 megapixels, beyond any phone photo's need here.
MAX_PIXELS = 50_000_000
#: Largest ratio of an image's long side to its short side. Resizing the short side to 224 makes a
#: 1 x 20000 strip 224 x 4,480,000 pixels (gigabytes as floats); such a strip has nothing to classify.
MAX_ASPECT = 20
# PIL modes whose pixel values are not 0..255 bytes: they are converted by value range, never cast
# (a cast clips a 16-bit or int32 image to white and truncates a float image to black).
_WIDE_MODES = ("I", "F")


def _check_size(name: str, width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise ValueError(f"{name} must have at least one pixel, got {width} x {height}")
    if width * height > MAX_PIXELS:
        raise ValueError(f"{name} is {width} x {height} pixels, more than the {MAX_PIXELS:,} this course "
                         "decodes: shrink it first (any photo editor), the network sees 224 x 224 anyway")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise ValueError(f"{name} is {width} x {height} pixels: its long side is more than {MAX_ASPECT} times "
                         "its short side, which resizing would blow up to gigabytes; crop it first")


def _wide_to_uint8(name: str, img: Image.Image) -> np.ndarray:
    """A 16-bit, 32-bit integer or float PIL image as uint8 grey values, by its value range."""
    arr = np.asarray(img)
    if arr.ndim == 3:  # e.g. "I;16" read as (H, W, 1)
        arr = arr[..., 0]
    values = arr.astype(np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"{name} holds NaN or infinite pixel values")
    low, high = float(values.min()), float(values.max())
    if img.mode.startswith("I;16"):
        scaled = values / 257.0                      # nominal 16-bit range 0..65535
    elif img.mode == "F" and low >= 0 and high <= 1:
        scaled = values * 255.0                      # float image in 0..1
    elif low >= 0 and high <= 255:
        scaled = values                              # already 8-bit values
    elif img.mode != "F" and low >= 0 and high <= 65535:
        scaled = values / 257.0                      # a 16-bit image held as int32 (e.g. from PNG or TIFF)
    else:                                            # anything else: stretch its own range to 0..255
        scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def to_rgb(img: Any, name: str = "img") -> Image.Image:
    """Return a PIL image as 8-bit RGB, turned upright, converting its pixel values by their range.

    16-bit and 32-bit integer images (PNG, TIFF) are scaled from their range
    (0..65535 for 16-bit data) to 0..255, and float images from 0..1 (or their
    own range), rather than cast, which would make them all white or all black.
    The EXIF orientation is applied. Images over :data:`MAX_PIXELS` pixels or
    with sides more than :data:`MAX_ASPECT` times apart are refused before
    anything is decoded.

    Parameters
    ----------
    img : PIL.Image.Image
        Any PIL image (as returned by ``PIL.Image.open``).
    name : str
        The argument's name in error messages.

    Returns
    -------
    PIL.Image.Image
        Mode ``"RGB"``.
    """
    if not isinstance(img, Image.Image):
        raise TypeError(f"{name} must be a PIL image, got {describe(img)}")
    _check_size(name, *img.size)
    try:
        img = ImageOps.exif_transpose(img)
        if img.mode == "RGB":
            return img
        if img.mode.startswith(_WIDE_MODES):
            grey = _wide_to_uint8(name, img)
            return Image.fromarray(np.repeat(grey[..., None], 3, axis=2))
        return img.convert("RGB")
    except (OSError, SyntaxError, ValueError) as err:
        if isinstance(err, ValueError) and str(err).startswith(name):
            raise
        raise ValueError(f"{name} could not be decoded as an image ({err})") from err


def _as_pil(img: Any, name: str = "img") -> Image.Image:
    if isinstance(img, Image.Image):
        return to_rgb(img, name)
    if isinstance(img, np.ndarray):
        require_ndarray(name, img, ndim=3, dtype=np.uint8)
        if img.shape[2] != 3:
            raise ValueError(f"{name} must be an RGB image of shape (H, W, 3), got shape {img.shape}")
        _check_size(name, img.shape[1], img.shape[0])
        return Image.fromarray(img)
    raise TypeError(f"{name} must be a PIL image or a uint8 numpy array (H, W, 3), got {describe(img)}")


def preprocess(img: Image.Image | np.ndarray, size: int = 224) -> torch.Tensor:
    """Turn one RGB image into a normalised batch of one, as the network expects.

    Resize (shorter side to ``size``), convert to a float tensor in [0, 1],
    normalise with :data:`IMAGENET_MEAN` and :data:`IMAGENET_STD`, and add
    a batch dimension.

    Parameters
    ----------
    img : PIL.Image.Image or numpy.ndarray
        An RGB image, either a PIL image or a uint8 array of shape (H, W, 3).
    size : int, default 224
        Length of the shorter side after resizing.

    Returns
    -------
    torch.Tensor
        Float32 tensor of shape (1, 3, H', W').
    """
    require_number("size", size, low=1, high=1024, integer=True)
    pil = _as_pil(img)
    transform = T.Compose([
        T.Resize(size),
        T.ToTensor(),
        T.Normalize(mean=IMAGENET_MEAN.tolist(), std=IMAGENET_STD.tolist()),
    ])
    return transform(pil)[None]


def rescale(x: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Linearly map ``x`` to [0, 1] (min to 0, max to 1).

    A constant input maps to zeros rather than dividing by zero. Integer
    input is computed in floating point (no wrap-around); NaN or infinite
    values, booleans and complex numbers are refused, since one of them would
    spoil the whole image.

    Parameters
    ----------
    x : torch.Tensor or numpy.ndarray
        Real numbers, any shape.

    Returns
    -------
    torch.Tensor or numpy.ndarray
        Same kind and shape as ``x``; floating point (float32 for integer tensors,
        float64 for integer arrays).
    """
    if not isinstance(x, (torch.Tensor, np.ndarray)):
        raise TypeError(f"x must be a torch.Tensor or numpy array, got {describe(x)}")
    require_real_array("x", x)   # real, non-empty, finite (converted copy only for the check)
    if isinstance(x, torch.Tensor):
        if not x.is_floating_point():
            x = x.float()
    elif not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    low, high = x.min(), x.max()
    span = high - low
    if float(span) == 0.0:
        return x * 0
    return (x - low) / span


def deprocess(img: torch.Tensor, should_rescale: bool = True) -> Image.Image:
    """Undo :func:`preprocess` to get a displayable PIL image.

    Parameters
    ----------
    img : torch.Tensor
        Tensor of shape (1, 3, H, W) or (3, H, W), normalised as by :func:`preprocess`.
    should_rescale : bool, default True
        Stretch the values to [0, 1] before conversion (useful for images that
        were optimised and left the valid range); without it values are clipped.

    Returns
    -------
    PIL.Image.Image
    """
    require_tensor("img", img, ndim=(3, 4), floating=True)
    should_rescale = require_flag("should_rescale", should_rescale)
    if img.dim() == 4:
        if img.shape[0] != 1:
            raise ValueError(f"img must hold a single image, got a batch of {img.shape[0]}")
        img = img[0]
    if img.shape[0] != 3:
        raise ValueError(f"img must have 3 channels first, got shape {tuple(img.shape)}")
    x = img.detach().cpu().float()
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"img must be finite, but {bad} of its {x.numel()} values are NaN or infinite")
    mean = torch.from_numpy(IMAGENET_MEAN)[:, None, None]
    std = torch.from_numpy(IMAGENET_STD)[:, None, None]
    x = x * std + mean
    x = rescale(x) if should_rescale else x.clamp(0, 1)
    return T.ToPILImage()(x)


def blur_image(X: torch.Tensor, sigma: float = 1) -> torch.Tensor:
    """Blur a batch of images in place with a Gaussian of width ``sigma`` pixels.

    Parameters
    ----------
    X : torch.Tensor
        Tensor of shape (N, C, H, W); modified in place.
    sigma : float, default 1
        Standard deviation of the Gaussian, in pixels: > 0 and at most the
        image's longer side (a wider blur only averages the whole image, and
        its kernel would take minutes to apply).

    Returns
    -------
    torch.Tensor
        ``X`` itself, blurred.
    """
    require_tensor("X", X, ndim=4, floating=True)
    longest = max(X.shape[2], X.shape[3])
    require_number("sigma", sigma, low=0, high=longest, low_inclusive=False)
    from scipy.ndimage import gaussian_filter1d  # imported here: scipy.ndimage is slow to import

    X_np = X.detach().cpu().clone().numpy()
    X_np = gaussian_filter1d(X_np, sigma, axis=2)
    X_np = gaussian_filter1d(X_np, sigma, axis=3)
    with torch.no_grad():
        X.copy_(torch.from_numpy(X_np).to(X))
    return X


def preprocess_batch(X: np.ndarray, device: str | torch.device | None = None) -> torch.Tensor:
    """Normalise a whole uint8 batch at once; equal to stacking :func:`preprocess`.

    Parameters
    ----------
    X : numpy.ndarray
        uint8 array of shape (N, 224, 224, 3), as returned by
        :func:`helpers.data.load_imagenet_val`.
    device : str or torch.device, optional
        Where to put the result (default: CPU).

    Returns
    -------
    torch.Tensor
        Float32 tensor of shape (N, 3, 224, 224).
    """
    require_ndarray("X", X, ndim=4, dtype=np.uint8)
    if X.shape[3] != 3:
        raise ValueError(f"X must have shape (N, H, W, 3), got {X.shape}")
    from .model import choose_device  # checks the device: a clear ValueError, not a CUDA traceback

    target = torch.device("cpu") if device is None else choose_device(device)
    if X.shape[1:3] != (224, 224):
        # Other sizes go through the lab's resize, one image at a time.
        return torch.cat([preprocess(x) for x in X]).to(target)
    x = torch.from_numpy(np.ascontiguousarray(X)).to(target)
    x = x.permute(0, 3, 1, 2).contiguous().to(torch.float32).div(255)
    mean = torch.as_tensor(IMAGENET_MEAN, device=x.device)[:, None, None]
    std = torch.as_tensor(IMAGENET_STD, device=x.device)[:, None, None]
    return x.sub_(mean).div_(std)


def add_noise(x: np.ndarray, noise_pct: float, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Add Gaussian noise to an image in pixel space, as SmoothGrad does.

    The noise has standard deviation ``noise_pct * x.std()`` (the spread of
    this image's pixel values); the result is rounded to the nearest
    integer, clipped to 0..255 and converted to uint8.

    Parameters
    ----------
    x : numpy.ndarray
        uint8 image of shape (H, W, 3).
    noise_pct : float
        Noise level as a fraction of the image's standard deviation, >= 0
        (the lab uses 0.1 to 0.2).
    rng : numpy.random.Generator or int, optional
        Random generator or seed; a fresh unseeded generator by default.

    Returns
    -------
    numpy.ndarray
        uint8 array of the same shape as ``x``.
    """
    require_ndarray("x", x, ndim=3, dtype=np.uint8)
    if x.shape[2] != 3:
        raise ValueError(f"x must be one RGB image of shape (H, W, 3), got {x.shape}")
    require_number("noise_pct", noise_pct, low=0)
    rng = require_rng("rng", rng)
    sigma = noise_pct * x.std()
    noisy = x + rng.normal(0.0, sigma, size=x.shape)
    # Round, not truncate: astype alone floors, which darkens by half a grey level on average
    # and turns even a tiny noise level into -1 steps on half of the pixels.
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
