"""The "beyond the lab" code on a GPU: the companion notebooks and the attribution methods on CUDA.

The tests run everything on the CPU. This script, for one run on a lent GPU
machine (which has torch, matplotlib and scipy but no Jupyter), checks what
the tests cannot:

1. ``attribution``: each method of ``beyond.attribution`` on CUDA
   against the same method on the CPU, same inputs and the same explicit
   noise (largest difference relative to each image's largest attribution,
   reported with TF32 off and with PyTorch's default precision);
2. ``notebooks``: the code cells of ``notebooks/sanity_checks``,
   ``smoothgrad_knobs`` and ``gradient_family`` run in order in one namespace
   per notebook, in full (no ``SALIENCY_QUICK``), with the model on CUDA
   (``helpers.load_squeezenet`` picks it); figures go to Agg. Time per notebook.

::

    PYTHONPATH=.:instructor python3 benchmarks/gpu_companions.py --data imagenet_val_25.npz --out $OUT/companions.json
    PYTHONPATH=.:instructor .venv/bin/python benchmarks/gpu_companions.py --out /tmp/c.json   # CPU dry run
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _p in (ROOT, ROOT / "instructor"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import torch  # noqa: E402

NOTEBOOKS = ["sanity_checks", "smoothgrad_knobs", "gradient_family"]
IMAGES = [4, 5, 6]


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    scale = b.abs().flatten(1).amax(dim=1).clamp_min(1e-30)
    return float(((a - b).abs().flatten(1).amax(dim=1) / scale).max())


def section_attribution(device: torch.device) -> dict:
    import helpers
    from beyond import attribution

    data = helpers.load_imagenet_val()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cpu_model = helpers.load_squeezenet("untrained", "cpu")
        gpu_model = helpers.load_squeezenet("untrained", device)
    x = helpers.preprocess_batch(data.X[IMAGES])
    t = torch.from_numpy(data.y[IMAGES])
    noise = torch.randn((len(IMAGES), 4, *x.shape[1:]), generator=torch.Generator().manual_seed(0)) * 0.3
    black = helpers.preprocess_batch(np.zeros_like(data.X[IMAGES]))

    def run(model: torch.nn.Module, dev: torch.device) -> dict[str, torch.Tensor]:
        xd, td = x.to(dev), t.to(dev)
        tunnel = attribution.noise_tunnel(xd, td, model, n=4, noise=noise.to(dev))
        return {"gradient": attribution.vanilla_gradient(xd, td, model),
                "gradient_x_input": attribution.gradient_times_input(xd, td, model),
                **tunnel,
                "integrated_gradients": attribution.integrated_gradients(xd, td, model, baseline=black.to(dev),
                                                                         steps=16)}

    ref = run(cpu_model, torch.device("cpu"))
    out: dict = {}
    conv = torch.backends.cudnn.conv
    for precision in ("ieee", "default"):
        old = conv.fp32_precision
        if precision == "ieee":
            conv.fp32_precision = "ieee"
        try:
            got = run(gpu_model, device)
        finally:
            conv.fp32_precision = old
        out[precision] = {k: relative_difference(got[k], ref[k]) for k in ref}
        print(f"attribution, GPU vs CPU ({precision} precision): "
              + ", ".join(f"{k} {v:.1e}" for k, v in out[precision].items()), flush=True)
    return out


def run_notebook(name: str) -> dict:
    path = ROOT / "notebooks" / f"{name}.ipynb"
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    namespace: dict = {"__name__": "__main__", "display": print}
    start = time.perf_counter()
    for cell in cells:
        source = "".join(cell["source"])
        exec(compile(source, f"<{name}>", "exec"), namespace)
    seconds = time.perf_counter() - start
    model = namespace.get("model")
    device = str(next(model.parameters()).device) if model is not None else "?"
    import matplotlib.pyplot as plt

    figures = len(plt.get_fignums())
    plt.close("all")
    print(f"notebook {name}: {seconds:.1f} s on {device}, {figures} figures", flush=True)
    return {"seconds": seconds, "device": device, "figures": figures}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="the data file (default: $SALIENCY_DATA)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.data:
        os.environ["SALIENCY_DATA"] = str(args.data.resolve())
    os.environ["SALIENCY_WEIGHTS"] = "untrained"
    os.environ.pop("SALIENCY_QUICK", None)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    results: dict = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                     "torch": torch.__version__, "sections": {}, "errors": {}}

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))

    jobs = [("attribution", lambda: section_attribution(device))]
    jobs += [(f"notebook_{name}", lambda name=name: run_notebook(name)) for name in NOTEBOOKS]
    for key, job in jobs:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                results["sections"][key] = job()
        except Exception:  # noqa: BLE001 - record and go on
            results["errors"][key] = traceback.format_exc()
            print(f"{key} FAILED:\n{results['errors'][key]}", file=sys.stderr, flush=True)
        save()
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
