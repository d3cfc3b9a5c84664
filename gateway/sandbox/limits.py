"""Per-kernel resource limits: cgroups (v2 or v1) where writable, rlimits otherwise.

What cannot be enforced on this host is reported (``LimitReport``), never silently skipped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
GROUP_NAME = "code-interpreter-gateway"
CPU_PERIOD_US = 100_000


@dataclass(frozen=True)
class LimitValues:
    memory: int
    pids: int
    cpu: float  # cores
    file_size: int
    open_files: int


@dataclass
class LimitReport:
    """Which limit is enforced by what, for the start-up log and /healthz."""

    enforced: dict[str, str] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)


def _writable(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK)


class CgroupLimiter:
    """Creates one cgroup per kernel; the kernel's launcher joins it before exec."""

    def __init__(self, root: Path = CGROUP_ROOT) -> None:
        self.root = root
        self.version = 2 if (root / "cgroup.controllers").exists() else 1
        self.controllers = self._usable_controllers()

    def _usable_controllers(self) -> set[str]:
        if self.version == 2:
            parent = self.root / GROUP_NAME
            try:
                parent.mkdir(exist_ok=True)
                wanted = {"memory", "pids", "cpu"}
                available = set((self.root / "cgroup.controllers").read_text().split())
                for name in wanted & available:
                    (self.root / "cgroup.subtree_control").write_text(f"+{name}")
                    (parent / "cgroup.subtree_control").write_text(f"+{name}")
                return set((parent / "cgroup.subtree_control").read_text().split()) & wanted
            except OSError as exc:
                log.warning("cgroup v2 not usable: %s", exc)
                return set()
        usable = set()
        for name in ("memory", "pids", "cpu"):
            base = self.root / name
            if _writable(base):
                try:
                    (base / GROUP_NAME).mkdir(exist_ok=True)
                    usable.add(name)
                except OSError as exc:
                    log.warning("cgroup v1 %s not usable: %s", name, exc)
        return usable

    def _dir(self, controller: str, kernel_id: str) -> Path:
        if self.version == 2:
            return self.root / GROUP_NAME / kernel_id
        return self.root / controller / GROUP_NAME / kernel_id

    def _dirs(self, kernel_id: str) -> list[Path]:
        return sorted({self._dir(c, kernel_id) for c in self.controllers})

    def create(self, kernel_id: str, limits: LimitValues,
               host_tasks: int | None = None) -> list[Path]:
        """Make the kernel's cgroup(s); returns the ``cgroup.procs`` files the launcher joins.
        ``host_tasks``: the pids limit when the kernel's tasks are not host tasks one to one
        (gVisor's)."""
        for path in self._dirs(kernel_id):
            path.mkdir(exist_ok=True)
        v2 = self.version == 2
        if "memory" in self.controllers:
            d = self._dir("memory", kernel_id)
            if v2:
                (d / "memory.max").write_text(str(limits.memory))
                _try_write(d / "memory.swap.max", "0")
            else:
                (d / "memory.limit_in_bytes").write_text(str(limits.memory))
                _try_write(d / "memory.memsw.limit_in_bytes", str(limits.memory))
        if "pids" in self.controllers:
            pids = limits.pids if host_tasks is None else host_tasks
            (self._dir("pids", kernel_id) / "pids.max").write_text(str(pids))
        if "cpu" in self.controllers:
            d = self._dir("cpu", kernel_id)
            quota = max(1000, int(limits.cpu * CPU_PERIOD_US))
            if v2:
                (d / "cpu.max").write_text(f"{quota} {CPU_PERIOD_US}")
            else:
                (d / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
                (d / "cpu.cfs_quota_us").write_text(str(quota))
        return [path / "cgroup.procs" for path in self._dirs(kernel_id)]

    def oom_killed(self, kernel_id: str) -> bool:
        """Did the memory limit kill (or starve) something in this kernel's cgroup?"""
        if "memory" not in self.controllers:
            return False
        d = self._dir("memory", kernel_id)
        try:
            if self.version == 2:
                events = dict(
                    line.split() for line in (d / "memory.events").read_text().splitlines()
                )
                return int(events.get("oom_kill", 0)) > 0 or int(events.get("oom", 0)) > 0
            control = (d / "memory.oom_control").read_text()
            for line in control.splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and int(value) > 0:
                    return True
            return int((d / "memory.failcnt").read_text()) > 0
        except (OSError, ValueError):
            return False

    def memory_usage(self, kernel_id: str) -> int | None:
        d = self._dir("memory", kernel_id)
        name = "memory.current" if self.version == 2 else "memory.usage_in_bytes"
        try:
            return int((d / name).read_text())
        except (OSError, ValueError):
            return None

    def processes(self, kernel_id: str) -> list[int]:
        """Host pids of every process in the kernel's cgroup (the first controller's)."""
        for path in self._dirs(kernel_id):
            try:
                return [int(pid) for pid in (path / "cgroup.procs").read_text().split()]
            except (OSError, ValueError):
                continue
        return []

    def kill_all(self, kernel_id: str) -> None:
        """SIGKILL every process left in the kernel's cgroups (escapes from the process group)."""
        for path in self._dirs(kernel_id):
            if self.version == 2:
                if _try_write(path / "cgroup.kill", "1"):
                    continue
            try:
                pids = (path / "cgroup.procs").read_text().split()
            except OSError:
                continue
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass

    def remove(self, kernel_id: str) -> bool:
        """Remove the kernel's cgroups; False while processes are still leaving them."""
        removed = True
        for path in self._dirs(kernel_id):
            try:
                path.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                removed = False  # busy: killed processes take a moment to be reaped
        return removed

    async def remove_when_empty(self, kernel_id: str, attempts: int = 100,
                                delay: float = 0.05) -> None:
        """Retry ``remove`` until the killed processes are gone (bounded: ~5 s)."""
        for _ in range(attempts):
            if self.remove(kernel_id):
                return
            await asyncio.sleep(delay)
        log.warning("cgroups of kernel %s still busy; left for the next start-up", kernel_id)

    def report(self, report: LimitReport) -> None:
        kind = f"cgroup v{self.version}"
        for name, limit in (("memory", "memory"), ("pids", "processes"), ("cpu", "cpu")):
            if name in self.controllers:
                report.enforced[limit] = kind
            else:
                report.missing[limit] = f"{kind} {name} controller not writable"


def _try_write(path: Path, value: str) -> bool:
    try:
        path.write_text(value)
        return True
    except OSError:
        return False


def rlimit_values(limits: LimitValues, *, with_memory: bool,
                  with_nproc: bool) -> dict[str, int]:
    """The limits rlimits enforce (and fallbacks for missing cgroups), by ``resource`` name."""
    values = {"RLIMIT_FSIZE": limits.file_size, "RLIMIT_NOFILE": limits.open_files,
              "RLIMIT_CORE": 0}
    if with_memory:
        # Address space overcounts (mapped libraries, thread stacks): give it headroom.
        values["RLIMIT_AS"] = limits.memory * 2
    if with_nproc:
        values["RLIMIT_NPROC"] = limits.pids
    return values


PRLIMIT_FLAGS = {"RLIMIT_FSIZE": "fsize", "RLIMIT_NOFILE": "nofile", "RLIMIT_CORE": "core",
                 "RLIMIT_AS": "as", "RLIMIT_NPROC": "nproc"}


def rlimit_args(limits: LimitValues, *, with_memory: bool, with_nproc: bool) -> list[str]:
    """``prlimit`` flags for ``rlimit_values``."""
    values = rlimit_values(limits, with_memory=with_memory, with_nproc=with_nproc)
    return [f"--{PRLIMIT_FLAGS[name]}={value}" for name, value in values.items()]
