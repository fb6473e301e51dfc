"""The hostile and malformed submissions of ``test_hostile_submissions.py``: one table, read like a spec.

Each :class:`Case` is one student who hands in the single notebook their attack needs (the other notebooks of
the assignment are then missing and score 0). Answer code may hold the placeholders ``__REFS__`` (the
course's reference folder for the current data and weights), ``__COURSE__`` (the course root) and
``__MARK__`` (a marker unique to the case, to find its processes after the run).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

NB01, NB02, NB03, NB04 = ("01_data_and_model.ipynb", "02_vanilla_saliency.ipynb",
                          "03_reductions_and_histograms.ipynb", "04_smoothgrad.ipynb")
LAB_PARTS = {NB01: {"test_correct_class_scores": 2.0}, NB02: {"test_compute_saliency": 4.0},
             NB03: {"test_max_over_channels": 2.0, "test_maxabs_over_channels": 2.0}}
HOMEWORK_PARTS = {NB04: {"test_smoothgrad": 6.0, "test_figure_files": 2.0}}
MARK = "hostile-marker-7f3c9e"


@dataclass
class Case:
    """One hostile student.

    name: the student's id; notebook: the one notebook handed in; answers: grade_id -> code replacing the
    solution's answer; edit: changes the written submission folder; parts: the exact points of the graded
    parts of ``notebook`` (every other notebook of the assignment is missing and scores 0); message: words
    expected in the messages of the first part that loses points; problem: words expected in the notebook's
    problems.
    """

    name: str
    notebook: str
    parts: dict[str, float]
    answers: dict[str, str] = field(default_factory=dict)
    edit: Callable[[Path], None] | None = None
    message: str | None = None
    problem: str | None = None
    kind: str = ""
    after: Callable[[Path], None] | None = None   # changes made after the submission's timestamp is written
    tight: bool = False   # graded in a second run with short time limits (attacks on time itself)

    @property
    def assignment(self) -> str:
        return "homework" if self.notebook == NB04 else "lab"

    def expected(self) -> dict[str, float]:
        table = HOMEWORK_PARTS if self.assignment == "homework" else LAB_PARTS
        out = {gid: 0.0 for parts in table.values() for gid in parts}
        out.update(self.parts)
        return out


# ----------------------------------------------------------------------------- answer snippets

SOLUTION01 = '''def correct_class_scores(scores, y):
    return scores.gather(1, y.view(-1, 1)).squeeze(1)
'''
WRONG01 = '''def correct_class_scores(scores, y):
    return torch.zeros(len(y))
'''
OUTBOX = '''import os, pathlib, numpy as _np
import helpers.autograde as _ag
_box = pathlib.Path(os.environ["SALIENCY_GRADING_OUTBOX"]) / "01_data_and_model"
_box.mkdir(parents=True, exist_ok=True)
_real_serialise = _ag.serialise
'''
NO_SERIALISE = "_ag.serialise = lambda *a, **k: None\n"

PROBER = '''import os, pathlib, socket, glob
_found = []
_me = os.getpid()
for _p in pathlib.Path("/proc").iterdir():
    if _p.name.isdigit():
        try:
            _cmd = (_p / "cmdline").read_bytes()
        except OSError:
            continue
        if b"ipykernel" in _cmd and int(_p.name) not in (_me, 1):   # 1: this sandbox's own init (bwrap)
            _found.append(f"another kernel: {_p.name}")
        if b"course_tools" in _cmd or b"pytest" in _cmd:
            _found.append(f"a grader process: {_p.name}")
for _d in ("/tmp", "/dev/shm", "/run", "/run/grader", "/home"):
    try:
        for _n in os.listdir(_d):
            if _n.startswith(("saliency-grading", "job-")) or "connection" in _n:
                _found.append(f"{_d}/{_n}")
    except OSError:
        pass
from ipykernel.connect import get_connection_file
_ipc = pathlib.Path(get_connection_file()).parent
try:
    _siblings = [n for n in os.listdir(_ipc.parent) if n != _ipc.name]
    # /run holds this sandbox's own kernel sockets, results outbox and read-only course inputs, nothing else.
    _found += [f"beside my sockets: {n}" for n in _siblings if n not in ("grader", "course")]
    _found += [f"readable: {n}" for n in _siblings if n == "launch.json" and os.access(_ipc.parent / n, os.R_OK)]
except OSError:
    pass
for _f in glob.glob(str(_ipc.parent.parent) + "/*/ipc/*"):
    if not _f.startswith(str(_ipc)):
        _found.append(f"other sockets: {_f}")
for _port in list(range(1, 1025, 37)) + list(range(30000, 65535, 997)):
    _s = socket.socket()
    _s.settimeout(0.05)
    try:
        if _s.connect_ex(("127.0.0.1", _port)) == 0:
            _found.append(f"port {_port}")
    except OSError:
        pass
    finally:
        _s.close()
for _p in ("__COURSE__", "__REFS__"):
    if os.path.exists(_p) and os.listdir(_p):
        _found.append(f"sees {_p}")
if os.path.isdir("/root") and set(os.listdir("/root")) - {".pyenv"}:   # the interpreter lives in /root/.pyenv here
    _found.append(f"sees /root: {os.listdir('/root')}")
if _found:
    raise RuntimeError(f"sandbox leaked: {_found}")
'''

# Replaces the kernel's sockets with links (which the grader's client would follow when it reconnects) and plants
# a file beside them; if any of it works, the answer fails.
SOCKET_SWAP = '''import os, glob
_done = [p for p in glob.glob("/run/kernel/*") if p.endswith(".moved")]
for _path in glob.glob("/run/kernel/kernel-*"):
    try:
        os.rename(_path, _path + ".moved")
        os.symlink("/run/kernel/elsewhere", _path)
        _done.append(_path)
    except OSError:
        pass
try:
    open("/run/kernel/planted", "w").close()
    _done.append("planted")
except OSError:
    pass
if _done or not glob.glob("/run/kernel/kernel-*"):
    raise RuntimeError("the socket folder is the kernel's")
'''

DAEMON = '''import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c",
            "import time, os\\nMARK = '__MARK__-daemon'\\n"
            "for _ in range(600):\\n"
            "    for d in ('/home/student', '/tmp', '/run/grader/outbox'):\\n"
            "        try:\\n            open(os.path.join(d, 'daemon.txt'), 'a').write('x')\\n"
            "        except OSError:\\n            pass\\n"
            "    time.sleep(1)\\n", "__MARK__-daemon"])
    os._exit(0)
os.wait()
'''

STACK_LEAK = '''import inspect
def correct_class_scores(scores, y):
    caller = inspect.currentframe().f_back
    raise ValueError(repr(caller.f_code.co_consts) + repr(sorted(caller.f_locals)) + str(inspect.stack()))
'''

CRAFTED_CLASS = '''Leak = type("BEGIN HIDDEN TESTS checks.compare _SEED manual_seed(31) references/", (Exception,), {})
import inspect
def correct_class_scores(scores, y):
    text = "".join(line for f in inspect.stack() for line in (f.code_context or []))
    raise Leak(text)
'''

HOOK_EARLY_CELL = '''_captured = []
def _grab(info):
    _captured.append(info.raw_cell)
get_ipython().events.register("pre_run_cell", _grab)
def _transform(lines):
    _captured.append("".join(lines))
    return lines
get_ipython().input_transformers_cleanup.append(_transform)
'''
HOOK_ANSWER = '''import helpers.autograde as _ag, json, pathlib, os
def correct_class_scores(scores, y):
    text = "\\n".join(_captured)[-150:]
    return type(text, (), {})()
def _forge(value, folder, name):
    folder.mkdir(parents=True, exist_ok=True)
    text = "\\n".join(_captured)
    (folder / f"{name}.json").write_text(json.dumps({"kind": "other", "type": text, "description": text}))
_ag.serialise = _forge
'''
HOOK_LATE_CELL = "raise RuntimeError('\\n'.join(_captured))\n"

FORK_BOMB = '''import os, time
while True:
    try:
        os.fork()
    except OSError:
        time.sleep(1)
'''
MEMORY_CHILDREN = '''import subprocess, sys
_hogs = [subprocess.Popen([sys.executable, "-c",
         "import time; x = b'x' * (1300 << 20); time.sleep(20)"]) for _ in range(2)]
_codes = [p.wait() for p in _hogs]
# Together they pass the notebook's memory limit: one of them, or the kernel, is stopped. Either way this
# answer must then not count (a surviving kernel raises here); only a missing limit would give full marks.
if any(code != 0 for code in _codes):
    raise MemoryError(f"a child was stopped at the memory limit: {_codes}")
'''
FILL_DISKS = '''import os
def _fill(folder, size_mib=400):
    written = 0
    for k in range(size_mib // 32):
        try:
            with open(os.path.join(folder, f"fill{k}"), "wb") as fh:
                fh.write(b"x" * (32 << 20))
            written += 32
        except OSError:
            break
    return written
print("written MiB:", {d: _fill(d) for d in ("/tmp", "/dev/shm")})
try:
    with open("big.bin", "wb") as fh:
        for _ in range(100):
            fh.write(b"x" * (1 << 20))
except OSError as err:
    print("big file stopped:", type(err).__name__)
for d in ("/tmp", "/dev/shm"):
    for n in os.listdir(d):
        if n.startswith("fill"):
            os.remove(os.path.join(d, n))
'''
WIDGET_FLOOD = '''_kernel = get_ipython().kernel
for _i in range(40):   # widget state is kept by a default nbclient: 320 MiB in the grader
    _kernel.session.send(_kernel.iopub_socket, "comm_msg",
                         {"comm_id": f"c{_i}", "data": {"state": {f"k{_i}": "x" * (8 << 20)}}},
                         parent=_kernel.get_parent("shell"))
'''
DISPLAY_AMPLIFIER = '''from IPython.display import display, update_display, HTML
for _ in range(2000):   # 2000 tiny outputs, then one update makes each of them 15 MiB in the grader
    display({"text/plain": ""}, raw=True, display_id="d")
update_display({"text/plain": "y" * (15 << 20)}, raw=True, display_id="d")
display(HTML("<script>fetch('/api/terminals', {method: 'POST'})</script>"))
'''
MESSAGE_FLOOD = '''from IPython.display import display
for _ in range(200_000):   # tiny outputs: each one costs the grader's CPU to receive
    display({"text/plain": ""}, raw=True)
'''
# 12 MiB messages that answer no request of the grader's (a parent it never sent), signed afresh over content packed
# once: sent far faster than the grader can parse them, and counted all the same.
BIG_MESSAGE_PUMP = '''import time
_k = get_ipython().kernel
_packed = _k.session.pack({"name": "stdout", "text": "x" * (12 << 20)})
_end = time.time() + 20
while time.time() < _end:
    _k.session.send(_k.iopub_socket, "stream", _packed, parent={"msg_id": "elsewhere"})
'''
# One message of 120 parts that all point to one 15 MiB buffer (free for the kernel): ZeroMQ caps each part and
# the number of queued messages, not the parts of one message, so whoever receives it holds 1.8 GB at once.
MANY_PART_MESSAGE = '''import time
_k = get_ipython().kernel
_big = b"x" * (15 << 20)
_k.session.send(_k.iopub_socket, "stream", {"name": "stdout", "text": ""}, parent={"msg_id": "elsewhere"},
                buffers=[_big] * 120)
time.sleep(5)
'''
# A channel the grader never reads would hold every message sent there (1.2 GB here); if it takes any, the
# answer fails.
STDIN_PUMP = '''import time, zmq
_k = get_ipython().kernel
_k.stdin_socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
_packed = _k.session.pack({"prompt": "x" * (12 << 20), "password": False})
_taken = 0
for _ in range(100):
    try:
        _k.session.send(_k.stdin_socket, "input_request", _packed, parent=_k.get_parent("shell"),
                        ident=_k._parent_ident["shell"])
        _taken += 1
    except zmq.ZMQError:
        pass
    time.sleep(0.01)
if _taken:
    raise RuntimeError(f"the grader took {_taken} messages on its stdin channel")
'''
# nbconvert (formgrader) writes an image's width and height into unquoted HTML attributes: script in the instructor's
# browser, unless the grader keeps only whole-number sizes.
SCRIPT_IN_OUTPUT_METADATA = '''import base64, io
from PIL import Image
from IPython.display import display
_png = io.BytesIO()
Image.new("RGB", (4, 4), (200, 0, 0)).save(_png, "PNG")
display({"image/png": base64.b64encode(_png.getvalue()).decode(), "text/plain": "a red square"}, raw=True,
        metadata={"image/png": {"width": "1 onerror=alert(document.domain)", "height": "1 onload=alert(1)",
                                "alt": "x"}, "width": "2 onerror=alert(2)", "filenames": {"image/png": "/etc/passwd"}})
'''
PRINT_FLOOD = '''import sys
for _ in range(30):
    print("x" * (1 << 20))
sys.stdout.write("y" * (24 << 20))
sys.stdout.flush()
'''

# ----------------------------------------------------------------------------- homework snippets

ZERO_SMOOTHGRAD = '''def smoothgrad(X, y, model, n=50, noise_pct=0.1, rng=None):
    return np.zeros(X.shape[:3], dtype=np.float32)
'''
CHEAP_FIGURES = '''vanilla5 = maxabs_over_channels(compute_saliency(helpers.preprocess_batch(X[:5]), torch.from_numpy(y[:5]), model))
smooth = vanilla5.numpy()
fig = plots.show_saliency_grid(X[:5], smooth, y[:5], class_names, cmap="hot")
plots.save_figure(fig, "smoothgrad_maps")
fig = plots.show_smoothgrad_comparison(X[:5], smooth, vanilla5, y[:5], class_names, cmap="hot")
plots.save_figure(fig, "smoothgrad_vs_vanilla")
'''
JUNK_PNG = CHEAP_FIGURES + '''import os
open("smoothgrad_maps.png", "wb").write(b"\\x89PNG\\r\\n\\x1a\\n" + os.urandom(20000))
'''
BLANK_PNG = CHEAP_FIGURES + '''from PIL import Image
_size = Image.open("smoothgrad_maps.png").size
Image.new("RGB", _size, (255, 255, 255)).save("smoothgrad_maps.png", compress_level=0)
'''
WRONG_LAYOUT_PNG = CHEAP_FIGURES + '''from PIL import Image
Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save("smoothgrad_maps.png")
'''
NOISE_PNG_OF_THE_RIGHT_SIZE = CHEAP_FIGURES + '''from PIL import Image
_width, _height = Image.open("smoothgrad_maps.png").size
_noise = np.random.default_rng(0).integers(0, 255, (_height, _width, 3), dtype=np.uint8)
Image.fromarray(_noise).save("smoothgrad_maps.png")
'''
# A valid matplotlib PDF of the right page, over the size a figure needs (white text), that draws no panel.
CONTENT_FREE_PDF = CHEAP_FIGURES + '''import re
_box = re.search(rb"/MediaBox \\[ ([0-9.]+) ([0-9.]+) ([0-9.]+) ([0-9.]+) \\]", open("smoothgrad_maps.pdf", "rb").read())
_fig = plt.figure(figsize=(float(_box.group(3)) / 72, float(_box.group(4)) / 72))
_fig.text(0.5, 0.5, " ".join(str(i) for i in range(3000)), color="white", fontsize=1)
_fig.savefig("smoothgrad_maps.pdf")
'''
# The asked-for plots, of the wrong images: the right layout and sizes, not the asked-for figure.
OTHER_IMAGES_FIGURES = '''vanilla5 = maxabs_over_channels(compute_saliency(helpers.preprocess_batch(X[5:10]), torch.from_numpy(y[5:10]), model))
fig = plots.show_saliency_grid(X[5:10], vanilla5, y[5:10], class_names, cmap="hot")
plots.save_figure(fig, "smoothgrad_maps")
fig = plots.show_smoothgrad_comparison(X[5:10], vanilla5, vanilla5, y[5:10], class_names, cmap="hot")
plots.save_figure(fig, "smoothgrad_vs_vanilla")
'''


# The hidden test's own mistake builder is SmoothGrad itself when called with the right arguments: hand the grader
# what it computes instead of the student's maps (a SmoothGrad without noise, which passes the visible tests).
HIDDEN_BUILDER = '''import helpers.autograde as _ag
_real_compare = _ag.HiddenChecks.compare
def _compare(self, name, value, **kw):
    _ns = get_ipython().user_ns
    if name == "smoothgrad_seeded" and "_smoothgrad_variant" in _ns:
        value = _ns["_smoothgrad_variant"](_ns["_N"], _ns["_N"])
    return _real_compare(self, name, value, **kw)
_ag.HiddenChecks.compare = _compare
def smoothgrad(X, y, model, n=50, noise_pct=0.1, rng=None):
    return maxabs_over_channels(compute_saliency(helpers.preprocess_batch(X), torch.from_numpy(y), model)).numpy()
'''


# ----------------------------------------------------------------------------- edits of the written files

def _nb(folder: Path, name: str = NB01) -> dict:
    return json.loads((folder / name).read_text())


def _save(folder: Path, nb: dict, name: str = NB01) -> None:
    (folder / name).write_text(json.dumps(nb))


def _cell(nb: dict, grade_id: str) -> dict:
    return next(c for c in nb["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id)


def set_answer_meta(value) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        nb = _nb(folder)
        _cell(nb, "correct_class_scores")["metadata"]["nbgrader"] = value
        _save(folder, nb)
    return edit


def set_grade_id(grade_id: str, value) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        nb = _nb(folder)
        _cell(nb, grade_id)["metadata"]["nbgrader"]["grade_id"] = value
        _save(folder, nb)
    return edit


def answer_field(key: str, value) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        nb = _nb(folder)
        cell = _cell(nb, "correct_class_scores")
        if value is None:
            cell.pop(key)
        else:
            cell[key] = value
        _save(folder, nb)
    return edit


def duplicate_answer(folder: Path) -> None:
    nb = _nb(folder)
    cell = _cell(nb, "correct_class_scores")
    wrong = json.loads(json.dumps(cell))
    wrong["source"] = WRONG01
    nb["cells"].insert(nb["cells"].index(cell), wrong)
    _save(folder, nb)


def write_text(text: str) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        (folder / NB01).write_text(text)
    return edit


def write_bytes(data: bytes) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        (folder / NB01).write_bytes(data)
    return edit


def huge_notebook(folder: Path) -> None:
    nb = _nb(folder)
    nb["cells"].append({"cell_type": "markdown", "metadata": {}, "source": "x" * (20 * 2**20)})
    _save(folder, nb)


def insert_cells(before: str | None, cells: list[str], after: str | None = None) -> Callable[[Path], None]:
    """Extra code cells of the student's, before the cell ``before`` (or after the cell ``after``)."""
    def edit(folder: Path) -> None:
        nb = _nb(folder)
        anchor = _cell(nb, before or after)
        index = nb["cells"].index(anchor) + (0 if before else 1)
        for source in reversed(cells):
            nb["cells"].insert(index, {"cell_type": "code", "metadata": {}, "source": source, "outputs": [],
                                       "execution_count": None})
        _save(folder, nb)
    return edit


