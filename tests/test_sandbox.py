"""Tests of course_tools.sandbox: the policy's checks, the bubblewrap command, and (as root) a real sandbox."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from course_tools.sandbox import HOME, KernelJob, SandboxPolicy, instructor_package_dirs, prerequisites

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("kwargs, word", [({"memory_mib": 0}, "memory_mib"), ({"pids": 2}, "pids"),
                                          ({"cpus": 0.0}, "cpus"), ({"disk_mib": "big"}, "disk_mib"),
                                          ({"threads": 0}, "threads")])
def test_policy_refuses_bad_limits(kwargs, word):
    with pytest.raises(ValueError, match=word):
        SandboxPolicy(**kwargs)


def test_prerequisites_name_what_is_missing():
    missing = prerequisites()
    assert isinstance(missing, list) and all(isinstance(m, str) and m for m in missing)


def test_the_bwrap_command_isolates_and_hides_the_course(tmp_path):
    job = KernelJob("job", SandboxPolicy(), inputs=tmp_path)
    job.folder = tmp_path
    argv = job.bwrap_argv(["python"])
    for flag in ("--unshare-pid", "--unshare-net", "--unshare-ipc", "--die-with-parent", "--clearenv",
                 "--no-new-privs", "--bounding-set=-all"):
        assert flag in argv
    sources = {argv[i + 1] for i, a in enumerate(argv) if a in ("--bind", "--ro-bind")}
    for private in ("source", "references", "submitted", "autograded", "instructor"):
        assert str(ROOT / private) not in sources
    assert not any(s == str(ROOT) for s in sources)
    writable = {argv[i + 2] for i, a in enumerate(argv) if a == "--bind"}
    assert HOME in writable and "/" not in writable


def run_probe(tmp_path: Path, probe: str, *, with_filter: bool = False) -> dict:
    """Run ``probe`` (Python that writes a JSON report to its home) in a real sandbox; return the report."""
    from course_tools.sandbox import seccomp_filter

    job = KernelJob("probe", SandboxPolicy(memory_mib=1024), inputs=tmp_path).open(tmp_path)
    try:
        argv, fds = job.bwrap_argv([os.sys.executable, "-c", probe]), ()
        if with_filter:
            read_end, write_end = os.pipe()
            os.write(write_end, seccomp_filter())
            os.close(write_end)
            argv[1:1], fds = ["--seccomp", str(read_end)], (read_end,)
        subprocess.run(argv, check=True, timeout=120, env=job.kernel_env(), pass_fds=fds)
        return json.loads((job.work / "result.json").read_text())
    finally:
        job.close()


@pytest.mark.skipif(prerequisites() != [], reason="needs root, bubblewrap and control groups")
def test_inside_the_sandbox(tmp_path):
    """What a student's code sees: its own user, no network, no course files, no instructor package."""
    probe = ("import json, os, socket, sys\n"
             "out = {'uid': os.getuid(), 'pids': sorted(int(p) for p in os.listdir('/proc') if p.isdigit())}\n"
             f"out['course'] = os.path.exists({str(ROOT / 'source')!r}) or os.path.exists({str(ROOT / 'references')!r})\n"
             "try:\n    socket.create_connection(('127.0.0.1', 22), timeout=1); out['net'] = True\n"
             "except OSError:\n    out['net'] = False\n"
             "try:\n    import course_tools.smoothgrad; out['instructor'] = True\n"
             "except ImportError:\n    out['instructor'] = False\n"
             "try:\n    import beyond.smoothgrad; out['beyond'] = True\n"
             "except ImportError:\n    out['beyond'] = False\n"
             "import helpers; out['helpers'] = helpers.__file__\n"
             "open('/home/student/result.json', 'w').write(json.dumps(out))\n")
    seen = run_probe(tmp_path, probe)
    assert seen["uid"] == 65534 and not seen["course"] and not seen["net"] and not seen["instructor"]
    assert not seen["beyond"]
    assert len(seen["pids"]) <= 3, seen["pids"]   # bwrap's init and the probe: no host processes
    assert seen["helpers"].startswith("/run/course/lib/")
    assert {Path(d).name for d in instructor_package_dirs()} == {"course_tools", "beyond"}


@pytest.mark.skipif(prerequisites() != [], reason="needs root, bubblewrap, libseccomp and control groups")
def test_the_system_call_filter_blocks_user_namespaces_and_keyrings(tmp_path):
    """The launcher's filter, compiled and loaded by bwrap: what a student could use to escape or leave data."""
    probe = ("import ctypes, os, json\n"
             "libc = ctypes.CDLL(None, use_errno=True)\n"
             "out = {'userns': libc.unshare(0x10000000), 'keyring': libc.syscall(248, b'user', b'k', b'v', 1, -4),\n"
             "       'tmp': os.listdir('/tmp'), 'threads_ok': True}\n"
             "import threading; t = threading.Thread(target=lambda: None); t.start(); t.join()\n"
             "open('/home/student/result.json', 'w').write(json.dumps(out))\n")
    seen = run_probe(tmp_path, probe, with_filter=True)
    assert seen["userns"] == -1 and seen["keyring"] == -1 and seen["threads_ok"]
    # Nothing of the grader's paths, not even empty folders; only the way to the Python installation, read-only,
    # when it lives under /tmp (a CI checkout in a temporary folder).
    python_home = {Path(t).relative_to("/tmp").parts[0] for t in KernelJob._python_trees()
                   if Path(t).is_relative_to("/tmp")}
    assert set(seen["tmp"]) <= python_home, seen["tmp"]
