"""``course_tools.runner``: the one notebook runner, with trusted and untrusted code.

The kernels here are plain local ones (the sandbox's kernel is covered by the grading tests): what is tested is
the runner's own part, the limits its watchdog enforces, the caps on what an untrusted kernel sends, and the
words it uses.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest

from course_tools.notebooks import python_kernel_env
from course_tools.runner import Kernel, TimeLimits, Untrusted, error_summary, run_notebook

CAPS = Untrusted(cell_output_bytes=20_000, notebook_output_bytes=50_000, message_bytes=2**20, messages=300)


def _nb(*sources: str, grade_ids: tuple = ()):
    cells = [nbformat.v4.new_code_cell(s) for s in sources]
    for cell, gid in zip(cells, grade_ids):
        if gid:
            cell.metadata["nbgrader"] = {"grade_id": gid}
    return nbformat.v4.new_notebook(cells=cells)


def _kernel(tmp_path: Path) -> Kernel:
    env = {**os.environ, **python_kernel_env(), "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return Kernel(cwd=tmp_path, env=env, arguments=("--IPKernelApp.log_level=ERROR",))


def _run(tmp_path, nb, **kwargs):
    kwargs.setdefault("limits", TimeLimits(cell=20))
    return run_notebook(nb, _kernel(tmp_path), notebook=tmp_path / "nb.ipynb", **kwargs)


@pytest.mark.parametrize("output, shown", [
    ({"ename": "AssertionError", "evalue": "seed 7, X[:4]"}, "AssertionError"),
    ({"ename": "ValueError", "evalue": "checks.compare(...)"}, "ValueError"),
    ({"ename": "seed_7_images_4", "evalue": "x"}, "an exception"),
    ({"ename": ["list"], "evalue": "x"}, "an exception"),
    ({}, "an exception"),
    ("not an output", "an exception"),
])
def test_untrusted_errors_are_named_by_builtin_type_only(output, shown):
    assert error_summary(output) == shown


def test_untrusted_code_runs_every_cell_and_its_words_never_reach_a_message(tmp_path):
    nb = _nb("raise ValueError('BEGIN HIDDEN TESTS secret')",
             "Leak = type('references/ secret', (Exception,), {})\nraise Leak('secret')",
             "import time\ntime.sleep(30)",
             "print('last cell ran')", grade_ids=("", "", "slow", ""))
    result = _run(tmp_path, nb, limits=TimeLimits(cell=[20, 20, 1.5, 20]), untrusted=CAPS, stop_on_error=False)
    assert result.cell_errors == {0: "ValueError", 1: "an exception", 2: "KeyboardInterrupt"}
    assert result.timed_out == [2] and result.crashed is None
    assert nb.cells[3].outputs[0]["text"] == "last cell ran\n"
    assert [c.index for c in result.cells] == [0, 1, 2, 3] and result.cells[2].grade_id == "slow"
    assert "secret" not in json.dumps(result.__dict__, default=str)


def test_untrusted_outputs_are_capped_and_inert(tmp_path):
    nb = _nb("from IPython.display import HTML, display\n"
             "display(HTML('<script>alert(1)</script>'))\n"
             "display({'text/plain': 'shown', 'text/html': '<b>x</b>'}, raw=True, display_id='d')\n"
             "from IPython.display import update_display\n"
             "update_display({'text/plain': 'y' * 100000}, raw=True, display_id='d')",
             "print('x' * 30000)",
             "for _ in range(10):\n    print('z' * 15000, flush=True)")
    result = _run(tmp_path, nb, untrusted=CAPS, stop_on_error=False)
    assert result.outputs_truncated and result.error is None
    text = json.dumps([cell.outputs for cell in nb.cells])
    assert "<script>" not in text and "text/html" not in text and "yyy" not in text
    kept = [o["data"] for o in nb.cells[0].outputs if "data" in o]
    assert {"text/plain": "shown"} in kept and all(set(data) <= {"text/plain", "image/png"} for data in kept)
    assert nb.cells[1].outputs == []                    # over the cell's cap
    assert len(text) < CAPS.notebook_output_bytes + 10_000


def test_untrusted_cells_keep_a_bounded_number_of_outputs(tmp_path):
    caps = Untrusted(cell_output_bytes=20_000, notebook_output_bytes=50_000, message_bytes=2**20, messages=3000,
                     cell_outputs=50)
    nb = _nb("from IPython.display import display\nfor _ in range(400):\n    display({'text/plain': ''}, raw=True)")
    result = _run(tmp_path, nb, untrusted=caps, stop_on_error=False)
    assert len(nb.cells[0].outputs) == 50 and result.outputs_truncated


def test_untrusted_output_metadata_keeps_only_image_sizes(tmp_path):
    # nbconvert writes width and height into unquoted HTML attributes: a string there is script in formgrader.
    nb = _nb("from IPython.display import display\n"
             "display({'image/png': 'iVBORw0KGgo=', 'text/plain': 'img'}, raw=True, metadata={\n"
             "    'image/png': {'width': '1 onerror=alert(1)', 'height': 7, 'alt': 'x'},\n"
             "    'width': '2 onerror=alert(2)',\n"
             "    'text/html': {'width': 3}, 'filenames': {'image/png': '/etc/passwd'}})")
    _run(tmp_path, nb, untrusted=CAPS, stop_on_error=False)
    assert [o["metadata"] for o in nb.cells[0].outputs] == [{"image/png": {"height": 7}}]


def test_a_message_flood_stops_the_kernel(tmp_path):
    nb = _nb("from IPython.display import display\nfor _ in range(5000):\n    display({'text/plain': ''}, raw=True)\n"
             "import time\ntime.sleep(30)", "print('never')")
    result = _run(tmp_path, nb, untrusted=CAPS, stop_on_error=False)
    assert result.crashed == "the notebook sent more than 300 messages and was stopped"
    assert nb.cells[1].outputs == [] and result.seconds < 25


SEND_UNASKED = ("k = get_ipython().kernel\n"
                "def send(n, text=''):\n"
                "    for _ in range(n):   # messages that answer no request of the runner's\n"
                "        k.session.send(k.iopub_socket, 'stream', {'name': 'stdout', 'text': text}, "
                "parent={'msg_id': 'elsewhere'})\n")


def test_messages_that_answer_no_request_count_too(tmp_path):
    nb = _nb(SEND_UNASKED + "send(5000)\nimport time\ntime.sleep(30)", "print('never')")
    result = _run(tmp_path, nb, untrusted=CAPS, stop_on_error=False)
    assert result.crashed == "the notebook sent more than 300 messages and was stopped"
    assert nb.cells[1].outputs == [] and result.seconds < 25


def test_the_bytes_a_notebook_sends_are_capped(tmp_path):
    caps = Untrusted(cell_output_bytes=20_000, notebook_output_bytes=50_000, message_bytes=2**20, messages=300,
                     received_bytes=20 * 2**20)
    nb = _nb(SEND_UNASKED + "send(60, 'x' * 500_000)\nimport time\ntime.sleep(30)", "print('never')")
    result = _run(tmp_path, nb, untrusted=caps, stop_on_error=False)
    assert result.crashed == "the notebook sent more than 20 MiB of messages and was stopped"
    assert result.seconds < 25


def test_an_untrusted_kernel_has_no_stdin_channel_to_fill(tmp_path):
    nb = _nb("import zmq\nk = get_ipython().kernel\nk.stdin_socket.setsockopt(zmq.ROUTER_MANDATORY, 1)\n"
             "try:\n"
             "    k.session.send(k.stdin_socket, 'input_request', {'prompt': '', 'password': False},\n"
             "                   parent=k.get_parent('shell'), ident=k._parent_ident['shell'])\n"
             "    print('the runner would queue it')\n"
             "except zmq.ZMQError:\n"
             "    print('nobody listens')",
             "input('never answered')")
    result = _run(tmp_path, nb, untrusted=CAPS, stop_on_error=False)
    assert nb.cells[0].outputs[0]["text"] == "nobody listens\n"
    assert result.cell_errors == {1: "an exception"} and result.timed_out == []   # StdinNotImplementedError


def test_a_kernel_that_sends_faster_than_the_runner_reads_costs_bounded_memory(tmp_path):
    import threading

    import psutil

    caps = Untrusted(cell_output_bytes=20_000, notebook_output_bytes=50_000, message_bytes=2 * 2**20,
                     messages=10**6, received_bytes=2**40)
    # 500 messages of 1.5 MiB, each signed afresh over content packed once: far faster to send than to parse.
    nb = _nb("k = get_ipython().kernel\npacked = k.session.pack({'name': 'stdout', 'text': 'x' * (1536 << 10)})\n"
             "for _ in range(500):\n"
             "    k.session.send(k.iopub_socket, 'stream', packed, parent={'msg_id': 'elsewhere'})\n"
             "import time\ntime.sleep(2)")
    me, peak, done = psutil.Process(), [0], threading.Event()
    before = me.memory_info().rss

    def sample():
        while not done.wait(0.02):
            peak[0] = max(peak[0], me.memory_info().rss)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        result = _run(tmp_path, nb, untrusted=caps, stop_on_error=False)
    finally:
        done.set()
        sampler.join()
    assert result.error is None
    assert peak[0] - before < 300 * 2**20, f"the runner grew by {(peak[0] - before) >> 20} MiB"


def test_a_message_cannot_make_a_cells_execution_count_large(tmp_path):
    # Any message may carry an execution_count, which becomes the cell's; the last cell's stays when the kernel dies.
    nb = _nb("k = get_ipython().kernel\n"
             "k.session.send(k.iopub_socket, 'execute_input', {'code': '', 'execution_count': 'x' * 500_000},\n"
             "               parent=k.get_parent('shell'))\n"
             "import os, signal, time\ntime.sleep(0.5)\nos.kill(os.getpid(), signal.SIGKILL)")
    result = _run(tmp_path, nb, untrusted=CAPS, stop_on_error=False)
    assert result.crashed and len(json.dumps(nb)) < 10_000


def test_a_cell_that_ignores_the_interrupt_is_killed_after_the_grace(tmp_path):
    nb = _nb("import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(60)", "print('never')")
    result = _run(tmp_path, nb, limits=TimeLimits(cell=1, grace=1), untrusted=CAPS, stop_on_error=False)
    assert result.crashed == "a cell ignored the interrupt at its time limit; the kernel was stopped"
    assert result.timed_out == [0] and result.cell_errors[0] == result.crashed
    assert [c.index for c in result.cells] == [0] and result.seconds < 30


def test_the_whole_notebook_has_its_own_limit(tmp_path):
    nb = _nb(*["import time\ntime.sleep(1.5)"] * 6)
    result = _run(tmp_path, nb, limits=TimeLimits(cell=10, notebook=3), untrusted=CAPS, stop_on_error=False)
    assert result.notebook_timed_out
    assert result.crashed == "the notebook ran past its 3 s limit and was stopped"
    assert len(result.cells) < 6 and result.timed_out == []


def test_trusted_code_stops_at_the_first_error_and_names_it(tmp_path):
    nb = _nb("x = 1", "raise ValueError('the instructor may read this')", "print('never')", grade_ids=("", "b", ""))
    result = _run(tmp_path, nb)
    assert result.error == "cell 1 (b) failed: ValueError: the instructor may read this"
    assert [c.index for c in result.cells] == [0, 1] and nb.cells[2].outputs == []


def test_an_allowed_error_is_no_failure(tmp_path):
    nb = _nb("1 / 0", "print('ran')")
    nb.cells[0].metadata["tags"] = ["raises-exception"]
    result = _run(tmp_path, nb)
    assert result.error is None and result.cell_errors == {}
    assert nb.cells[1].outputs[0]["text"] == "ran\n"


@pytest.mark.parametrize("make, message", [
    (lambda p: TimeLimits(cell=0), "cell must be a positive number of seconds"),
    (lambda p: TimeLimits(cell=[1, True]), r"cell\[1\] must be a positive number"),
    (lambda p: TimeLimits(cell=1, notebook=-2), "notebook must be a positive number"),
    (lambda p: TimeLimits(cell=1, grace="5"), "grace must be a positive number"),
    (lambda p: Kernel(cwd=str(p)), "cwd must be a pathlib.Path"),
    (lambda p: Kernel(cwd=p, transport="udp"), "transport must be 'tcp' or 'ipc'"),
    (lambda p: Kernel(cwd=p, argv="python"), "argv must be a non-empty list of strings"),
    (lambda p: Untrusted(cell_output_bytes=0, notebook_output_bytes=1, message_bytes=1, messages=1),
     "cell_output_bytes must be a positive int"),
    (lambda p: run_notebook(_nb("x = 1"), Kernel(cwd=p), notebook=p, limits=TimeLimits(cell=[1, 2])),
     "limits.cell has 2 limits for a notebook of 1 cells"),
    (lambda p: run_notebook({"cells": "x"}, Kernel(cwd=p), notebook=p, limits=TimeLimits(cell=1)),
     "nb must be a notebook with a list of cells"),
    (lambda p: run_notebook(_nb("x = 1"), "python3", notebook=p, limits=TimeLimits(cell=1)),
     "kernel must be a Kernel"),
])
def test_bad_arguments_are_refused_by_name(tmp_path, make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make(tmp_path)


def test_one_runner_serves_the_instructor_and_the_grader():
    """Neither the notebook tools nor the grader drive nbclient themselves."""
    root = Path(__file__).resolve().parents[1] / "instructor" / "course_tools"
    for name in ("notebooks.py", "grading.py", "references.py", "cli.py", "classroom.py"):
        text = (root / name).read_text()
        assert "NotebookClient" not in text and "nbclient" not in text, name
