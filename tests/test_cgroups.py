"""Tests of course_tools.cgroups: limits written for v1 and v2 layouts (fake trees), and a real group as root."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from course_tools.cgroups import PARENT_NAME, Cgroup, CgroupError, Limits, layout

LIMITS = Limits(memory_bytes=512 * 2**20, pids=64, cpus=1.5)


def fake_v1(root: Path) -> str:
    for controller in ("memory", "pids", "cpu"):
        (root / controller / "grader").mkdir(parents=True)
        (root / controller / "cgroup.procs").write_text("")
    return "4:memory:/grader\n8:pids:/grader\n1:cpu,cpuacct:/grader\n0::/\n"


def fake_v2(root: Path) -> str:
    (root / "grader").mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu io memory pids\n")
    (root / "grader" / "cgroup.controllers").write_text("cpu io memory pids\n")
    return "0::/grader\n"


def test_v1_limits_are_written_per_controller(tmp_path):
    group = Cgroup.create("job-1", LIMITS, root=tmp_path, proc_cgroup=fake_v1(tmp_path))
    memory, pids, cpu = (tmp_path / c / "grader" / PARENT_NAME / "job-1" for c in ("memory", "pids", "cpu"))
    assert group.version == "v1" and group.dirs == [memory, pids, cpu]
    assert (memory / "memory.limit_in_bytes").read_text() == str(512 * 2**20)
    assert (pids / "pids.max").read_text() == "64"
    assert (cpu / "cpu.cfs_quota_us").read_text() == "150000"


def test_v2_limits_and_delegation(tmp_path):
    group = Cgroup.create("job-2", LIMITS, root=tmp_path, proc_cgroup=fake_v2(tmp_path))
    folder = tmp_path / "grader" / PARENT_NAME / "job-2"
    assert group.version == "v2" and group.dirs == [folder]
    assert (folder / "memory.max").read_text() == str(512 * 2**20)
    assert (folder / "pids.max").read_text() == "64"
    assert (folder / "cpu.max").read_text() == "150000 100000"
    assert (tmp_path / "grader" / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"


def test_v2_without_delegated_controllers_is_refused(tmp_path):
    proc = fake_v2(tmp_path)
    (tmp_path / "grader" / "cgroup.controllers").write_text("cpu io\n")
    with pytest.raises(CgroupError, match="not delegated"):
        Cgroup.create("job", LIMITS, root=tmp_path, proc_cgroup=proc)


def test_no_cgroups_mounted(tmp_path):
    assert layout(tmp_path) is None
    with pytest.raises(CgroupError, match="no control groups"):
        Cgroup.create("job", LIMITS, root=tmp_path, proc_cgroup="0::/\n")


@pytest.mark.parametrize("kwargs, word", [
    ({"memory_bytes": 10, "pids": 64, "cpus": 1}, "memory_bytes"),
    ({"memory_bytes": 2**30, "pids": 2, "cpus": 1}, "pids"),
    ({"memory_bytes": 2**30, "pids": 64, "cpus": 0}, "cpus"),
    ({"memory_bytes": 2**30, "pids": True, "cpus": 1}, "pids"),
])
def test_bad_limits_name_the_argument(kwargs, word):
    with pytest.raises(ValueError, match=word):
        Limits(**kwargs)


@pytest.mark.parametrize("name", ["", "a/b", ".hidden", 3])
def test_bad_group_names(tmp_path, name):
    with pytest.raises(ValueError, match="name"):
        Cgroup.create(name, LIMITS, root=tmp_path, proc_cgroup=fake_v1(tmp_path))


@pytest.mark.skipif(os.geteuid() != 0 or layout() is None, reason="needs root and mounted control groups")
def test_a_real_group_counts_and_kills_a_process_tree():
    group = Cgroup.create(f"test-{os.getpid()}", Limits(256 * 2**20, 32, 1.0))
    try:
        child = subprocess.Popen(["sh", "-c", "sleep 300 & sleep 300 & wait"],
                                 preexec_fn=lambda: group.add(os.getpid()))
        deadline = time.monotonic() + 5
        while len(group.pids()) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(group.pids()) == 3  # the shell and both sleeps, grandchildren included
        assert group.kill()
        assert group.pids() == set()
        child.wait(timeout=5)
        assert not group.oom_killed()
    finally:
        group.kill()
        group.remove()
