"""A throw-away sandbox for each student's kernel: bubblewrap namespaces plus a control group.

What the kernel of one graded notebook gets (as root, :func:`prerequisites` empty):

* **its own namespaces** (``bwrap --unshare-pid --unshare-net --unshare-ipc --unshare-uts``): it sees only its
  own processes, has no network at all (only a loopback that leads nowhere), and talks to the grader over
  ZeroMQ *ipc* sockets in a folder of its own, never over shared loopback TCP, so no kernel can reach
  another's channels;
* **a file system of its own**: a fresh root in which the system's programs and libraries, the Python
  installation, the student package ``helpers`` and the course inputs (data, weights) are read-only; the
  working folder, the results outbox and the socket folder are writable and live on a size-limited ``tmpfs``
  that the grader mounts; ``/tmp`` and ``/dev/shm`` are private. The course folder, other students' work, the
  instructor package (:mod:`course_tools`), the references and the gradebook are not in it;
* **an unprivileged identity** (uid/gid 65534, no capabilities, ``no_new_privs``), a per-file size limit and a
  system-call filter (:func:`seccomp_filter`: no user namespaces, no kernel keyrings); the instructor package
  and ``beyond`` (:data:`HIDDEN_PACKAGES`) cannot be imported, wherever they are installed;
* **one control group** (:mod:`course_tools.cgroups`) for the whole process tree: memory, processes and CPU are
  capped together, and every process left when the notebook ends is killed (the PID namespace ends with its
  first process too, so nothing survives the notebook).

Without root, without bubblewrap or without control groups the grader refuses to grade unless the instructor
accepts running student code unisolated (``course grade --unsandboxed``); :func:`prerequisites` says what is
missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .cgroups import Cgroup, CgroupError, Limits, layout
from .paths import CourseError

SANDBOX_UID = 65534
HOME = "/home/student"
OUTBOX = "/run/grader/outbox"
INPUTS = "/run/course/inputs"
LIBRARY = "/run/course/lib"
SOCKETS = "/run/kernel"
CLONE_NEWUSER = 0x10000000
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "nsswitch.conf", "passwd", "group", "localtime",
             "fonts", "mime.types")


class SandboxError(CourseError):
    """A sandbox could not be set up for a student's kernel."""


