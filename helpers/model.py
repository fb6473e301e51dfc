"""The lab's network: SqueezeNet 1.1 by default, or another torchvision ImageNet classifier.

Which network is one setting: ``$SALIENCY_MODEL`` (the course's ``course.toml`` ``[model] name``, which
the instructor tools hand to every kernel they start), one of :data:`NETWORKS`; without it, the default
:data:`DEFAULT_NETWORK` (``squeezenet1_1``). Students on Colab or their laptop need nothing set.

Which weights are used is always an explicit choice too:

* ``"pretrained"`` (the default): torchvision's ``IMAGENET1K_V1`` weights of that network,
  downloaded once into the torch cache (``$TORCH_HOME/hub/checkpoints``) and hash-checked;
* a path to a local ``.pth`` file, checked against the official file's hash prefix (the part of
  torchvision's file name after the dash, ``b8a52dc0`` for SqueezeNet 1.1);
* ``"untrained"``: a deterministic randomly initialised network (the same values on every machine),
  for tests and offline work. It warns loudly, because its maps show no learned evidence.

The environment variable ``SALIENCY_WEIGHTS`` supplies the choice when the caller passes none.
The preprocessing constants and the class names come from the weights' metadata
(:func:`network_metadata`); every network offered here uses ImageNet's.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import urllib.error
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision.models as tvm

from ._validation import describe, require_flag

WEIGHTS_ENV_VAR = "SALIENCY_WEIGHTS"
#: Names the network: one of :data:`NETWORKS` (``course.toml`` ``[model] name`` reaches kernels through it).
MODEL_ENV_VAR = "SALIENCY_MODEL"
DEFAULT_NETWORK = "squeezenet1_1"


@dataclass(frozen=True)
class Network:
    """One torchvision ImageNet classifier the course can use.

    Parameters
    ----------
    name : str
        torchvision's builder name (``torchvision.models.<name>``).
    title : str
        How the notebooks print it.
    """

    name: str
    title: str

    @property
    def weights(self):
        """torchvision's ``IMAGENET1K_V1`` weights enum member of this network."""
        return tvm.get_model_weights(self.name).IMAGENET1K_V1

    @property
    def filename(self) -> str:
        """torchvision's file name of the pretrained weights, e.g. ``squeezenet1_1-b8a52dc0.pth``."""
        return self.weights.url.rsplit("/", 1)[-1]

    @property
    def hash_prefix(self) -> str:
        """The first hex digits of the official file's SHA-256 (in its file name)."""
        return Path(self.filename).stem.rsplit("-", 1)[-1]

    @property
    def max_bytes(self) -> int:
        """Largest weights file accepted (about twice the official one), refused by size before it is read."""
        return max(16 * 2**20, int(2 * self.weights.meta["_file_size"] * 2**20))

    def build(self) -> torch.nn.Module:
        """The architecture with torchvision's default initialisation (the caller seeds it)."""
        return tvm.get_model_builder(self.name)(weights=None)


#: The networks offered (torchvision ImageNet-1k classifiers that take the lab's 224 x 224 images).
NETWORKS: dict[str, Network] = {n.name: n for n in (
    Network("squeezenet1_1", "SqueezeNet 1.1"),
    Network("resnet18", "ResNet-18"),
    Network("mobilenet_v3_small", "MobileNetV3-Small"),
)}

#: The default network's file and hash prefix (torchvision's squeezenet1_1 file).
PRETRAINED_HASH_PREFIX = NETWORKS[DEFAULT_NETWORK].hash_prefix
PRETRAINED_FILENAME = NETWORKS[DEFAULT_NETWORK].filename
UNTRAINED_SEED = 0
#: Size of torchvision's squeezenet1_1 file is 4,966,400 bytes; anything far larger is not it, and is
#: refused before it is read (hashing a multi-GiB file would take minutes).
MAX_WEIGHTS_BYTES = 16 * 1024 * 1024

__all__ = [
    "WEIGHTS_ENV_VAR", "MODEL_ENV_VAR", "DEFAULT_NETWORK", "NETWORKS", "Network", "WeightsUnavailableError",
    "UntrainedWeightsWarning", "network", "network_metadata", "load_model", "load_squeezenet", "choose_device",
    "weights_fingerprint", "weights_description",
]


def network(name: str | None = None) -> Network:
    """The network named ``name``, or by ``$SALIENCY_MODEL``, or the default (SqueezeNet 1.1).

    Parameters
    ----------
    name : str, optional
        One of :data:`NETWORKS`.
    """
    chosen = name if name is not None else (os.environ.get(MODEL_ENV_VAR) or DEFAULT_NETWORK)
    if not isinstance(chosen, str) or chosen not in NETWORKS:
        where = "name" if name is not None else f"${MODEL_ENV_VAR}"
        raise ValueError(f"{where} must name one of the course's networks ({', '.join(NETWORKS)}), got {chosen!r}")
    return NETWORKS[chosen]


