"""A lease at max_kernels asks the gateway to hibernate an idle thread and gets the place it
frees; no refill and no other lease takes it (the pool's bookkeeping, with stand-in kernels:
no process starts)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

from gateway.config import Settings
from gateway.errors import PoolExhausted
from gateway.execution.pool import KernelPool
from gateway.execution.pool.capacity import Capacity

NO_CGROUPS = SimpleNamespace(cgroups=None)


@dataclass
class Spec:
    workdir: Path


class FakeKernel:
    def __init__(self, number: int) -> None:
        self.id = f"k{number}"
        self.spec = Spec(Path(f"/nonexistent/{number}"))

    async def is_alive(self) -> bool:
        return True

    async def shutdown(self) -> None:
        await asyncio.sleep(0)  # a real shutdown yields: a refill could run meanwhile


class FakeWorkdirs:
    def create(self) -> Path:
        return Path("/nonexistent")

    def remove(self, path: Path) -> None:
        pass


class Pool(KernelPool):
    """A Python pool whose kernels are stand-ins."""

    started = 0

    async def _start_kernel(self, workdir: Path) -> FakeKernel:  # type: ignore[override]
        await asyncio.sleep(0)
        Pool.started += 1
        return FakeKernel(Pool.started)


def pool(tmp_path: Path, **overrides) -> Pool:
    values = dict(data_dir=tmp_path, pool_size=0, max_kernels=2, lease_wait=0.0,
                  pool_adaptive=False)
    values.update(overrides)
    settings = Settings(**values)
    made = Pool(settings, host=NO_CGROUPS, workdirs=FakeWorkdirs())  # type: ignore[arg-type]
    # Admission by count alone: what the host's memory would say is not this test's subject.
    made.capacity = Capacity(settings, None, read=lambda: None)
    return made


class Gateway:
    """Threads holding leased kernels; ``make_room`` releases the oldest idle one. Those in
    ``idle`` went idle just now; those in ``long_idle`` long ago (past HEADROOM_IDLE)."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.idle: list = []
        self.long_idle: list = []
        self.calls = 0  # for a lease (min_idle 0)
        self.headroom_calls = 0  # for a warm kernel (min_idle > 0)

    async def make_room(self, min_idle: float) -> bool:
        if min_idle > 0:
            self.headroom_calls += 1
            candidates = self.long_idle
        else:
            self.calls += 1
            candidates = self.long_idle or self.idle
        if not candidates:
            return False
        kernel = candidates.pop(0)  # chosen at once: a second caller gets the next one
        await self.pool.release(kernel)
        return True


async def test_each_lease_at_capacity_hibernates_one_idle_thread_and_keeps_its_place(tmp_path):
    kernels = pool(tmp_path, pool_size=1, max_kernels=2)  # a refill wants the freed place
    gateway = Gateway(kernels)
    kernels.make_room = gateway.make_room
    gateway.idle = [await kernels.lease(), await kernels.lease()]
    assert kernels.group_total == 2 and kernels.admission() is not None
    new = await asyncio.gather(kernels.lease(), kernels.lease())
    assert gateway.calls == 2, "one hibernation per lease, not more"
    assert gateway.idle == [] and len(set(new)) == 2
    assert kernels._leased == set(new), "the freed places went to the two leases"
    assert kernels._reserved == 0 and kernels.group_total == 2
    await kernels.close()


async def test_with_nobody_idle_the_lease_fails_as_before(tmp_path):
    kernels = pool(tmp_path)
    gateway = Gateway(kernels)
    kernels.make_room = gateway.make_room
    busy = [await kernels.lease(), await kernels.lease()]
    with pytest.raises(PoolExhausted, match="all 2 kernels are in use"):
        await kernels.lease()
    assert gateway.calls == 1 and kernels._reserved == 0
    assert kernels._leased == set(busy)
    await kernels.close()


async def test_a_failing_make_room_leaves_no_reserved_place(tmp_path):
    kernels = pool(tmp_path)

    async def broken(min_idle: float) -> bool:
        raise RuntimeError("snapshot store gone")

    kernels.make_room = broken
    await kernels.lease()
    await kernels.lease()
    with pytest.raises(PoolExhausted):
        await kernels.lease()
    assert kernels._reserved == 0 and kernels.admission() is not None
    await kernels.close()


async def settle(kernels: Pool) -> None:
    """Let the pool's background starts and hibernations run to their end."""
    for _ in range(50):
        await asyncio.sleep(0)
    while kernels._tasks:
        await asyncio.wait(set(kernels._tasks))


async def test_at_the_limit_a_long_idle_thread_gives_its_kernel_for_a_warm_one(tmp_path):
    kernels = pool(tmp_path, pool_size=1, max_kernels=3)
    gateway = Gateway(kernels)
    kernels.make_room = gateway.make_room
    await settle(kernels)
    old, recent, busy = (await kernels.lease(), await kernels.lease(), await kernels.lease())
    gateway.long_idle, gateway.idle = [old], [recent]
    kernels.refill()
    await settle(kernels)
    assert gateway.headroom_calls >= 1 and gateway.long_idle == []
    assert len(kernels._warm) == 1, "the long idle thread's place became a warm kernel"
    assert kernels._leased == {recent, busy}, "a thread idle only briefly keeps its kernel"
    assert kernels.group_total == 3 and kernels._reserved == 0
    lease_calls = gateway.calls
    newcomer = await kernels.lease()
    assert gateway.calls == lease_calls, "the new thread found a warm kernel: no hibernation"
    assert newcomer not in (old, recent, busy)
    await kernels.close()


async def test_without_a_long_idle_thread_nothing_is_hibernated_for_warmth(tmp_path):
    kernels = pool(tmp_path, pool_size=1, max_kernels=2)
    gateway = Gateway(kernels)
    kernels.make_room = gateway.make_room
    await settle(kernels)
    first, second = await kernels.lease(), await kernels.lease()
    gateway.idle = [first, second]
    kernels.refill()
    await settle(kernels)
    assert gateway.headroom_calls >= 1, "the pool asked"
    assert gateway.idle == [first, second] and kernels._leased == {first, second}
    assert kernels._warm == [] and kernels._reserved == 0 and not kernels._making_headroom
    await kernels.close()


async def test_only_the_floor_is_kept_warm_by_hibernating_not_a_bursts_target(tmp_path):
    kernels = pool(tmp_path, pool_size=1, max_kernels=4)
    gateway = Gateway(kernels)
    kernels.make_room = gateway.make_room
    await settle(kernels)
    threads = [await kernels.lease() for _ in range(4)]
    gateway.long_idle = list(threads)
    kernels.target = 3  # as a burst's adaptive target would be
    kernels.refill()
    await settle(kernels)
    assert len(kernels._warm) == 1, "one warm kernel: the floor, not the burst's three"
    assert len(gateway.long_idle) == 3 and kernels.group_total == 4
    await kernels.close()
