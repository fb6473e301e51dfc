"""Running a notebook's code cells in a fresh kernel: one nbclient client, one watchdog, one result.

Every notebook the course's tools execute goes through :func:`run_notebook`: the instructor's notebooks
(``course run``, ``course references``, ``course strip --refresh``, through
:func:`course_tools.notebooks.execute_notebook`) and the students' (``course grade``, through
:func:`course_tools.grading.execute_sandboxed`). What differs between them is handed in, never a second runner:

* :class:`Kernel`: which kernel runs and what its host can do to it. A plain ``python3`` kernel for the
  instructor; for a student, the grading sandbox's launcher on ZeroMQ *ipc* sockets, plus a way to kill every
  process it started (its control group) and to tell why it died (out of memory);
* :class:`TimeLimits`: seconds per cell (one for all, or one per cell), for the whole notebook, and the grace
  between the interrupt at a cell's limit and killing the kernel. A watchdog thread enforces them, so a cell
  that floods the runner with messages or ignores the interrupt is stopped all the same;
* :class:`Untrusted` (or ``None`` for trusted code): caps on what the kernel's messages may cost (bytes per
  message, per cell and per notebook; a budget of messages and bytes that counts every message the kernel sends,
  on any channel, whatever it claims to answer; a few unread messages queued per channel; no stdin or control
  channel to fill), only inert outputs kept (no widgets, display updates, HTML or scripts), and no text the code
  produced (exception messages, the kernel's stderr) in any message;
* ``stop_on_error``: stop at the first failing cell (the instructor's notebooks must run clean), or run every
  cell whatever happens (grading: each test cell counts on its own).

A cell that fails, runs past its limit, a kernel that dies and a lost connection are reported in one line
(:attr:`Execution.error`) and in structured fields; :func:`run_notebook` never raises for what the notebook's
code does.
"""

from __future__ import annotations

import builtins
import json
import logging
import re
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import psutil
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, DeadKernelError

from .nbgrader_cells import grade_id

_BUILTIN_ERRORS = {name for name, value in vars(builtins).items()
                   if isinstance(value, type) and issubclass(value, BaseException)}


# ----------------------------------------------------------------------------- what goes in

@dataclass(frozen=True)
class Kernel:
    """Which kernel a notebook runs in, and what its host can do to it.

    Attributes
    ----------
    cwd : pathlib.Path
        Working folder the kernel (or its launcher) starts in.
    env : mapping, optional
        The kernel process's whole environment (default: this process's).
    name : str
        The installed kernel spec to start, unless ``argv`` is given.
    argv : sequence of str, optional
        The kernel's command instead of an installed spec's (``"{connection_file}"`` stands for the connection
        file), e.g. the grading sandbox's launcher.
    arguments : sequence of str
        Extra arguments appended to the kernel's command.
    transport : str
        ZeroMQ transport: ``"tcp"`` (on ``ip``, localhost by default) or ``"ipc"`` (sockets named ``ip``-N).
    ip : str, optional
        The address or, for ``ipc``, the socket path prefix.
    connection_file : str, optional
        Where the connection file is written.
    kill_all : callable, optional
        ``kill_all(wait_seconds)`` kills every process the kernel started (a control group), waiting up to that
        long for them to end; called when the kernel must stop and after every run.
    death_reason : callable, optional
        ``death_reason()``: why the kernel died, in one line, when its host knows (out of memory), else ``None``.
    ready : callable, optional
        ``ready()``: called once the kernel answers, before the first cell runs (the notebook's code has not
        run yet), e.g. to take back what the kernel needed only to start.
    """

    cwd: Path
    env: Mapping[str, str] | None = None
    name: str = "python3"
    argv: Sequence[str] | None = None
    arguments: Sequence[str] = ()
    transport: str = "tcp"
    ip: str | None = None
    connection_file: str | None = None
    kill_all: Callable[[float], Any] | None = None
    death_reason: Callable[[], str | None] | None = None
    ready: Callable[[], Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.cwd, Path):
            raise TypeError(f"cwd must be a pathlib.Path, got {self.cwd!r}")
        if self.transport not in ("tcp", "ipc"):
            raise ValueError(f"transport must be 'tcp' or 'ipc', got {self.transport!r}")
        if self.argv is not None and (isinstance(self.argv, str) or not self.argv
                                      or not all(isinstance(a, str) for a in self.argv)):
            raise ValueError(f"argv must be a non-empty list of strings, got {self.argv!r}")


