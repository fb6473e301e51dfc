"""``course_tools.notebooks``: the headless runner's errors, thread shares, timings and quiet kernels."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course_tools import notebooks as nbtools
from course_tools.notebooks import (CHECK_TAG, available_cores, execute_notebook, format_execution, is_check_cell,
                                    kernel_thread_env, strip_outputs)

ROOT = Path(__file__).resolve().parents[1]


def _notebook(tmp_path: Path, *sources: str, grade_ids: tuple = ()) -> Path:
    cells = [nbformat.v4.new_code_cell(s) for s in sources]
    for cell, grade_id in zip(cells, grade_ids):
        if grade_id:
            cell.metadata["nbgrader"] = {"grade_id": grade_id}
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    return path


def test_thread_share_divides_the_cores(monkeypatch):
    for name in nbtools.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(nbtools, "available_cores", lambda: 8)
    monkeypatch.setattr(nbtools.os, "getloadavg", lambda: (0.2, 0.1, 0.0))
    assert kernel_thread_env(1)["OMP_NUM_THREADS"] == "8"
    assert kernel_thread_env(3) == {name: "2" for name in nbtools.THREAD_VARIABLES}
    assert kernel_thread_env(20)["MKL_NUM_THREADS"] == "1"
    monkeypatch.setattr(nbtools.os, "getloadavg", lambda: (5.4, 5.0, 4.0))   # other work keeps 5 cores busy
    assert kernel_thread_env(1)["OMP_NUM_THREADS"] == "3"
    assert kernel_thread_env(2)["OMP_NUM_THREADS"] == "3"
    monkeypatch.setattr(nbtools.os, "getloadavg", lambda: (12.0, 9.0, 4.0))   # overloaded: one thread each
    assert kernel_thread_env(1)["OMP_NUM_THREADS"] == "1"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")   # the user's choice wins
    assert kernel_thread_env(2)["OPENBLAS_NUM_THREADS"] == "3"
    with pytest.raises(ValueError, match="concurrent must be a whole number of kernels, at least 1"):
        kernel_thread_env(0)
    assert available_cores.__module__ == nbtools.__name__


def test_available_cores_is_within_the_affinity():
    assert 1 <= nbtools.available_cores() <= len(os.sched_getaffinity(0))


def test_the_kernel_gets_its_thread_share_before_torch_starts(tmp_path, monkeypatch):
    for name in nbtools.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(nbtools, "available_cores", lambda: 4)
    monkeypatch.setattr(nbtools.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    path = _notebook(tmp_path, "import os, torch\nprint(os.environ['OMP_NUM_THREADS'], torch.get_num_threads())")
    out = tmp_path / "out.ipynb"
    result = execute_notebook(path, write_to=out, concurrent=2)
    assert result.error is None
    assert nbformat.read(out, as_version=4).cells[0].outputs[0].text == "2 2\n"


def test_a_cell_past_its_time_limit_is_one_line_with_timings(tmp_path):
    path = _notebook(tmp_path, "x = 1", "import time\ntime.sleep(30)", "y = 2", grade_ids=("", "slow_cell", ""))
    result = execute_notebook(path, timeout=2)
    assert result.timed_out
    assert result.error == "cell 1 (slow_cell) was stopped at the time limit of 2 s per cell"
    assert [c.index for c in result.cells] == [0, 1]
    assert result.cells[1].grade_id == "slow_cell" and result.cells[1].seconds >= 2
    assert 0 < result.startup_seconds < result.seconds < 30
    assert "FAILED: cell 1 (slow_cell) was stopped at the time limit" in format_execution(result)


def test_a_failing_cell_and_a_dead_kernel_are_named(tmp_path):
    result = execute_notebook(_notebook(tmp_path, "x = 1", "1 / 0"))
    assert result.error.startswith("cell 1 failed: ") and "ZeroDivisionError" in result.error
    assert not result.timed_out
    result = execute_notebook(_notebook(tmp_path, "import os\nos._exit(3)"))
    assert result.error.startswith("the kernel died in cell 0")


def test_timings_cover_every_code_cell(tmp_path):
    result = execute_notebook(_notebook(tmp_path, "a = 1", "import time\ntime.sleep(0.3)", grade_ids=("a", "b")))
    assert result.error is None
    assert [(c.index, c.grade_id) for c in result.cells] == [(0, "a"), (1, "b")]
    assert result.cells[1].seconds >= 0.3


def test_bad_timeout_is_refused(tmp_path):
    with pytest.raises(ValueError, match="timeout must be a whole number of seconds"):
        execute_notebook(_notebook(tmp_path, "x = 1"), timeout=0)


def test_kernels_print_no_tcp_warning_and_a_stopped_kernel_no_traceback(tmp_path):
    path = _notebook(tmp_path, "print('hi')", "import time\ntime.sleep(30)")
    script = ("import sys; from pathlib import Path; from course_tools.notebooks import execute_notebook; "
              f"r = execute_notebook(Path({str(path)!r}), timeout=2); print(r.error)")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "stopped at the time limit" in run.stdout
    assert "without encryption" not in run.stderr + run.stdout
    assert "Traceback" not in run.stderr and "ZMQError" not in run.stderr
    assert "Task was destroyed" not in run.stderr


def test_check_cells_are_tagged_not_commented():
    cell = nbformat.v4.new_code_cell("print(1)", metadata={"tags": [CHECK_TAG]},
                                     outputs=[nbformat.v4.new_output("stream", name="stdout", text="1\n")])
    assert is_check_cell(cell)
    nb = strip_outputs(nbformat.v4.new_notebook(cells=[cell], metadata={"widgets": {"state": {}}}))
    assert nb.cells[0].metadata["expected_output"] == "1\n" and nb.cells[0].outputs == []
    assert "widgets" not in nb.metadata
    students_see = [c.source for p in sorted((ROOT / "release").glob("*/*.ipynb"))
                    for c in nbformat.read(p, as_version=4).cells]
    assert not any("NBVAL" in source for source in students_see)
