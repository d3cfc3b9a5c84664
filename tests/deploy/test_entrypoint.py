"""deploy/entrypoint.sh against fake cgroup trees: the cgroup v2 path (this host is cgroup v1,
where the container test runs the v1 path for real), the refusal to touch a cgroup namespace
shared with the host, and the command exec'd in every case."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from support.containers import DEPLOY

ENTRYPOINT = DEPLOY / "entrypoint.sh"


def run(tmp_path: Path, self_cgroup: str, *, mounts: Path | None = None
        ) -> subprocess.CompletedProcess:
    (tmp_path / "self-cgroup").write_text(self_cgroup)
    mount = tmp_path / "mount"
    mount.write_text(f'#!/bin/sh\necho "$@" >> {mounts or tmp_path / "mounts"}\n')
    mount.chmod(0o755)
    env = {**os.environ, "GATEWAY_CGROUP_ROOT": str(tmp_path / "cg"),
           "GATEWAY_PROC_SYS": str(tmp_path / "sys"),
           "GATEWAY_SELF_CGROUP": str(tmp_path / "self-cgroup"), "GATEWAY_MOUNT": str(mount)}
    (tmp_path / "sys").mkdir(exist_ok=True)
    return subprocess.run(["sh", str(ENTRYPOINT), "echo", "the command ran"], env=env,
                          capture_output=True, text=True, timeout=60)


def fake_v2(root: Path, controllers: str) -> Path:
    cg = root / "cg"
    cg.mkdir()
    (cg / "cgroup.controllers").write_text(controllers + "\n")
    (cg / "cgroup.procs").write_text("1\n7\n")
    (cg / "cgroup.subtree_control").write_text("")
    return cg


@pytest.fixture(autouse=True)
def as_root():
    if os.geteuid() != 0:
        pytest.skip("the entrypoint acts only as root (the container's user)")


def test_cgroup_v2_moves_the_processes_to_a_leaf_and_delegates_controllers(tmp_path):
    cg = fake_v2(tmp_path, "cpuset cpu io memory hugetlb pids")
    done = run(tmp_path, "0::/\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "the command ran\n"
    # A cgroup.procs file takes one pid per write; the fake keeps the last one.
    assert (cg / "init" / "cgroup.procs").read_text() == "7\n"
    assert (cg / "cgroup.subtree_control").read_text() == "+memory +pids +cpu\n"
    assert not (tmp_path / "mounts").exists()  # writable already: nothing remounted


def test_cgroup_v2_names_a_controller_the_host_did_not_delegate(tmp_path):
    cg = fake_v2(tmp_path, "cpu io memory")
    done = run(tmp_path, "0::/\n")
    assert done.returncode == 0 and done.stdout == "the command ran\n"
    assert (cg / "cgroup.subtree_control").read_text() == "+memory +cpu\n"
    assert "the pids controller is not delegated" in done.stderr


def test_the_hosts_cgroup_namespace_is_left_alone(tmp_path):
    cg = fake_v2(tmp_path, "cpu memory pids")
    done = run(tmp_path, "0::/system.slice/docker-0123.scope\n")
    assert done.returncode == 0 and done.stdout == "the command ran\n"
    assert "shares the host's cgroup namespace" in done.stderr
    assert not (cg / "init").exists()
    assert (cg / "cgroup.subtree_control").read_text() == ""


def test_cgroup_v1_controllers_already_writable_need_no_remount(tmp_path):
    for name in ("memory", "pids", "cpu"):
        (tmp_path / "cg" / name).mkdir(parents=True)
    done = run(tmp_path, "12:memory:/\n11:pids:/\n4:cpu:/\n0::/\n")
    assert done.returncode == 0 and done.stdout == "the command ran\n"
    assert not (tmp_path / "mounts").exists()
    assert done.stderr == ""


def test_a_missing_v1_controller_is_named(tmp_path):
    (tmp_path / "cg" / "memory").mkdir(parents=True)
    done = run(tmp_path, "12:memory:/\n")
    assert done.returncode == 0 and done.stdout == "the command ran\n"
    assert "no pids controller" in done.stderr and "no cpu controller" in done.stderr


def test_statefulset_pods_take_kernel_uid_ranges_by_ordinal(tmp_path):
    (tmp_path / "self-cgroup").write_text("0::/docker/x\n")
    env = {**os.environ, "GATEWAY_SELF_CGROUP": str(tmp_path / "self-cgroup"),
           "GATEWAY_SKIP_REMOUNT": "1", "GATEWAY_KERNEL_UID_STRIDE": "10000"}
    env.pop("GATEWAY_KERNEL_UID_BASE", None)
    show = ["sh", "-c", 'echo "$GATEWAY_KERNEL_UID_BASE $GATEWAY_KERNEL_UID_COUNT"']

    def uids(hostname: str, **extra: str) -> str:
        return subprocess.run(["sh", str(ENTRYPOINT), *show],
                              env={**env, "HOSTNAME": hostname, **extra}, capture_output=True,
                              text=True, timeout=60, check=True).stdout.strip()

    assert uids("gw-code-interpreter-gateway-0") == "100000 10000"
    assert uids("gw-code-interpreter-gateway-3") == "130000 10000"
    assert uids("gateway") == "100000 10000"  # not a StatefulSet pod: ordinal 0
    assert uids("gw-2", GATEWAY_KERNEL_UID_BASE="500000") == "500000"  # explicit wins
