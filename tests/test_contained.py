"""``course_tools.contained``: a graded notebook's runner in a process and control group of its own."""

from __future__ import annotations

import threading

import nbformat
import psutil
import pytest

from course_tools.contained import run_contained
from course_tools.grading import SUBMISSION
from course_tools.runner import TimeLimits
from course_tools.sandbox import KernelJob, SandboxPolicy, prerequisites


def _nb(*sources: str):
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])


def _job(tmp_path, isolated: bool) -> KernelJob:
    return KernelJob("contained", SandboxPolicy(memory_mib=1024, isolated=isolated), inputs=tmp_path).open(tmp_path)


def test_the_runner_process_hands_back_what_happened_and_the_outputs(tmp_path):
    nb = _nb("print('hello')", "1 / 0", "print('after')")
    job = _job(tmp_path, isolated=False)
    try:
        result = run_contained(nb, job, limits=TimeLimits(cell=60, notebook=120), untrusted=SUBMISSION,
                               notebook=tmp_path / "nb.ipynb")
    finally:
        job.close()
    assert result.cell_errors == {1: "ZeroDivisionError"} and result.crashed is None
    assert nb.cells[0].outputs[0]["text"] == "hello\n" and nb.cells[2].outputs[0]["text"] == "after\n"
    assert [c.execution_count for c in nb.cells] == [1, 2, 3]


@pytest.mark.skipif(prerequisites() != [], reason="needs root, bubblewrap and control groups")
def test_a_message_of_many_parts_costs_the_runner_process_not_the_grader(tmp_path):
    # 40 parts that all point to one 15 MiB buffer: 600 MB for whoever receives the message.
    nb = _nb("k = get_ipython().kernel\nbig = b'x' * (15 << 20)\n"
             "k.session.send(k.iopub_socket, 'stream', {'name': 'stdout', 'text': ''}, parent={'msg_id': 'x'},\n"
             "               buffers=[big] * 40)\nimport time\ntime.sleep(5)", "print('never')")
    me, peak, done = psutil.Process(), [0], threading.Event()
    before = me.memory_info().rss

    def sample():
        while not done.wait(0.02):
            peak[0] = max(peak[0], me.memory_info().rss)

    sampler = threading.Thread(target=sample)
    sampler.start()
    job = _job(tmp_path, isolated=True)
    try:
        result = run_contained(nb, job, limits=TimeLimits(cell=60, notebook=120), untrusted=SUBMISSION,
                               notebook=tmp_path / "nb.ipynb", memory_mib=256)
    finally:
        job.close()
        done.set()
        sampler.join()
    assert result.crashed == "the notebook made the grader hold more than 256 MiB of its messages and was stopped"
    assert nb.cells[1].outputs == [] and peak[0] - before < 200 * 2**20


def test_run_contained_refuses_a_tiny_memory(tmp_path):
    with pytest.raises(ValueError, match="memory_mib must be an int of at least 64"):
        run_contained(_nb("1"), None, limits=TimeLimits(cell=1), untrusted=SUBMISSION, notebook=tmp_path,
                      memory_mib=8)
