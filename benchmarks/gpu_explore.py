"""Where could SmoothGrad on a GPU go faster? Forward + backward variants, timed.

Exploration for issue 5 (not a test): after ``gpu_check.py`` showed the fast
SmoothGrad at about 90-100x the lab's loop on an H200, this times one chunk's
forward and backward to the input (SqueezeNet 1.1, untrained, 224x224, batch
``--batch``), the part that dominates, in several ways:

* ``eager``: what ``course_tools.smoothgrad`` does (channels-last, PyTorch's
  default precision: cuDNN may use TF32);
* ``eager_cudnn_benchmark``: the same with cuDNN's autotuner;
* ``cuda_graph``: the eager step captured once in a CUDA graph and replayed;
* ``compile``: ``torch.compile`` of the model (inductor, default mode);
* ``compile_cudagraphs``: ``torch.compile(mode="reduce-overhead")``;
* ``bf16``: eager under ``torch.autocast(dtype=torch.bfloat16)``: changes the
  numbers, shown only to know what reduced precision would buy.

For each: passes/s (median of ``--repeats`` timings of ``--steps`` steps),
peak GPU memory, and the max-abs channel map's error relative to the eager
fp32 map (per sample: max |diff| / max |eager|, then the worst sample).

    PYTHONPATH=.:instructor python benchmarks/gpu_explore.py --out $OUT/explore.json
    PYTHONPATH=.:instructor .venv/bin/python benchmarks/gpu_explore.py --quick --out /tmp/x.json  # CPU
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
for _p in (ROOT, ROOT / "instructor"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from helpers.model import load_squeezenet  # noqa: E402

T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:6.1f} s] {msg}", flush=True)


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def channel_maps(grad: torch.Tensor) -> torch.Tensor:
    return grad.abs().amax(dim=1).float()


def make_eager(model: torch.nn.Module, labels: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    def step(x: torch.Tensor) -> torch.Tensor:
        x = x.detach().requires_grad_(True)
        scores = model(x)
        (grad,) = torch.autograd.grad(scores.gather(1, labels.view(-1, 1)).sum(), x)
        return grad
    return step


def make_bf16(model: torch.nn.Module, labels: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    eager = make_eager(model, labels)

    def step(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16):
            return eager(x)
    return step


def make_cuda_graph(model: torch.nn.Module, labels: torch.Tensor, example: torch.Tensor
                    ) -> Callable[[torch.Tensor], torch.Tensor]:
    static_x = example.clone().requires_grad_(True)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up on a side stream, as the CUDA graphs docs ask
        for _ in range(3):
            (g,) = torch.autograd.grad(model(static_x).gather(1, labels.view(-1, 1)).sum(), static_x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        (static_grad,) = torch.autograd.grad(model(static_x).gather(1, labels.view(-1, 1)).sum(), static_x)

    def step(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            static_x.copy_(x)
        graph.replay()
        return static_grad
    return step


def time_step(step: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, dev: torch.device,
              steps: int, repeats: int) -> list[float]:
    for _ in range(2):
        step(x)
    sync(dev)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            step(x)
        sync(dev)
        out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="batch 2, 1 step, 1 repeat: a CPU dry run")
    args = ap.parse_args(argv)
    if args.quick:
        args.batch, args.steps, args.repeats = 2, 1, 1
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = load_squeezenet("untrained", "cpu")
    model = copy.deepcopy(base).to(dev).to(memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((args.batch, 3, 224, 224), generator=gen).to(dev)
    x = x.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 1000, (args.batch,), generator=gen).to(dev)
    # Untrained SqueezeNet: many scores are exactly 0 (dead ReLUs); use each sample's
    # largest class so that every gradient is nonzero.
    with torch.no_grad():
        labels = model(x).argmax(dim=1)

    results: dict[str, Any] = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
                               "torch": torch.__version__, "batch": args.batch, "steps": args.steps,
                               "repeats": args.repeats, "variants": {}, "errors": {}}

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))

    conv = torch.backends.cudnn.conv
    old_precision = conv.fp32_precision
    conv.fp32_precision = "ieee"
    reference = channel_maps(make_eager(model, labels)(x)).detach()
    conv.fp32_precision = old_precision
    scale = reference.flatten(1).amax(dim=1).clamp_min(1e-30)

    variants: list[tuple[str, Callable[[], Callable[[torch.Tensor], torch.Tensor]]]] = [
        ("eager", lambda: make_eager(model, labels)),
        ("eager_cudnn_benchmark", lambda: make_eager(model, labels)),
        ("compile", lambda: make_eager(torch.compile(copy.deepcopy(model)), labels)),
        ("bf16", lambda: make_bf16(model, labels)),
    ]
    if dev.type == "cuda":
        variants.insert(2, ("cuda_graph", lambda: make_cuda_graph(model, labels, x)))
        variants.insert(4, ("compile_cudagraphs",
                            lambda: make_eager(torch.compile(copy.deepcopy(model), mode="reduce-overhead"),
                                               labels)))
    for name, build in variants:
        torch.backends.cudnn.benchmark = name == "eager_cudnn_benchmark"
        try:
            t_build = time.perf_counter()
            step = build()
            grad = step(x)  # first call compiles / captures
            sync(dev)
            build_s = time.perf_counter() - t_build
            err = ((channel_maps(grad) - reference).abs().flatten(1).amax(dim=1) / scale).max().item()
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            times = time_step(step, x, dev, args.steps, args.repeats)
            peak = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else float("nan")
            med = float(np.median(times))
            rate = args.batch * args.steps / med
            results["variants"][name] = {"passes_per_s": rate, "times_s": times, "build_s": build_s,
                                         "peak_mib": peak, "max_rel_error_vs_fp32": err}
            log(f"{name:22s} {rate:9.1f} passes/s  build {build_s:6.1f} s  peak {peak:8.0f} MiB  "
                f"max rel err vs fp32 {err:.2e}")
        except Exception:  # noqa: BLE001 - record, go on
            results["errors"][name] = traceback.format_exc()
            log(f"{name}: FAILED\n{results['errors'][name]}")
        finally:
            torch.backends.cudnn.benchmark = False
            save()
    base_rate = results["variants"].get("eager", {}).get("passes_per_s")
    if base_rate:
        for name, v in results["variants"].items():
            log(f"{name:22s} x eager {v['passes_per_s'] / base_rate:5.2f}")
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
