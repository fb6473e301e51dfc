"""Tests of the instructor's fast SmoothGrad (``course_tools.smoothgrad``).

The batched :func:`smoothgrad` must draw exactly the lab loop's noise (same
numpy seed, loop order across chunk boundaries), so its noisy inputs are
compared bitwise with :func:`smoothgrad_loop`'s. The maps themselves are
compared with a tolerance, because batched and channels-last convolutions sum
in another order: most pixels agree to about 1e-6 of the image's maximum,
but a ReLU input or a max-pooling tie that rounding pushes to the other side
re-routes the gradient of one unit, which changes a small patch of pixels by
up to about 2e-2 of the maximum (measured over 48 configurations: 4 image
triples x n in {4, 8} x chunk sizes {3, 5, 8} x both memory layouts: max
per-pixel error 2.0e-2 and mean error at most 7.6e-5 of each image's
maximum). The tests therefore bound the mean error at 1e-3 (13x the
measured worst case) and the largest at 0.1 (5x); a wrong noise stream
gives mean errors of 1e-2 or more and maxima near 0.5.

Images 4, 5 and 6 are used: their class scores are alive under the
untrained SqueezeNet, so their maps are not all zero.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_tools.smoothgrad import (
    DEFAULT_CHUNK_CPU, default_chunk_size, smoothgrad, smoothgrad_loop,
)
from course_tools.references import CROSS_CHECK_OUTLIER_FACTOR
from helpers.checks import TOLERANCE
from helpers.images import preprocess_batch

IMAGES = [4, 5, 6]
N = 4
NOISE = 0.15
SEED = 1
# The agreement `course references` asks of the fast SmoothGrad and the solution's loop (cross_check).
MEAN_TOL = TOLERANCE
MAX_TOL = CROSS_CHECK_OUTLIER_FACTOR * TOLERANCE


class Recorder(torch.nn.Module):
    """Wraps a model; records the batch size and (optionally) the inputs it sees."""

    def __init__(self, inner: torch.nn.Module, keep_inputs: bool = False) -> None:
        super().__init__()
        self.inner = inner
        self.keep_inputs = keep_inputs
        self.sizes: list[int] = []
        self.inputs: list[torch.Tensor] = []
        self.eval()   # a model in training mode is refused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(x.shape[0])
        if self.keep_inputs:
            self.inputs.append(x.detach().clone().contiguous())
        return self.inner(x)


def relative_errors(maps: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """|maps - reference| divided by each reference image's maximum."""
    scale = np.abs(reference).max(axis=(1, 2), keepdims=True)
    assert (scale > 0).all(), "the test images must have nonzero maps"
    return np.abs(maps - reference) / scale


def assert_maps_close(maps: np.ndarray, reference: np.ndarray) -> None:
    assert maps.shape == reference.shape and maps.dtype == np.float32
    err = relative_errors(maps, reference)
    assert err.mean(axis=(1, 2)).max() < MEAN_TOL, f"mean relative error {err.mean(axis=(1, 2))}"
    assert err.max() < MAX_TOL, f"max relative error {err.max(axis=(1, 2))}"


@pytest.fixture(scope="module")
def small(dataset):
    return dataset.X[IMAGES], dataset.y[IMAGES]


@pytest.fixture(scope="module")
def loop_run(small, untrained_model):
    """The lab loop's maps and the noisy inputs it fed the model."""
    X, y = small
    rec = Recorder(untrained_model, keep_inputs=True)
    maps = smoothgrad_loop(X, y, rec, n=N, noise_pct=NOISE, rng=SEED)
    return maps, torch.cat(rec.inputs)


# ------------------------------------------------------------------ the noise stream

def test_numpy_normal_is_offset_scaled_standard_normal():
    sigma = 7.3
    a = np.random.default_rng(5)
    b = np.random.default_rng(5)
    drawn = np.stack([a.normal(0.0, sigma, size=(224, 224, 3)) for _ in range(3)])
    z = b.standard_normal((3, 224, 224, 3))
    # Bitwise: Generator.normal is loc + scale * standard_normal, and one draw of
    # k images is k draws of one image in order.
    assert np.array_equal(drawn, 0.0 + sigma * z)
    assert np.array_equal(a.standard_normal(4), b.standard_normal(4))  # same state afterwards


@pytest.mark.parametrize("chunk_size", [1, 3, 5, 8, 100])
def test_noisy_inputs_are_bitwise_the_loops(small, untrained_model, loop_run, chunk_size):
    X, y = small
    rec = Recorder(untrained_model, keep_inputs=True)
    smoothgrad(X, y, rec, n=N, noise_pct=NOISE, rng=SEED, chunk_size=chunk_size)
    assert rec.sizes == [min(chunk_size, len(X) * N - s) for s in range(0, len(X) * N, chunk_size)]
    assert torch.equal(torch.cat(rec.inputs), loop_run[1])


