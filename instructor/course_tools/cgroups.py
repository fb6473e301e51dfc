"""Resource limits for one student's kernel and every process it starts: a control group (v1 or v2).

A control group caps what a whole process tree may use, however many
processes or threads it forks: memory (page cache and ``tmpfs`` pages it
writes included), the number of tasks, and CPU time. When the notebook ends,
:meth:`Cgroup.kill` stops every process still in it (a daemon that left its
session included), and :meth:`Cgroup.oom_killed` tells whether the kernel
died because it ran out of memory.

Both layouts are supported:

* **v2** (unified, ``/sys/fs/cgroup/cgroup.controllers``; most current
  distributions): ``memory.max``, ``memory.swap.max``, ``pids.max``,
  ``cpu.max``, ``cgroup.kill``. The grader needs a delegated subtree: as
  root in a container or on a host this is the grader's own cgroup, whose
  controllers are enabled for the ``saliency-grading`` child it creates.
* **v1** (one hierarchy per controller under ``/sys/fs/cgroup/memory``,
  ``pids``, ``cpu``): ``memory.limit_in_bytes`` (+ ``memsw``),
  ``pids.max``, ``cpu.cfs_quota_us``.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from .paths import CourseError

CGROUP_ROOT = Path("/sys/fs/cgroup")
PARENT_NAME = "saliency-grading"
V1_CONTROLLERS = ("memory", "pids", "cpu")


class CgroupError(CourseError):
    """Control groups cannot be used here (not root, not mounted, not delegated)."""


@dataclass(frozen=True)
class Limits:
    """What one notebook's whole process tree may use.

    Parameters
    ----------
    memory_bytes : int
        Memory of all its processes together (RAM, no swap).
    pids : int
        Processes and threads at once.
    cpus : float
        CPU time per second of wall time (1.0 = one core).
    """

    memory_bytes: int
    pids: int
    cpus: float

    def __post_init__(self) -> None:
        for name, low in (("memory_bytes", 16 * 2**20), ("pids", 8)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an int of at least {low}, got {value!r}")
        if not isinstance(self.cpus, (int, float)) or isinstance(self.cpus, bool) or not 0.05 <= self.cpus <= 1024:
            raise ValueError(f"cpus must be a number of cores between 0.05 and 1024, got {self.cpus!r}")


def layout(root: Path = CGROUP_ROOT) -> str | None:
    """``"v2"``, ``"v1"`` or ``None`` (no usable control groups mounted at ``root``)."""
    if (root / "cgroup.controllers").is_file():
        return "v2"
    if all((root / c / "cgroup.procs").is_file() for c in V1_CONTROLLERS):
        return "v1"
    return None


def _own_path(controller: str | None, proc_cgroup: str) -> str:
    """This process's cgroup path for a v1 controller (or the v2 path when ``controller`` is None)."""
    for line in proc_cgroup.splitlines():
        number, controllers, path = line.split(":", 2)
        names = controllers.split(",") if controllers else []
        if (controller is None and number == "0") or (controller in names):
            return path.lstrip("/")
    return ""


def _write(path: Path, value: str) -> None:
    with open(path, "w") as fh:
        fh.write(value)


