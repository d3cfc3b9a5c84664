"""The host's memory and cores, and the decisions that follow from them: how many kernels fit,
how much memory stays free, when the host is under memory pressure.

Two kinds of facts. ``HostSize`` does not change while the gateway runs (physical memory or a
lower limit of the gateway's own cgroup, usable cores, open-file limit); it is read once and
sizes the defaults ``max_kernels = 0`` and ``memory_floor = 0`` resolve to. ``HostMemory`` is
read whenever a kernel is to start and by the pressure monitor: memory available now (the
kernel's ``MemAvailable``, or less when the gateway's cgroup is nearer its limit) and memory
pressure (PSI). Reading is a thin layer over /proc and /sys/fs/cgroup (v1 or v2) that returns
None for what the host does not report; every decision is a pure function of these dataclasses,
so tests pass fake hosts.
"""

from __future__ import annotations

import functools
import os
import resource
from dataclasses import dataclass
from pathlib import Path

MiB = 2**20
GiB = 2**30

# What one live idle kernel is counted at. 300 idle kernels forked from the zygote cost 34 MiB
# PSS each, and available memory fell by 39 MiB per kernel with the gateway's side counted (a
# jupyter_client manager, its zmq context and threads); a margin for a first import: 64 MiB.
IDLE_KERNEL_COST = 64 * MiB
# Idle kernels use no CPU worth counting (a poller wakes each once a second), so memory is the
# bound on a normal host. This one only keeps a host with much memory and few cores from
# holding thousands of kernels whose owners would then all share those few cores.
KERNELS_PER_CORE = 256
# File descriptors the gateway holds per live kernel (its zmq sockets and context, the
# kernel's pipes; 27 measured) and those it keeps for everything else (listeners, clients).
FDS_PER_KERNEL = 32
FDS_RESERVED = 512
# The free-memory floor by default: a sixteenth of memory, at least 256 MiB (a small host still
# needs room for the gateway and page cache), at most 4 GiB (past that a sixteenth is more
# than any burst of growth between two looks at the memory).
FLOOR_SHARE = 16
FLOOR_MIN = 256 * MiB
FLOOR_MAX = 4 * GiB
# PSI "some avg10": the share of the last 10 s in which some task waited for memory. Above this
# the kernel is reclaiming hard: idle threads give their memory back before the OOM killer acts.
PRESSURE_LIMIT = 10.0
# ... but only while available memory is within this multiple of the floor. PSI counts every
# stalled task on the host, also one reclaiming against its own cgroup's limit (a kernel at its
# memory_limit, a container) while the host has gigabytes free: hibernating idle threads then
# frees nothing that anyone is short of.
PRESSURE_ZONE = 2
# Idle threads hibernated at most in one look under pressure: the next look (seconds later)
# sees what they freed, and a thread with a large namespace frees far more than an idle kernel.
MOST_FREED_AT_ONCE = 8

UNLIMITED = 2**62  # cgroup v1 writes "no limit" as a page-rounded 2**63 - 1


@dataclass(frozen=True)
class HostSize:
    """What the gateway may use in all, as the defaults are sized from it."""

    memory: int  # bytes: physical memory, or the gateway's cgroup limit when lower
    cores: int
    open_files: int | None = None  # the gateway's hard RLIMIT_NOFILE (None: unlimited)


@dataclass(frozen=True)
class HostMemory:
    """Memory now: what the gateway may still use before the host (or its cgroup) runs out."""

    total: int  # bytes: physical memory, or the gateway's cgroup limit when lower
    available: int  # bytes that can be allocated without swapping or an OOM kill
    pressure: float | None = None  # PSI some avg10 in %; None: the host does not report it


# -- decisions (pure) -----------------------------------------------------------------------------