def test_rng_is_advanced_like_the_loop(small, untrained_model):
    X, y = small
    a, b = np.random.default_rng(9), np.random.default_rng(9)
    smoothgrad_loop(X[:1], y[:1], untrained_model, n=2, noise_pct=NOISE, rng=a)
    smoothgrad(X[:1], y[:1], untrained_model, n=2, noise_pct=NOISE, rng=b, chunk_size=1)
    assert a.integers(1 << 62) == b.integers(1 << 62)


# ------------------------------------------------------------------ the maps

@pytest.mark.parametrize("chunk_size,channels_last", [
    (3, True),    # chunks span image boundaries (n = 4)
    (5, True),    # does not divide n
    (8, True),    # two whole images per chunk
    (12, True),   # everything in one chunk
    (3, False),   # model's own layout
])
def test_maps_match_the_loop(small, untrained_model, loop_run, chunk_size, channels_last):
    X, y = small
    maps = smoothgrad(X, y, untrained_model, n=N, noise_pct=NOISE, rng=SEED, chunk_size=chunk_size,
                      channels_last=channels_last)
    assert_maps_close(maps, loop_run[0])


def test_a_different_seed_is_detected(small, untrained_model, loop_run):
    X, y = small
    maps = smoothgrad(X, y, untrained_model, n=N, noise_pct=NOISE, rng=SEED + 1)
    assert relative_errors(maps, loop_run[0]).mean() > 10 * MEAN_TOL


def test_no_noise_gives_the_vanilla_map(small, untrained_model):
    X, y = small
    x = preprocess_batch(X).requires_grad_(True)
    scores = untrained_model(x).gather(1, torch.from_numpy(y)[:, None]).sum()
    (grad,) = torch.autograd.grad(scores, x)
    vanilla = grad.abs().amax(dim=1).numpy()
    for channels_last in (True, False):
        maps = smoothgrad(X, y, untrained_model, n=3, noise_pct=0, rng=0, chunk_size=2,
                          channels_last=channels_last)
        assert_maps_close(maps, vanilla)


def test_model_is_left_unchanged(small, untrained_model):
    X, y = small
    before = {k: v.clone() for k, v in untrained_model.state_dict().items()}
    smoothgrad(X[:1], y[:1], untrained_model, n=2, noise_pct=NOISE, rng=0)
    for name, param in untrained_model.named_parameters():
        assert param.grad is None and not param.requires_grad
        assert torch.equal(param, before[name])
        assert param.is_contiguous()  # not converted to channels-last in place


# ------------------------------------------------------------------ noise on the device

def test_device_noise_is_seeded_and_not_the_numpy_stream(small, untrained_model, loop_run):
    X, y = small
    kwargs = dict(n=N, noise_pct=NOISE, chunk_size=5, noise_on_device=True)
    a = smoothgrad(X, y, untrained_model, rng=3, **kwargs)
    b = smoothgrad(X, y, untrained_model, rng=3, **kwargs)
    assert np.array_equal(a, b)
    g1 = torch.Generator().manual_seed(42)
    g2 = torch.Generator().manual_seed(42)
    c = smoothgrad(X, y, untrained_model, generator=g1, **kwargs)
    d = smoothgrad(X, y, untrained_model, generator=g2, **kwargs)
    assert np.array_equal(c, d)
    assert not np.array_equal(a, c)
    # Not the numpy stream: differs from the loop's maps far beyond the arithmetic tolerance.
    numpy_noise = smoothgrad(X, y, untrained_model, n=N, noise_pct=NOISE, rng=SEED, chunk_size=5)
    device_noise = smoothgrad(X, y, untrained_model, rng=SEED, **kwargs)
    assert relative_errors(device_noise, loop_run[0]).mean() > 10 * MEAN_TOL
    assert relative_errors(device_noise, numpy_noise).mean() > 10 * MEAN_TOL


def test_device_noise_without_noise_is_vanilla(small, untrained_model):
    X, y = small
    exact = smoothgrad(X, y, untrained_model, n=2, noise_pct=0.0, rng=0)
    device = smoothgrad(X, y, untrained_model, n=2, noise_pct=0.0, rng=0, noise_on_device=True)
    assert_maps_close(device, exact)


# ------------------------------------------------------------------ chunks and memory

def test_default_chunk_size_is_respected(small, untrained_model):
    X, y = small
    rec = Recorder(untrained_model)
    smoothgrad(X, y, rec, n=N, noise_pct=NOISE, rng=0)
    assert default_chunk_size("cpu") == DEFAULT_CHUNK_CPU
    total = len(X) * N
    assert rec.sizes == [min(DEFAULT_CHUNK_CPU, total - s) for s in range(0, total, DEFAULT_CHUNK_CPU)]
    assert max(rec.sizes) <= DEFAULT_CHUNK_CPU


def test_chunk_size_is_respected_with_device_noise(small, untrained_model):
    X, y = small
    rec = Recorder(untrained_model)
    smoothgrad(X[:2], y[:2], rec, n=5, noise_pct=NOISE, rng=0, chunk_size=4, noise_on_device=True)
    assert rec.sizes == [4, 4, 2]