def network_metadata(name: str | None = None) -> dict:
    """What the network's pretrained weights say about their inputs and outputs.

    Returns
    -------
    dict
        ``{"title", "mean", "std", "crop_size", "categories"}``: the per-channel mean and standard
        deviation its preprocessing normalises with, the image size it takes, the 1000 class names.
    """
    net = network(name)
    transforms = net.weights.transforms()
    return {"title": net.title, "mean": tuple(float(v) for v in transforms.mean),
            "std": tuple(float(v) for v in transforms.std), "crop_size": int(transforms.crop_size[0]),
            "categories": tuple(net.weights.meta["categories"])}


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


def _how_to_provide(net: Network) -> str:
    hub = Path(torch.hub.get_dir()) / "checkpoints" / net.filename
    return (
        f"To use the pretrained {net.title} offline, copy torchvision's weight file "
        f"{net.filename} (from {net.weights.url}) to {hub}, "
        f"or pass its path: load_model(weights='/path/to/{net.filename}') "
        f"(or set {WEIGHTS_ENV_VAR}=/path/to/{net.filename}). To run without learned "
        f"weights, choose them explicitly: load_model(weights='untrained') or "
        f"{WEIGHTS_ENV_VAR}=untrained (the maps then show no learned evidence)."
    )


#: Biases of the untrained network, drawn from a generator seeded with UNTRAINED_SEED: uniform in
#: +-INNER_BIAS for every bias of a convolution, linear or batch-norm layer but the last, and
#: normal(FINAL_BIAS, FINAL_BIAS / 3) for the last one (the classifier's), in the order of
#: ``named_modules()``. Torchvision's zero biases make a ReLU-and-pooling network positively homogeneous
#: (f(a x) = a f(x)), so Integrated Gradients from a zero baseline would equal gradient x input whatever
#: its path, and three of the 25 images would have a correct-class score of exactly 0 and all-zero
#: gradients. With these values every image is alive, and the gradients of images 0..5 do not depend on
#: the batch size in float32 (no near-zero ReLU flips between a batch of one and of six; the hidden
#: checks use X[:4] and X[:6]); tests/test_model.py checks all three properties.
UNTRAINED_INNER_BIAS = 0.1
UNTRAINED_FINAL_BIAS = 0.5
_BIASED = (torch.nn.Conv2d, torch.nn.Linear, torch.nn.BatchNorm2d)


def _untrained(net: Network) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(UNTRAINED_SEED)
        model = net.build()
    generator = torch.Generator(device="cpu").manual_seed(UNTRAINED_SEED)
    biased = [m for _, m in model.named_modules() if isinstance(m, _BIASED) and m.bias is not None]
    with torch.no_grad():
        for index, module in enumerate(biased):
            bias = torch.empty(module.bias.shape)
            if index == len(biased) - 1:
                bias.normal_(UNTRAINED_FINAL_BIAS, UNTRAINED_FINAL_BIAS / 3, generator=generator)
            else:
                bias.uniform_(-UNTRAINED_INNER_BIAS, UNTRAINED_INNER_BIAS, generator=generator)
            module.bias.copy_(bias)
    warnings.warn(
        f"{net.title} has UNTRAINED (random) weights: its scores and saliency maps show no learned "
        "evidence. Use weights='pretrained' for the real lab.",
        UntrainedWeightsWarning, stacklevel=4,
    )
    return model


def _expected_prefix(net: Network) -> str:
    # The default network's prefix is a module constant (tests stand in another file's prefix there).
    return PRETRAINED_HASH_PREFIX if net.name == DEFAULT_NETWORK else net.hash_prefix


def _check_weights_file(path: Path, net: Network) -> None:
    """Refuse a file that is not torchvision's: too large (checked first, nothing read), or the wrong hash."""
    size = path.stat().st_size
    limit = MAX_WEIGHTS_BYTES if net.name == DEFAULT_NETWORK else net.max_bytes
    if size > limit:
        raise WeightsUnavailableError(
            f"{path} is not torchvision's {net.title} file: it has {size:,} bytes, and that file has about "
            f"{net.weights.meta['_file_size']:.0f} MB (at most {limit:,} bytes are accepted). "
            + _how_to_provide(net))
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    hexdigest = digest.hexdigest()
    expected = _expected_prefix(net)
    if not hexdigest.startswith(expected):
        raise WeightsUnavailableError(
            f"{path} is not torchvision's {net.title} file: its SHA-256 starts with {hexdigest[:len(expected)]}, "
            f"expected {expected}. The file may be truncated or another model's weights; "
            "delete it and download it again."
        )


