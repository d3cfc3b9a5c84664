"""Per-kernel cgroups: what a kernel's cgroup holds while it starts and once it is up."""

from __future__ import annotations

import pytest
from conftest import needs_linux

from gateway.config import MiB
from gateway.limits import CgroupLimiter, LimitValues

LIMITS = LimitValues(memory=512 * MiB, pids=64, cpu=1.0, file_size=MiB, open_files=64)


def fake_v1_tree(root):
    for controller in ("memory", "pids", "cpu"):
        (root / controller).mkdir()
    return CgroupLimiter(root=root)


def test_a_starting_kernel_weighs_less_than_a_running_one(tmp_path):
    cgroups = fake_v1_tree(tmp_path)
    assert cgroups.version == 1 and cgroups.controllers == {"memory", "pids", "cpu"}
    procs = cgroups.create("k1", LIMITS)
    cpu = tmp_path / "cpu" / "code-interpreter-gateway" / "k1"
    assert cpu / "cgroup.procs" in procs
    assert (cpu / "cpu.shares").read_text() == "128"
    assert (cpu / "cpu.cfs_quota_us").read_text() == "100000"  # the limit itself is unchanged
    cgroups.started("k1")
    assert (cpu / "cpu.shares").read_text() == "1024"


def test_without_a_cpu_controller_started_is_a_no_op(tmp_path):
    (tmp_path / "memory").mkdir()
    cgroups = CgroupLimiter(root=tmp_path)
    cgroups.create("k1", LIMITS)
    cgroups.started("k1")
    assert not (tmp_path / "cpu").exists()


@needs_linux
@pytest.mark.asyncio(loop_scope="session")
async def test_pooled_kernels_run_at_normal_weight(running):
    cgroups = running.gateway.host.cgroups
    if cgroups is None or "cpu" not in cgroups.controllers:
        pytest.skip("no writable cpu cgroup controller on this host (reported on /healthz)")
    warm = [kernel for kernel, state in running.gateway.pool.kernels() if state == "idle"]
    assert warm, "the pool has warm kernels"
    name = "cpu.shares" if cgroups.version == 1 else "cpu.weight"
    normal = "1024" if cgroups.version == 1 else "100"
    for kernel in warm:
        assert (cgroups._dir("cpu", kernel.id) / name).read_text().strip() == normal
