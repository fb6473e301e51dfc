"""Tests of the reference cross-check (``course_tools.references.cross_check_smoothgrad``).

The recorded SmoothGrad references are the solution's loop; the fast
SmoothGrad recomputes them independently. Here the "recorded" maps are made
with :func:`smoothgrad_loop` (what the solution does) and written with the
grader's own :func:`helpers.autograde.serialise`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from course_tools.references import SMOOTHGRAD_CHECKS, ReferenceError, cross_check_smoothgrad
from course_tools.smoothgrad import smoothgrad_loop
from helpers.autograde import reference_key, serialise
from helpers.model import weights_fingerprint

ROOT = Path(__file__).resolve().parents[1]
HOMEWORK = ROOT / "source" / "homework" / "04_smoothgrad.ipynb"


def recorded_set(tmp_path: Path, dataset, model, names=tuple(SMOOTHGRAD_CHECKS)) -> Path:
    key_dir = tmp_path / reference_key(dataset.sha256, weights_fingerprint(model))
    for name in names:
        spec = SMOOTHGRAD_CHECKS[name]
        k = spec["images"]
        rng = np.random.default_rng(spec["seed"]) if spec["seed"] is not None else None
        maps = smoothgrad_loop(dataset.X[:k], dataset.y[:k], model, n=spec["n"],
                               noise_pct=spec["noise_pct"], rng=rng)
        serialise(maps, key_dir / "04_smoothgrad", name)
    return key_dir


@pytest.fixture
def env(data_file):
    return {"SALIENCY_DATA": str(data_file), "SALIENCY_WEIGHTS": "untrained"}


def test_table_names_the_hidden_smoothgrad_checks_of_the_homework():
    """Every SmoothGrad check of the homework is cross-checked (a changed argument makes `course references`
    fail the cross-check itself, see test_a_wrong_reference_is_refused)."""
    cells = json.loads(HOMEWORK.read_text())["cells"]
    source = next("".join(c["source"]) for c in cells
                  if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "test_smoothgrad")
    hidden = source.split("### BEGIN HIDDEN TESTS")[1].split("### END HIDDEN TESTS")[0]
    names = re.findall(r'checks\.compare\(\s*"(\w+)", smoothgrad\(', hidden)
    assert sorted(names) == sorted(SMOOTHGRAD_CHECKS), "SMOOTHGRAD_CHECKS must list the hidden SmoothGrad checks"


def test_the_loops_references_pass(tmp_path, dataset, untrained_model, env):
    errors = cross_check_smoothgrad(recorded_set(tmp_path, dataset, untrained_model), env=env)
    assert set(errors) == set(SMOOTHGRAD_CHECKS)
    for err in errors.values():
        assert err["mean"] < 1e-4 and err["max"] < 0.05


def test_a_wrong_reference_is_refused(tmp_path, dataset, untrained_model, env):
    key_dir = recorded_set(tmp_path, dataset, untrained_model, names=("smoothgrad_seeded",))
    npy = key_dir / "04_smoothgrad" / "smoothgrad_seeded.npy"
    maps = np.load(npy)
    np.save(npy, maps * 4 / 3)  # the n/(n-1) slip
    with pytest.raises(ReferenceError, match="smoothgrad_seeded: the solution's maps and "
                                             "course_tools.smoothgrad disagree"):
        cross_check_smoothgrad(key_dir, env=env)


def test_other_weights_are_refused(tmp_path, dataset, untrained_model, env):
    key_dir = recorded_set(tmp_path, dataset, untrained_model, names=("smoothgrad_no_noise",))
    other = key_dir.with_name(reference_key(dataset.sha256, "0" * 12))
    key_dir.rename(other)
    with pytest.raises(ReferenceError, match="cannot cross-check"):
        cross_check_smoothgrad(other, env=env)


def test_a_set_without_smoothgrad_is_skipped(tmp_path, env):
    assert cross_check_smoothgrad(tmp_path / "data-0_weights-0", env=env) == {}