def _seconds(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class TimeLimits:
    """How long a notebook may run.

    Attributes
    ----------
    cell : float or sequence of float
        Seconds for each code cell: one limit for all, or one per cell index (as many as the notebook has cells).
    notebook : float, optional
        Seconds for the whole notebook, kernel start-up included (default: no limit).
    grace : float
        Seconds a cell has to stop after the interrupt at its limit before the kernel is killed.
    """

    cell: float | Sequence[float]
    notebook: float | None = None
    grace: float = 5.0

    def __post_init__(self) -> None:
        if isinstance(self.cell, (list, tuple)):
            object.__setattr__(self, "cell", tuple(_seconds(v, f"cell[{i}]") for i, v in enumerate(self.cell)))
        else:
            _seconds(self.cell, "cell")
        if self.notebook is not None:
            _seconds(self.notebook, "notebook")
        _seconds(self.grace, "grace")

    def for_cell(self, index: int) -> float:
        """The limit of cell ``index``."""
        return float(self.cell[index]) if isinstance(self.cell, tuple) else float(self.cell)


@dataclass(frozen=True)
class Untrusted:
    """How to run code that may be hostile: what its kernel sends costs bounded memory and CPU, only inert
    outputs are kept, and no text it produced reaches a message.

    Attributes
    ----------
    cell_output_bytes, notebook_output_bytes : int
        Output kept per cell and for the whole notebook (JSON size); the rest is dropped
        (:attr:`Execution.outputs_truncated`).
    message_bytes : int
        Largest message accepted from the kernel; ZeroMQ drops a larger one unread.
    messages : int
        Messages the notebook may send in all, on every channel (those that answer no request of the runner's
        included); past it the kernel is stopped and further messages are dropped unparsed.
    received_bytes : int
        Bytes the notebook may send in all, counted like ``messages`` (each byte costs the runner's CPU to parse).
    cell_outputs : int
        Outputs kept per cell, however small (each costs the runner a schema validation); the rest are dropped.
    kept_mime_types : tuple of str
        Output kinds kept (``text/plain``, ``image/png``); HTML, scripts, SVG and widget views are dropped,
        display updates and widget messages are never applied.
    """

    cell_output_bytes: int
    notebook_output_bytes: int
    message_bytes: int
    messages: int
    received_bytes: int = 2**30
    cell_outputs: int = 1000
    kept_mime_types: tuple[str, ...] = ("text/plain", "image/png")

    def __post_init__(self) -> None:
        for name in ("cell_output_bytes", "notebook_output_bytes", "message_bytes", "messages", "received_bytes",
                     "cell_outputs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not isinstance(self.kept_mime_types, tuple) or not all(isinstance(m, str) for m in self.kept_mime_types):
            raise ValueError(f"kept_mime_types must be a tuple of strings, got {self.kept_mime_types!r}")


# ----------------------------------------------------------------------------- what comes out

@dataclass(frozen=True)
class CellTiming:
    """How long one code cell ran."""

    index: int
    grade_id: str | None
    seconds: float


@dataclass
class Execution:
    """The result of running one notebook.

    Attributes
    ----------
    notebook : pathlib.Path
        The notebook that ran.
    seconds : float
        Wall time, kernel start-up included.
    error : str or None
        One line about the first thing that went wrong (a failing cell, a cell past its time limit, a dead or
        lost kernel), or None.
    startup_seconds : float
        Time until the kernel was ready for the first cell.
    cells : list of CellTiming
        Run time of each code cell that ran (the failing one included).
    timed_out : list of int
        Cells interrupted at their time limit.
    cell_errors : dict
        Cell index -> what went wrong there, in the runner's words (for untrusted code: a built-in
        exception's type only).
    crashed : str or None
        Why the kernel died or was stopped (it then ran no further cell).
    notebook_timed_out : bool
        Whether the whole notebook ran past its limit.
    outputs_truncated : bool
        Whether outputs were dropped at the caps of :class:`Untrusted`.
    """

    notebook: Path
    seconds: float = 0.0
    error: str | None = None
    startup_seconds: float = 0.0
    cells: list[CellTiming] = field(default_factory=list)
    timed_out: list[int] = field(default_factory=list)
    cell_errors: dict[int, str] = field(default_factory=dict)
    crashed: str | None = None
    notebook_timed_out: bool = False
    outputs_truncated: bool = False


def error_summary(output: dict) -> str:
    """An error output in words that hold nothing the code chose: a built-in exception's type, or
    "an exception"."""
    ename = output.get("ename") if isinstance(output, dict) else None
    if isinstance(ename, str) and ename in _BUILTIN_ERRORS:
        return ename
    return "an exception"


def first_error_line(text: str) -> str:
    """The line of a traceback (or error text) that names the error, without terminal colours."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or "Exception" in line]
    line = errors[-1] if errors else lines[-1] if lines else "cell failed"
    return re.sub(r"\x1b\[[0-9;]*m", "", line)[:500]


# ----------------------------------------------------------------------------- running

def run_notebook(nb, kernel: Kernel, *, notebook: Path, limits: TimeLimits, untrusted: Untrusted | None = None,
                 stop_on_error: bool = True, on_cell_done: Callable[[int], None] | None = None) -> Execution:
    """Run ``nb``'s code cells top to bottom in a fresh kernel; the outputs are written into ``nb``.

    Never raises for what the notebook's code does: failures are in the returned :class:`Execution`.

    Parameters
    ----------
    nb : NotebookNode
        The notebook (version 4).
    kernel : Kernel
        The kernel to start and how to stop it.
    notebook : pathlib.Path
        Its file, for the result.
    limits : TimeLimits
        Time limits per cell and for the whole notebook.
    untrusted : Untrusted, optional
        Caps and wording for code that may be hostile (default: trusted code, everything kept).
    stop_on_error : bool
        Stop at the first cell that fails or is interrupted (else run every cell).
    on_cell_done : callable, optional
        Called with each code cell's index once it has run (a progress bar).

    Returns
    -------
    Execution
    """
    cells = nb.get("cells") if isinstance(nb, dict) else None
    if not isinstance(cells, list):
        raise ValueError(f"nb must be a notebook with a list of cells, got {type(nb).__name__}")
    if not isinstance(kernel, Kernel):
        raise TypeError(f"kernel must be a Kernel, got {type(kernel).__name__}")
    if not isinstance(limits, TimeLimits):
        raise TypeError(f"limits must be TimeLimits, got {type(limits).__name__}")
    if isinstance(limits.cell, tuple) and len(limits.cell) != len(cells):
        raise ValueError(f"limits.cell has {len(limits.cell)} limits for a notebook of {len(cells)} cells")
    if untrusted is not None and not isinstance(untrusted, Untrusted):
        raise TypeError(f"untrusted must be Untrusted or None, got {type(untrusted).__name__}")
    return _Run(nb, kernel, Path(notebook), limits, untrusted).execute(stop_on_error, on_cell_done)


class _Run:
    """One run of one notebook: the client, the watchdog and the result they fill in."""

    def __init__(self, nb, kernel: Kernel, notebook: Path, limits: TimeLimits, untrusted: Untrusted | None):
        self.nb, self.kernel, self.limits, self.untrusted = nb, kernel, limits, untrusted
        self.result = Execution(notebook)
        self.budget = _OutputBudget(untrusted) if untrusted is not None else None

    def execute(self, stop_on_error: bool, on_cell_done: Callable[[int], None] | None) -> Execution:
        start = time.monotonic()
        km = _kernel_manager(self.kernel, self.budget)
        client = _Client(self.nb, budget=self.budget, km=km, timeout=None, allow_errors=not stop_on_error,
                         kernel_name=self.kernel.name, extra_arguments=list(self.kernel.arguments),
                         resources={"metadata": {"path": str(self.kernel.cwd)}},
                         **({"record_timing": False, "store_widget_state": False} if self.untrusted else {}))
        watchdog = _Watchdog(self, km, start)
        # The kernel's own stderr (its start-up log; a zmq traceback when it is stopped in a cell) goes to a
        # file; for trusted code its last line explains a kernel that died.
        kernel_log = tempfile.TemporaryFile(mode="w+", prefix="kernel-", suffix=".log")
        start_options: dict[str, Any] = {"stderr": kernel_log}
        if self.kernel.env is not None:
            start_options["env"] = dict(self.kernel.env)
        index: int | None = None
        try:
            with client.setup_kernel(**start_options):
                self.result.startup_seconds = time.monotonic() - start
                if self.kernel.ready is not None:
                    self.kernel.ready()
                watchdog.start()
                for index, cell in enumerate(self.nb.cells):
                    if cell.get("cell_type") != "code" or not cell.get("source", "").strip():
                        continue
                    if watchdog.killed or not self._run_cell(client, watchdog, index, cell, kernel_log,
                                                             stop_on_error, on_cell_done):
                        break
                if watchdog.killed and self.result.crashed is None:   # stopped between two cells
                    self.result.crashed = watchdog.killed
                    self._fail(watchdog.killed)
                client.set_widgets_metadata()
        except Exception as err:  # noqa: BLE001 - a kernel that never starts, or a lost connection
            if index is None:
                self.result.crashed = watchdog.killed or f"the kernel could not start ({type(err).__name__})"
                self._fail(f"lost the kernel during the kernel's start-up: {self._detail(err)}")
            elif self.result.crashed is None:
                self.result.crashed = watchdog.killed or f"the kernel was lost ({type(err).__name__})"
                self._fail(f"lost the kernel after {self._where(index)}: {self._detail(err)}")
        finally:
            watchdog.stop()
            _shutdown(km, client)
            if self.kernel.kill_all is not None:
                self.kernel.kill_all(5.0)
            kernel_log.close()
        if self.budget is not None:
            self.result.outputs_truncated = self.budget.truncated
        self.result.seconds = time.monotonic() - start
        return self.result

    def _run_cell(self, client, watchdog: "_Watchdog", index: int, cell, kernel_log, stop_on_error: bool,
                  on_cell_done: Callable[[int], None] | None) -> bool:
        """Run one code cell; whether to go on with the next."""
        result = self.result
        limit = self.limits.for_cell(index)
        watchdog.arm(limit)
        started = time.monotonic()
        stopped = False
        try:
            client.execute_cell(cell, index, execution_count=client.code_cells_executed + 1)
        except CellExecutionError:   # an error where errors are not allowed; its output is in the cell
            stopped = True
        except Exception as err:  # noqa: BLE001 - a dead kernel, zmq errors, a kernel that stops answering
            stopped = True
            reason = self.kernel.death_reason() if self.kernel.death_reason is not None else None
            result.crashed = watchdog.killed or reason or f"the kernel died ({type(err).__name__})"
            result.cell_errors[index] = result.crashed
            if watchdog.killed:
                pass   # worded below, once the interrupt is known
            elif isinstance(err, DeadKernelError):
                self._fail(f"the kernel died in {self._where(index)} ({reason or 'out of memory?'})"
                           + ("" if self.untrusted else _last_line(kernel_log)))
            else:
                self._fail(f"lost the kernel during {self._where(index)}: {self._detail(err)}")
        finally:
            interrupted = watchdog.disarm()
            result.cells.append(CellTiming(index, grade_id(cell), time.monotonic() - started))
            if on_cell_done is not None:
                on_cell_done(index)
        if interrupted:
            result.timed_out.append(index)
            self._fail(f"{self._where(index)} was stopped at the time limit of {limit:g} s per cell")
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        # With stop_on_error, an error that did not stop the run was allowed (a cell tagged raises-exception).
        if errors and index not in result.cell_errors and (stopped or not stop_on_error):
            result.cell_errors[index] = self._describe(errors[0])
            self._fail(f"{self._where(index)} failed: {result.cell_errors[index]}")
        if watchdog.killed:
            result.crashed = watchdog.killed
            self._fail(f"{self._where(index)}: {watchdog.killed}")
            return False
        return not stopped and not (interrupted and stop_on_error)

    def _fail(self, line: str) -> None:
        """Record the first failure's line (later ones follow from it)."""
        if self.result.error is None:
            self.result.error = line

    def _describe(self, output: dict) -> str:
        if self.untrusted is not None:
            return error_summary(output)
        traceback = output.get("traceback") or []
        return first_error_line("\n".join([*traceback, f"{output.get('ename', '')}: {output.get('evalue', '')}"]))

    def _detail(self, err: Exception) -> str:
        if self.untrusted is not None or not str(err).strip():
            return type(err).__name__ + ("" if self.untrusted is not None else ": no details")
        return f"{type(err).__name__}: {first_error_line(str(err))}"

    def _where(self, index: int) -> str:
        gid = grade_id(self.nb.cells[index])
        return f"cell {index}" + (f" ({gid})" if gid else "")


def _last_line(log) -> str:
    try:
        log.seek(0)
        lines = [line.strip() for line in log.read().splitlines() if line.strip()]
    except (OSError, ValueError):
        return ""
    return f"; the kernel's last words: {lines[-1][:300]}" if lines else ""


# ----------------------------------------------------------------------------- collaborators

class _OutputBudget:
    """What an untrusted kernel's messages may cost: a budget of messages and bytes, and capped, inert outputs."""

    def __init__(self, caps: Untrusted):
        self.caps = caps
        self.messages = 0
        self.received_bytes = 0
        self.flood = False
        self.truncated = False
        self.cell_bytes: dict[int, int] = {}
        self.cell_outputs: dict[int, int] = {}
        self.total_bytes = 0

    def receive(self, size: int) -> bool:
        """Count one message of ``size`` bytes from the kernel, on any channel, before it is parsed; whether to
        parse it (not once the notebook is over its budget: the watchdog then stops the kernel)."""
        self.messages += 1
        self.received_bytes += size
        if self.messages > self.caps.messages or self.received_bytes > self.caps.received_bytes:
            self.flood = True
        return not self.flood

    def admit(self, msg: dict) -> bool:
        """Whether to process a message at all (widgets and display updates never apply)."""
        if self.flood:
            return False
        msg_type = msg.get("msg_type", "")
        return not (msg_type.startswith("comm") or msg_type == "update_display_data")

    def keep(self, content: dict, cell_index: int) -> bool:
        """Whether to keep an output (its kinds reduced to the kept ones, its metadata to the sizes of kept
        images, in place) within the caps."""
        if isinstance(content.get("data"), dict):
            content["data"] = {k: v for k, v in content["data"].items() if k in self.caps.kept_mime_types}
        if "metadata" in content:
            content["metadata"] = _image_sizes(content["metadata"], self.caps.kept_mime_types)
        if self.cell_outputs.get(cell_index, 0) >= self.caps.cell_outputs:
            self.truncated = True
            return False
        size = len(json.dumps(content, default=str))
        cell_total = self.cell_bytes.get(cell_index, 0) + size
        if cell_total > self.caps.cell_output_bytes or self.total_bytes + size > self.caps.notebook_output_bytes:
            self.truncated = True
            return False
        self.cell_bytes[cell_index] = cell_total
        self.cell_outputs[cell_index] = self.cell_outputs.get(cell_index, 0) + 1
        self.total_bytes += size
        return True


def _image_sizes(metadata: Any, mime_types: tuple[str, ...]) -> dict:
    """What an untrusted output's metadata may keep: whole-number widths and heights of kept kinds.

    nbconvert (which nbgrader's formgrader uses to show executed notebooks) writes these values into HTML
    attributes unquoted: ``{"width": "1 onerror=..."}`` would run script in the instructor's browser.
    """
    kept = {}
    for mime, entry in (metadata.items() if isinstance(metadata, dict) else ()):
        if mime in mime_types and isinstance(entry, dict):
            sizes = {key: value for key, value in entry.items() if key in ("width", "height")
                     and isinstance(value, int) and not isinstance(value, bool)}
            if sizes:
                kept[mime] = sizes
    return kept


class _Client(NotebookClient):
    """nbclient's client, with the output budget of untrusted code applied to every message."""

    def __init__(self, nb, *, budget: _OutputBudget | None, **kwargs):
        super().__init__(nb, **kwargs)
        self._budget = budget

    def process_message(self, msg, cell, cell_index):
        if self._budget is not None:
            if not self._budget.admit(msg):
                return None
            content = msg.get("content")
            count = content.get("execution_count") if isinstance(content, dict) else None
            if count is not None and (isinstance(count, bool) or not isinstance(count, int)):
                content["execution_count"] = None   # any message may set the cell's count: never a 16 MiB string
        return super().process_message(msg, cell, cell_index)

    def _update_display_id(self, display_id, msg):
        if self._budget is not None:
            return None   # never applied to earlier outputs: one small output must not become many large ones
        return super()._update_display_id(display_id, msg)

    def output(self, outs, msg, display_id, cell_index):
        if self._budget is not None:
            if not self._budget.keep(msg.get("content", {}), cell_index):
                return None
            display_id = None
        return super().output(outs, msg, display_id, cell_index)


class _Watchdog:
    """Enforces the time limits and the message budget from a thread of its own.

    At a cell's limit the kernel gets SIGINT (the cell ends with ``KeyboardInterrupt``); a cell still running
    ``grace`` seconds later, a notebook past its own limit, or a flood of messages gets the kernel killed.
    """

    def __init__(self, run: _Run, km, start: float):
        self.run, self.km = run, km
        self.notebook_deadline = start + run.limits.notebook if run.limits.notebook is not None else None
        self.deadline: float | None = None
        self.interrupted = False
        self.killed: str | None = None
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="notebook-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def arm(self, seconds: float) -> None:
        with self._lock:
            self.interrupted = False
            self.deadline = time.monotonic() + seconds

    def disarm(self) -> bool:
        """End the current cell's limit; whether the cell was interrupted at it."""
        with self._lock:
            self.deadline = None
            return self.interrupted

    def _watch(self) -> None:
        limits, budget = self.run.limits, self.run.budget
        while not self._stopped.wait(0.1):
            if self.killed:
                continue
            if budget is not None and budget.flood:
                self._kill(f"the notebook sent more than {budget.caps.messages} messages and was stopped"
                           if budget.messages > budget.caps.messages else
                           f"the notebook sent more than {budget.caps.received_bytes // 2**20} MiB of messages and "
                           "was stopped")
            elif self.notebook_deadline is not None and time.monotonic() > self.notebook_deadline:
                self.run.result.notebook_timed_out = True
                self._kill(f"the notebook ran past its {limits.notebook:.0f} s limit and was stopped")
            elif self._past_deadline():
                self._kill("a cell ignored the interrupt at its time limit; the kernel was stopped")

    def _past_deadline(self) -> bool:
        """Interrupt a cell at its limit; whether it has ignored the interrupt for the grace period."""
        with self._lock:
            if self.deadline is None or time.monotonic() < self.deadline:
                return False
            if self.interrupted:
                return True
            self.interrupted = True
            self.deadline = time.monotonic() + self.run.limits.grace
            proc = _kernel_process(self.km)
            try:
                if proc is not None:
                    proc.send_signal(signal.SIGINT)
            except psutil.Error:
                pass
            return False

    def _kill(self, reason: str) -> None:
        self.killed = reason
        if self.run.kernel.kill_all is not None:
            self.run.kernel.kill_all(2.0)
        proc = _kernel_process(self.km)
        try:
            if proc is not None:
                proc.kill()
        except psutil.Error:
            pass


#: Messages a socket of the runner's may hold unread (ZeroMQ keeps 1000 by default: with messages of up to
#: ``Untrusted.message_bytes`` each, gigabytes of the runner's memory that an untrusted kernel could fill).
QUEUED_MESSAGES = 16


def _kernel_manager(kernel: Kernel, budget: _OutputBudget | None):
    """An asynchronous kernel manager for ``kernel``.

    For untrusted code (``budget`` given) every socket of the runner's refuses messages over
    ``Untrusted.message_bytes`` and queues at most :data:`QUEUED_MESSAGES` unread; its clients open no stdin or
    control channel (never read, they would only queue what the kernel sends there), and every message they
    receive is counted by ``budget`` before it is parsed.
    """
    import zmq
    import zmq.asyncio
    from jupyter_client.asynchronous import AsyncKernelClient
    from jupyter_client.channels import AsyncZMQSocketChannel
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    def limit(context) -> None:
        context.setsockopt(zmq.MAXMSGSIZE, budget.caps.message_bytes)
        context.setsockopt(zmq.RCVHWM, QUEUED_MESSAGES)

    class _CountedChannel(AsyncZMQSocketChannel):
        async def _recv(self, **kwargs):
            frames = await self.socket.recv_multipart(**kwargs)
            if not budget.receive(sum(len(f) for f in frames)):
                return {"header": {}, "parent_header": {}, "metadata": {}, "content": {}, "msg_type": "dropped"}
            _, message = self.session.feed_identities(frames)
            return self.session.deserialize(message)

    class _UntrustedClient(AsyncKernelClient):
        shell_channel_class = _CountedChannel
        iopub_channel_class = _CountedChannel

        def start_channels(self, shell=True, iopub=True, stdin=True, hb=True, control=True):
            super().start_channels(shell=shell, iopub=iopub, stdin=False, hb=hb, control=False)

    class _Manager(AsyncKernelManager):
        def client(self, **kwargs):
            context = zmq.asyncio.Context()
            if budget is not None:
                limit(context)
            self._runner_context = context
            return super().client(context=context, **kwargs)

    options: dict[str, Any] = {"kernel_name": kernel.name, "transport": kernel.transport}
    if budget is not None:
        options["client_factory"] = _UntrustedClient
    if kernel.ip is not None:
        options["ip"] = kernel.ip
    if kernel.argv is not None:
        argv = list(kernel.argv)

        class _Specs(KernelSpecManager):
            def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
                return KernelSpec(argv=argv, display_name=kernel_name, language="python",
                                  resource_dir=str(kernel.cwd))

        options["kernel_spec_manager"] = _Specs()
    km = _Manager(**options)
    if budget is not None:
        limit(km.context)   # the manager's own control socket
    if kernel.connection_file is not None:
        km.connection_file = kernel.connection_file
    return km


def _kernel_process(km) -> psutil.Process | None:
    """The kernel's process (``python -m ipykernel_launcher``): the one the manager started, or its descendant
    (inside a sandbox)."""
    try:
        launcher = psutil.Process(km.provisioner.pid)
    except (psutil.Error, AttributeError, TypeError, ValueError):
        return None
    for proc in [launcher, *launcher.children(recursive=True)]:
        try:
            if proc.cmdline()[1:3] == ["-m", "ipykernel_launcher"]:
                return proc
        except psutil.Error:
            continue
    return None


def _shutdown(km, client) -> None:
    """Stop the kernel and free every thread, socket and context."""
    from jupyter_core.utils import run_sync

    for step in (lambda: run_sync(km.shutdown_kernel)(now=True) if km.has_kernel else None,
                 lambda: run_sync(km.cleanup_resources)(),
                 lambda: client.kc.stop_channels() if client.kc is not None else None,
                 lambda: km._runner_context.destroy(linger=0) if hasattr(km, "_runner_context") else None,
                 lambda: km.context.destroy(linger=0)):
        try:
            step()
        except Exception:  # noqa: BLE001 - it may be dead already
            pass


class _DropPendingTaskNoise(logging.Filter):
    """asyncio's "Task was destroyed but it is pending!" after a stopped kernel: noise, the error is reported."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Task was destroyed but it is pending" not in record.getMessage()


logging.getLogger("asyncio").addFilter(_DropPendingTaskNoise())
