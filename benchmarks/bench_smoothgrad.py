"""Benchmark SmoothGrad implementations on SqueezeNet 1.1 (untrained weights).

Methods (all in one process, interleaved round by round; the median of
``--repeats`` timed rounds is reported, after one untimed warm-up round on a
small problem):

``loop``
    :func:`course_tools.smoothgrad.smoothgrad_loop`, the lab's loop: one
    noisy image at a time through ``add_noise``, PIL and ``preprocess``.
``batched``
    :func:`course_tools.smoothgrad.smoothgrad` with numpy noise (the same
    noise as the loop, same seed).
``batched_device_noise``
    The same with ``noise_on_device=True`` (torch generator on the device).
``all_in_one``
    ``batched`` with one chunk holding every noisy copy (GPU only: it shows
    what the chunk-size bound saves).
``captum`` / ``captum_channels_last``
    Captum's ``NoiseTunnel(Saliency(model))`` with ``nt_type="smoothgrad"``,
    one call per image (each image has its own noise level), ``nt_samples=n``,
    ``nt_samples_batch_size=chunk``, ``abs=True``. Captum adds float noise in
    the normalised input space, without clipping or rounding to uint8; its
    ``stdevs`` is a single float per input, so the pixel-space sigma
    ``noise_pct * X[i].std()`` is divided by 255 and by the mean of the three
    channel stds (0.226). The maps differ (Captum averages |grad| per channel
    and we take the channel max here afterwards): it is a speed comparison.
    ``captum`` runs the model as given (NCHW); ``captum_channels_last`` runs a
    channels-last copy of it, to show how much of the gap is memory layout.
``batched_nchw`` / ``batched_device_noise_nchw`` (only on request)
    ``smoothgrad(..., channels_last=False)``: the model's own NCHW layout.
``pair``
    PAIR's ``saliency.core.GradientSaliency().GetSmoothedMask`` with a
    ``call_model_function`` that runs the torch model on a batch of one (as
    the package is designed: one noisy sample per call, noise from
    ``np.random.normal`` on a float HWC array). The image is passed in pixel
    units (0..255) and ``stdev_spread = noise_pct * X[i].std() / (max - min)``
    so that PAIR's sigma ``stdev_spread * (max - min)`` equals ours;
    ``magnitude=True`` (PAIR's default: it averages squared gradients).

Measured per method: wall time, passes per second (one pass = one noisy
sample forward and backward), speed ratios to ``loop`` and ``captum``, the
effective GFLOP/s and its fraction of the fp32 ``torch.matmul`` rate measured
in the same rounds, and the peak memory.

FLOP count: forward hooks on every ``Conv2d`` count 2 x multiply-adds
(0.698 GFLOP per 224x224 forward; ReLU, pooling and concatenation are
ignored). One pass is counted as 2 x forward: backward to the input only
computes each convolution's input gradient (as many multiply-adds as its
forward) and no weight gradients.

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` after
``reset_peak_memory_stats``, minus the memory allocated before the method.
On CPU, the kernel's resident-set high-water mark (``VmHWM``) after
resetting it (``echo 5 > /proc/self/clear_refs``, Linux >= 4.0) and after
``gc.collect()`` and ``malloc_trim(0)``, minus the resident set just before
the method; where that is not possible, a psutil thread samples the RSS every
2 ms. Memory still cached by the allocators from earlier methods can hide part
of a method's peak; the CPU numbers are therefore lower bounds on what a fresh
process would need on top of the model (see ``--fresh-memory``, which
measures each method once in its own fresh process).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import gc
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "instructor"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from course_tools.smoothgrad import default_chunk_size, smoothgrad, smoothgrad_loop  # noqa: E402
from helpers.data import load_imagenet_val  # noqa: E402
from helpers.images import IMAGENET_MEAN, IMAGENET_STD, preprocess_batch  # noqa: E402
from helpers.model import load_squeezenet  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "imagenet_val_25.npz"
ALL_METHODS = ("loop", "batched", "batched_device_noise", "all_in_one", "captum",
               "captum_channels_last", "pair")
#: Extra variants, run only when asked for (--methods): the model's own NCHW layout, and Captum
#: with all n samples of an image in one batch (the setting the issue measured).
EXTRA_METHODS = ("batched_nchw", "batched_device_noise_nchw", "captum_batch_n")
MIB = 2**20


# --------------------------------------------------------------------------- helpers

def have(module: str) -> bool:
    """Whether ``module`` can be imported."""
    try:
        __import__(module)
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return False
    return True


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forward_flops(model: torch.nn.Module, device: torch.device) -> int:
    """FLOPs (2 x multiply-adds) of the Conv2d layers in one 224x224 forward pass."""
    total = 0

    def hook(mod: torch.nn.Conv2d, _inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        kh, kw = mod.kernel_size
        total += 2 * out.numel() * (mod.in_channels // mod.groups) * kh * kw

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, 224, 224, device=device))
    finally:
        for h in handles:
            h.remove()
    return total


def matmul_gflops(device: torch.device, size: int = 2048, reps: int = 5) -> float:
    """Median fp32 ``torch.matmul`` rate of two ``size`` x ``size`` matrices, in GFLOP/s."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    a @ b
    sync(device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - t0)
    return 2 * size**3 / statistics.median(times) / 1e9