def _from_file(path: Path, net: Network) -> torch.nn.Module:
    if not path.is_file():
        raise WeightsUnavailableError(f"weights file {path} does not exist. " + _how_to_provide(net))
    _check_weights_file(path, net)
    model = net.build()
    try:
        # weights_only=True: a weight file is data, never code.
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError, TypeError, KeyError) as err:
        raise WeightsUnavailableError(
            f"{path} could not be read as {net.title} weights ({err}). " + _how_to_provide(net)
        ) from err
    return model


def _pretrained(net: Network, progress: bool) -> torch.nn.Module:
    # Not ``<builder>(weights=...)``: torchvision then reads the cached file with
    # ``torch.load(weights_only=False)``, i.e. it unpickles arbitrary code from the torch cache.
    # The state dict is fetched the same way (same cache file, hash-checked download) but read
    # with ``weights_only=True``.
    # torchvision checks the hash of a file it downloads, but not of one already in the cache: a state
    # dict of the right shapes saved there under the official name would load as "pretrained".
    cached = Path(torch.hub.get_dir()) / "checkpoints" / net.filename
    if cached.is_file():
        _check_weights_file(cached, net)
    model = net.build()
    try:
        state = net.weights.get_state_dict(progress=progress, check_hash=True, weights_only=True)
        model.load_state_dict(state)
    except (urllib.error.URLError, OSError, RuntimeError, pickle.UnpicklingError, EOFError, ValueError,
            TypeError, KeyError) as err:
        raise WeightsUnavailableError(
            f"Could not load the pretrained {net.title} weights ({err}). " + _how_to_provide(net)
        ) from err
    return model


def load_model(weights: str | os.PathLike | None = None, device: str | torch.device | None = None,
               *, name: str | None = None, progress: bool = False) -> torch.nn.Module:
    """Load the lab's network in eval mode with frozen parameters.

    Parameters
    ----------
    weights : {"pretrained", "untrained"} or path, optional
        Which weights to use (see the module docstring). ``None`` reads
        ``$SALIENCY_WEIGHTS`` and falls back to ``"pretrained"``.
    device : str or torch.device, optional
        Where to put the model; automatic (cuda, mps, cpu) by default.
    name : str, optional
        Which network (one of :data:`NETWORKS`); ``None`` reads ``$SALIENCY_MODEL`` and falls back
        to :data:`DEFAULT_NETWORK`.
    progress : bool, default False
        Show a progress bar while downloading the pretrained weights.

    Returns
    -------
    torch.nn.Module
        The model, in eval mode, with ``requires_grad=False`` on every parameter, a
        ``weights_source`` attribute naming where the weights came from and a ``network``
        attribute naming the network.

    Raises
    ------
    WeightsUnavailableError
        If pretrained weights were asked for and cannot be had; the message
        says how to provide them.
    """
    progress = require_flag("progress", progress)
    net = network(name)
    if weights is None:
        weights = os.environ.get(WEIGHTS_ENV_VAR) or "pretrained"
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(f"weights must be 'pretrained', 'untrained' or a path to a .pth file, got {describe(weights)}")
    dev = choose_device(device)
    if weights == "untrained":
        model, source = _untrained(net), "untrained"
    elif weights == "pretrained":
        model, source = _pretrained(net, progress), "pretrained"
    else:
        path = Path(weights).expanduser()
        if path.suffix not in (".pth", ".pt"):
            raise ValueError(
                f"weights must be 'pretrained', 'untrained' or a path to a .pth file, got {str(weights)!r}"
            )
        model, source = _from_file(path, net), f"file:{path}"
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    model.weights_source = source
    model.network = net.name
    return model.to(dev)


def load_squeezenet(weights: str | os.PathLike | None = None, device: str | torch.device | None = None,
                    *, progress: bool = False) -> torch.nn.Module:
    """Load SqueezeNet 1.1, whatever ``$SALIENCY_MODEL`` says (see :func:`load_model`)."""
    return load_model(weights, device, name=DEFAULT_NETWORK, progress=progress)


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
    name = getattr(model, "network", None)
    title = NETWORKS[name].title if name in NETWORKS else type(model).__name__
    return f"{title}, weights: {source}, fingerprint {weights_fingerprint(model)}"


if __name__ == "__main__":  # pragma: no cover - a tiny manual check
    m = load_model(sys.argv[1] if len(sys.argv) > 1 else None, "cpu")
    print(weights_description(m))