def notebook_links_to_solution(folder: Path) -> None:
    course = folder.parents[2]
    (folder / NB01).unlink()
    (folder / NB01).symlink_to(course / "source" / "lab" / NB01)


def clutter(folder: Path) -> None:
    (folder / "smoothgrad_maps.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 9000)
    (folder / "classmate").symlink_to(folder.parents[1] / "innocent_lab")
    (folder / NB02).symlink_to(folder.parents[1] / "innocent_lab" / "lab" / NB02)


def timestamp(text: str | None) -> Callable[[Path], None]:
    """Replace timestamp.txt (use as ``after``: write_submission writes it after ``edit``)."""
    def edit(folder: Path) -> None:
        (folder / "timestamp.txt").unlink()
        if text is None:
            (folder / "timestamp.txt").symlink_to("/etc/hostname")
        else:
            (folder / "timestamp.txt").write_text(text)
    return edit


def both(*edits: Callable[[Path], None]) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        for e in edits:
            e(folder)
    return edit


def premade_figures(folder: Path) -> None:
    """Valid figure files of the right layout, beside the notebook (the grader must not use them)."""
    import matplotlib
    import numpy as np
    from PIL import Image

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    course = folder.parents[2]
    spec_path = next((course / "references").glob("*/04_smoothgrad/files.test_figure_files.spec.json"))
    rng = np.random.default_rng(0)
    for name, layout in json.loads(spec_path.read_text())["files"].items():
        if layout["kind"] == "png":
            pixels = rng.integers(0, 255, (layout["height"], layout["width"], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / name)
        else:
            fig = plt.figure(figsize=(layout["width"] / 72, layout["height"] / 72))
            fig.add_subplot().imshow(rng.random((64, 64)))
            fig.savefig(folder / name)
            plt.close(fig)


# ----------------------------------------------------------------------------- the table

def _01(points: float) -> dict[str, float]:
    return {"test_correct_class_scores": points}


CASES: list[Case] = [
    # 1. scores too high: forged, linked or special result files; linked notebooks; files beside the notebook
    Case("outbox_links_to_references_and_passwd", NB01, _01(0.0), {"correct_class_scores": OUTBOX + NO_SERIALISE + '''
for _name, _target in (("correct_scores", "__REFS__/01_data_and_model/correct_scores"),
                       ("correct_scores_other_labels", "/etc/passwd")):
    for _ext in (".json", ".npy"):
        os.symlink(_target + (_ext if _target.startswith("__REFS__") else ""), _box / (_name + _ext))
''' + WRONG01}, message="could not be used", kind="forgery"),
    Case("outbox_fifo_and_directory", NB01, _01(0.0), {"correct_class_scores": OUTBOX + NO_SERIALISE + '''
os.mkfifo(_box / "correct_scores.json")
os.mkfifo(_box / "correct_scores.npy")
os.mkdir(_box / "correct_scores_other_labels.json")
''' + SOLUTION01}, message="could not be used", kind="forgery"),
    Case("outbox_read_only_forged_right_values", NB01, _01(0.0), {"correct_class_scores": OUTBOX + SOLUTION01 + '''
_real_serialise(correct_class_scores(scores, y_t), _box, "correct_scores")
_real_serialise(correct_class_scores(scores, y_t.flip(0)), _box, "correct_scores_other_labels")
for _f in _box.iterdir():
    _f.chmod(0o444)
_box.chmod(0o555)
''' + WRONG01}, message="stopped with PermissionError", kind="forgery"),
    Case("outbox_hard_link", NB01, _01(0.0), {"correct_class_scores": OUTBOX + '''
(_box / "kept").write_bytes(b"")   # a hard link across the sandbox's mounts is refused (EXDEV): link inside
os.link(_box / "kept", _box / "correct_scores.npy")
''' + SOLUTION01}, message="linked from elsewhere", kind="forgery"),
    Case("serialise_patched_to_forge_random_values", NB01, _01(0.0), {"correct_class_scores": OUTBOX + '''
def _forge(value, folder, name):
    _real_serialise(torch.from_numpy(_np.random.default_rng(1).random(25).astype("float32")), folder, name)
_ag.serialise = _forge
''' + WRONG01}, kind="forgery"),
    Case("compare_patched_to_state_a_wrong_shape", NB01, _01(0.0), {"correct_class_scores": OUTBOX + '''
import json as _json
def _compare(self, name, value, **kw):
    (_box / f"{name}.json").write_text(_json.dumps({"kind": "torch", "type": "torch.Tensor", "shape": [25]}))
    _np.save(_box / f"{name}.npy", _np.zeros(3, dtype="float32"))
_ag.HiddenChecks.compare = _compare
''' + WRONG01}, message="shape it states", kind="forgery"),
    Case("checks_and_autograde_patched_everything", NB01, _01(0.0), {"correct_class_scores": '''
import numpy, torch, helpers.checks, helpers.autograde
numpy.testing.assert_allclose = lambda *a, **k: None
torch.allclose = lambda *a, **k: True
helpers.checks.compare_arrays = lambda *a, **k: helpers.checks.Verdict(True, "ok", {})
helpers.autograde.HiddenChecks.compare = lambda *a, **k: None
helpers.autograde.serialise = lambda *a, **k: None
''' + WRONG01}, kind="forgery"),
    Case("imports_the_instructor_package", NB01, _01(0.0), {"correct_class_scores":
         "from course_tools.smoothgrad import smoothgrad\nimport course_tools\n" + SOLUTION01},
         kind="forgery"),
    Case("instructor_package_is_unreachable", NB01, _01(2.0), {"correct_class_scores": '''
import importlib.util, sys, pathlib
for _hidden in ("course_tools", "beyond"):   # beyond.smoothgrad answers the homework
    assert importlib.util.find_spec(_hidden) is None, _hidden
    assert not any((pathlib.Path(p) / _hidden).exists() for p in sys.path if p), _hidden
try:
    import course_tools
    raise SystemExit("the instructor package is importable")
except ImportError:
    pass
''' + SOLUTION01}, kind="forgery"),
    Case("notebook_is_a_link_to_the_solution", NB01, _01(0.0), edit=notebook_links_to_solution,
         problem="not a regular file", kind="forgery"),
    Case("clutter_beside_the_notebook", NB01, {**_01(2.0)}, edit=clutter, kind="forgery"),
    Case("hw_figures_handed_in_beside_the_notebook", NB04, {"test_smoothgrad": 0.0, "test_figure_files": 0.0},
         {"smoothgrad": ZERO_SMOOTHGRAD, "make_figures": "pass\n"}, edit=premade_figures, kind="forgery"),
    Case("hw_hidden_mistake_builder_called_right", NB04, {"test_smoothgrad": 0.0, "test_figure_files": 2.0},
         {"smoothgrad": HIDDEN_BUILDER, "make_figures": CHEAP_FIGURES}, kind="forgery"),
    Case("hw_png_magic_then_junk", NB04, {"test_smoothgrad": 0.0, "test_figure_files": 0.0},
         {"smoothgrad": ZERO_SMOOTHGRAD, "make_figures": JUNK_PNG}, message="does not decode", kind="forgery"),
    Case("hw_blank_png", NB04, {"test_smoothgrad": 0.0, "test_figure_files": 0.0},
         {"smoothgrad": ZERO_SMOOTHGRAD, "make_figures": BLANK_PNG}, message="blank", kind="forgery"),
    Case("hw_png_of_the_wrong_layout", NB04, {"test_smoothgrad": 0.0, "test_figure_files": 0.0},
         {"smoothgrad": ZERO_SMOOTHGRAD, "make_figures": WRONG_LAYOUT_PNG}, message="layout", kind="forgery"),
    Case("hw_noise_png_of_the_right_size", NB04, {"test_smoothgrad": 0.0, "test_figure_files": 0.0},
         {"smoothgrad": ZERO_SMOOTHGRAD, "make_figures": NOISE_PNG_OF_THE_RIGHT_SIZE},
         message="smoothgrad_maps.png: its panels are not arranged", kind="forgery"),
    Case("hw_content_free_pdf_of_the_right_page", NB04, {"test_smoothgrad": 0.0, "test_figure_files": 0.0},
         {"smoothgrad": ZERO_SMOOTHGRAD, "make_figures": CONTENT_FREE_PDF},
         message="smoothgrad_maps.pdf: its panels are not arranged", kind="forgery"),
    Case("hw_figures_of_other_images", NB04, {"test_smoothgrad": 0.0, "test_figure_files": 0.0},
         {"smoothgrad": ZERO_SMOOTHGRAD, "make_figures": OTHER_IMAGES_FIGURES},
         message="row 1 of panels does not show what the exercise asks for", kind="forgery"),
    # 2. honest students must not lose points
    Case("hw_rng_idiom_honest", NB04, {"test_smoothgrad": 6.0, "test_figure_files": 2.0},
         {"make_figures": CHEAP_FIGURES}, kind="honest"),
    Case("prober_of_other_kernels", NB01, _01(2.0), {"correct_class_scores": PROBER + SOLUTION01},
         after=timestamp(None), kind="neighbours"),
    Case("swaps_its_kernel_sockets_for_links", NB01, _01(2.0), {"correct_class_scores": SOCKET_SWAP + SOLUTION01},
         kind="neighbours"),
    Case("daemon_that_outlives_its_notebook", NB01, _01(2.0), {"correct_class_scores": DAEMON + SOLUTION01},
         after=timestamp("the twelfth of never"), kind="neighbours"),
    # 3. malformed notebooks never stop the class run
    Case("notebook_is_a_json_list", NB01, _01(0.0), edit=write_text("[1, 2, 3]"),
         problem="not a valid notebook", kind="malformed"),
    Case("cells_is_not_a_list", NB01, _01(0.0), edit=write_text(json.dumps(
         {"cells": {"0": "x"}, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})),
         problem="not a valid notebook", kind="malformed"),
    Case("binary_garbage", NB01, _01(0.0), edit=write_bytes(bytes(range(256)) * 64),
         problem="not a valid notebook", kind="malformed"),
    Case("notebook_of_20_mib", NB01, _01(0.0), edit=huge_notebook, problem="too large", kind="malformed"),
    Case("answer_meta_is_a_string", NB01, _01(2.0), edit=set_answer_meta("solution"),
         problem="answer cell 'correct_class_scores' was deleted", kind="malformed"),
    Case("answer_meta_is_an_int", NB01, _01(2.0), edit=set_answer_meta(7),
         problem="answer cell 'correct_class_scores' was deleted", kind="malformed"),
    Case("answer_grade_id_is_a_list", NB01, _01(2.0), edit=set_grade_id("correct_class_scores", ["a", "b"]),
         problem="answer cell 'correct_class_scores' was deleted", kind="malformed"),
    Case("answer_grade_id_is_huge", NB01, _01(2.0), edit=set_grade_id("correct_class_scores", "g" * 100000),
         problem="answer cell 'correct_class_scores' was deleted", kind="malformed"),
    Case("test_grade_id_is_an_int", NB01, _01(0.0), edit=set_grade_id("test_correct_class_scores", 12),
         problem="test cell 'test_correct_class_scores' was deleted", kind="malformed"),
    Case("duplicate_answer_grade_ids", NB01, _01(2.0), edit=duplicate_answer, kind="malformed"),
    Case("answer_without_cell_type", NB01, _01(0.0), edit=answer_field("cell_type", None),
         problem="answer cell 'correct_class_scores' was deleted", kind="malformed"),
    Case("answer_source_is_a_number", NB01, _01(0.0), edit=answer_field("source", 42),
         problem="answer cell 'correct_class_scores' was deleted", kind="malformed"),
    # 4. hidden material never reaches the feedback
    Case("exception_carries_the_callers_frame", NB01, _01(0.0), {"correct_class_scores": STACK_LEAK},
         kind="leak"),
    Case("exception_class_named_like_hidden_code", NB01, _01(0.0), {"correct_class_scores": CRAFTED_CLASS},
         kind="leak"),
    Case("ipython_hooks_capture_the_hidden_cell", NB01, _01(0.0), {"correct_class_scores": HOOK_ANSWER},
         edit=both(insert_cells("correct_class_scores", [HOOK_EARLY_CELL]),
                   insert_cells(None, [HOOK_LATE_CELL], after="test_correct_class_scores")), kind="leak"),
    # 5. resources
    Case("fork_bomb", NB01, _01(0.0), edit=insert_cells("correct_class_scores", [FORK_BOMB]),
         problem="interrupted at its time limit", kind="resources", tight=True),
    Case("two_children_over_the_memory_cap", NB01, _01(0.0), {"correct_class_scores": MEMORY_CHILDREN + SOLUTION01},
         kind="resources"),
    Case("fills_tmp_shm_and_writes_a_big_file", NB01, _01(2.0), {"correct_class_scores": FILL_DISKS + SOLUTION01},
         kind="resources"),
    Case("prints_54_mib", NB01, _01(2.0), {"correct_class_scores": PRINT_FLOOD + SOLUTION01}, kind="resources"),
    Case("widget_messages_flood_the_grader", NB01, _01(2.0), {"correct_class_scores": WIDGET_FLOOD + SOLUTION01},
         kind="resources"),
    Case("message_flood", NB01, _01(0.0), {"correct_class_scores": MESSAGE_FLOOD + SOLUTION01},
         problem="more than 50000 messages", kind="resources"),
    Case("big_messages_faster_than_the_grader_parses", NB01, _01(0.0),
         {"correct_class_scores": BIG_MESSAGE_PUMP + SOLUTION01}, problem="MiB of messages", kind="resources"),
    Case("one_message_of_many_parts", NB01, _01(0.0), {"correct_class_scores": MANY_PART_MESSAGE + SOLUTION01},
         problem="made the grader hold more than", kind="resources"),
    Case("messages_on_the_stdin_channel", NB01, _01(2.0), {"correct_class_scores": STDIN_PUMP + SOLUTION01},
         kind="resources"),
    Case("output_metadata_that_would_run_script_in_formgrader", NB01, _01(2.0),
         {"correct_class_scores": SCRIPT_IN_OUTPUT_METADATA + SOLUTION01}, kind="leak"),
    Case("display_updates_amplify_outputs", NB01, _01(2.0),
         {"correct_class_scores": DISPLAY_AMPLIFIER + SOLUTION01}, kind="resources"),
    Case("cells_each_just_under_the_cell_limit", NB01, _01(0.0),
         edit=insert_cells("correct_class_scores", ["import time\ntime.sleep(__SLEEP__)\n"] * 6),
         problem="ran past its", kind="resources", tight=True),
]

#: Honest students graded in the same run: name -> (assignment, notebooks handed in or None for all).
INNOCENTS = {"innocent_lab": ("lab", None), "innocent_01": ("lab", (NB01,))}


def substitute(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace(key, value)
    return text


def selected(cases: list[Case]) -> list[Case]:
    """The cases to run: all of them, or those named in ``$HOSTILE_CASES`` (comma-separated substrings)."""
    wanted = [w for w in os.environ.get("HOSTILE_CASES", "").split(",") if w]
    return [c for c in cases if not wanted or any(w in c.name for w in wanted)]