@dataclass(frozen=True)
class SandboxPolicy:
    """The limits of one student's kernel and everything it starts.

    Parameters
    ----------
    memory_mib : int
        Memory of the whole process tree, its ``tmpfs`` files included.
    pids : int
        Processes and threads at once.
    cpus : float
        Cores' worth of CPU time.
    disk_mib : int
        Size of the writable folders (work, outbox, sockets) together.
    file_mib : int
        Largest single file it may write.
    threads : int
        Math-library threads (``OMP_NUM_THREADS``), set before torch starts.
    isolated : bool
        ``False`` only with ``course grade --unsandboxed``: the kernel runs as the grader, unconfined.
    """

    memory_mib: int = 4096
    pids: int = 256
    cpus: float = 1.0
    disk_mib: int = 512
    file_mib: int = 64
    threads: int = 1
    isolated: bool = True

    def __post_init__(self) -> None:
        for name, low in (("memory_mib", 64), ("pids", 16), ("disk_mib", 16), ("file_mib", 1), ("threads", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an int of at least {low}, got {value!r}")
        Limits(self.memory_mib * 2**20, self.pids, self.cpus)  # checks cpus


def prerequisites(cgroup_root: Path | None = None) -> list[str]:
    """What this machine lacks for sandboxed grading (empty when everything is there)."""
    from .cgroups import CGROUP_ROOT

    missing = []
    if os.geteuid() != 0:
        missing.append("grading must run as root (in a container or VM is fine) to sandbox student kernels")
    for tool, package in (("bwrap", "bubblewrap"), ("setpriv", "util-linux"), ("prlimit", "util-linux"),
                          ("mount", "mount")):
        if shutil.which(tool) is None:
            missing.append(f"`{tool}` is not installed (Debian/Ubuntu: apt-get install {package})")
    try:
        seccomp_filter()
    except (ImportError, OSError, RuntimeError) as err:
        missing.append(f"no system-call filter: libseccomp cannot be used ({type(err).__name__}; Debian/Ubuntu: "
                       "apt-get install libseccomp2, and pip install pyseccomp)")
    if layout(cgroup_root or CGROUP_ROOT) is None:
        missing.append(f"no control groups are mounted at {cgroup_root or CGROUP_ROOT}")
    if not missing:
        trial = subprocess.run(["bwrap", "--unshare-pid", "--unshare-net", "--ro-bind", "/", "/", "--proc",
                                "/proc", "--dev", "/dev", "true"], capture_output=True, text=True, timeout=30)
        if trial.returncode != 0:
            missing.append(f"bubblewrap cannot create namespaces here: {trial.stderr.strip()[:200]}")
    return missing


@dataclass
class KernelJob:
    """The folder, control group and kernel command of one graded notebook.

    Parameters
    ----------
    name : str
        A unique name for the job (used for the folder and the control group).
    policy : SandboxPolicy
        Limits.
    inputs : pathlib.Path
        A folder of read-only inputs (data file, weights) the kernel sees at ``/run/course/inputs``.
    env : dict
        Environment of the kernel (nothing else of the grader's environment is passed on).
    """

    name: str
    policy: SandboxPolicy
    inputs: Path
    env: dict[str, str] = field(default_factory=dict)
    folder: Path | None = None
    cgroup: Cgroup | None = None
    _mounted: bool = False

    @property
    def work(self) -> Path:
        """The kernel's working folder (``/home/student`` inside)."""
        return self._require_folder() / "work"

    @property
    def outbox(self) -> Path:
        """Where the hidden tests hand over the student's results."""
        return self._require_folder() / "outbox"

    @property
    def sockets(self) -> Path:
        return self._require_folder() / "ipc"

    def _require_folder(self) -> Path:
        if self.folder is None:
            raise SandboxError("the job has not been set up: call open() first")
        return self.folder

    def open(self, base: Path) -> "KernelJob":
        """Create the folders (on a size-limited tmpfs) and the control group."""
        self.folder = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=base))
        os.chmod(self.folder, 0o700)
        if self.policy.isolated:
            result = subprocess.run(["mount", "-t", "tmpfs", "-o",
                                     f"size={self.policy.disk_mib}m,mode=0700,nosuid,nodev", "tmpfs",
                                     str(self.folder)], capture_output=True, text=True)
            if result.returncode != 0:
                raise SandboxError(f"cannot mount the job's tmpfs: {result.stderr.strip()[:200]}")
            self._mounted = True
        for sub in ("work", "outbox", "ipc"):
            path = self.folder / sub
            path.mkdir(mode=0o700)
            if self.policy.isolated:
                os.chown(path, SANDBOX_UID, SANDBOX_UID)
        if self.policy.isolated:
            limits = Limits(self.policy.memory_mib * 2**20, self.policy.pids, self.policy.cpus)
            try:
                self.cgroup = Cgroup.create(self.folder.name, limits)
            except CgroupError as err:
                self.close()
                raise SandboxError(str(err)) from None
        return self

    def kernel_env(self) -> dict[str, str]:
        """Everything the kernel's environment holds."""
        from helpers.autograde import OUTBOX_ENV

        threads = str(self.policy.threads)
        home = HOME if self.policy.isolated else str(self.work)
        tmp = "/tmp" if self.policy.isolated else str(self.work / ".tmp")
        return {
            "HOME": home, "USER": "student", "LOGNAME": "student", "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8", "TMPDIR": tmp, "MPLBACKEND": "Agg", "MPLCONFIGDIR": f"{tmp}/matplotlib",
            "IPYTHONDIR": f"{tmp}/ipython", "XDG_CACHE_HOME": f"{tmp}/cache", "TORCH_HOME": f"{tmp}/torch",
            "PYTHONNOUSERSITE": "1", "PYTHONWARNINGS": "ignore", "PYTHONPATH": self._library(),
            "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads,
            **self.env,
            OUTBOX_ENV: OUTBOX if self.policy.isolated else str(self.outbox),
        }

    def _library(self) -> str:
        import helpers

        return LIBRARY if self.policy.isolated else str(Path(helpers.__file__).resolve().parents[1])

    def kernel_argv(self) -> list[str]:
        """The kernel spec's command: a small launcher on the grader's side that starts the sandbox."""
        config = self._require_folder() / "launch.json"
        inside = f"{SOCKETS}/kernel-connection.json" if self.policy.isolated else "{connection_file}"
        inner = [sys.executable, "-m", "ipykernel_launcher", "-f", inside]
        payload = {"cgroup": [str(d) for d in self.cgroup.dirs] if self.cgroup else [],
                   "uid": SANDBOX_UID if self.policy.isolated else None,
                   "sockets": str(self.sockets) if self.policy.isolated else None,
                   "argv": self.bwrap_argv(inner) if self.policy.isolated else inner,
                   "env": self.kernel_env(), "cwd": str(self.work)}
        config.write_text(json.dumps(payload))
        # -P: nothing is imported from the launcher's working folder.
        return [sys.executable, "-P", "-m", "course_tools.sandbox", str(config), "{connection_file}"]

    def kernel(self):
        """The kernel of this job for :func:`course_tools.runner.run_notebook`: the sandbox's launcher
        (:meth:`kernel_argv`) on ZeroMQ ipc sockets in the job's socket folder, its control group to kill every
        process it started, and what the control group knows of a death (out of memory)."""
        from .runner import Kernel

        def death_reason() -> str | None:
            if self.cgroup is not None and self.cgroup.oom_killed():
                return f"the notebook ran out of memory (its limit is {self.policy.memory_mib} MiB) and was stopped"
            return None

        cgroup = self.cgroup
        return Kernel(cwd=self.work, name="saliency-sandbox", argv=self.kernel_argv(), transport="ipc",
                      ip=str(self.sockets / "kernel"), connection_file=str(self.sockets / "connection.json"),
                      kill_all=(lambda wait: cgroup.kill(wait=wait)) if cgroup is not None else None,
                      death_reason=death_reason, ready=self.lock_sockets)

    def lock_sockets(self) -> None:
        """Take the socket folder back from the kernel once its sockets are bound.

        The kernel needs to create its sockets there; afterwards the folder belongs to the grader (root, 0755),
        so the student's code can no longer replace a socket with a link to something else, which the grader's
        ZeroMQ client would follow when it reconnects.
        """
        if self.policy.isolated:
            os.chown(self.sockets, 0, 0)
            os.chmod(self.sockets, 0o755)

    def bwrap_argv(self, command: list[str]) -> list[str]:
        """The bubblewrap command line around ``command``."""
        args = ["bwrap", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
                "--unshare-cgroup-try", "--hostname", "sandbox", "--die-with-parent", "--new-session",
                "--clearenv", "--ro-bind", "/usr", "/usr"]
        made = {"/", "/usr"}
        for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            host = Path("/") / name
            if host.is_symlink():
                args += ["--symlink", os.readlink(host), str(host)]
            elif host.is_dir():
                args += ["--ro-bind", str(host), str(host)]
            made.add(str(host))
        args += ["--proc", "/proc", "--dev", "/dev"]
        made |= {"/proc", "/dev"}
        for size, target in ((256, "/tmp"), (128, "/dev/shm")):
            args += ["--perms", "1777", "--size", str(size * 2**20), "--tmpfs", target]
            made.add(target)

        def bind(src: Path | str, dst: Path | str, writable: bool = False) -> None:
            for parent in reversed(Path(dst).parents):
                if str(parent) not in made:
                    args.extend(["--perms", "0755", "--dir", str(parent)])
                    made.add(str(parent))
            args.extend(["--bind" if writable else "--ro-bind", str(src), str(dst)])
            made.add(str(dst))

        for name in ETC_FILES:
            if (Path("/etc") / name).exists():
                bind(Path("/etc") / name, Path("/etc") / name)
        for tree in sorted(self._python_trees()):
            bind(tree, tree)
        import helpers

        bind(Path(helpers.__file__).resolve().parent, f"{LIBRARY}/helpers")
        bind(self.inputs, INPUTS)
        bind(self.work, HOME, writable=True)
        bind(self.outbox, OUTBOX, writable=True)
        bind(self.sockets, SOCKETS, writable=True)
        for hidden in instructor_package_dirs():
            if any(Path(hidden).is_relative_to(t) for t in self._python_trees()):
                args += ["--tmpfs", str(hidden), "--remount-ro", str(hidden)]
        for key, value in self.kernel_env().items():
            args += ["--setenv", key, value]
        args += ["--chdir", HOME, "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--",
                 "prlimit", f"--fsize={self.policy.file_mib * 2**20}", "--core=0", "--nofile=1024", "--",
                 "setpriv", f"--reuid={SANDBOX_UID}", f"--regid={SANDBOX_UID}", "--clear-groups",
                 "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--", *command]
        return args

    @staticmethod
    def _python_trees() -> set[str]:
        """The Python installation and virtual environment the kernel runs on (read-only inside)."""
        trees = {sys.prefix, sys.base_prefix, str(Path(sys.executable).resolve().parents[1])}
        return {str(Path(t).resolve()) for t in trees} | {t for t in trees}

    def close(self) -> None:
        """Kill whatever is left of the kernel's processes and delete the job's folder and control group."""
        if self.cgroup is not None:
            self.cgroup.kill()
            self.cgroup.remove()
        if self.folder is not None:
            if self._mounted:
                subprocess.run(["umount", "-l", str(self.folder)], capture_output=True)
                self._mounted = False
            shutil.rmtree(self.folder, ignore_errors=True)


