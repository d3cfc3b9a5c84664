"""Room for one more kernel: the kernel limit, then the host's memory as kernels really use it.

``memory_limit`` is each kernel's own ceiling and is overcommitted, as container platforms do:
a kernel is admitted by what the host has left (``HostMemory.available`` minus an estimate for
kernels still starting, above ``memory_floor``), not by the sum of limits. The pools of every
language share one ``Capacity``. The decisions are pure (gateway/host_memory.py); this shell
reads the host when asked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ... import host_memory
from ...config import Settings
from ...host_memory import HostMemory
from ...sandbox.limits import CgroupLimiter


class Capacity:
    def __init__(self, settings: Settings, cgroups: CgroupLimiter | None,
                 read: Callable[[], HostMemory | None] = host_memory.read_memory) -> None:
        self.limit = settings.kernel_limit
        self.floor = settings.memory_floor_limit
        self.cgroups = cgroups
        self.read = read

    def admits(self, kernels: int, starting: int) -> str | None:
        """May one more kernel start, with ``kernels`` in all (leased, warm and starting) and
        ``starting`` of them not yet in memory? None: yes; else why not."""
        if kernels >= self.limit:
            return f"all {self.limit} kernels are in use (max_kernels)"
        return host_memory.admits_kernel(self.read(), self.floor, starting)

    def kernels_memory(self, kernel_ids: Iterable[str]) -> int | None:
        """Memory the kernels' cgroups are charged now (None: no memory cgroups here). A
        forked kernel shares the zygote's pages, charged to the gateway, so this is what the
        kernels added on their own."""
        if self.cgroups is None or "memory" not in self.cgroups.controllers:
            return None
        return sum(self.cgroups.memory_usage(kernel_id) or 0 for kernel_id in kernel_ids)

    def snapshot(self, kernel_ids: Iterable[str]) -> dict[str, Any]:
        """For ``gateway pool stats``, /healthz and /metrics."""
        memory = self.read()
        return {
            "kernel_limit": self.limit,
            "memory_floor_bytes": self.floor,
            "memory_total_bytes": memory.total if memory else None,
            "memory_available_bytes": memory.available if memory else None,
            "memory_pressure": memory.pressure if memory else None,
            "kernels_memory_bytes": self.kernels_memory(kernel_ids),
            "under_pressure": host_memory.under_pressure(memory, self.floor),
        }
