"""``beyond.gradients``: the one function that differentiates a class score with respect to the input.

Checked on models whose gradients are known exactly (linear), for invariance
to the chunking, for leaving the model, its parameters' ``.grad`` and the
caller's inputs and autograd state alone, for bad arguments named in the
message, and that every user of an input gradient (the lab's loop, both
batched SmoothGrads, the attribution methods) goes through it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from beyond.gradients import class_score_gradients
from conftest import assert_refused

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N, H, W, CLASSES = 5, 4, 3, 7


def linear_model(generator: torch.Generator, dtype: torch.dtype = torch.float32) -> nn.Sequential:
    """Scores ``W x + b``: the gradient of class ``c`` is the weight row ``W[c]``, whatever ``x``."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * H * W, CLASSES)).to(dtype)
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(CLASSES, 3 * H * W, generator=generator))
        model[1].bias.copy_(torch.randn(CLASSES, generator=generator))
    return model.eval()


def conv_model(generator: torch.Generator) -> nn.Sequential:
    """A small non-linear network (ReLU, max-pooling), float64."""
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator)))
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 8, 3, padding=1),
                         nn.ReLU(), nn.Flatten(), nn.Linear(8 * (H // 2) * (W // 2), CLASSES)).double().eval()


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(12)


@pytest.fixture
def inputs(generator) -> torch.Tensor:
    return torch.randn(N, 3, H, W, generator=generator)


TARGET = torch.tensor([3, 0, 6, 3, 1])


# ------------------------------------------------------------------------------------------ known gradients

def test_a_linear_models_gradient_is_the_weight_row_exactly(generator, inputs):
    model = linear_model(generator)
    grad = class_score_gradients(model, inputs, TARGET)
    weight = model[1].weight.detach()
    assert grad.shape == inputs.shape and grad.dtype == inputs.dtype and not grad.requires_grad
    for i in range(N):
        assert torch.equal(grad[i], weight[TARGET[i]].view(3, H, W))
    # A linear model's gradient does not depend on the input.
    assert torch.equal(class_score_gradients(model, inputs * 5 - 2, TARGET), grad)


def test_one_int_targets_every_row(generator, inputs):
    model = linear_model(generator)
    grad = class_score_gradients(model, inputs, 4)
    assert torch.equal(grad, model[1].weight.detach()[4].view(1, 3, H, W).expand(N, -1, -1, -1))
    for same in (np.int64(4), torch.tensor(4), [4] * N, np.full(N, 4, dtype=np.int32), torch.full((N,), 4)):
        assert torch.equal(class_score_gradients(model, inputs, same), grad)


def test_a_rows_gradient_is_its_own_on_a_nonlinear_model(generator):
    """The batch's one backward pass gives row i the gradient of row i's score alone (finite differences)."""
    model = conv_model(generator)
    x = torch.randn(3, 3, H, W, generator=generator, dtype=torch.float64)
    target = torch.tensor([2, 5, 0])
    grad = class_score_gradients(model, x, target)
    eps = 1e-6
    for i in range(3):
        for flat in (0, 17, 3 * H * W - 1):
            step = torch.zeros_like(x[i]).view(-1)
            step[flat] = eps
            step = step.view_as(x[i])
            with torch.no_grad():
                up = model((x[i] + step)[None])[0, target[i]]
                down = model((x[i] - step)[None])[0, target[i]]
            assert float(grad[i].reshape(-1)[flat]) == pytest.approx(float(up - down) / (2 * eps), rel=1e-5, abs=1e-9)


# ---------------------------------------------------------------------------------------------- chunking

@pytest.mark.parametrize("chunk_size", [1, 2, 3, N, 100])
def test_chunking_changes_nothing(generator, inputs, chunk_size):
    linear = linear_model(generator)
    assert torch.equal(class_score_gradients(linear, inputs, TARGET, chunk_size=chunk_size),
                       class_score_gradients(linear, inputs, TARGET))
    conv, x = conv_model(generator), inputs.double()
    torch.testing.assert_close(class_score_gradients(conv, x, TARGET, chunk_size=chunk_size),
                               class_score_gradients(conv, x, TARGET), rtol=1e-12, atol=1e-15)


def test_chunks_run_the_rows_in_order_and_in_bounded_batches(generator, inputs):
    seen = []
    model = linear_model(generator)

    def forward(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.shape[0])
        return model(x)

    class_score_gradients(forward, inputs, TARGET, chunk_size=2)
    assert seen == [2, 2, 1]


# ------------------------------------------------------------------------------- nothing else is touched

def test_parameters_grad_is_left_alone(generator, inputs):
    model = linear_model(generator)
    assert all(p.requires_grad for p in model.parameters())
    class_score_gradients(model, inputs, TARGET)
    assert all(p.grad is None for p in model.parameters())
    marks = {name: torch.full_like(p, 7.0) for name, p in model.named_parameters()}
    for name, p in model.named_parameters():
        p.grad = marks[name]
    class_score_gradients(model, inputs, TARGET)
    for name, p in model.named_parameters():
        assert p.grad is marks[name] and bool((p.grad == 7.0).all())


def test_the_callers_inputs_and_graph_are_left_alone(generator):
    model = linear_model(generator)
    leaf = torch.randn(N, 3, H, W, generator=generator, requires_grad=True)
    inputs = leaf * 2  # part of the caller's graph
    before = inputs.detach().clone()
    grad = class_score_gradients(model, inputs, TARGET)
    assert leaf.grad is None and inputs.grad_fn is not None and torch.equal(inputs, before)
    assert not grad.requires_grad and grad.grad_fn is None
    inputs.sum().backward()  # the caller's graph still works
    assert torch.equal(leaf.grad, torch.full_like(leaf, 2.0))


def test_under_no_grad_the_gradient_is_the_same(generator, inputs):
    model = linear_model(generator)
    expected = class_score_gradients(model, inputs, TARGET)
    with torch.no_grad():
        grad = class_score_gradients(model, inputs, TARGET)
        assert not torch.is_grad_enabled()  # the caller's setting is restored
    assert torch.equal(grad, expected)


def test_inference_tensors_are_accepted_but_inference_mode_is_refused(generator):
    model = linear_model(generator)
    with torch.inference_mode():
        x = torch.randn(N, 3, H, W, generator=generator)
        assert_refused(lambda: class_score_gradients(model, x, TARGET), RuntimeError,
                       r"cannot run under torch.inference_mode\(\).*torch.no_grad\(\)")
    assert torch.equal(class_score_gradients(model, x, TARGET), class_score_gradients(model, x.clone(), TARGET))


def test_any_callable_forward_and_the_inputs_layout(generator):
    """A function around ``functional_call`` with channels-last weights, as the fast SmoothGrad runs it."""
    model = conv_model(generator)
    state = {name: (p.detach().contiguous(memory_format=torch.channels_last) if p.dim() == 4 else p.detach())
             for name, p in model.named_parameters()}
    x = torch.randn(N, 3, H, W, generator=generator, dtype=torch.float64)
    x_last = x.contiguous(memory_format=torch.channels_last)
    grad = class_score_gradients(lambda t: functional_call(model, state, (t,)), x_last, TARGET)
    assert grad.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(grad, class_score_gradients(model, x, TARGET), rtol=1e-12, atol=1e-15)


def test_the_result_is_a_tensor_of_its_own(generator):
    """autograd may return an expanded view (here: the gradient of a sum); the result is writable."""
    x = torch.randn(N, 4, generator=generator)
    grad = class_score_gradients(lambda t: t.sum(dim=1, keepdim=True).expand(-1, 2), x, 1)
    assert torch.equal(grad, torch.ones(N, 4)) and grad.is_contiguous()
    grad.mul_(3)  # would raise on an expanded view


# ---------------------------------------------------------------------------------------------- bad input

def _scores(k: int) -> torch.Tensor:
    return torch.zeros(k, CLASSES)


BAD = [
    ("forward-str", dict(forward="squeezenet"), TypeError, r"^forward must be callable .* got a str"),
    ("inputs-numpy", dict(inputs=np.zeros((N, 3, H, W), np.float32)), TypeError,
     r"^inputs must be a torch.Tensor, got a numpy array"),
    ("inputs-int", dict(inputs=torch.zeros(N, 3, H, W, dtype=torch.long)), TypeError,
     r"^inputs must be a floating-point tensor"),
    ("inputs-empty", dict(inputs=torch.zeros(0, 3, H, W)), ValueError, r"^inputs must not be empty"),
    ("inputs-0d", dict(inputs=torch.tensor(1.0)), ValueError, r"^inputs must have a first axis of rows"),
    ("target-str", dict(target="cat"), TypeError, r"^target must be an int, or one integer class index per row"),
    ("target-bool", dict(target=True), TypeError, r"^target must be an int, or one integer class index"),
    ("target-strings", dict(target=["cat"] * N), TypeError, r"^target must hold integer class indices"),
    ("target-float", dict(target=torch.full((N,), 1.0)), TypeError,
     r"^target must hold integer class indices, got dtype torch.float32"),
    ("target-float-list", dict(target=[1.5] * N), TypeError, r"^target must hold integer class indices"),
    ("target-bools", dict(target=torch.ones(N, dtype=torch.bool)), TypeError, r"^target must hold integer class"),
    ("target-2d", dict(target=TARGET[:, None]), ValueError, r"^target must be 1-D, got shape \(5, 1\)"),
    ("target-empty", dict(target=[]), ValueError, r"^target must not be empty"),
    ("target-length", dict(target=TARGET[:2]), ValueError, r"^target has 2 classes but inputs has 5 rows"),
    ("target-negative", dict(target=torch.tensor([0, 1, -1, 2, 3])), ValueError,
     r"^target must hold class indices >= 0, got -1"),
    ("target-too-big", dict(target=torch.tensor([0, 1, 7, 2, 3])), ValueError,
     r"^target holds class 7 but the model has 7 classes \(0..6\)"),
    ("target-too-big-int", dict(target=1000), ValueError, r"^target holds class 1000 but the model has 7 classes"),
    ("chunk-0", dict(chunk_size=0), ValueError, r"^chunk_size must be >= 1, got 0"),
    ("chunk-float", dict(chunk_size=1.5), TypeError, r"^chunk_size must be an integer"),
    ("chunk-bool", dict(chunk_size=True), TypeError, r"^chunk_size must be an integer, got a bool"),
    ("forward-1d", dict(forward=lambda x: x.sum(dim=(1, 2, 3))), ValueError,
     r"^forward must return floating-point class scores of shape \(rows, classes\) = \(5, C\), got a torch.Tensor "
     r"of shape \(5,\)"),
    ("forward-rows", dict(forward=lambda x: x.reshape(1, -1)), ValueError,
     r"^forward must return .* = \(5, C\), got a torch.Tensor of shape \(1, 180\)"),
    ("forward-tuple", dict(forward=lambda x: (x.flatten(1),)), ValueError, r"^forward must return .* got a tuple"),
    ("forward-int-scores", dict(forward=lambda x: x.flatten(1).long()), ValueError,
     r"^forward must return floating-point class scores"),
    ("forward-detached", dict(forward=lambda x: x.detach().flatten(1)), ValueError,
     r"^forward's scores do not depend on its input through autograd"),
    ("forward-no-grad", dict(forward=lambda x: _no_grad_forward(x)), ValueError,
     r"^forward's scores do not depend on its input through autograd .*torch.no_grad"),
    ("forward-ignores-input", dict(forward=lambda x: _scores(x.shape[0]) * nn.Parameter(torch.ones(1))),
     ValueError, r"^forward's scores do not depend on its input \(forward ignores"),
]


def _no_grad_forward(x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return x.flatten(1) * 2


@pytest.mark.parametrize("name, change, error, pattern", BAD, ids=[case[0] for case in BAD])
def test_bad_arguments_are_named(generator, inputs, name, change, error, pattern):
    args = dict(forward=linear_model(generator), inputs=inputs, target=TARGET, chunk_size=None)
    args.update(change)
    assert_refused(lambda: class_score_gradients(args.pop("forward"), args.pop("inputs"), args.pop("target"),
                                                 **args), error, pattern)


# ------------------------------------------------------------------- every input gradient comes from here

class Spy:
    """Wraps :func:`class_score_gradients` and counts the rows differentiated through it."""

    def __init__(self) -> None:
        self.rows = 0

    def __call__(self, forward, inputs, target, **kwargs):
        self.rows += inputs.shape[0]
        return class_score_gradients(forward, inputs, target, **kwargs)


def _small_classifier() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(16, 10)).eval()


def _images(k: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (k, 224, 224, 3), dtype=np.uint8)


def _run_attribution(model: nn.Module) -> int:
    from beyond import attribution
    from helpers.images import preprocess_batch

    x, t = preprocess_batch(_images(2)), torch.tensor([1, 2])
    attribution.vanilla_gradient(x, t, model, chunk_size=1)                  # 2 rows
    attribution.gradient_times_input(x, t, model)                             # 2
    attribution.noise_tunnel(x, t, model, n=3, chunk_size=4)                  # 6
    attribution.integrated_gradients(x, t, model, steps=3, chunk_size=2)      # 6
    return 16


def _run_beyond_smoothgrad(model: nn.Module) -> int:
    from beyond.smoothgrad import smoothgrad

    smoothgrad(_images(2), np.array([1, 2]), model, n=3, rng=0, chunk=2)
    return 6


def _run_fast_smoothgrad(model: nn.Module) -> int:
    from course_tools.smoothgrad import smoothgrad

    smoothgrad(_images(2), np.array([1, 2]), model, n=3, rng=0, chunk_size=4)
    return 6


def _run_lab_loop(model: nn.Module) -> int:
    from course_tools.smoothgrad import smoothgrad_loop

    smoothgrad_loop(_images(2), np.array([1, 2]), model, n=3, rng=0)
    return 6


@pytest.mark.parametrize("module, run", [
    ("beyond.attribution", _run_attribution),
    ("beyond.smoothgrad", _run_beyond_smoothgrad),
    ("course_tools.smoothgrad", _run_fast_smoothgrad),
    ("course_tools.smoothgrad", _run_lab_loop),
], ids=["attribution", "beyond-smoothgrad", "fast-smoothgrad", "lab-loop"])
def test_every_input_gradient_is_computed_here(monkeypatch, module, run):
    """No second copy of the gradient code: each user's rows all pass through the shared function."""
    import importlib

    spy = Spy()
    monkeypatch.setattr(importlib.import_module(module), "class_score_gradients", spy)
    model = _small_classifier()
    assert spy.rows == 0
    assert run(model) == spy.rows
    assert all(p.grad is None for p in model.parameters())