def default_memory_floor(size: HostSize) -> int:
    """The free memory kept when ``memory_floor`` is 0: 1/16 of memory, 256 MiB to 4 GiB."""
    return min(FLOOR_MAX, max(FLOOR_MIN, size.memory // FLOOR_SHARE))


def default_kernel_limit(size: HostSize, floor: int) -> int:
    """Kernels, leased and warm, when ``max_kernels`` is 0: as many idle kernels as fit in the
    memory above the floor, at most ``KERNELS_PER_CORE`` per core and what the gateway's
    open-file limit can serve; never fewer than 1.

    Idle kernels are counted at their real cost, not at ``memory_limit``: most kernels of a
    chat host are idle, a busy one grows within its own limit, and admission (see
    ``admits_kernel``) refuses new kernels by the memory that is actually left."""
    by_memory = max(0, size.memory - floor) // IDLE_KERNEL_COST
    limit = min(by_memory, KERNELS_PER_CORE * max(1, size.cores))
    if size.open_files is not None:
        limit = min(limit, max(0, size.open_files - FDS_RESERVED) // FDS_PER_KERNEL)
    return max(1, limit)


def admits_kernel(memory: HostMemory | None, floor: int, starting: int,
                  estimate: int = IDLE_KERNEL_COST) -> str | None:
    """May one more kernel start? None: yes; else why not.

    Live kernels are in ``available`` already (what they really use, not their limits); the
    ``starting`` ones are not yet, so each counts at ``estimate``, as does the new one. The
    new kernel is admitted while what remains stays above ``floor``. Unknown memory admits:
    ``max_kernels`` still bounds the count."""
    if memory is None:
        return None
    if (pressed := under_pressure(memory, floor)) is not None:
        # Idle threads are being hibernated to free memory: no kernel may take it meanwhile
        # (a lease at capacity still hibernates a thread for its own place).
        return f"{pressed}; no kernel starts until it eases"
    after = memory.available - (starting + 1) * estimate
    if after >= floor:
        return None
    return (f"host memory: {_mib(memory.available)} available, {starting} kernels starting; "
            f"one more would leave less than the floor of {_mib(floor)} (memory_floor)")


def under_pressure(memory: HostMemory | None, floor: int,
                   pressure_limit: float = PRESSURE_LIMIT) -> str | None:
    """Why idle threads should give back their memory now (None: no need): available memory
    below the floor, or, within ``PRESSURE_ZONE`` times the floor, tasks stalled on memory
    (PSI some avg10) above ``pressure_limit`` %."""
    if memory is None:
        return None
    if memory.available < floor:
        return (f"host memory: {_mib(memory.available)} available, below the floor of "
                f"{_mib(floor)} (memory_floor)")
    if (memory.pressure is not None and memory.pressure > pressure_limit
            and memory.available < PRESSURE_ZONE * floor):
        return (f"host memory pressure: tasks waited for memory {memory.pressure:.1f} % of "
                f"the last 10 s (over {pressure_limit:g} %) with {_mib(memory.available)} "
                "available")
    return None


def kernels_to_free(memory: HostMemory | None, floor: int) -> int:
    """Idle threads to hibernate now, under pressure: enough idle kernels' worth to climb back
    over the floor, at least 1 (when only PSI says so), at most ``MOST_FREED_AT_ONCE``."""
    if memory is None:
        return 0
    deficit = floor - memory.available
    return max(1, min(MOST_FREED_AT_ONCE, -(-deficit // IDLE_KERNEL_COST)))


def _mib(size: int) -> str:
    return f"{size / MiB:.0f} MiB"


# -- reading (I/O) --------------------------------------------------------------------------------

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC = Path("/proc")


@functools.cache
def host_size() -> HostSize:
    """This host's size, read once (the gateway's process does not move)."""
    return read_host_size()


def read_host_size(proc: Path = PROC, cgroup_root: Path = CGROUP_ROOT) -> HostSize:
    memory = read_memory(proc, cgroup_root)
    total = memory.total if memory is not None else _physical_memory()
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = _cpu_quota(proc, cgroup_root)
    if quota is not None:
        cores = max(1, min(cores, int(quota)))
    # The hard limit: the gateway raises its soft limit to it (use_all_open_files).
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return HostSize(total or 0, cores, None if hard == resource.RLIM_INFINITY else hard)


def use_all_open_files() -> None:
    """Raise the gateway's soft open-file limit to its hard one: each live kernel holds a few
    dozen descriptors in the gateway, and a service's soft limit is often 1024. Kernels get
    their own limit (``open_files_limit``) whatever the gateway's is."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def read_memory(proc: Path = PROC, cgroup_root: Path = CGROUP_ROOT) -> HostMemory | None:
    """Memory now; None when /proc/meminfo cannot be read (not Linux)."""
    info = _meminfo(proc / "meminfo")
    if info is None:
        return None
    total, available = info
    for limit, used in _cgroup_memory(proc, cgroup_root):
        total = min(total, limit)
        available = min(available, max(0, limit - used))
    return HostMemory(total, available, _pressure(proc / "pressure" / "memory"))


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return None


def _meminfo(path: Path) -> tuple[int, int] | None:
    try:
        fields = dict(line.split(":", 1) for line in path.read_text().splitlines() if ":" in line)
        total = int(fields["MemTotal"].split()[0]) * 1024
        # MemAvailable appeared in Linux 3.14; before it, free memory is the best guess.
        available = int(fields.get("MemAvailable", fields["MemFree"]).split()[0]) * 1024
    except (OSError, KeyError, ValueError, IndexError):
        return None
    return total, available


def _pressure(path: Path) -> float | None:
    """``some avg10`` of a PSI file (absent before Linux 4.20 or with psi=0)."""
    try:
        for line in path.read_text().splitlines():
            kind, *pairs = line.split()
            if kind == "some":
                return float(dict(pair.split("=", 1) for pair in pairs)["avg10"])
    except (OSError, KeyError, ValueError):
        return None
    return None


def own_cgroup(proc: Path = PROC, cgroup_root: Path = CGROUP_ROOT,
               controller: str = "memory") -> tuple[int, list[Path]] | None:
    """The cgroup version and the directories of the gateway's own cgroup for ``controller``,
    from its own up to the root of the mount (a limit on any of them bounds the gateway)."""
    v2 = (cgroup_root / "cgroup.controllers").exists()
    mount = cgroup_root if v2 else cgroup_root / controller
    try:
        lines = (proc / "self" / "cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue  # not "id:controllers:path"
        _, controllers, path = parts
        if (v2 and controllers == "") or (not v2 and controller in controllers.split(",")):
            break
    else:
        return None
    here = mount / path.strip("/")
    if not here.is_dir():
        # In a container without its own cgroup namespace the path is the host's, while the
        # container's own cgroup is mounted as the root.
        here = mount
    dirs = [here, *(parent for parent in here.parents if parent.is_relative_to(mount))]
    return (2 if v2 else 1), dirs


def _cgroup_memory(proc: Path, cgroup_root: Path) -> list[tuple[int, int]]:
    """(limit, used) of each of the gateway's cgroups with a memory limit; ``used`` leaves out
    inactive page cache, which the kernel reclaims before it kills (as MemAvailable does)."""
    found = own_cgroup(proc, cgroup_root)
    if found is None:
        return []
    version, dirs = found
    names = (("memory.max", "memory.current", "inactive_file") if version == 2 else
             ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"))
    limits = []
    for d in dirs:
        limit = _read_int(d / names[0])
        if limit is None or limit >= UNLIMITED:
            continue
        used = _read_int(d / names[1])
        if used is None:
            continue
        limits.append((limit, max(0, used - _stat(d / "memory.stat", names[2]))))
    return limits


def _cpu_quota(proc: Path, cgroup_root: Path) -> float | None:
    """Cores the gateway's cgroup may use (its CFS quota), None when unlimited."""
    found = own_cgroup(proc, cgroup_root, "cpu")
    if found is None:
        return None
    version, dirs = found
    quotas = []
    for d in dirs:
        try:
            if version == 2:
                quota, period = (d / "cpu.max").read_text().split()
            else:
                quota = (d / "cpu.cfs_quota_us").read_text().strip()
                period = (d / "cpu.cfs_period_us").read_text().strip()
            if quota not in ("max", "-1"):
                quotas.append(int(quota) / int(period))
        except (OSError, ValueError, ZeroDivisionError):
            continue
    return min(quotas) if quotas else None


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return UNLIMITED
    try:
        return int(text)
    except ValueError:
        return None


def _stat(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0
