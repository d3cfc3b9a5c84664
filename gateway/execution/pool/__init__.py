"""The warm kernel pool: ``KernelPool`` (the asyncio shell) and ``WarmTarget`` (the pure policy
that sizes it from demand and memory)."""

from .demand import Decision, WarmTarget, memory_ceiling
from .kernel_pool import KernelPool, PoolStats

__all__ = ["Decision", "KernelPool", "PoolStats", "WarmTarget", "memory_ceiling"]
