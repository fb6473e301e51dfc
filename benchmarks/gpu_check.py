"""One-shot GPU check of the fast SmoothGrad: agreement, speed and memory.

Prepared for a single run on a lent GPU machine (H100/H200) that must finish
in under 6 minutes including about a minute of first CUDA initialisation::

    PYTHONPATH=.:instructor python benchmarks/gpu_check.py \\
        --data /path/to/imagenet_val_25.npz --out $OUT/gpu_check.json

Needs only torch, torchvision, numpy, scipy, pillow (psutil optional);
Captum and PAIR's ``saliency`` are used when installed and skipped otherwise.
Weights are the deterministic untrained SqueezeNet (no download).

Sections (each one's results are written to ``--out`` as soon as it ends, so a
run cut short still leaves the earlier ones; a section that would start after
``--budget-s`` seconds is skipped):

1. ``device``: device name, torch/CUDA/cuDNN versions, CUDA init time.
2. ``agreement``: ``smoothgrad`` on CPU and on the GPU with the same numpy seed
   (3 images with nonzero maps, n=8, chunk 8), which feed bitwise identical
   noisy images to the model. Tolerance (the one the CPU tests use, see
   ``tests/test_fast_smoothgrad.py``): per image, mean |gpu - cpu| below 1e-3
   and max below 0.1 of the CPU map's maximum, with TF32 disabled (true fp32
   convolutions). With PyTorch's default (cuDNN may use TF32) the numbers are
   reported against a looser tolerance (mean 2e-2, max 0.5): TF32 keeps 10
   mantissa bits. Also checks that ``noise_on_device=True`` is reproducible
   (two runs with the same seed give identical maps).
3. ``benchmark``: 5 images x n=50 = 250 passes, methods ``loop``, ``batched``
   (numpy noise), ``batched_device_noise``, ``all_in_one`` (one chunk of 250
   with device noise), ``captum``, ``captum_channels_last``, ``pair``, and the
   NCHW variants, interleaved, median of 3 rounds, with
   ``torch.cuda.max_memory_allocated`` per method; then a check that the
   default chunk (``DEFAULT_CHUNK_GPU``) stays under 4 GiB.
4. ``chunk_sweep``: ``batched_device_noise`` on 25 images x n=50 with chunks
   32..512 (median time of 3, peak memory, MiB per sample), on CUDA with
   ``torch.backends.cudnn.benchmark`` off (PyTorch's default) and on.
5. ``prefetch``: ``batched`` (numpy noise) on 25 images x n=50 with and
   without the thread that draws the next chunk's noise (``PREFETCH``).
6. ``large``: 25 images x n=50 = 1250 passes, batched methods and Captum only.

``--quick`` shrinks everything (2 images, n=4, 1 round, chunk 4) to dry-run the
script on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _p in (HERE, ROOT, ROOT / "instructor"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

T_START = time.perf_counter()

import numpy as np  # noqa: E402
import torch  # noqa: E402

import bench_smoothgrad as bench  # noqa: E402
from course_tools.smoothgrad import DEFAULT_CHUNK_GPU, MIB_PER_SAMPLE, smoothgrad  # noqa: E402
from helpers.data import load_imagenet_val  # noqa: E402
from helpers.model import load_squeezenet  # noqa: E402

MIB = 2**20
GPU_BOUND_MIB = 4096
#: Images whose true-class scores are alive under the untrained SqueezeNet.
AGREE_IMAGES = [4, 5, 6]
FP32_TOL = {"mean": 1e-3, "max": 0.1}
TF32_TOL = {"mean": 2e-2, "max": 0.5}


def elapsed() -> float:
    return time.perf_counter() - T_START


def log(msg: str) -> None:
    print(f"[{elapsed():6.1f} s] {msg}", flush=True)


@contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """Allow or forbid TF32 in cuDNN convolutions and cuBLAS matmuls for a block.

    Uses the ``fp32_precision`` API where it exists (torch >= 2.9; mixing it
    with the legacy ``allow_tf32`` flags raises), the legacy flags otherwise.
    """
    conv = getattr(torch.backends.cudnn, "conv", None)
    matmul = torch.backends.cuda.matmul
    if conv is not None and hasattr(conv, "fp32_precision") and hasattr(matmul, "fp32_precision"):
        old = (conv.fp32_precision, matmul.fp32_precision)
        conv.fp32_precision = "tf32" if enabled else "ieee"
        matmul.fp32_precision = "tf32" if enabled else "ieee"
        try:
            yield
        finally:
            conv.fp32_precision, matmul.fp32_precision = old
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        old = (torch.backends.cudnn.allow_tf32, matmul.allow_tf32)
        torch.backends.cudnn.allow_tf32 = enabled
        matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.backends.cudnn.allow_tf32, matmul.allow_tf32 = old


def precision_flags() -> dict[str, str]:
    """The current TF32 settings, for the record."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        return {"cudnn.conv.fp32_precision": str(conv.fp32_precision),
                "cuda.matmul.fp32_precision": str(torch.backends.cuda.matmul.fp32_precision)}
    return {"cudnn.allow_tf32": str(torch.backends.cudnn.allow_tf32),
            "cuda.matmul.allow_tf32": str(torch.backends.cuda.matmul.allow_tf32)}