#: Packages a graded kernel must not import: the instructor's, and ``beyond``, whose ``smoothgrad`` answers the
#: homework (students get it with ``helpers`` only after the homework; a regular, non-editable install puts it
#: beside ``helpers`` in the Python installation the sandbox sees).
HIDDEN_PACKAGES = ("course_tools", "beyond")


def instructor_package_dirs() -> list[str]:
    """Where the packages of :data:`HIDDEN_PACKAGES` live, to hide them from the kernel wherever they are
    installed."""
    import importlib.util

    dirs = []
    for name in HIDDEN_PACKAGES:
        spec = importlib.util.find_spec(name)
        dirs += [str(Path(p).resolve()) for p in (spec.submodule_search_locations or [])] if spec else []
    return dirs


def seccomp_filter() -> bytes:
    """The system-call filter every sandbox runs under (compiled BPF, for ``bwrap --seccomp``).

    Everything is allowed except what would let student code leave or outlive its sandbox: creating a user
    namespace (``unshare``/``clone`` with ``CLONE_NEWUSER``: inside one a process holds every capability over
    its own mounts and network, the usual first step of a kernel exploit), ``clone3`` (its flags cannot be
    inspected; the C library then falls back to ``clone``), and the kernel keyrings (``keyctl``, ``add_key``,
    ``request_key``), which belong to the uid, not the sandbox, and would carry data from one notebook to the
    next.
    """
    import errno

    import pyseccomp as seccomp

    rules = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for call in ("unshare", "clone"):
        rules.add_rule(seccomp.ERRNO(errno.EPERM), call,
                       seccomp.Arg(0, seccomp.MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER))
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    for call in ("keyctl", "add_key", "request_key"):
        rules.add_rule(seccomp.ERRNO(errno.EPERM), call)
    with tempfile.TemporaryFile() as fh:
        rules.export_bpf(fh)
        fh.seek(0)
        return fh.read()


