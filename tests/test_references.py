"""Tests of the reference cross-check (``course_tools.references.cross_check_references``).

A hidden check declares its cross-check where it is written
(``checks.compare(..., cross_check={"method": "smoothgrad", ...})``); recording
puts the declaration into the check's spec, and ``course references``
recomputes the value with the instructor's independent implementation. Here
the "recorded" maps are made with :func:`smoothgrad_loop` (what the solution
does) and recorded through :class:`helpers.autograde.HiddenChecks` itself.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from course_tools.references import ReferenceError, cross_check_references, declared_cross_checks
from course_tools.smoothgrad import smoothgrad_loop
from helpers.autograde import RECORD_ENV, HiddenChecks, reference_key
from helpers.checks import TOLERANCE
from helpers.model import weights_fingerprint

ROOT = Path(__file__).resolve().parents[1]
HOMEWORK = ROOT / "source" / "homework" / "04_smoothgrad.ipynb"
CHECKS = {"smoothgrad_no_noise": {"method": "smoothgrad", "images": 3, "n": 2, "noise_pct": 0.0, "seed": None},
          "smoothgrad_seeded": {"method": "smoothgrad", "images": 3, "n": 4, "noise_pct": 0.25, "seed": 7}}


def recorded_set(tmp_path: Path, dataset, model, monkeypatch, names=tuple(CHECKS)) -> Path:
    monkeypatch.setenv(RECORD_ENV, str(tmp_path))
    checks = HiddenChecks(dataset.sha256, weights_fingerprint(model), "04_smoothgrad")
    for name in names:
        spec = CHECKS[name]
        k = spec["images"]
        rng = np.random.default_rng(spec["seed"]) if spec["seed"] is not None else None
        maps = smoothgrad_loop(dataset.X[:k], dataset.y[:k], model, n=spec["n"], noise_pct=spec["noise_pct"], rng=rng)
        checks.compare(name, maps, cell="test_smoothgrad", expect="numpy", cross_check=spec)
    monkeypatch.delenv(RECORD_ENV)
    return tmp_path / checks.key


@pytest.fixture
def env(data_file):
    return {"SALIENCY_DATA": str(data_file), "SALIENCY_WEIGHTS": "untrained", "SALIENCY_MODEL": "squeezenet1_1"}


def test_every_smoothgrad_check_of_the_homework_declares_its_cross_check():
    """The hidden test says what the cross-check needs: each value computed by `smoothgrad(` declares one."""
    cells = json.loads(HOMEWORK.read_text())["cells"]
    source = next("".join(c["source"]) for c in cells
                  if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "test_smoothgrad")
    hidden = source.split("### BEGIN HIDDEN TESTS")[1].split("### END HIDDEN TESTS")[0]
    calls = re.split(r"checks\.compare\(", hidden)[1:]
    smoothgrad_calls = [call for call in calls if re.match(r'\s*"\w+", smoothgrad\(', call)]
    assert len(smoothgrad_calls) == 2
    assert all('cross_check={"method": "smoothgrad"' in call for call in smoothgrad_calls)


def test_recording_keeps_the_declaration_in_the_spec(tmp_path, dataset, untrained_model, monkeypatch):
    key_dir = recorded_set(tmp_path, dataset, untrained_model, monkeypatch, names=("smoothgrad_no_noise",))
    [(notebook, name, spec)] = declared_cross_checks(key_dir)
    assert (notebook, name, spec["cross_check"]) == ("04_smoothgrad", "smoothgrad_no_noise", CHECKS["smoothgrad_no_noise"])
    assert spec["tolerance"] == TOLERANCE


def test_the_loops_references_pass(tmp_path, dataset, untrained_model, env, monkeypatch):
    errors = cross_check_references(recorded_set(tmp_path, dataset, untrained_model, monkeypatch), env=env)
    assert set(errors) == {f"04_smoothgrad/{name}" for name in CHECKS}
    for err in errors.values():
        assert err["mean"] < TOLERANCE / 10 and err["max"] < 50 * TOLERANCE


def test_a_wrong_reference_is_refused(tmp_path, dataset, untrained_model, env, monkeypatch):
    key_dir = recorded_set(tmp_path, dataset, untrained_model, monkeypatch, names=("smoothgrad_seeded",))
    npy = key_dir / "04_smoothgrad" / "smoothgrad_seeded.npy"
    np.save(npy, np.load(npy) * 4 / 3)  # the n/(n-1) slip
    with pytest.raises(ReferenceError, match="04_smoothgrad/smoothgrad_seeded: the solution's values and the "
                                             "independent smoothgrad disagree"):
        cross_check_references(key_dir, env=env)


def test_the_agreement_asked_is_the_checks_own_tolerance(tmp_path, dataset, untrained_model, env, monkeypatch):
    """Shifted by twice the check's tolerance of each image's scale: refused; declare 3 times it: accepted."""
    key_dir = recorded_set(tmp_path, dataset, untrained_model, monkeypatch, names=("smoothgrad_seeded",))
    npy = key_dir / "04_smoothgrad" / "smoothgrad_seeded.npy"
    maps = np.load(npy)
    np.save(npy, maps + 2 * TOLERANCE * maps.max(axis=(1, 2), keepdims=True))
    with pytest.raises(ReferenceError, match="disagree .*the check's tolerance 0.001 allows"):
        cross_check_references(key_dir, env=env)
    spec_path = npy.with_name("smoothgrad_seeded.spec.json")
    spec_path.write_text(json.dumps({**json.loads(spec_path.read_text()), "tolerance": 3 * TOLERANCE}))
    assert cross_check_references(key_dir, env=env)["04_smoothgrad/smoothgrad_seeded"]["mean"] < 3 * TOLERANCE


def test_an_unknown_method_or_wrong_arguments_are_refused(tmp_path, dataset, untrained_model, env, monkeypatch):
    key_dir = recorded_set(tmp_path, dataset, untrained_model, monkeypatch, names=("smoothgrad_no_noise",))
    spec_path = key_dir / "04_smoothgrad" / "smoothgrad_no_noise.spec.json"
    spec = json.loads(spec_path.read_text())
    spec["cross_check"] = {"method": "gradcam"}
    spec_path.write_text(json.dumps(spec))
    with pytest.raises(ReferenceError, match="asks for a cross-check by 'gradcam'; known: smoothgrad"):
        cross_check_references(key_dir, env=env)
    spec["cross_check"] = {"method": "smoothgrad", "images": 3, "samples": 2}
    spec_path.write_text(json.dumps(spec))
    with pytest.raises(ReferenceError, match="the cross-check's arguments .* do not fit 'smoothgrad'"):
        cross_check_references(key_dir, env=env)


def test_a_declaration_that_is_not_plain_values_is_refused_where_it_is_written(dataset, untrained_model):
    checks = HiddenChecks(dataset.sha256, weights_fingerprint(untrained_model), "04_smoothgrad")
    with pytest.raises(TypeError, match="cross_check must be a dict with a 'method' name"):
        checks.compare("x", np.zeros(2), cell="c", cross_check={"images": 3})
    with pytest.raises(TypeError, match="cross_check argument 'rng' must be a number"):
        checks.compare("x", np.zeros(2), cell="c", cross_check={"method": "smoothgrad", "rng": np.random.default_rng()})


def test_other_weights_are_refused(tmp_path, dataset, untrained_model, env, monkeypatch):
    key_dir = recorded_set(tmp_path, dataset, untrained_model, monkeypatch, names=("smoothgrad_no_noise",))
    other = key_dir.with_name(key_dir.name.replace(weights_fingerprint(untrained_model), "0" * 12))
    key_dir.rename(other)
    with pytest.raises(ReferenceError, match="cannot cross-check"):
        cross_check_references(other, env=env)


def test_a_set_without_declarations_is_skipped(tmp_path, env):
    assert cross_check_references(tmp_path / "data-0_weights-0", env=env) == {}


def test_timings_record_each_cell_and_the_conditions(tmp_path):
    import json

    from course_tools.runner import CellTiming, Execution
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


def _test_cell(gid: str, points: float) -> dict:
    import nbformat

    cell = nbformat.v4.new_code_cell("pass")
    cell.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "points": points,
                                 "grade_id": gid, "schema_version": 3}
    return cell


def test_a_test_cell_with_points_and_no_hidden_check_is_named(tmp_path):
    import nbformat

    from course_tools.references import unchecked_test_cells

    nb = nbformat.v4.new_notebook()
    nb.cells = [_test_cell("test_checked", 2), _test_cell("test_unchecked", 3), _test_cell("test_no_points", 0),
                nbformat.v4.new_code_cell("x = 1")]
    path = tmp_path / "source" / "lab" / "01_x.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(nb, path)
    key_dir = tmp_path / "key"
    (key_dir / "01_x").mkdir(parents=True)
    (key_dir / "01_x" / "maps.spec.json").write_text(json.dumps({"cell": "test_checked", "tolerance": 1e-3}))
    [line] = unchecked_test_cells([path], key_dir)
    assert line.startswith("lab/01_x.ipynb: test cell 'test_unchecked' (3 points) records no hidden check")
    (key_dir / "01_x" / "files.test_unchecked.spec.json").write_text(json.dumps({"cell": "test_unchecked"}))
    assert unchecked_test_cells([path], key_dir) == []


def test_a_reference_set_is_outdated_when_the_code_of_source_changes(tmp_path):
    import nbformat

    from course_tools.references import code_fingerprint, outdated

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("Some prose."), _test_cell("test_a", 1)]
    path = tmp_path / "source" / "lab" / "01_x.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(nb, path)
    key_dir = tmp_path / "references" / "key"
    key_dir.mkdir(parents=True)
    manifest = key_dir / "manifest.json"
    manifest.write_text(json.dumps({"key": "key"}))
    assert outdated(tmp_path, key_dir) == ["it was recorded by an older version of the course tools"]
    manifest.write_text(json.dumps({"key": "key", "code": {"lab/01_x.ipynb": code_fingerprint(path)}}))
    assert outdated(tmp_path, key_dir) == []
    nb.cells[0].source = "Other prose."               # prose may change
    nbformat.write(nb, path)
    assert outdated(tmp_path, key_dir) == []
    nb.cells[1].source = "assert True"                # code may not
    nbformat.write(nb, path)
    assert outdated(tmp_path, key_dir) == ["lab/01_x.ipynb: its code changed since the references were recorded"]
    nbformat.write(nb, path.with_name("02_y.ipynb"))
    manifest.write_text(json.dumps({"key": "key", "code": {"lab/01_x.ipynb": code_fingerprint(path),
                                                           "lab/00_gone.ipynb": "0" * 64}}))
    assert outdated(tmp_path, key_dir) == ["lab/02_y.ipynb: new since the references were recorded",
                                           "lab/00_gone.ipynb: removed since the references were recorded"]