def rel_errors(maps: np.ndarray, ref: np.ndarray) -> dict[str, list[float]]:
    scale = np.abs(ref).max(axis=(1, 2), keepdims=True)
    scale[scale == 0] = 1.0
    err = np.abs(maps - ref) / scale
    return {"mean": err.mean(axis=(1, 2)).tolist(), "max": err.max(axis=(1, 2)).tolist()}


def within(errs: dict[str, list[float]], tol: dict[str, float]) -> bool:
    return max(errs["mean"]) < tol["mean"] and max(errs["max"]) < tol["max"]


def section_device(device: torch.device) -> dict:
    t0 = time.perf_counter()
    info: dict[str, Any] = {"device": str(device), "torch": torch.__version__, "numpy": np.__version__,
                            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        torch.zeros(1, device=device)
        torch.cuda.synchronize(device)
        props = torch.cuda.get_device_properties(device)
        info.update(name=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(), total_mib=props.total_memory / MIB,
                    capability=f"{props.major}.{props.minor}")
    else:
        info["name"] = bench.device_name(device)
    info["init_s"] = time.perf_counter() - t0
    info["default_precision_flags"] = precision_flags()
    log(f"device: {info.get('name')} ({device}); torch {torch.__version__}; init {info['init_s']:.1f} s")
    return info


def section_agreement(X: np.ndarray, y: np.ndarray, cpu_model: torch.nn.Module, device: torch.device,
                      n: int, chunk: int) -> dict:
    Xs, ys = X[AGREE_IMAGES], y[AGREE_IMAGES]
    seed = 1
    ref = smoothgrad(Xs, ys, cpu_model, n=n, noise_pct=0.15, rng=seed, chunk_size=chunk, device="cpu")
    out: dict[str, Any] = {"images": AGREE_IMAGES, "n": n, "chunk_size": chunk, "seed": seed,
                           "tolerance_fp32": FP32_TOL, "tolerance_tf32": TF32_TOL}
    with tf32(False):
        out["fp32_flags"] = precision_flags()
        fp32 = smoothgrad(Xs, ys, cpu_model, n=n, noise_pct=0.15, rng=seed, chunk_size=chunk, device=device)
    out["fp32"] = rel_errors(fp32, ref)
    out["fp32_ok"] = within(out["fp32"], FP32_TOL)
    default = smoothgrad(Xs, ys, cpu_model, n=n, noise_pct=0.15, rng=seed, chunk_size=chunk, device=device)
    out["default_precision"] = rel_errors(default, ref)
    out["default_precision_ok"] = within(out["default_precision"], TF32_TOL)
    a = smoothgrad(Xs, ys, cpu_model, n=n, noise_pct=0.15, rng=seed, chunk_size=chunk, device=device,
                   noise_on_device=True)
    b = smoothgrad(Xs, ys, cpu_model, n=n, noise_pct=0.15, rng=seed, chunk_size=chunk, device=device,
                   noise_on_device=True)
    out["device_noise_reproducible"] = bool(np.array_equal(a, b))
    out["device_noise_rerun_difference"] = rel_errors(b, a)
    out["device_noise_vs_numpy_noise"] = rel_errors(a, default)
    log(f"agreement fp32: mean {max(out['fp32']['mean']):.2e} max {max(out['fp32']['max']):.2e} "
        f"-> {'OK' if out['fp32_ok'] else 'FAIL'} (tol mean {FP32_TOL['mean']}, max {FP32_TOL['max']})")
    log(f"agreement default precision: mean {max(out['default_precision']['mean']):.2e} "
        f"max {max(out['default_precision']['max']):.2e} -> {'OK' if out['default_precision_ok'] else 'FAIL'}")
    log(f"device noise reproducible: {out['device_noise_reproducible']}")
    return out


def section_benchmark(X: np.ndarray, y: np.ndarray, model: torch.nn.Module, device: torch.device, *,
                      images: int, n: int, chunk: int, repeats: int, methods: list[str]) -> dict:
    ok, skipped = bench.available_methods(methods)
    res = bench.benchmark(X[:images], y[:images], model, n=n, noise_pct=0.1, chunk=chunk, device=device,
                          methods=ok, repeats=repeats, log=log)
    res["skipped"] = skipped
    print(bench.format_table(res), flush=True)
    if skipped:
        log("skipped: " + "; ".join(skipped))
    return res


def section_chunk_sweep(X: np.ndarray, y: np.ndarray, model: torch.nn.Module, device: torch.device, *,
                        images: int, n: int, chunks: list[int]) -> dict:
    """Device-noise SmoothGrad per chunk size, with cuDNN's autotuner off (the default) and on (CUDA)."""
    rows = []
    autotune = [False, True] if device.type == "cuda" else [False]
    old = torch.backends.cudnn.benchmark
    try:
        for tune in autotune:
            torch.backends.cudnn.benchmark = tune
            for chunk in chunks:
                problem = bench.Problem(X[:images], y[:images], model, n, 0.1, chunk, device)
                bench.run_batched_device_noise(problem)  # warm-up (cuDNN algorithms for this batch size)
                times = []
                with bench.PeakMemory(device) as mem:
                    for _ in range(3):
                        t0 = time.perf_counter()
                        bench.run_batched_device_noise(problem)
                        bench.sync(device)
                        times.append(time.perf_counter() - t0)
                dt = float(np.median(times))
                size = min(chunk, problem.passes)
                rows.append({"chunk_size": chunk, "cudnn_benchmark": tune, "seconds": dt,
                             "passes_per_s": problem.passes / dt, "peak_mib": mem.peak / MIB,
                             "mib_per_sample": mem.peak / MIB / size})
                log(f"chunk {chunk:4d} cudnn.benchmark={tune!s:5}: {problem.passes / dt:8.1f} passes/s "
                    f"(median of 3), peak {mem.peak / MIB:8.1f} MiB ({mem.peak / MIB / size:.1f} MiB/sample)")
    finally:
        torch.backends.cudnn.benchmark = old
    return {"images": images, "n": n, "rows": rows}


def section_prefetch(X: np.ndarray, y: np.ndarray, model: torch.nn.Module, device: torch.device, *,
                     images: int, n: int, chunk: int, repeats: int) -> dict:
    """``batched`` (numpy noise) with and without the noise-drawing thread, interleaved."""
    import course_tools.smoothgrad as sg

    problem = bench.Problem(X[:images], y[:images], model, n, 0.1, chunk, device)
    times: dict[str, list[float]] = {"prefetch": [], "no_prefetch": []}
    old = sg.PREFETCH
    try:
        for _ in range(repeats):
            for name, flag in (("prefetch", True), ("no_prefetch", False)):
                sg.PREFETCH = flag
                t0 = time.perf_counter()
                bench.run_batched(problem)
                bench.sync(device)
                times[name].append(time.perf_counter() - t0)
    finally:
        sg.PREFETCH = old
    med = {k: float(np.median(v)) for k, v in times.items()}
    log(f"numpy noise with prefetch thread {problem.passes / med['prefetch']:.1f} passes/s, "
        f"without {problem.passes / med['no_prefetch']:.1f} passes/s")
    return {"images": images, "n": n, "chunk_size": chunk, "times_s": times, "median_s": med}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("SALIENCY_DATA", bench.DEFAULT_DATA)))
    ap.add_argument("--out", type=Path, required=True, help="where to write the JSON results")
    ap.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    ap.add_argument("--quick", action="store_true", help="tiny settings, for a dry run on CPU")
    ap.add_argument("--budget-s", type=float, default=300.0,
                    help="skip sections that would start after this many seconds (default 300)")
    args = ap.parse_args(argv)

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    quick = args.quick
    results: dict[str, Any] = {"argv": sys.argv, "quick": quick, "sections": {}, "errors": {}}

    def save() -> None:
        results["elapsed_s"] = elapsed()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2, default=str))

    def run(name: str, fn: Any, *a: Any, **kw: Any) -> Any:
        if elapsed() > args.budget_s:
            log(f"skipping {name}: past the {args.budget_s:.0f} s budget")
            results["errors"][name] = "skipped (time budget)"
            save()
            return None
        log(f"--- {name}")
        try:
            out = fn(*a, **kw)
            results["sections"][name] = out
        except Exception:  # noqa: BLE001 - record and go on with the other sections
            tb = traceback.format_exc()
            print(tb, file=sys.stderr, flush=True)
            results["errors"][name] = tb
            out = None
        save()
        return out

    run("device", section_device, device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cpu_model = load_squeezenet("untrained", "cpu")
        model = load_squeezenet("untrained", device)
    data = load_imagenet_val(path=args.data, download=False)
    X, y = data.X, data.y
    gpu_chunk = 4 if quick else DEFAULT_CHUNK_GPU

    run("agreement", section_agreement, X, y, cpu_model, device, n=4 if quick else 8, chunk=4 if quick else 8)

    methods = list(bench.ALL_METHODS) + list(bench.EXTRA_METHODS)
    if device.type != "cuda":
        methods.remove("all_in_one")
    bench_res = run("benchmark", section_benchmark, X, y, model, device,
                    images=2 if quick else 5, n=4 if quick else 50, chunk=gpu_chunk,
                    repeats=1 if quick else 3, methods=methods)
    if bench_res:
        peaks = {m: bench_res["methods"][m]["peak_mib"] for m in ("batched", "batched_device_noise")
                 if m in bench_res["methods"]}
        bound = {"chunk_size": gpu_chunk, "bound_mib": GPU_BOUND_MIB, "peaks_mib": peaks,
                 "estimate_mib": MIB_PER_SAMPLE * gpu_chunk,
                 "ok": bool(peaks) and all(v <= GPU_BOUND_MIB for v in peaks.values())}
        if device.type == "cuda" and "all_in_one" in bench_res["methods"]:
            bound["all_in_one_peak_mib"] = bench_res["methods"]["all_in_one"]["peak_mib"]
        results["sections"]["chunk_bound"] = bound
        log(f"default chunk {gpu_chunk}: peaks {', '.join(f'{k} {v:.0f} MiB' for k, v in peaks.items())} "
            f"-> {'within' if bound['ok'] else 'OVER'} {GPU_BOUND_MIB} MiB")
        save()

    chunks = [2, 4] if quick else [32, 64, 128, 256, 512]
    run("chunk_sweep", section_chunk_sweep, X, y, model, device, images=2 if quick else 25,
        n=4 if quick else 50, chunks=chunks)

    run("prefetch", section_prefetch, X, y, model, device, images=2 if quick else 25, n=4 if quick else 50,
        chunk=gpu_chunk, repeats=1 if quick else 3)

    if not quick:
        run("large", section_benchmark, X, y, model, device, images=25, n=50, chunk=gpu_chunk, repeats=3,
            methods=["batched", "batched_device_noise", "batched_device_noise_nchw", "all_in_one", "captum"])

    agree = results["sections"].get("agreement", {})
    bound_ok = results["sections"].get("chunk_bound", {}).get("ok")
    log(f"done in {elapsed():.0f} s; fp32 agreement {'OK' if agree.get('fp32_ok') else 'FAIL/absent'}; "
        f"device noise reproducible {agree.get('device_noise_reproducible')}; chunk bound "
        f"{'OK' if bound_ok else 'FAIL/absent'}; errors in {sorted(results['errors']) or 'none'}; "
        f"results in {args.out}")
    save()
    return 0 if agree.get("fp32_ok") and not results["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