class Cgroup:
    """One control group per graded notebook (see the module docstring).

    Use :meth:`create`; then :meth:`add` the launcher's pid before it starts
    the sandbox, and :meth:`kill` + :meth:`remove` when the notebook ends.
    """

    def __init__(self, version: str, dirs: list[Path]) -> None:
        self.version = version
        self.dirs = dirs

    @classmethod
    def create(cls, name: str, limits: Limits, root: Path = CGROUP_ROOT,
               proc_cgroup: str | None = None) -> "Cgroup":
        """Make the group ``name`` with ``limits``; raises :class:`CgroupError` with the reason if it cannot."""
        if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
            raise ValueError(f"name must be a plain folder name, got {name!r}")
        if not isinstance(limits, Limits):
            raise TypeError(f"limits must be a Limits, got {type(limits).__name__}")
        version = layout(root)
        if version is None:
            raise CgroupError(f"no control groups (v1 or v2) are mounted at {root}")
        if proc_cgroup is None:
            proc_cgroup = Path("/proc/self/cgroup").read_text()
        try:
            group = cls._create_v2(name, limits, root, proc_cgroup) if version == "v2" else \
                cls._create_v1(name, limits, root, proc_cgroup)
        except OSError as err:
            raise CgroupError(f"cannot create control group {name!r} under {root} ({version}): "
                              f"{err.strerror or err}") from None
        return group

    @classmethod
    def _create_v1(cls, name: str, limits: Limits, root: Path, proc_cgroup: str) -> "Cgroup":
        dirs = []
        for controller in V1_CONTROLLERS:
            parent = root / controller / _own_path(controller, proc_cgroup) / PARENT_NAME
            parent.mkdir(parents=True, exist_ok=True)
            folder = parent / name
            folder.mkdir(exist_ok=True)
            dirs.append(folder)
        memory, pids, cpu = dirs
        _write(memory / "memory.limit_in_bytes", str(limits.memory_bytes))
        if (memory / "memory.memsw.limit_in_bytes").exists():
            _write(memory / "memory.memsw.limit_in_bytes", str(limits.memory_bytes))
        _write(pids / "pids.max", str(limits.pids))
        _write(cpu / "cpu.cfs_period_us", "100000")
        _write(cpu / "cpu.cfs_quota_us", str(int(limits.cpus * 100000)))
        return cls("v1", dirs)

    @classmethod
    def _create_v2(cls, name: str, limits: Limits, root: Path, proc_cgroup: str) -> "Cgroup":
        base = root / _own_path(None, proc_cgroup)
        parent = base / PARENT_NAME
        parent.mkdir(exist_ok=True)
        wanted = {"memory", "pids", "cpu"}
        available = set((base / "cgroup.controllers").read_text().split())
        if not wanted <= available:
            raise OSError(0, f"controllers {sorted(wanted - available)} are not delegated to {base}")
        for folder in (base, parent):
            _write(folder / "cgroup.subtree_control", " ".join(f"+{c}" for c in sorted(wanted)))
        folder = parent / name
        folder.mkdir(exist_ok=True)
        _write(folder / "memory.max", str(limits.memory_bytes))
        if (folder / "memory.swap.max").exists():
            _write(folder / "memory.swap.max", "0")
        _write(folder / "pids.max", str(limits.pids))
        _write(folder / "cpu.max", f"{int(limits.cpus * 100000)} 100000")
        return cls("v2", [folder])

    def add(self, pid: int) -> None:
        """Move process ``pid`` (and the children it starts later) into the group."""
        for folder in self.dirs:
            _write(folder / "cgroup.procs", str(int(pid)))

    def pids(self) -> set[int]:
        """The processes in the group now."""
        found: set[int] = set()
        for folder in self.dirs:
            try:
                found |= {int(p) for p in (folder / "cgroup.procs").read_text().split()}
            except OSError:
                pass
        return found

    def kill(self, wait: float = 5.0) -> bool:
        """SIGKILL every process in the group; ``True`` once it is empty (within ``wait`` seconds)."""
        if self.version == "v2" and (self.dirs[0] / "cgroup.kill").exists():
            try:
                _write(self.dirs[0] / "cgroup.kill", "1")
            except OSError:
                pass
        deadline = time.monotonic() + wait
        while True:
            pids = self.pids()
            if not pids:
                return True
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)

    def oom_killed(self) -> bool:
        """Whether the kernel's out-of-memory killer stopped a process of this group."""
        events = self.dirs[0] / ("memory.events" if self.version == "v2" else "memory.oom_control")
        try:
            for line in events.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and int(value) > 0:
                    return True
        except (OSError, ValueError):
            pass
        return False

    def peak_memory(self) -> int | None:
        """Largest memory use seen, in bytes (``None`` where the kernel does not report it)."""
        name = "memory.peak" if self.version == "v2" else "memory.max_usage_in_bytes"
        try:
            return int((self.dirs[0] / name).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def remove(self) -> None:
        """Delete the (empty) group."""
        for folder in self.dirs:
            try:
                folder.rmdir()
            except OSError:
                pass