def test_loop_runs_one_image_at_a_time(small, untrained_model):
    X, y = small
    rec = Recorder(untrained_model)
    maps = smoothgrad_loop(X[:2], y[:2], rec, n=3, noise_pct=NOISE, rng=0)
    assert rec.sizes == [1] * 6
    assert maps.shape == (2, 224, 224) and maps.dtype == np.float32


# ------------------------------------------------------------------ argument checks

@pytest.mark.parametrize("func", [smoothgrad, smoothgrad_loop])
@pytest.mark.parametrize("change,error,name", [
    ({"n": 0}, ValueError, "n"),
    ({"n": 2.5}, TypeError, "n"),
    ({"n": True}, TypeError, "n"),
    ({"noise_pct": -0.1}, ValueError, "noise_pct"),
    ({"noise_pct": float("nan")}, ValueError, "noise_pct"),
    ({"noise_pct": "0.1"}, TypeError, "noise_pct"),
    ({"y": np.array([1, 2])}, ValueError, "y"),
    ({"y": np.array([1.0, 2.0, 3.0])}, TypeError, "y"),
    ({"y": np.array([1, 2, 1000])}, ValueError, "y"),
    ({"X": "images"}, TypeError, "X"),
    ({"X": np.zeros((3, 224, 224, 3), np.float32)}, TypeError, "X"),
    ({"X": np.zeros((224, 224, 3), np.uint8)}, ValueError, "X"),
    ({"X": np.zeros((3, 224, 224, 4), np.uint8)}, ValueError, "X"),
    ({"model": "squeezenet"}, TypeError, "model"),
    ({"rng": "seed"}, TypeError, "rng"),
])
def test_bad_arguments_name_the_argument(small, untrained_model, func, change, error, name):
    X, y = small
    kwargs = dict(X=X, y=y, model=untrained_model, n=2, noise_pct=0.1, rng=0)
    kwargs.update(change)
    with pytest.raises(error, match=rf"^{name} "):
        func(**kwargs)


@pytest.mark.parametrize("change,error,name", [
    ({"chunk_size": 0}, ValueError, "chunk_size"),
    ({"chunk_size": 2.0}, TypeError, "chunk_size"),
    ({"X": np.zeros((3, 100, 100, 3), np.uint8)}, ValueError, "X"),
    ({"device": 3}, TypeError, "device"),
    ({"device": "gpu"}, ValueError, "device"),
    ({"noise_on_device": 1}, TypeError, "noise_on_device"),
    ({"generator": torch.Generator()}, ValueError, "generator"),
    ({"generator": 5, "noise_on_device": True}, TypeError, "generator"),
    ({"channels_last": None}, TypeError, "channels_last"),
])
def test_bad_batching_arguments_name_the_argument(small, untrained_model, change, error, name):
    X, y = small
    kwargs = dict(X=X, y=y, model=untrained_model, n=2, noise_pct=0.1, rng=0)
    kwargs.update(change)
    with pytest.raises(error, match=rf"^{name} "):
        smoothgrad(**kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_without_gpu_is_a_clear_error(small, untrained_model):
    X, y = small
    with pytest.raises(ValueError, match="device"):
        smoothgrad(X, y, untrained_model, n=2, device="cuda")


# ------------------------------------------------------------------ the prefetching thread

def test_prefetched_noise_is_the_same_stream(small, untrained_model, monkeypatch):
    import course_tools.smoothgrad as sg

    X, y = small
    results = []
    for prefetch in (False, True):
        monkeypatch.setattr(sg, "PREFETCH", prefetch)
        rng = np.random.default_rng(21)
        rec = Recorder(untrained_model, keep_inputs=True)
        maps = smoothgrad(X, y, rec, n=N, noise_pct=NOISE, rng=rng, chunk_size=5)
        results.append((maps, torch.cat(rec.inputs), rng.integers(1 << 62)))
    assert np.array_equal(results[0][0], results[1][0])
    assert torch.equal(results[0][1], results[1][1])
    assert results[0][2] == results[1][2]


class FailingNoise(np.random.Generator):
    """A numpy generator whose second standard normal draw fails."""

    def __init__(self) -> None:
        super().__init__(np.random.PCG64(0))
        self.calls = 0

    def standard_normal(self, *args, **kwargs):
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError("noise source exhausted")
        return super().standard_normal(*args, **kwargs)


@pytest.mark.parametrize("prefetch", [False, True])
def test_a_failing_noise_draw_is_raised(small, untrained_model, monkeypatch, prefetch):
    import course_tools.smoothgrad as sg

    monkeypatch.setattr(sg, "PREFETCH", prefetch)
    X, y = small
    with pytest.raises(RuntimeError, match="exhausted"):
        smoothgrad(X[:1], y[:1], untrained_model, n=4, noise_pct=NOISE, rng=FailingNoise(), chunk_size=2)
