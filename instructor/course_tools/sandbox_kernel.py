"""Start an IPython kernel for a student's notebook, limited and isolated as far as the system allows.

Used as the kernel's command line by :mod:`course_tools.grading`
(``python -m course_tools.sandbox_kernel -f {connection_file}``). Before
ipykernel, and so before any student code, it applies:

1. a cap on the kernel's data memory (``RLIMIT_DATA`` =
   ``SALIENCY_SANDBOX_MEMORY_MIB``): a runaway allocation fails with
   ``MemoryError`` instead of taking the machine down;
2. when started as root, a private mount namespace in which the course's
   private paths (``SALIENCY_SANDBOX_HIDE``: ``source/``, ``references/``,
   ``submitted/``, ``autograded/``, the gradebook, ``.git``...) are covered
   by empty file systems and the rest of the machine is read-only, except the
   sandbox folder; then either a switch to an unprivileged user (when that user
   can run this Python) or the loss of every capability, so that the student's
   code can neither undo the mounts nor read or change the instructor's files.

Without root only the memory cap applies; :func:`isolation_level` tells the
grader which protection it gets, and the grading log says so.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import resource
import shutil
import stat
import sys
from pathlib import Path

CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 32, 4096, 16384, 1 << 18
PR_CAPBSET_DROP = 24


def user_can_run_python(user: str) -> bool:
    """Whether ``user`` can execute this interpreter (every folder on its path searchable by others)."""
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    for path in {Path(sys.executable).resolve(), Path(sys.executable).absolute()}:
        for folder in path.parents:
            if not os.stat(folder).st_mode & stat.S_IXOTH:
                return False
        if not os.stat(path).st_mode & stat.S_IXOTH:
            return False
    return True


def isolation_level(user: str | None) -> str:
    """``"user"``, ``"namespace"`` or ``"none"``: what the kernel will get on this machine."""
    if os.getuid() != 0:
        return "none"
    return "user" if user and user_can_run_python(user) else "namespace"


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        raise OSError(ctypes.get_errno(), f"{what}: {os.strerror(ctypes.get_errno())}")


def _isolate(sandbox: str, hide: list[str]) -> None:
    libc = _libc()
    _check(libc.unshare(CLONE_NEWNS), "unshare")
    _check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make mounts private")
    for path in hide:
        if os.path.isdir(path):
            _check(libc.mount(b"tmpfs", path.encode(), b"tmpfs", 0, b"size=64k,mode=000"), f"hide {path}")
        elif os.path.isfile(path):
            _check(libc.mount(b"/dev/null", path.encode(), None, MS_BIND, None), f"hide {path}")
    _check(libc.mount(sandbox.encode(), sandbox.encode(), None, MS_BIND, None), "bind the sandbox")
    _check(libc.mount(b"none", b"/", None, MS_REMOUNT | MS_BIND | MS_RDONLY, None), "make / read-only")


def _drop_capabilities() -> None:
    libc = _libc()
    for cap in range(64):
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)  # EINVAL past the last capability is fine


def main() -> None:
    argv = sys.argv[1:]
    if "-f" not in argv:
        raise SystemExit("usage: python -m course_tools.sandbox_kernel -f CONNECTION_FILE")
    index = argv.index("-f") + 1
    sandbox = os.environ.get("SALIENCY_SANDBOX_DIR") or os.getcwd()
    memory = int(os.environ.get("SALIENCY_SANDBOX_MEMORY_MIB", "0") or 0)
    if memory > 0:
        limit = memory * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    user = os.environ.get("SALIENCY_SANDBOX_USER") or None
    level = isolation_level(user)
    if level != "none":
        private = os.path.join(sandbox, ".kernel-connection.json")
        shutil.copyfile(argv[index], private)
        argv[index] = private
        hide = [p for p in os.environ.get("SALIENCY_SANDBOX_HIDE", "").split(os.pathsep) if p]
        _isolate(sandbox, hide)
        if level == "user":
            entry = pwd.getpwnam(user)
            for folder, _, files in os.walk(sandbox):
                os.chown(folder, entry.pw_uid, entry.pw_gid)
                for name in files:
                    os.chown(os.path.join(folder, name), entry.pw_uid, entry.pw_gid)
            os.setgroups([])
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
        else:
            _drop_capabilities()
    for name in ("SALIENCY_SANDBOX_HIDE", "SALIENCY_SANDBOX_USER"):
        os.environ.pop(name, None)
    os.environ.update(HOME=sandbox, TMPDIR=sandbox, IPYTHONDIR=os.path.join(sandbox, ".ipython"),
                      MPLCONFIGDIR=os.path.join(sandbox, ".matplotlib"))
    os.chdir(sandbox)
    os.execv(sys.executable, [sys.executable, "-m", "ipykernel_launcher", *argv])


if __name__ == "__main__":
    main()
