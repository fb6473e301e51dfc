"""SqueezeNet 1.1 for the lab: pretrained, from a local file, or explicitly untrained.

Which weights are used is always an explicit choice:

* ``"pretrained"`` (the default): torchvision's ``IMAGENET1K_V1`` weights,
  downloaded once into the torch cache (``$TORCH_HOME/hub/checkpoints``) and
  hash-checked by torchvision;
* a path to a local ``.pth`` file, checked against the official file's hash
  prefix ``b8a52dc0``;
* ``"untrained"``: a deterministic randomly initialised network (the same
  values on every machine), for tests and offline work. It warns loudly,
  because its maps show no learned evidence.

The environment variable ``SALIENCY_WEIGHTS`` supplies the choice when the
caller passes none.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import urllib.error
import warnings
from pathlib import Path

import torch
from torchvision.models import SqueezeNet, SqueezeNet1_1_Weights, squeezenet1_1

from ._validation import describe, require_flag

WEIGHTS_ENV_VAR = "SALIENCY_WEIGHTS"
#: First hex digits of the SHA-256 of torchvision's squeezenet1_1 file.
PRETRAINED_HASH_PREFIX = "b8a52dc0"
PRETRAINED_FILENAME = "squeezenet1_1-b8a52dc0.pth"
UNTRAINED_SEED = 0
#: Size of torchvision's squeezenet1_1 file is 4,966,400 bytes; anything far larger is not it, and is
#: refused before it is read (hashing a multi-GiB file would take minutes).
MAX_WEIGHTS_BYTES = 16 * 1024 * 1024

__all__ = [
    "WEIGHTS_ENV_VAR", "WeightsUnavailableError", "UntrainedWeightsWarning",
    "load_squeezenet", "choose_device", "weights_fingerprint", "weights_description",
]


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights were asked for but cannot be had."""


class UntrainedWeightsWarning(UserWarning):
    """The model has random weights: its saliency maps carry no learned evidence."""


def choose_device(device: str | torch.device | None = None) -> torch.device:
    """Return ``device`` checked, or the best available one (cuda, then mps, then cpu).

    Parameters
    ----------
    device : str or torch.device, optional
        ``"cuda"``, ``"cuda:1"``, ``"mps"``, ``"cpu"``, ``"auto"`` or ``None`` (automatic).
    """
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a str or torch.device, got {describe(device)}")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device must be 'cpu', 'cuda', 'mps' or 'auto', got {device!r}") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but this machine has no usable CUDA GPU; use 'cpu' or 'auto'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device={str(device)!r} names GPU {dev.index}, but this machine has "
                         f"{torch.cuda.device_count()} (cuda:0 to cuda:{torch.cuda.device_count() - 1}); "
                         "use 'cuda' or 'auto'")
    if dev.type == "mps" and dev.index not in (None, 0):
        raise ValueError(f"device={str(device)!r}: there is only one MPS device, 'mps'")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device='mps' was asked for but MPS is not available here; use 'cpu' or 'auto'")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device must be 'cpu', 'cuda', 'mps' or 'auto', got {device!r}")
    return dev


def _how_to_provide() -> str:
    hub = Path(torch.hub.get_dir()) / "checkpoints" / PRETRAINED_FILENAME
    return (
        "To use the pretrained SqueezeNet 1.1 offline, copy torchvision's weight file "
        f"{PRETRAINED_FILENAME} (from {SqueezeNet1_1_Weights.IMAGENET1K_V1.url}) to {hub}, "
        f"or pass its path: load_squeezenet(weights='/path/to/{PRETRAINED_FILENAME}') "
        f"(or set {WEIGHTS_ENV_VAR}=/path/to/{PRETRAINED_FILENAME}). To run without learned "
        f"weights, choose them explicitly: load_squeezenet(weights='untrained') or "
        f"{WEIGHTS_ENV_VAR}=untrained (the maps then show no learned evidence)."
    )


#: Biases of the untrained network, drawn from a generator seeded with UNTRAINED_SEED: uniform in
#: +-INNER_BIAS for every convolution but the last, normal(FINAL_BIAS, FINAL_BIAS / 3) for the final one.
#: Torchvision's zero biases make a ReLU-and-pooling network positively homogeneous (f(a x) = a f(x)),
#: so Integrated Gradients from a zero baseline would equal gradient x input whatever its path, and
#: three of the 25 images would have a correct-class score of exactly 0 and all-zero gradients.
#: With these values every image is alive, and the gradients of images 0..5 do not depend on the batch
#: size in float32 (no near-zero ReLU flips between a batch of one and of six; the hidden checks use
#: X[:4] and X[:6]); tests/test_model.py checks all three properties.
UNTRAINED_INNER_BIAS = 0.1
UNTRAINED_FINAL_BIAS = 0.5


def _untrained() -> SqueezeNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(UNTRAINED_SEED)
        model = squeezenet1_1(weights=None)
    generator = torch.Generator(device="cpu").manual_seed(UNTRAINED_SEED)
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Conv2d) and module.bias is not None:
                bias = torch.empty(module.bias.shape)
                if name == "classifier.1":
                    bias.normal_(UNTRAINED_FINAL_BIAS, UNTRAINED_FINAL_BIAS / 3, generator=generator)
                else:
                    bias.uniform_(-UNTRAINED_INNER_BIAS, UNTRAINED_INNER_BIAS, generator=generator)
                module.bias.copy_(bias)
    warnings.warn(
        "SqueezeNet has UNTRAINED (random) weights: its scores and saliency maps show no learned "
        "evidence. Use weights='pretrained' for the real lab.",
        UntrainedWeightsWarning, stacklevel=3,
    )
    return model


