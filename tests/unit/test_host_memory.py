"""Defaults sized from the host, admission by real memory and memory pressure, on fake hosts:
the decisions are pure, the readers read a fake /proc and /sys/fs/cgroup in a temporary
directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway import host_memory
from gateway.config import Settings
from gateway.errors import SettingsError
from gateway.execution.pool import Capacity
from gateway.host_memory import (
    IDLE_KERNEL_COST,
    HostMemory,
    HostSize,
    admits_kernel,
    default_kernel_limit,
    default_memory_floor,
    kernels_to_free,
    read_host_size,
    read_memory,
    under_pressure,
)
from gateway.sandbox.limits import CgroupLimiter

MiB = 2**20
GiB = 2**30

SMALL = HostSize(memory=4 * GiB, cores=1, open_files=1_048_576)
THIS = HostSize(memory=24 * GiB, cores=2, open_files=1_048_576)  # the host
LARGE = HostSize(memory=256 * GiB, cores=64, open_files=1_048_576)


# -- defaults from the host's size --------------------------------------------------------------

def test_the_memory_floor_is_a_sixteenth_of_memory_within_bounds():
    assert default_memory_floor(SMALL) == 256 * MiB
    assert default_memory_floor(THIS) == 24 * GiB // 16  # 1.5 GiB
    assert default_memory_floor(LARGE) == 4 * GiB  # a sixteenth would be 16 GiB
    assert default_memory_floor(HostSize(memory=1 * GiB, cores=1)) == 256 * MiB


def test_the_kernel_limit_is_idle_kernels_in_memory_above_the_floor():
    assert default_kernel_limit(SMALL, default_memory_floor(SMALL)) == 60  # 3.75 GiB / 64 MiB
    # The density goal: at least 300 live idle kernels on 24 GiB and 2 cores.
    assert default_kernel_limit(THIS, default_memory_floor(THIS)) == 360
    assert default_kernel_limit(LARGE, default_memory_floor(LARGE)) == 4032


def test_the_kernel_limit_is_bounded_per_core_and_by_open_files():
    many_gib_few_cores = HostSize(memory=512 * GiB, cores=2, open_files=1_048_576)
    assert default_kernel_limit(many_gib_few_cores, 4 * GiB) == 512  # 256 per core
    # A limit of 1024 descriptors serves only 16 kernels.
    assert default_kernel_limit(HostSize(24 * GiB, 2, open_files=1024), GiB) == 16
    assert default_kernel_limit(HostSize(24 * GiB, 2, open_files=None), GiB) == 368


def test_a_host_with_no_room_above_its_floor_still_allows_one_kernel():
    assert default_kernel_limit(HostSize(memory=256 * MiB, cores=1), 512 * MiB) == 1


# -- admission by real memory --------------------------------------------------------------------

def test_a_kernel_is_admitted_while_memory_above_the_floor_remains():
    memory = HostMemory(total=24 * GiB, available=2 * GiB)
    assert admits_kernel(memory, floor=1 * GiB, starting=0) is None
    # 15 starting + this one at 64 MiB each: exactly 1 GiB left, still on the floor.
    assert admits_kernel(memory, floor=1 * GiB, starting=15) is None
    refusal = admits_kernel(memory, floor=1 * GiB, starting=16)
    assert refusal is not None
    assert "2048 MiB available, 16 kernels starting" in refusal and "memory_floor" in refusal


def test_memory_limits_are_not_summed():
    # 300 live kernels of 1 GiB limit each on a 24 GiB host: they use what available says.
    memory = HostMemory(total=24 * GiB, available=12 * GiB)
    assert admits_kernel(memory, floor=GiB, starting=0) is None


def test_unknown_memory_admits():
    assert admits_kernel(None, floor=GiB, starting=100) is None


def test_capacity_asks_the_kernel_limit_first_then_memory():
    settings = Settings(max_kernels=3, memory_floor=GiB)
    plenty = Capacity(settings, None, read=lambda: HostMemory(24 * GiB, 20 * GiB))
    assert plenty.admits(kernels=2, starting=0) is None
    assert plenty.admits(kernels=3, starting=0) == "all 3 kernels are in use (max_kernels)"
    short = Capacity(settings, None, read=lambda: HostMemory(24 * GiB, GiB + 32 * MiB))
    refusal = short.admits(kernels=0, starting=0)
    assert refusal is not None and refusal.startswith("host memory")


def test_capacity_snapshot_says_what_it_knows():
    settings = Settings(max_kernels=5, memory_floor=GiB)
    snapshot = Capacity(settings, None, read=lambda: HostMemory(8 * GiB, GiB // 2, 3.5)
                        ).snapshot(["k1"])
    assert snapshot["kernel_limit"] == 5 and snapshot["memory_floor_bytes"] == GiB
    assert snapshot["memory_available_bytes"] == GiB // 2 and snapshot["memory_pressure"] == 3.5
    assert snapshot["kernels_memory_bytes"] is None  # no memory cgroups given
    assert snapshot["under_pressure"].startswith("host memory: 512 MiB available")


@pytest.mark.parametrize("version", [1, 2])
def test_kernels_memory_is_the_sum_of_their_cgroups_charges(tmp_path, version):
    if version == 2:
        write(tmp_path, cgroup__controllers="")  # no controller: the limiter writes nothing
    limiter = CgroupLimiter(tmp_path)
    assert limiter.version == version
    limiter.controllers = {"memory"}
    name = "memory.current" if version == 2 else "memory.usage_in_bytes"
    for kernel_id, used in (("k1", 30 * MiB), ("k2", 40 * MiB)):
        path = limiter._dir("memory", kernel_id)
        path.mkdir(parents=True)
        (path / name).write_text(f"{used}\n")
    capacity = Capacity(Settings(max_kernels=4), limiter, read=lambda: None)
    # A kernel whose cgroup is already gone counts nothing.
    assert capacity.kernels_memory(["k1", "k2", "gone"]) == 70 * MiB
    assert capacity.snapshot(["k1"])["kernels_memory_bytes"] == 30 * MiB
    assert Capacity(Settings(max_kernels=4), None).kernels_memory(["k1"]) is None


# -- pressure -------------------------------------------------------------------------------------

def test_pressure_is_memory_below_the_floor_or_tasks_waiting_for_memory():
    floor = GiB
    assert under_pressure(HostMemory(24 * GiB, 4 * GiB, 0.0), floor) is None
    assert under_pressure(HostMemory(24 * GiB, 4 * GiB, None), floor) is None  # no PSI
    low = under_pressure(HostMemory(24 * GiB, 900 * MiB, 0.0), floor)
    assert low is not None and "below the floor of 1024 MiB" in low
    stalled = under_pressure(HostMemory(24 * GiB, 1536 * MiB, 42.0), floor)
    assert stalled is not None and "42.0 %" in stalled and "1536 MiB available" in stalled
    assert under_pressure(None, floor) is None


def test_stalls_count_only_when_memory_is_getting_short():
    """PSI also counts tasks reclaiming against their own cgroup's limit (a kernel at its
    memory_limit) while the host has plenty: that is no reason to hibernate anyone."""
    floor = GiB
    assert under_pressure(HostMemory(24 * GiB, 4 * GiB, 87.0), floor) is None
    assert under_pressure(HostMemory(24 * GiB, 2 * GiB, 87.0), floor) is None  # the zone's edge
    assert under_pressure(HostMemory(24 * GiB, 2 * GiB - 1, 87.0), floor) is not None


def test_no_kernel_starts_under_pressure_even_above_the_floor():
    floor = GiB
    assert admits_kernel(HostMemory(24 * GiB, 1536 * MiB, 3.0), floor, 0) is None
    refused = admits_kernel(HostMemory(24 * GiB, 1536 * MiB, 40.0), floor, 0)
    assert refused is not None and "no kernel starts until it eases" in refused


def test_threads_freed_under_pressure_cover_the_deficit_a_few_at_a_time():
    floor = GiB
    assert kernels_to_free(HostMemory(24 * GiB, floor - IDLE_KERNEL_COST), floor) == 1
    assert kernels_to_free(HostMemory(24 * GiB, floor - 3 * IDLE_KERNEL_COST - 1), floor) == 4
    assert kernels_to_free(HostMemory(24 * GiB, 0), floor) == host_memory.MOST_FREED_AT_ONCE
    assert kernels_to_free(HostMemory(24 * GiB, 4 * GiB, 50.0), floor) == 1  # PSI alone
    assert kernels_to_free(None, floor) == 0


# -- settings ----------------------------------------------------------------------------------

@pytest.fixture
def host(monkeypatch):
    """Settings resolve their 0s against this fake host."""
    def use(size: HostSize) -> None:
        monkeypatch.setattr(host_memory, "host_size", lambda: size)
    return use


@pytest.mark.parametrize(("size", "kernels", "floor"), [
    (SMALL, 60, 256 * MiB), (THIS, 360, 1536 * MiB), (LARGE, 4032, 4 * GiB)])
def test_settings_resolve_their_zeros_from_the_host(host, size, kernels, floor):
    host(size)
    settings = Settings()
    assert settings.max_kernels == 0 and settings.memory_floor == 0
    assert settings.kernel_limit == kernels and settings.memory_floor_limit == floor
    assert Settings(tokens={"a": "x", "b": "y"}).identity_thread_limit == kernels // 2


def test_explicit_values_win_over_the_host(host):
    host(THIS)
    settings = Settings(max_kernels=16, memory_floor=2 * GiB)
    assert settings.kernel_limit == 16 and settings.memory_floor_limit == 2 * GiB
    # A larger floor leaves room for fewer kernels.
    assert Settings(memory_floor=8 * GiB).kernel_limit == 256


def test_a_floor_as_large_as_the_host_is_refused(host):
    host(SMALL)
    with pytest.raises(SettingsError) as caught:
        Settings(memory_floor=4 * GiB)
    assert ("memory_floor", "4 GiB is not less than this host's memory (4 GiB): no kernel "
                            "could ever start") in caught.value.problems


def test_warm_pools_must_fit_in_the_limit_derived_from_the_host(host):
    host(SMALL)
    with pytest.raises(SettingsError) as caught:
        Settings(pool_size=61)
    assert caught.value.problems == [
        ("pool_size", "the warm pools of every language (61) are more than max_kernels (60, "
                      "from this host's size), which bounds them together")]


def test_a_negative_kernel_limit_is_refused():
    with pytest.raises(SettingsError) as caught:
        Settings(max_kernels=-1)
    assert caught.value.problems == [
        ("max_kernels", "-1 is out of range: 0 (from the host) or at least 1")]


# -- reading a fake host -----------------------------------------------------------------------

MEMINFO = "MemTotal:       24683772 kB\nMemFree:  1000 kB\nMemAvailable:   20000000 kB\n"
PSI = "some avg10=12.50 avg60=3.00 avg300=1.00 total=100\nfull avg10=0.00 avg60=0.00 " \
      "avg300=0.00 total=0\n"


def fake_proc(root: Path, cgroup: str, meminfo: str = MEMINFO, psi: str | None = PSI) -> Path:
    proc = root / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "meminfo").write_text(meminfo)
    (proc / "self" / "cgroup").write_text(cgroup)
    if psi is not None:
        (proc / "pressure").mkdir()
        (proc / "pressure" / "memory").write_text(psi)
    return proc


def write(directory: Path, **files: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name.replace("__", ".")).write_text(text)


def test_an_unlimited_host_reads_as_meminfo_and_psi(tmp_path):
    proc = fake_proc(tmp_path, "not a cgroup line\n0::/\n")
    cgroups = tmp_path / "cgroup"
    write(cgroups, cgroup__controllers="memory pids cpu", memory__current="123")
    memory = read_memory(proc, cgroups)
    assert memory == HostMemory(24683772 * 1024, 20000000 * 1024, 12.5)


def test_a_v2_container_limit_bounds_total_and_available(tmp_path):
    proc = fake_proc(tmp_path, "0::/gateway.slice/gw.service\n")
    cgroups = tmp_path / "cgroup"
    write(cgroups, cgroup__controllers="memory")
    write(cgroups / "gateway.slice", memory__max=str(8 * GiB), memory__current=str(6 * GiB),
          memory__stat=f"anon 1\ninactive_file {GiB}\n")
    write(cgroups / "gateway.slice" / "gw.service", memory__max="max",
          memory__current=str(GiB))
    memory = read_memory(proc, cgroups)
    assert memory is not None
    # 8 GiB limit, 6 GiB used of which 1 GiB is inactive cache: 3 GiB available.
    assert memory.total == 8 * GiB and memory.available == 3 * GiB


def test_a_v1_limit_and_a_container_without_its_own_cgroup_namespace(tmp_path):
    # The path /proc names is the host's; the container's own cgroup is mounted as the root.
    proc = fake_proc(tmp_path, "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n",
                     psi=None)
    cgroups = tmp_path / "cgroup"
    write(cgroups / "memory", memory__limit_in_bytes=str(2 * GiB),
          memory__usage_in_bytes=str(GiB + 512 * MiB),
          memory__stat=f"cache 5\ntotal_inactive_file {256 * MiB}\n")
    write(cgroups / "cpu", cpu__cfs_quota_us="150000", cpu__cfs_period_us="100000")
    memory = read_memory(proc, cgroups)
    assert memory == HostMemory(2 * GiB, 768 * MiB, None)
    size = read_host_size(proc, cgroups)
    assert size.memory == 2 * GiB and size.cores == 1  # 1.5 cores of quota


def test_v1_no_limit_is_a_huge_number_not_a_limit(tmp_path):
    proc = fake_proc(tmp_path, "4:memory:/user.slice\n")
    cgroups = tmp_path / "cgroup"
    write(cgroups / "memory" / "user.slice", memory__limit_in_bytes="9223372036854771712",
          memory__usage_in_bytes=str(GiB))
    memory = read_memory(proc, cgroups)
    assert memory is not None and memory.total == 24683772 * 1024


def test_an_old_kernel_without_memavailable_counts_free_memory(tmp_path):
    proc = fake_proc(tmp_path, "0::/\n", meminfo="MemTotal: 4000 kB\nMemFree: 1000 kB\n")
    memory = read_memory(proc, tmp_path / "no-cgroups")
    assert memory == HostMemory(4000 * 1024, 1000 * 1024, 12.5)


def test_no_meminfo_is_unknown_memory(tmp_path):
    assert read_memory(tmp_path / "nothing", tmp_path / "nothing") is None


def test_the_gateway_raises_its_soft_open_file_limit_to_the_hard_one():
    # In a child: the test process's own limit stays as it is.
    code = ("import resource\n"
            "from gateway.host_memory import use_all_open_files\n"
            "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
            "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
            "use_all_open_files()\n"
            "print(resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout == "True\n"


def test_this_host_reads():
    memory = read_memory()
    assert memory is not None and 0 < memory.available <= memory.total
    size = read_host_size()
    assert size.memory == memory.total and size.cores >= 1
