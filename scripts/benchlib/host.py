"""The host while a benchmark runs: free memory, OOM kills, load, and a sampler of them and of
one process's RSS over a whole run."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

from scripts.benchlib.procs import proc_rss


def meminfo() -> dict[str, int]:
    """/proc/meminfo in bytes."""
    values = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, _, rest = line.partition(":")
        fields = rest.split()
        if fields:
            values[name] = int(fields[0]) * (1024 if fields[1:] == ["kB"] else 1)
    return values


def mem_available() -> int:
    return meminfo()["MemAvailable"]


def memory_used() -> int:
    """What the host's processes hold: total less what could be had without swapping."""
    info = meminfo()
    return info["MemTotal"] - info["MemAvailable"]


def oom_kills() -> int | None:
    """OOM kills on the host since boot, by any OOM killer (a cgroup's limit or the host's);
    None where the kernel does not count them."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/vmstat").read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == "oom_kill":
                return int(value)
    return None


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class Sampler:
    """Samples MemAvailable and a process's RSS every ``interval`` seconds until stopped."""

    def __init__(self, pid: int, interval: float = 1.0) -> None:
        self.pid = pid
        self.interval = interval
        self.available: list[int] = []
        self.rss: list[int] = []
        self._task: asyncio.Task | None = None
        self._began = time.monotonic()

    def _sample(self) -> None:
        self.available.append(mem_available())
        if rss := proc_rss(self.pid):
            self.rss.append(rss)

    async def _run(self) -> None:
        while True:
            await asyncio.to_thread(self._sample)
            await asyncio.sleep(self.interval)

    def start(self) -> Sampler:
        self._sample()
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> dict:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._sample()
        return {
            "samples": len(self.available),
            "seconds": round(time.monotonic() - self._began, 1),
            "mem_available_min": min(self.available, default=None),
            "mem_available_end": self.available[-1] if self.available else None,
            "gateway_rss_start": self.rss[0] if self.rss else None,
            "gateway_rss_max": max(self.rss, default=None),
            "gateway_rss_end": self.rss[-1] if self.rss else None,
        }
