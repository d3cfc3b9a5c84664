"""The warm kernel pool: ``KernelPool`` (the asyncio shell), ``WarmTarget`` (the pure policy
that sizes it from demand) and ``Capacity`` (whether the host has room for one more kernel)."""

from .capacity import Capacity
from .demand import Decision, WarmTarget
from .kernel_pool import KernelPool, PoolStats

__all__ = ["Capacity", "Decision", "KernelPool", "PoolStats", "WarmTarget"]