def _rss() -> int:
    with open("/proc/self/status") as fh:
        return int(re.search(r"VmRSS:\s+(\d+)", fh.read()).group(1)) * 1024


def _hwm() -> int:
    with open("/proc/self/status") as fh:
        return int(re.search(r"VmHWM:\s+(\d+)", fh.read()).group(1)) * 1024


def _malloc_trim() -> None:
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakMemory:
    """Peak memory of a block, in bytes above what was in use when it started (see module docstring)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak = 0
        self.how = ""
        self._sampler: threading.Thread | None = None

    def __enter__(self) -> "PeakMemory":
        gc.collect()
        if self.device.type == "cuda":
            sync(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            self.how = "cuda max_memory_allocated"
            return self
        _malloc_trim()
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            self.base = _rss()
            self.how = "VmHWM (reset) - VmRSS"
        except OSError:
            import psutil

            proc = psutil.Process()
            self.base = proc.memory_info().rss
            self._top = self.base
            self._stop = threading.Event()

            def sample() -> None:
                while not self._stop.is_set():
                    self._top = max(self._top, proc.memory_info().rss)
                    time.sleep(0.002)

            self._sampler = threading.Thread(target=sample, daemon=True)
            self._sampler.start()
            self.how = "psutil RSS sampled every 2 ms"
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            sync(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self.base
        elif self._sampler is not None:
            self._stop.set()
            self._sampler.join()
            self.peak = self._top - self.base
        else:
            self.peak = _hwm() - self.base


# --------------------------------------------------------------------------- methods

class Problem:
    """What every method is given: the images, labels, model and settings."""

    def __init__(self, X: np.ndarray, y: np.ndarray, model: torch.nn.Module, n: int, noise_pct: float,
                 chunk: int, device: torch.device, seed: int = 0) -> None:
        self.X, self.y, self.model, self.n = X, y, model, n
        self.noise_pct, self.chunk, self.device, self.seed = noise_pct, chunk, device, seed
        self._cl_model: torch.nn.Module | None = None

    @property
    def passes(self) -> int:
        return self.X.shape[0] * self.n

    def cl_model(self) -> torch.nn.Module:
        if self._cl_model is None:
            self._cl_model = copy.deepcopy(self.model).to(memory_format=torch.channels_last)
        return self._cl_model


def run_loop(p: Problem) -> np.ndarray:
    return smoothgrad_loop(p.X, p.y, p.model, n=p.n, noise_pct=p.noise_pct, rng=p.seed)


def run_batched(p: Problem) -> np.ndarray:
    return smoothgrad(p.X, p.y, p.model, n=p.n, noise_pct=p.noise_pct, rng=p.seed,
                      chunk_size=p.chunk, device=p.device)


def run_batched_device_noise(p: Problem) -> np.ndarray:
    return smoothgrad(p.X, p.y, p.model, n=p.n, noise_pct=p.noise_pct, rng=p.seed,
                      chunk_size=p.chunk, device=p.device, noise_on_device=True)


def run_batched_nchw(p: Problem) -> np.ndarray:
    return smoothgrad(p.X, p.y, p.model, n=p.n, noise_pct=p.noise_pct, rng=p.seed,
                      chunk_size=p.chunk, device=p.device, channels_last=False)


def run_batched_device_noise_nchw(p: Problem) -> np.ndarray:
    return smoothgrad(p.X, p.y, p.model, n=p.n, noise_pct=p.noise_pct, rng=p.seed,
                      chunk_size=p.chunk, device=p.device, noise_on_device=True, channels_last=False)


def run_all_in_one(p: Problem) -> np.ndarray:
    return smoothgrad(p.X, p.y, p.model, n=p.n, noise_pct=p.noise_pct, rng=p.seed,
                      chunk_size=p.passes, device=p.device, noise_on_device=True)


def _captum(p: Problem, model: torch.nn.Module, channels_last: bool, batch: int | None = None) -> np.ndarray:
    from captum.attr import NoiseTunnel, Saliency

    torch.manual_seed(p.seed)
    tunnel = NoiseTunnel(Saliency(model))
    x_all = preprocess_batch(p.X, device=p.device)
    mean_std = float(np.mean(IMAGENET_STD))
    maps = []
    for i in range(p.X.shape[0]):
        x = x_all[i:i + 1]
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        stdev = float(p.noise_pct * p.X[i].std() / 255.0 / mean_std)
        attr = tunnel.attribute(x, nt_type="smoothgrad", nt_samples=p.n, nt_samples_batch_size=batch or p.chunk,
                                stdevs=stdev, target=int(p.y[i]), abs=True)
        maps.append(attr.amax(dim=1)[0].detach().cpu().numpy())
    return np.stack(maps)


def run_captum(p: Problem) -> np.ndarray:
    return _captum(p, p.model, channels_last=False)


def run_captum_channels_last(p: Problem) -> np.ndarray:
    return _captum(p, p.cl_model(), channels_last=True)


def run_captum_batch_n(p: Problem) -> np.ndarray:
    """Captum with all n samples of an image in one batch (``nt_samples_batch_size=n``), as the issue measured."""
    return _captum(p, p.model, channels_last=False, batch=p.n)


def run_pair(p: Problem) -> np.ndarray:
    import saliency.core as saliency_core

    mean = torch.as_tensor(IMAGENET_MEAN, device=p.device)[:, None, None]
    std = torch.as_tensor(IMAGENET_STD, device=p.device)[:, None, None]
    model, device = p.model, p.device

    def call_model_function(x_batch: np.ndarray, call_model_args: dict | None = None,
                            expected_keys: list | None = None) -> dict:
        # x_batch: float (1, H, W, 3) in pixel units; gradients w.r.t. it, same shape.
        x = torch.as_tensor(x_batch, dtype=torch.float32, device=device).requires_grad_(True)
        normalised = (x.permute(0, 3, 1, 2) / 255.0 - mean) / std
        score = model(normalised)[:, call_model_args["target"]].sum()
        (grad,) = torch.autograd.grad(score, x)
        return {saliency_core.INPUT_OUTPUT_GRADIENTS: grad.detach().cpu().numpy()}

    np.random.seed(p.seed)
    method = saliency_core.GradientSaliency()
    maps = []
    for i in range(p.X.shape[0]):
        image = p.X[i].astype(np.float32)
        spread = float(image.max() - image.min()) or 1.0
        mask = method.GetSmoothedMask(image, call_model_function, {"target": int(p.y[i])},
                                      stdev_spread=float(p.noise_pct * p.X[i].std()) / spread,
                                      nsamples=p.n, magnitude=True)
        maps.append(np.abs(mask).max(axis=2))
    return np.stack(maps)


RUNNERS: dict[str, Callable[[Problem], np.ndarray]] = {
    "loop": run_loop, "batched": run_batched, "batched_device_noise": run_batched_device_noise,
    "all_in_one": run_all_in_one, "captum": run_captum, "captum_channels_last": run_captum_channels_last,
    "captum_batch_n": run_captum_batch_n,
    "pair": run_pair, "batched_nchw": run_batched_nchw,
    "batched_device_noise_nchw": run_batched_device_noise_nchw,
}
NEEDS = {"captum": "captum", "captum_channels_last": "captum", "captum_batch_n": "captum", "pair": "saliency"}


def available_methods(requested: list[str]) -> tuple[list[str], list[str]]:
    """Split ``requested`` into runnable methods and skipped ones (with the reason)."""
    ok, skipped = [], []
    for name in requested:
        module = NEEDS.get(name)
        if module and not have(module):
            skipped.append(f"{name} (package {module!r} not installed)")
        else:
            ok.append(name)
    return ok, skipped


def default_methods(device: torch.device) -> list[str]:
    if device.type == "cuda":
        return list(ALL_METHODS)
    # all_in_one would hold every noisy copy at once: ~23 MiB x images x n of RAM.
    return [m for m in ALL_METHODS if m != "all_in_one"]


# --------------------------------------------------------------------------- benchmark

def benchmark(X: np.ndarray, y: np.ndarray, model: torch.nn.Module, *, n: int, noise_pct: float,
              chunk: int, device: torch.device, methods: list[str], repeats: int,
              log: Callable[[str], None] = print) -> dict:
    """Time ``methods`` interleaved over ``repeats`` rounds; return the results as a dict."""
    problem = Problem(X, y, model, n, noise_pct, chunk, device)
    warm = Problem(X[:1], y[:1], model, min(n, 2 * chunk, 8), noise_pct, min(chunk, 4), device)
    flops_fwd = forward_flops(model, device)
    flops_pass = 2 * flops_fwd
    times: dict[str, list[float]] = {m: [] for m in methods}
    peaks: dict[str, list[int]] = {m: [] for m in methods}
    how = ""
    matmul: list[float] = []
    for name in methods:  # warm-up: kernels, oneDNN primitives, cuDNN autotuning, imports
        RUNNERS[name](warm)
    load_before = os.getloadavg()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for rnd in range(repeats):
        matmul.append(matmul_gflops(device))
        for name in methods:
            with PeakMemory(device) as mem:
                t0 = time.perf_counter()
                out = RUNNERS[name](problem)
                sync(device)
                elapsed = time.perf_counter() - t0
            if not np.isfinite(out).all():
                raise RuntimeError(f"{name} returned non-finite values")
            times[name].append(elapsed)
            peaks[name].append(mem.peak)
            how = mem.how
            log(f"  round {rnd + 1}/{repeats} {name:22s} {elapsed:8.3f} s  peak {mem.peak / MIB:8.1f} MiB")
    matmul.append(matmul_gflops(device))
    cpu_per_wall = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    mm = statistics.median(matmul)
    results: dict[str, dict] = {}
    for name in methods:
        med = statistics.median(times[name])
        rate = problem.passes / med
        gflops = rate * flops_pass / 1e9
        results[name] = {
            "times_s": times[name], "median_s": med, "passes_per_s": rate,
            "gflop_per_s": gflops, "fraction_of_matmul": gflops / mm,
            "peak_mib": max(peaks[name]) / MIB,
        }
    for name, res in results.items():
        res["x_loop"] = results["loop"]["median_s"] / res["median_s"] if "loop" in results else None
        res["x_captum"] = results["captum"]["median_s"] / res["median_s"] if "captum" in results else None
    return {
        "images": int(X.shape[0]), "n": n, "passes": problem.passes, "noise_pct": noise_pct,
        "chunk_size": chunk, "device": str(device), "device_name": device_name(device),
        "torch": torch.__version__, "numpy": np.__version__, "threads": torch.get_num_threads(),
        "repeats": repeats, "forward_gflop": flops_fwd / 1e9, "pass_gflop": flops_pass / 1e9,
        "matmul_gflop_per_s": mm, "matmul_runs": matmul, "memory_measure": how,
        # Other processes competing for the cores distort every number: the load average
        # before and after, and the CPU seconds this process got per wall second, show it.
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "cpu_count": os.cpu_count(),
        "process_cpu_per_wall_s": cpu_per_wall,
        "methods": results,
    }


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def format_table(res: dict) -> str:
    """A plain-text table of :func:`benchmark` results."""
    head = (f"{res['passes']} passes ({res['images']} images x n={res['n']}), chunk {res['chunk_size']}, "
            f"{res['device']} ({res['device_name']}), {res['threads']} threads, torch {res['torch']}\n"
            f"matmul fp32 2048^2: {res['matmul_gflop_per_s']:.1f} GFLOP/s; one pass = 2 x "
            f"{res['forward_gflop']:.3f} GFLOP forward; memory: {res['memory_measure']}\n"
            f"load average (1 min) {res['loadavg_before'][0]:.2f} before, {res['loadavg_after'][0]:.2f} after, "
            f"on {res['cpu_count']} CPUs; this process got {res['process_cpu_per_wall_s']:.2f} CPU s per s\n")
    rows = [("method", "median s", "passes/s", "x loop", "x captum", "GFLOP/s", "% matmul", "peak MiB")]
    for name, r in res["methods"].items():
        rows.append((name, f"{r['median_s']:.3f}", f"{r['passes_per_s']:.1f}",
                     "-" if r["x_loop"] is None else f"{r['x_loop']:.2f}",
                     "-" if r["x_captum"] is None else f"{r['x_captum']:.2f}",
                     f"{r['gflop_per_s']:.1f}", f"{100 * r['fraction_of_matmul']:.0f}%",
                     f"{r['peak_mib']:.0f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return head + "\n".join(lines)


def fresh_memory(args: argparse.Namespace, methods: list[str]) -> dict[str, float]:
    """Peak memory of each method run once in its own fresh process (CPU), in MiB."""
    out = {}
    for name in methods:
        cmd = [sys.executable, __file__, "--images", str(args.images), "--n", str(args.n),
               "--device", args.device, "--repeats", "1", "--methods", name, "--data", str(args.data),
               "--noise-pct", str(args.noise_pct), "--quiet", "--no-warmup-table"]
        if args.chunk_size:
            cmd += ["--chunk-size", str(args.chunk_size)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        match = re.search(r"FRESH_PEAK_MIB ([0-9.]+)", proc.stdout)
        out[name] = float(match.group(1)) if match else float("nan")
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=5, help="number of images (default 5)")
    ap.add_argument("--n", type=int, default=50, help="noisy samples per image (default 50)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds; the median is reported (default 3)")
    ap.add_argument("--chunk-size", type=int, default=None,
                    help="noisy copies per pass (default: smoothgrad's default for the device)")
    ap.add_argument("--noise-pct", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--methods", default=None,
                    help=f"comma-separated subset of {','.join(ALL_METHODS + EXTRA_METHODS)}")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("SALIENCY_DATA", DEFAULT_DATA)))
    ap.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    ap.add_argument("--fresh-memory", action="store_true",
                    help="(CPU) also measure each method's peak memory once in a fresh process")
    ap.add_argument("--quiet", action="store_true", help="no per-round log")
    ap.add_argument("--no-warmup-table", action="store_true", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    requested = args.methods.split(",") if args.methods else default_methods(device)
    unknown = [m for m in requested if m not in RUNNERS]
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; choose from {list(ALL_METHODS + EXTRA_METHODS)}")
    methods, skipped = available_methods(requested)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_squeezenet("untrained", device)
    data = load_imagenet_val(path=args.data, download=False)
    X, y = data.X[:args.images], data.y[:args.images]
    chunk = args.chunk_size or default_chunk_size(device)
    if args.no_warmup_table:  # child of --fresh-memory: one measured run, nothing else
        name = methods[0]
        problem = Problem(X, y, model, args.n, args.noise_pct, chunk, device)
        with PeakMemory(device) as mem:
            RUNNERS[name](problem)
        print(f"FRESH_PEAK_MIB {mem.peak / MIB:.1f}")
        return {}
    log = (lambda s: None) if args.quiet else (lambda s: print(s, flush=True))
    res = benchmark(X, y, model, n=args.n, noise_pct=args.noise_pct, chunk=chunk, device=device,
                    methods=methods, repeats=args.repeats, log=log)
    res["skipped"] = skipped
    if args.fresh_memory and device.type == "cpu":
        for name, mib in fresh_memory(args, methods).items():
            res["methods"][name]["fresh_process_peak_mib"] = mib
    print(format_table(res))
    if any("fresh_process_peak_mib" in r for r in res["methods"].values()):
        print("peak MiB in a fresh process: " + ", ".join(
            f"{k} {v['fresh_process_peak_mib']:.0f}" for k, v in res["methods"].items()))
    if skipped:
        print("skipped: " + "; ".join(skipped))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
        print(f"wrote {args.json}")
    return res


if __name__ == "__main__":
    main()
