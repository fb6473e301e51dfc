"""The gradient of a class score with respect to the input: computed here, and only here.

Every saliency map of the course starts from the same quantity. For a
classifier ``f``, an input row ``x_i`` and its class ``c_i``, it is

    g_i = d f(x_i)[c_i] / d x_i,

one number per input value. :func:`class_score_gradients` computes it for
the lab's loop (one noisy image at a time, in the instructor's tools), for
both batched SmoothGrads (:mod:`beyond.smoothgrad` and the instructor's fast
one) and for every method of :mod:`beyond.attribution`.

How it works, in three steps, as zennit's ``Attributor.grad`` and Captum's
``compute_gradients`` do it:

1. Run ``forward`` on a detached copy of the inputs that requires gradients,
   with gradients enabled even if the caller disabled them.
2. Pick each row's target score with ``scores.gather(1, target)`` and add
   them up. The rows of a batch do not interact in a model in eval mode, so
   the gradient of this sum with respect to the batch holds, in row ``i``,
   the gradient of row ``i``'s own score: one backward pass serves the
   whole batch.
3. ``torch.autograd.grad`` of the sum with respect to the inputs only. Unlike
   ``.backward()``, it computes no parameter gradients (less work) and writes
   no ``.grad`` anywhere: the model and the inputs are left as they were.

``chunk_size`` bounds memory: the activations kept for the backward pass grow
with the rows per pass (about 20 MiB per 224x224 image for SqueezeNet).
Changing it changes only how the convolutions sum (the results agree to
float rounding), never which numbers are computed.

Like the rest of :mod:`beyond`, students receive this module only after the
homework, whose exercise is exactly this computation.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

from helpers._validation import describe, require_number, require_tensor

__all__ = ["class_score_gradients"]


def class_score_gradients(forward: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor,
                          target: int | Sequence[int] | np.ndarray | torch.Tensor, *,
                          chunk_size: int | None = None) -> torch.Tensor:
    """The gradient of each row's ``target`` score with respect to that row.

    Parameters
    ----------
    forward : callable
        Maps a batch ``(k, ...)`` of rows of ``inputs`` to class scores of
        shape ``(k, classes)``: an ``nn.Module`` in eval mode, or a function
        such as ``lambda x: torch.func.functional_call(model, state, (x,))``.
        Rows must not interact (no batch statistics).
    inputs : torch.Tensor
        Floating-point batch of shape ``(N, ...)``, e.g. normalised images
        ``(N, 3, H, W)``. Neither it nor its ``.grad`` is modified; if it
        belongs to a graph, the graph is not extended.
    target : int, sequence of int, numpy.ndarray or torch.Tensor
        The class whose score is differentiated: one integer index per row
        (shape ``(N,)``), or one integer for every row.
    chunk_size : int, optional
        Rows per forward/backward pass, >= 1; all ``N`` in one pass by default.

    Returns
    -------
    torch.Tensor
        The gradients, same shape, dtype, device and memory layout as
        ``inputs``; detached (it does not require gradients).

    Raises
    ------
    TypeError, ValueError
        For arguments of the wrong kind or value, and for a ``forward`` that
        returns no ``(k, classes)`` scores or scores that do not depend on
        its input; the message names the argument. A class index beyond the
        scores names the number of classes.
    RuntimeError
        When called under ``torch.inference_mode()``, which no gradient can
        pass (``torch.no_grad()`` is fine).

    Examples
    --------
    >>> model = torch.nn.Linear(4, 3)
    >>> x = torch.randn(2, 4)
    >>> grad = class_score_gradients(model, x, [2, 0])
    >>> torch.equal(grad, torch.stack([model.weight[2], model.weight[0]]).detach())
    True
    """
    if not callable(forward):
        raise TypeError(f"forward must be callable (an nn.Module or a function of the inputs), got "
                        f"{describe(forward)}")
    require_tensor("inputs", inputs, floating=True)
    if inputs.dim() == 0:
        raise ValueError("inputs must have a first axis of rows, shape (N, ...), got a 0-D tensor")
    rows = inputs.shape[0]
    target, largest = _target_indices(target, rows, inputs.device)
    step = rows if chunk_size is None else int(require_number("chunk_size", chunk_size, low=1, integer=True))
    if torch.is_inference_mode_enabled():
        raise RuntimeError("class_score_gradients cannot run under torch.inference_mode(), which no gradient "
                           "passes; call it outside, or under torch.no_grad() instead")
    out = torch.empty_like(inputs)  # autograd may hand back an expanded view: copy into a tensor of our own
    for start in range(0, rows, step):
        out[start:start + step] = _one_pass(forward, inputs.detach()[start:start + step],
                                            target[start:start + step], largest)
    return out


def _target_indices(target: Any, rows: int, device: torch.device) -> tuple[torch.Tensor, int]:
    """``target`` as ``rows`` non-negative int64 class indices on ``device``, and the largest of them."""
    if isinstance(target, (int, np.integer)) and not isinstance(target, (bool, np.bool_)):
        target = torch.full((rows,), int(target), dtype=torch.long)
    elif isinstance(target, (list, tuple, np.ndarray)):
        try:
            target = torch.as_tensor(np.asarray(target))
        except (TypeError, ValueError, RuntimeError) as err:  # strings, objects, ragged lists
            raise TypeError(f"target must hold integer class indices, got {describe(target)}") from err
    elif not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be an int, or one integer class index per row (a sequence, numpy array "
                        f"or tensor), got {describe(target)}")
    elif target.dim() == 0:
        target = target.reshape(1).expand(rows)
    require_tensor("target", target, ndim=1)
    if target.dtype == torch.bool or target.is_floating_point() or target.is_complex():
        raise TypeError(f"target must hold integer class indices, got dtype {target.dtype}")
    if target.shape[0] != rows:
        raise ValueError(f"target has {target.shape[0]} classes but inputs has {rows} rows; give one class per "
                         "row, or one int for all")
    low, high = (int(v) for v in torch.aminmax(target))  # one device synchronisation for both bounds
    if low < 0:
        raise ValueError(f"target must hold class indices >= 0, got {low}")
    return target.to(device=device, dtype=torch.long), high


def _one_pass(forward: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor, target: torch.Tensor,
              largest: int) -> torch.Tensor:
    """One forward and backward pass: d sum_i scores[i, target[i]] / d batch (may be an expanded view).

    ``batch`` is a detached slice of the caller's inputs: it becomes a new leaf of its own.
    """
    if batch.is_inference():
        batch = batch.clone()  # an inference tensor cannot require gradients; a copy outside inference mode can
    batch.requires_grad_(True)
    with torch.enable_grad():
        scores = forward(batch)
        if (not isinstance(scores, torch.Tensor) or not scores.is_floating_point() or scores.dim() != 2
                or scores.shape[0] != batch.shape[0]):
            raise ValueError(f"forward must return floating-point class scores of shape (rows, classes) = "
                             f"({batch.shape[0]}, C), got {describe(scores)}")
        if largest >= scores.shape[1]:
            raise ValueError(f"target holds class {largest} but the model has {scores.shape[1]} classes "
                             f"(0..{scores.shape[1] - 1})")
        picked = scores.gather(1, target.to(scores.device).view(-1, 1)).sum()
        if not picked.requires_grad:
            raise ValueError("forward's scores do not depend on its input through autograd (did forward detach "
                             "it, or run under torch.no_grad()?)")
        (grad,) = torch.autograd.grad(picked, batch, allow_unused=True)
    if grad is None:
        raise ValueError("forward's scores do not depend on its input (forward ignores the rows it is given)")
    return grad
