"""The reference arrays of the untrained network, pinned by a committed digest.

``course references`` records what the solution notebooks compute, and every test run compares the
solutions with those recordings, i.e. with themselves. This test runs the solutions once (in a temporary
copy of the course) and compares each recorded array's shape and a few statistics with
``tests/data/reference_digest_untrained.json``: a changed solution (or helper it uses) must explain the
change by updating that file, with

    python tests/test_reference_digest.py --write

The statistics (mean, mean of absolute values, standard deviation, largest absolute value, and the mean of
the first and of the last image) are compared with a relative tolerance of 1e-3, far above float32 noise
between machines and far below what a wrong reduction, a missing absolute value or a wrong image does.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DIGEST = ROOT / "tests" / "data" / "reference_digest_untrained.json"
RTOL = 1e-3


def digest_of(key_dir: Path) -> dict[str, dict]:
    """Shape and statistics of every recorded array, by ``<notebook>/<check>``."""
    out = {}
    for path in sorted(key_dir.glob("*/*.npy")):
        a = np.load(path, allow_pickle=False).astype(np.float64)
        flat = a.reshape(a.shape[0], -1) if a.ndim >= 2 else a.reshape(1, -1)
        out[f"{path.parent.name}/{path.stem}"] = {
            "shape": list(a.shape),
            "mean": float(a.mean()), "mean_abs": float(np.abs(a).mean()), "std": float(a.std()),
            "max_abs": float(np.abs(a).max()),
            "first_mean": float(flat[0].mean()), "last_mean": float(flat[-1].mean()),
        }
    return out


def record_untrained(tmp: Path, data: Path) -> Path:
    """Run the source solutions with the untrained network in a copy of the course; return the set."""
    from course_tools.references import make_references

    course = tmp / "course"
    course.mkdir()
    shutil.copy2(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
    shutil.copytree(ROOT / "source", course / "source",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "*.png", "*.pdf"))
    env = {"SALIENCY_WEIGHTS": "untrained", "SALIENCY_DATA": str(data)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make_references(course, env=env, log=lambda line: None)


@pytest.fixture(scope="module")
def recorded(untrained_references):
    """The solutions' references for the untrained network, recorded once per test session."""
    return untrained_references


def test_the_solutions_references_match_the_committed_digest(recorded):
    committed = json.loads(DIGEST.read_text())
    actual = digest_of(recorded)
    assert sorted(actual) == sorted(committed["arrays"]), "the set of hidden checks changed: update the digest"
    assert recorded.name.split("_")[-1] == committed["weights_fingerprint"], (
        "the untrained network changed: regenerate the digest and say why in the commit")
    problems = []
    for name, want in committed["arrays"].items():
        got = actual[name]
        if got["shape"] != want["shape"]:
            problems.append(f"{name}: shape {got['shape']}, digest {want['shape']}")
            continue
        for stat in ("mean", "mean_abs", "std", "max_abs", "first_mean", "last_mean"):
            scale = max(abs(want[stat]), 1e-3 * want["max_abs"], 1e-12)
            if abs(got[stat] - want[stat]) > RTOL * scale:
                problems.append(f"{name}: {stat} {got[stat]:.6g}, digest {want[stat]:.6g}")
    assert not problems, "the solutions' outputs changed:\n" + "\n".join(problems)


def test_the_digest_would_catch_a_changed_solution(recorded):
    # The comparison is sharp enough: a map with its absolute value dropped, or off by 1%, is caught.
    committed = json.loads(DIGEST.read_text())["arrays"]
    name = next(n for n in committed if committed[n]["max_abs"] > 0 and len(committed[n]["shape"]) >= 3)
    want = committed[name]
    for factor in (1.01, -1.0):
        changed = {k: (v * factor if isinstance(v, float) else v) for k, v in want.items()}
        assert any(abs(changed[s] - want[s]) > RTOL * max(abs(want[s]), 1e-3 * want["max_abs"], 1e-12)
                   for s in ("mean", "mean_abs", "std", "max_abs"))


if __name__ == "__main__":  # pragma: no cover - writes the committed digest
    if "--write" not in sys.argv:
        sys.exit("usage: python tests/test_reference_digest.py --write")
    import tempfile

    sys.path[:0] = [str(ROOT), str(ROOT / "instructor")]
    data = Path(os.environ.get("SALIENCY_DATA") or ROOT.parent / "shared" / "data" / "imagenet_val_25.npz")
    os.environ.update({"SALIENCY_WEIGHTS": "untrained", "SALIENCY_DATA": str(data)})
    with tempfile.TemporaryDirectory() as tmp:
        key_dir = record_untrained(Path(tmp), data)
        DIGEST.parent.mkdir(exist_ok=True)
        DIGEST.write_text(json.dumps({"weights_fingerprint": key_dir.name.split("_")[-1],
                                      "arrays": digest_of(key_dir)}, indent=1) + "\n")
    print(f"wrote {DIGEST}")