def _check_weights_file(path: Path) -> None:
    """Refuse a file that is not torchvision's: too large (checked first, nothing read), or the wrong hash."""
    size = path.stat().st_size
    if size > MAX_WEIGHTS_BYTES:
        raise WeightsUnavailableError(
            f"{path} is not torchvision's SqueezeNet 1.1 file: it has {size:,} bytes, and that file has about "
            f"5 MB (at most {MAX_WEIGHTS_BYTES:,} bytes are accepted). " + _how_to_provide())
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    hexdigest = digest.hexdigest()
    if not hexdigest.startswith(PRETRAINED_HASH_PREFIX):
        raise WeightsUnavailableError(
            f"{path} is not torchvision's SqueezeNet 1.1 file: its SHA-256 starts with {hexdigest[:8]}, "
            f"expected {PRETRAINED_HASH_PREFIX}. The file may be truncated or another model's weights; "
            "delete it and download it again."
        )


def _from_file(path: Path) -> SqueezeNet:
    if not path.is_file():
        raise WeightsUnavailableError(f"weights file {path} does not exist. " + _how_to_provide())
    _check_weights_file(path)
    model = squeezenet1_1(weights=None)
    try:
        # weights_only=True: a weight file is data, never code.
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError, TypeError, KeyError) as err:
        raise WeightsUnavailableError(
            f"{path} could not be read as SqueezeNet 1.1 weights ({err}). " + _how_to_provide()
        ) from err
    return model


def _pretrained(progress: bool) -> SqueezeNet:
    # Not ``squeezenet1_1(weights=...)``: torchvision then reads the cached file with
    # ``torch.load(weights_only=False)``, i.e. it unpickles arbitrary code from the torch cache.
    # The state dict is fetched the same way (same cache file, hash-checked download) but read
    # with ``weights_only=True``.
    # torchvision checks the hash of a file it downloads, but not of one already in the cache: a state
    # dict of the right shapes saved there under the official name would load as "pretrained".
    cached = Path(torch.hub.get_dir()) / "checkpoints" / PRETRAINED_FILENAME
    if cached.is_file():
        _check_weights_file(cached)
    model = squeezenet1_1(weights=None)
    try:
        state = SqueezeNet1_1_Weights.IMAGENET1K_V1.get_state_dict(
            progress=progress, check_hash=True, weights_only=True)
        model.load_state_dict(state)
    except (urllib.error.URLError, OSError, RuntimeError, pickle.UnpicklingError, EOFError, ValueError,
            TypeError, KeyError) as err:
        raise WeightsUnavailableError(
            f"Could not load the pretrained SqueezeNet 1.1 weights ({err}). " + _how_to_provide()
        ) from err
    return model


def load_squeezenet(weights: str | os.PathLike | None = None, device: str | torch.device | None = None,
                    *, progress: bool = False) -> SqueezeNet:
    """Load SqueezeNet 1.1 in eval mode with frozen parameters.

    Parameters
    ----------
    weights : {"pretrained", "untrained"} or path, optional
        Which weights to use (see the module docstring). ``None`` reads
        ``$SALIENCY_WEIGHTS`` and falls back to ``"pretrained"``.
    device : str or torch.device, optional
        Where to put the model; automatic (cuda, mps, cpu) by default.
    progress : bool, default False
        Show a progress bar while downloading the pretrained weights.

    Returns
    -------
    torchvision.models.SqueezeNet
        The model, in eval mode, with ``requires_grad=False`` on every parameter
        and a ``weights_source`` attribute naming where the weights came from.

    Raises
    ------
    WeightsUnavailableError
        If pretrained weights were asked for and cannot be had; the message
        says how to provide them.
    """
    progress = require_flag("progress", progress)
    if weights is None:
        weights = os.environ.get(WEIGHTS_ENV_VAR) or "pretrained"
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(f"weights must be 'pretrained', 'untrained' or a path to a .pth file, got {describe(weights)}")
    dev = choose_device(device)
    if weights == "untrained":
        model, source = _untrained(), "untrained"
    elif weights == "pretrained":
        model, source = _pretrained(progress), "pretrained"
    else:
        path = Path(weights).expanduser()
        if path.suffix not in (".pth", ".pt"):
            raise ValueError(
                f"weights must be 'pretrained', 'untrained' or a path to a .pth file, got {str(weights)!r}"
            )
        model, source = _from_file(path), f"file:{path}"
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    model.weights_source = source
    return model.to(dev)


def weights_fingerprint(model: torch.nn.Module) -> str:
    """Return a 12-hex-digit fingerprint of a model's weights.

    Two models with the same architecture and identical parameter values get
    the same fingerprint on every machine; reference arrays are keyed by it.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {describe(model)}")
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        digest.update(name.encode())
        digest.update(str(t.dtype).encode())
        digest.update(str(tuple(t.shape)).encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()[:12]


def weights_description(model: torch.nn.Module) -> str:
    """One line saying which weights a model has, for printing at the top of a notebook."""
    source = getattr(model, "weights_source", "unknown")
    return f"SqueezeNet 1.1, weights: {source}, fingerprint {weights_fingerprint(model)}"


if __name__ == "__main__":  # pragma: no cover - a tiny manual check
    m = load_squeezenet(sys.argv[1] if len(sys.argv) > 1 else None, "cpu")
    print(weights_description(m))
