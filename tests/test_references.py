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
from helpers.autograde import FixedNoise, reference_key, serialise
from helpers.model import weights_fingerprint

ROOT = Path(__file__).resolve().parents[1]
HOMEWORK = ROOT / "source" / "homework" / "04_smoothgrad.ipynb"


def recorded_set(tmp_path: Path, dataset, model, names=tuple(SMOOTHGRAD_CHECKS)) -> Path:
    key_dir = tmp_path / reference_key(dataset.sha256, weights_fingerprint(model))
    for name in names:
        spec = SMOOTHGRAD_CHECKS[name]
        k = spec["images"]
        rng = FixedNoise(spec["fixed_noise_seed"]) if spec["fixed_noise_seed"] is not None else None
        maps = smoothgrad_loop(dataset.X[:k], dataset.y[:k], model, n=spec["n"],
                               noise_pct=spec["noise_pct"], rng=rng)
        serialise(maps, key_dir / "04_smoothgrad", name)
    return key_dir


@pytest.fixture
def env(data_file):
    return {"SALIENCY_DATA": str(data_file), "SALIENCY_WEIGHTS": "untrained"}


def test_table_matches_the_hidden_tests_of_the_homework():
    cells = json.loads(HOMEWORK.read_text())["cells"]
    source = next("".join(c["source"]) for c in cells
                  if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "test_smoothgrad")
    hidden = source.split("### BEGIN HIDDEN TESTS")[1].split("### END HIDDEN TESTS")[0]
    calls = re.findall(r'checks\.compare\("(\w+)", smoothgrad\(X\[:(\d+)\], y\[:(\d+)\], model, n=(\d+), '
                       r'noise_pct=([\d.]+)(?:, rng=FixedNoise\((\d+)\))?\)', hidden)
    found = {name: {"images": int(a), "n": int(n), "noise_pct": float(p),
                    "fixed_noise_seed": int(seed) if seed else None}
             for name, a, b, n, p, seed in calls if a == b}
    assert found == SMOOTHGRAD_CHECKS, "SMOOTHGRAD_CHECKS must list the hidden test's calls exactly"


def test_the_loops_references_pass(tmp_path, dataset, untrained_model, env):
    errors = cross_check_smoothgrad(recorded_set(tmp_path, dataset, untrained_model), env=env)
    assert set(errors) == set(SMOOTHGRAD_CHECKS)
    for err in errors.values():
        assert err["mean"] < 1e-4 and err["max"] < 0.05


def test_a_wrong_reference_is_refused(tmp_path, dataset, untrained_model, env):
    key_dir = recorded_set(tmp_path, dataset, untrained_model, names=("smoothgrad_fixed_noise",))
    npy = key_dir / "04_smoothgrad" / "smoothgrad_fixed_noise.npy"
    maps = np.load(npy)
    np.save(npy, maps * 50 / 49)  # the n/(n-1) slip
    with pytest.raises(ReferenceError, match="smoothgrad_fixed_noise: the solution's maps and "
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


def test_timings_record_each_cell_and_the_conditions(tmp_path):
    import json

    from course_tools.notebooks import CellTiming, Execution
    from course_tools.references import TIMINGS_FILE, ReferenceError, read_timings, timing_record

    run = Execution(tmp_path / "lab" / "01_data_and_model.ipynb", 9.5, None, startup_seconds=1.25,
                    cells=[CellTiming(0, "colab_setup", 0.01), CellTiming(2, "setup", 3.5),
                           CellTiming(4, None, 0.2), CellTiming(14, "test_correct_class_scores", 0.125)])
    record = timing_record([run], concurrent=1, figures=False, load_average=([1.0, 0.5, 0.25], None))
    assert record["format"] == 1 and record["concurrent_kernels"] == 1 and record["cores"] >= 1
    assert record["threads_per_kernel"] >= 1 and record["load_average"]["before"] == [1.0, 0.5, 0.25]
    entry = record["notebooks"]["lab/01_data_and_model.ipynb"]
    assert entry["seconds"] == 9.5 and entry["startup_seconds"] == 1.25
    assert [c["index"] for c in entry["cells"]] == [0, 2, 4, 14]
    assert entry["grade_ids"] == {"colab_setup": 0.01, "setup": 3.5, "test_correct_class_scores": 0.125}
    (tmp_path / TIMINGS_FILE).write_text(json.dumps(record))
    assert read_timings(tmp_path) == json.loads(json.dumps(record))
    (tmp_path / TIMINGS_FILE).write_text("{not json")
    with pytest.raises(ReferenceError, match="is not valid JSON"):
        read_timings(tmp_path)
    (tmp_path / TIMINGS_FILE).write_text('{"format": 2}')
    with pytest.raises(ReferenceError, match="not a timings file of format 1"):
        read_timings(tmp_path)
    with pytest.raises(ReferenceError, match="is missing: run `course references`"):
        read_timings(tmp_path / "elsewhere")


def test_the_reference_set_of_this_course_has_timings_of_every_graded_cell():
    """conftest.py writes the references before the source notebooks run; their timings come with them."""
    import warnings

    from course_tools.references import read_timings
    from helpers.data import locate_data_file, sha256_of
    from helpers.model import load_squeezenet

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_squeezenet(device="cpu")
    folder = ROOT / "references" / reference_key(sha256_of(locate_data_file()), weights_fingerprint(model))
    if not (folder / "manifest.json").is_file():
        pytest.skip("no reference set for these weights (pytest writes one when it collects source/)")
    timings = read_timings(folder)
    notebooks = timings["notebooks"]
    assert set(notebooks) == {"lab/01_data_and_model.ipynb", "lab/02_vanilla_saliency.ipynb",
                              "lab/03_reductions_and_histograms.ipynb", "homework/04_smoothgrad.ipynb"}
    for name, entry in notebooks.items():
        assert "setup" in entry["grade_ids"], name
        assert any(gid.startswith("test_") for gid in entry["grade_ids"]), name
        assert entry["seconds"] >= sum(c["seconds"] for c in entry["cells"])
