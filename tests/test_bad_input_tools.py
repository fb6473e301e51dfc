"""Bad input to the instructor's tools (:mod:`course_tools.attribution`, :mod:`course_tools.smoothgrad`,
:mod:`course_tools.sanity`): our message, naming the argument and the fix, instead of torch's own
("Input type (double) and bias type (float) should be the same", an invalid device ordinal, ...) or a
silently different map (a model left in training mode, an input holding NaN)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from conftest import assert_refused
from course_tools.attribution import (gradient_times_input, integrated_gradients, integration_points, noise_tunnel,
                                      reduce_channels, vanilla_gradient)
from course_tools.sanity import cascading_randomization, edge_map, map_similarity, randomization_curve, spearman, ssim
from course_tools.smoothgrad import smoothgrad, smoothgrad_loop

pytestmark = pytest.mark.usefixtures("one_torch_thread")

X8 = np.full((1, 224, 224, 3), 100, dtype=np.uint8)
Y1 = np.array([3])
T = torch.zeros(1, 3, 32, 32)
TARGET = torch.tensor([3])
NAN_T = T.clone()
NAN_T[0, 1, 2, 3] = float("nan")


@pytest.fixture(scope="module")
def models(untrained_model):
    training = copy.deepcopy(untrained_model).train()
    half = copy.deepcopy(untrained_model).to(torch.bfloat16)
    meta = copy.deepcopy(untrained_model).to("meta")
    return {"ok": untrained_model, "training": training, "bf16": half, "meta": meta}


def _cuda_5(monkeypatch, call):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    return call()


CASES = [
    # attribution: the model against its inputs
    ("vanilla-float64-input", lambda m, mp: vanilla_gradient(T.double(), TARGET, m["ok"]), TypeError,
     r"^inputs has dtype torch.float64 but model's parameters are torch.float32: convert with inputs.to"),
    ("vanilla-bf16-model", lambda m, mp: vanilla_gradient(T, TARGET, m["bf16"]), TypeError,
     r"^model has torch.bfloat16 parameters; .* call model.float\(\) first"),
    ("vanilla-other-device", lambda m, mp: vanilla_gradient(T, TARGET, m["meta"]), ValueError,
     r"^inputs is on cpu but model is on meta: move one to the other"),
    ("vanilla-training-mode", lambda m, mp: vanilla_gradient(T, TARGET, m["training"]), ValueError,
     r"^model is in training mode .* call model.eval\(\) first"),
    ("vanilla-nan-input", lambda m, mp: vanilla_gradient(NAN_T, TARGET, m["ok"]), ValueError,
     r"^inputs must be finite, but 1 of its 3072 values are NaN or infinite"),
    ("vanilla-model-str", lambda m, mp: vanilla_gradient(T, TARGET, "squeezenet"), TypeError,
     r"^model must be a torch.nn.Module, got a str"),
    ("vanilla-3d", lambda m, mp: vanilla_gradient(T[0], TARGET, m["ok"]), ValueError, r"^inputs must be 4-D"),
    ("vanilla-one-channel", lambda m, mp: vanilla_gradient(T[:, :1], TARGET, m["ok"]), ValueError,
     r"^inputs must have 3 colour channels"),
    ("vanilla-int-input", lambda m, mp: vanilla_gradient(T.long(), TARGET, m["ok"]), TypeError,
     r"^inputs must be a floating-point tensor"),
    ("vanilla-numpy-input", lambda m, mp: vanilla_gradient(T.numpy(), TARGET, m["ok"]), TypeError,
     r"^inputs must be a torch.Tensor, got a numpy array"),
    ("vanilla-target-float", lambda m, mp: vanilla_gradient(T, torch.tensor([3.0]), m["ok"]), TypeError,
     r"^target must hold integer class indices"),
    ("vanilla-target-count", lambda m, mp: vanilla_gradient(T, torch.tensor([3, 4]), m["ok"]), ValueError,
     r"^target has 2 classes but inputs has 1 images"),
    ("vanilla-target-negative", lambda m, mp: vanilla_gradient(T, torch.tensor([-1]), m["ok"]), ValueError,
     r"^target must hold class indices >= 0"),
    ("vanilla-target-too-big", lambda m, mp: vanilla_gradient(T, torch.tensor([1000]), m["ok"]), ValueError,
     r"^target holds class 1000 but the model has 1000 classes"),
    ("vanilla-chunk-0", lambda m, mp: vanilla_gradient(T, TARGET, m["ok"], chunk_size=0), ValueError,
     r"^chunk_size must be >= 1"),
    ("gxi-training-mode", lambda m, mp: gradient_times_input(T, TARGET, m["training"]), ValueError,
     r"^model is in training mode"),
    ("tunnel-training-mode", lambda m, mp: noise_tunnel(T, TARGET, m["training"], n=2), ValueError,
     r"^model is in training mode"),
    ("tunnel-n-0", lambda m, mp: noise_tunnel(T, TARGET, m["ok"], n=0), ValueError, r"^n must be >= 1"),
    ("tunnel-sigma-negative", lambda m, mp: noise_tunnel(T, TARGET, m["ok"], n=2, sigma=-1), ValueError,
     r"^sigma must be >= 0"),
    ("tunnel-generator", lambda m, mp: noise_tunnel(T, TARGET, m["ok"], n=2, generator=0), TypeError,
     r"^generator must be a torch.Generator"),
    ("ig-training-mode", lambda m, mp: integrated_gradients(T, TARGET, m["training"], steps=2), ValueError,
     r"^model is in training mode"),
    ("ig-float64-input", lambda m, mp: integrated_gradients(T.double(), TARGET, m["ok"], steps=2), TypeError,
     r"^inputs has dtype torch.float64"),
    ("ig-baseline-shape", lambda m, mp: integrated_gradients(T, TARGET, m["ok"], baseline=torch.zeros(2, 3, 5, 5)),
     ValueError, r"^baseline of shape \(2, 3, 5, 5\) cannot broadcast"),
    ("ig-baseline-nan", lambda m, mp: integrated_gradients(T, TARGET, m["ok"], baseline=float("nan")), ValueError,
     r"^baseline must be finite"),
    ("ig-steps-0", lambda m, mp: integration_points(0), ValueError, r"^steps must be >= 1"),
    ("ig-method", lambda m, mp: integration_points(4, "simpson"), ValueError, r"^method must be one of"),
    ("reduce-how", lambda m, mp: reduce_channels(torch.zeros(1, 3, 2, 2), "sum"), ValueError, r"^how must be one of"),
    ("reduce-3d", lambda m, mp: reduce_channels(torch.zeros(3, 2, 2)), ValueError, r"^attributions must be 4-D"),
    # the fast SmoothGrad and its loop
    ("sg-training-mode", lambda m, mp: smoothgrad(X8, Y1, m["training"], n=2), ValueError,
     r"^model is in training mode .* call model.eval\(\) first"),
    ("sg-loop-training-mode", lambda m, mp: smoothgrad_loop(X8, Y1, m["training"], n=2), ValueError,
     r"^model is in training mode"),
    ("sg-bf16-model", lambda m, mp: smoothgrad(X8, Y1, m["bf16"], n=2), TypeError,
     r"^model has torch.bfloat16 parameters"),
    ("sg-float-images", lambda m, mp: smoothgrad(X8 / 255, Y1, m["ok"]), TypeError, r"^X must have dtype uint8"),
    ("sg-size", lambda m, mp: smoothgrad(X8[:, :100, :100], Y1, m["ok"]), ValueError,
     r"^X must have shape \(N, 224, 224, 3\)"),
    ("sg-labels-count", lambda m, mp: smoothgrad(X8, np.array([1, 2]), m["ok"]), ValueError,
     r"^y has 2 labels but 1 images"),
    ("sg-label-1000", lambda m, mp: smoothgrad(X8, np.array([1000]), m["ok"]), ValueError,
     r"^y must hold ImageNet labels in 0..999"),
    ("sg-n-0", lambda m, mp: smoothgrad(X8, Y1, m["ok"], n=0), ValueError, r"^n must be >= 1"),
    ("sg-noise-negative", lambda m, mp: smoothgrad(X8, Y1, m["ok"], noise_pct=-0.1), ValueError,
     r"^noise_pct must be >= 0"),
    ("sg-rng-str", lambda m, mp: smoothgrad(X8, Y1, m["ok"], rng="0"), TypeError, r"^rng must be None, an int seed"),
    ("sg-device-cuda-5", lambda m, mp: _cuda_5(mp, lambda: smoothgrad(X8, Y1, m["ok"], device="cuda:5")),
     ValueError, r"^device='cuda:5' names GPU 5, but this machine has 1"),
    ("sg-device-bad-name", lambda m, mp: smoothgrad(X8, Y1, m["ok"], device="tpu"), ValueError,
     r"^device must be 'cpu', 'cuda', 'mps' or 'auto'"),
    ("sg-chunk-0", lambda m, mp: smoothgrad(X8, Y1, m["ok"], chunk_size=0), ValueError, r"^chunk_size must be >= 1"),
    ("sg-noise_on_device-str", lambda m, mp: smoothgrad(X8, Y1, m["ok"], noise_on_device="yes"), TypeError,
     r"^noise_on_device must be a bool"),
    # sanity checks
    ("spearman-shapes", lambda m, mp: spearman(np.ones((1, 4, 4)), np.ones((1, 4, 5))), ValueError,
     r"^a and b must have the same shape"),
    ("spearman-nan", lambda m, mp: spearman(np.full((1, 2, 2), np.nan), np.ones((1, 2, 2))), ValueError,
     r"^a must be finite"),
    ("spearman-complex", lambda m, mp: spearman(np.ones((1, 2, 2)), np.ones((1, 2, 2), complex)), TypeError,
     r"^b must hold real numbers"),
    ("spearman-list", lambda m, mp: spearman([[[1.0]]], np.ones((1, 1, 1))), TypeError,
     r"^a must be a numpy array or a torch.Tensor"),
    ("ssim-data_range-0", lambda m, mp: ssim(np.ones((1, 4, 4)), np.ones((1, 4, 4)), data_range=0), ValueError,
     r"^data_range must be > 0"),
    ("similarity-3d", lambda m, mp: map_similarity(np.ones((1, 4, 4)), np.ones((1, 4, 4))), ValueError,
     r"^original must be 4-D"),
    ("similarity-nan", lambda m, mp: map_similarity(NAN_T, T), ValueError, r"^original must be finite"),
    ("edge-float", lambda m, mp: edge_map(X8 / 255), TypeError, r"^X must have dtype uint8"),
    ("cascade-seed", lambda m, mp: next(cascading_randomization(m["ok"], seed=-1)), ValueError,
     r"^seed must be >= 0"),
    ("curve-methods", lambda m, mp: randomization_curve(T, TARGET, m["ok"], {}), TypeError,
     r"^methods must be a non-empty dict of name -> callable"),
]


@pytest.mark.parametrize("call, exc, pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_clearly(models, monkeypatch, call, exc, pattern):
    assert_refused(lambda: call(models, monkeypatch), exc, pattern)


def test_a_model_in_training_mode_is_left_as_it_was(models):
    with pytest.raises(ValueError):
        vanilla_gradient(T, TARGET, models["training"])
    assert models["training"].training, "refused, not silently switched"
