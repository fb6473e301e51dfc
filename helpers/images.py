"""Image preprocessing for SqueezeNet, its inverse for display, and noise.

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
from PIL import Image

from ._validation import describe, require_ndarray, require_number, require_rng, require_tensor

#: Per-channel mean of the ImageNet training images (RGB, values in 0..1).
SQUEEZENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
#: Per-channel standard deviation of the ImageNet training images (RGB).
SQUEEZENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

__all__ = [
    "SQUEEZENET_MEAN", "SQUEEZENET_STD", "preprocess", "deprocess", "rescale",
    "blur_image", "preprocess_batch", "add_noise",
]


def _as_pil(img: Any, name: str = "img") -> Image.Image:
    if isinstance(img, Image.Image):
        return img.convert("RGB") if img.mode != "RGB" else img
    if isinstance(img, np.ndarray):
        require_ndarray(name, img, ndim=3, dtype=np.uint8)
        if img.shape[2] != 3:
            raise ValueError(f"{name} must be an RGB image of shape (H, W, 3), got shape {img.shape}")
        return Image.fromarray(img)
    raise TypeError(f"{name} must be a PIL image or a uint8 numpy array (H, W, 3), got {describe(img)}")


def preprocess(img: Image.Image | np.ndarray, size: int = 224) -> torch.Tensor:
    """Turn one RGB image into a normalised batch of one, as SqueezeNet expects.

    Resize (shorter side to ``size``), convert to a float tensor in [0, 1],
    normalise with :data:`SQUEEZENET_MEAN` and :data:`SQUEEZENET_STD`, and add
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
    pil = _as_pil(img)
    require_number("size", size, low=1, integer=True)
    transform = T.Compose([
        T.Resize(size),
        T.ToTensor(),
        T.Normalize(mean=SQUEEZENET_MEAN.tolist(), std=SQUEEZENET_STD.tolist()),
    ])
    return transform(pil)[None]


def rescale(x: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Linearly map ``x`` to [0, 1] (min to 0, max to 1).

    A constant input maps to zeros rather than dividing by zero.
    """
    if not isinstance(x, (torch.Tensor, np.ndarray)):
        raise TypeError(f"x must be a torch.Tensor or numpy array, got {describe(x)}")
    if x.size == 0 if isinstance(x, np.ndarray) else x.numel() == 0:
        raise ValueError("x must not be empty")
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
    if img.dim() == 4:
        if img.shape[0] != 1:
            raise ValueError(f"img must hold a single image, got a batch of {img.shape[0]}")
        img = img[0]
    if img.shape[0] != 3:
        raise ValueError(f"img must have 3 channels first, got shape {tuple(img.shape)}")
    x = img.detach().cpu().float()
    mean = torch.from_numpy(SQUEEZENET_MEAN)[:, None, None]
    std = torch.from_numpy(SQUEEZENET_STD)[:, None, None]
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
        Standard deviation of the Gaussian, in pixels.

    Returns
    -------
    torch.Tensor
        ``X`` itself, blurred.
    """
    require_tensor("X", X, ndim=4, floating=True)
    require_number("sigma", sigma, low=0, low_inclusive=False)
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
    mean = torch.as_tensor(SQUEEZENET_MEAN, device=x.device)[:, None, None]
    std = torch.as_tensor(SQUEEZENET_STD, device=x.device)[:, None, None]
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
