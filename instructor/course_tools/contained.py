"""The grader's side of one submission's run, in a process and a control group of its own.

Whatever a student's kernel sends lands in the memory of the process that talks to it, and ZeroMQ bounds each
part of a message (``MAXMSGSIZE``) and the number of queued messages, never the number of parts of one message:
a kernel can send one message of a thousand 15 MiB parts that all point to the same buffer (no cost to it), and
the receiving process holds 15 GB before any code of its own sees the message. So the runner
(:func:`course_tools.runner.run_notebook`) of each graded notebook runs in a child process, forked from a
server that has imported it already (about 10 ms a notebook), inside a control group that caps its memory
(:data:`RUNNER_MEMORY_MIB`) and tasks (and, with v2 control groups, CPU: :data:`RUNNER_CPUS`). A kernel that
makes it hold too much loses its own runner and its own notebook; the class run, and every other notebook's
runner, go on. Separate processes also keep one notebook's flood of messages from slowing the others' runners
(no shared interpreter lock).
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import Any

from .cgroups import V1_CONTROLLERS, Cgroup, CgroupError, Limits
from .runner import Execution, TimeLimits, Untrusted

#: Memory of one notebook's runner process (its kept outputs are at most a few MiB; it needs about 100 MiB).
RUNNER_MEMORY_MIB = 1024
#: Cores' worth of CPU time of one notebook's runner where control groups are v2 (its interpreter and ZeroMQ's
#: receiving thread each need most of one while a kernel sends as fast as it can; the message budget bounds the
#: total). With v1 its CPU time stays in the grader's own group, as when the runners were the grader's threads.
RUNNER_CPUS = 2.0
#: Seconds the runner may take beyond the notebook's own limit (start-up, shutting the kernel down).
RUNNER_GRACE_SECONDS = 60.0
_PRELOAD = ["course_tools.runner", "course_tools.sandbox", "nbformat", "helpers.autograde"]   # what a run imports
_context: Any = None


def _fork_context():
    global _context
    if _context is None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(_PRELOAD)
        _context = context
    return _context


def _child(connection, cgroup_dirs: list[str], nb, job, limits: TimeLimits, untrusted: Untrusted,
           notebook: Path) -> None:
    """Join the runner's control group, run the notebook, send back what happened and the cells' outputs."""
    for folder in cgroup_dirs:
        with open(Path(folder) / "cgroup.procs", "w") as fh:
            fh.write(str(os.getpid()))
    from .runner import run_notebook

    execution = run_notebook(nb, job.kernel(), notebook=notebook, limits=limits, untrusted=untrusted,
                             stop_on_error=False)
    connection.send((execution, [(cell.get("outputs"), cell.get("execution_count")) for cell in nb.cells]))
    connection.close()


def run_contained(nb, job, *, limits: TimeLimits, untrusted: Untrusted, notebook: Path,
                  memory_mib: int = RUNNER_MEMORY_MIB) -> Execution:
    """Run ``nb`` in ``job``'s sandbox from a runner process of its own; the outputs are written into ``nb``.

    Parameters
    ----------
    nb : NotebookNode
        The rebuilt notebook.
    job : course_tools.sandbox.KernelJob
        An opened sandbox job (its control group, when it has one, is where the kernel runs).
    limits : TimeLimits
        The notebook's time limits (the runner process gets ``limits.notebook`` plus
        :data:`RUNNER_GRACE_SECONDS`).
    untrusted : Untrusted
        The caps of untrusted code.
    notebook : pathlib.Path
        The submitted file, for the result.
    memory_mib : int
        Memory of the runner process (only where the job has a control group: the grader runs as root).

    Returns
    -------
    Execution
        What the runner saw; when the runner process itself was stopped (out of memory, past its time), an
        :class:`Execution` whose ``crashed`` says so, and the kernel is killed.
    """
    if not isinstance(memory_mib, int) or isinstance(memory_mib, bool) or memory_mib < 64:
        raise ValueError(f"memory_mib must be an int of at least 64, got {memory_mib!r}")
    group = None
    if job.cgroup is not None:
        try:
            group = Cgroup.create(f"{job.folder.name}-runner", Limits(memory_mib * 2**20, 64, RUNNER_CPUS))
        except CgroupError as err:
            return _stopped(notebook, f"the grader could not confine this notebook's runner ({err})", job)
    try:
        outcome, exitcode = _run_child(nb, job, limits, untrusted, notebook, _joined(group))
        if outcome is None:
            out_of_memory = group is not None and group.oom_killed()
            return _stopped(notebook, f"the notebook made the grader hold more than {memory_mib} MiB of its messages "
                            "and was stopped" if out_of_memory else
                            f"the grader's runner for this notebook stopped (exit code {exitcode})", job)
        execution, cells = outcome
        for cell, (outputs, count) in zip(nb.cells, cells):
            if cell.get("cell_type") == "code":
                cell.outputs, cell.execution_count = outputs, count
        return execution
    finally:
        if group is not None:
            group.kill()
            group.remove()


def _joined(group: Cgroup | None) -> list[str]:
    """The folders of ``group`` the runner process joins. With v1 control groups its CPU time stays the grader's
    (the runners together weigh against the kernels as the grader's own threads did); v2 has one folder."""
    if group is None:
        return []
    if group.version == "v1":
        return [str(d) for controller, d in zip(V1_CONTROLLERS, group.dirs) if controller != "cpu"]
    return [str(d) for d in group.dirs]


def _run_child(nb, job, limits: TimeLimits, untrusted: Untrusted, notebook: Path,
               cgroup_dirs: list[str]) -> tuple[Any, int | None]:
    """Fork the runner process and wait for what it sends; ``(None, exit code)`` if it sends nothing."""
    context = _fork_context()
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(send, cgroup_dirs, nb, job, limits, untrusted, notebook),
                              name="notebook-runner")
    outcome = None
    try:
        process.start()
        send.close()
        seconds = (limits.notebook or 3600.0) + RUNNER_GRACE_SECONDS
        outcome = receive.recv() if receive.poll(seconds) else None
    except (EOFError, OSError):
        pass
    finally:
        send.close()
        if process.pid is not None:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join()
        receive.close()
    return outcome, process.exitcode


def _stopped(notebook: Path, reason: str, job) -> Execution:
    """The result of a run whose runner process was stopped: nothing it saw can be trusted to be complete."""
    if job.cgroup is not None:
        job.cgroup.kill()
    return Execution(Path(notebook), error=reason, crashed=reason)