def launch(config_path: str, connection_file: str) -> None:
    """Grader side of the kernel command: join the control group, then become the sandbox.

    Runs as the grader (trusted), before any student code: moves itself into the job's control group (so
    every process the sandbox starts is counted and can be killed), gives the kernel a copy of the
    connection file that names its sockets as the sandbox sees them (``/run/kernel``), compiles the
    system-call filter, silences the kernel's own start-up chatter and replaces itself with bubblewrap.
    """
    config = json.loads(Path(config_path).read_text())
    for folder in config["cgroup"]:
        with open(Path(folder) / "cgroup.procs", "w") as fh:
            fh.write(str(os.getpid()))
    argv = [connection_file if a == "{connection_file}" else a for a in config["argv"]]
    if config["sockets"] is not None:
        connection = json.loads(Path(connection_file).read_text())
        connection["ip"] = f"{SOCKETS}/kernel"
        inside = Path(config["sockets"]) / "kernel-connection.json"
        inside.write_text(json.dumps(connection))
        os.chown(inside, config["uid"], config["uid"])
        read_end, write_end = os.pipe()
        os.write(write_end, seccomp_filter())
        os.close(write_end)
        os.set_inheritable(read_end, True)
        argv[1:1] = ["--seccomp", str(read_end)]
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.chdir(config["cwd"])
    os.execvpe(argv[0], argv, config["env"])


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m course_tools.sandbox LAUNCH_CONFIG CONNECTION_FILE")
    launch(sys.argv[1], sys.argv[2])
