"""Kernels admitted by the memory they really use, with the kernel limit derived from the host:
each test on a small gateway of its own."""

from __future__ import annotations

import asyncio

import pytest

from gateway import host_memory
from gateway.config import MiB
from gateway.threads.hibernation import PRESSURE
from support.gateways import start_gateway, stop_gateway, test_settings

pytestmark = pytest.mark.asyncio(loop_scope="session")

THREADS = 6


async def test_kernels_overcommit_their_memory_limit_under_the_host_derived_limit(data_root):
    # Each kernel may use a third of the host: counted at their limits (as before), two would
    # fit in 80 % of memory. They use a few dozen MiB each, so all of them are admitted.
    limit = host_memory.host_size().memory // 3 // MiB * MiB
    settings = test_settings(data_root / "overcommit", max_kernels=0, memory_limit=limit,
                             pool_size=1, max_threads_per_identity=THREADS)
    assert settings.kernel_limit > THREADS
    running = await start_gateway(settings)
    try:
        async with await running.client() as client:
            threads = [client.thread(f"overcommit-{i}") for i in range(THREADS)]
            results = await asyncio.wait_for(
                asyncio.gather(*(thread.run("1 + 1") for thread in threads)), 240)
            assert [r.state for r in results] == ["complete"] * THREADS
        gateway = running.gateway
        stats = gateway.pool.snapshot()
        assert stats["max_kernels"] == settings.kernel_limit
        assert stats["leased"] == THREADS  # a kernel each, all at once
        capacity = gateway.health()["capacity"]
        assert capacity["kernel_limit"] == settings.kernel_limit
        assert capacity["memory_floor_bytes"] == settings.memory_floor_limit
        assert 0 < capacity["memory_available_bytes"] <= capacity["memory_total_bytes"]
        if gateway.host.cgroups is not None and "memory" in gateway.host.cgroups.controllers:
            # What the kernels' own cgroups are charged: far below THREADS memory limits.
            assert 0 < capacity["kernels_memory_bytes"] < THREADS * limit
        metrics = gateway.metrics.render().decode()
        assert f"gateway_kernel_limit {float(settings.kernel_limit)}" in metrics
        assert "gateway_host_memory_available_bytes " in metrics
        assert 'gateway_kernels{state="leased"} 6.0' in metrics
    finally:
        await stop_gateway(running)


async def test_a_new_thread_is_refused_when_the_host_memory_floor_would_be_crossed(data_root):
    memory = host_memory.read_memory()
    assert memory is not None
    # Just under the host's size: far below it whatever else the machine does meanwhile, so no
    # kernel is admitted and the shortfall is always more than the most freed at once.
    floor = memory.total - 16 * MiB
    if memory.available >= floor - 1024 * MiB:
        pytest.skip("this host has too little memory in use to set a floor above what is free")
    running = await start_gateway(test_settings(data_root / "floor", max_kernels=0,
                                                memory_floor=floor, pool_size=1,
                                                lease_wait=0.5))
    try:
        stats = running.gateway.pool.snapshot()
        assert stats["warm"] == 0 and stats["starting"] == 0  # not even a warm one
        async with await running.client() as client:
            refused = await asyncio.wait_for(client.thread("floor").run("1"), 120)
        assert refused.state == "error"
        assert refused.status["error_code"] == "pool_exhausted"
        assert "host memory" in refused.status["reason"]
        assert "memory_floor" in refused.status["reason"]
        capacity = running.gateway.capacity()
        assert capacity["under_pressure"] is not None
        ready = running.gateway.readiness()
        assert not ready["ready"] and "memory_floor" in ready["reason"]
        # Below the floor the memory watch asks for idle threads to be hibernated.
        asked: list[tuple[int, str]] = []

        async def hibernate_idle(count: int, reason: str, idle_since=None) -> int:
            asked.append((count, reason))
            return 0

        running.gateway.hibernate_idle = hibernate_idle
        for _ in range(600):  # a guard against a hang, not a timing limit
            if asked:
                break
            await asyncio.sleep(0.1)
        count, reason = asked[0]
        assert count == host_memory.MOST_FREED_AT_ONCE  # GiBs short: more than 8 idle kernels
        assert reason == PRESSURE
        # Memory comes back (here: the floor goes down): the watch refills the warm pool
        # without a lease or a release to set it off.
        running.gateway.pool.capacity.floor = 256 * MiB
        for _ in range(1200):  # a guard against a hang, not a timing limit
            if running.gateway.pool.snapshot()["warm"] >= 1:
                break
            await asyncio.sleep(0.1)
        assert running.gateway.pool.snapshot()["warm"] >= 1
    finally:
        await stop_gateway(running)

