"""Pool limits and idle culling, each on a small gateway of its own."""

from __future__ import annotations

import asyncio

import pytest

from support.blocking import CELL_UNTIL_GO, guarded, let_cell_go, wait_busy
from support.gateways import session_of, start_gateway, stop_gateway, test_settings, thread_key

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_full_pool_gives_a_clear_error_not_a_crash(data_root):
    running = await start_gateway(test_settings(data_root / "full", pool_size=1, max_kernels=2,
                                                lease_wait=0.5))
    try:
        async with await running.client() as client:
            first, second, third = (client.thread(f"full-{i}") for i in range(3))
            assert (await first.run("1")).state == "complete"
            # Both kernels run a cell: no idle thread can be hibernated for the third one.
            second_runs = asyncio.ensure_future(second.run(CELL_UNTIL_GO))
            first_runs = asyncio.ensure_future(first.run(CELL_UNTIL_GO))
            for name in ("full-0", "full-1"):
                await wait_busy(session_of(running.gateway, name))
            refused = await third.run("3")
            assert refused.state == "error"
            assert refused.status["error_code"] == "pool_exhausted"
            assert "kernels are in use" in refused.status["reason"]
            for name in ("full-0", "full-1"):
                let_cell_go(session_of(running.gateway, name))
            assert (await guarded(first_runs)).output == "go\n"
            assert (await guarded(second_runs)).output == "go\n"
            await first.close()
            for _ in range(100):  # closing frees a place; the next lease starts a kernel
                if thread_key("full-0") not in running.gateway.threads:
                    break
                await asyncio.sleep(0.05)
            assert (await third.run("3")).state == "complete"
    finally:
        await stop_gateway(running)


async def test_idle_thread_loses_its_kernel_but_not_its_files(data_root):
    # snapshots off: the variables then go with the kernel (test_snapshots.py: they come back)
    running = await start_gateway(test_settings(data_root / "idle", pool_size=1,
                                                hibernate_after=1.0, snapshots=False))
    try:
        async with await running.client() as client:
            thread = client.thread("idle")
            made = await thread.run("x = 1\nopen('a.txt', 'w').write('a')")
            file_id = made.files[0]["file_id"]
            session = session_of(running.gateway, "idle")
            for _ in range(200):
                if session.kernel is None:
                    break
                await asyncio.sleep(0.05)
            assert session.kernel is None, "an idle thread's kernel is released"
            after = await thread.run("'x' in globals()")
            assert after.output == "False\n"
            assert after.status["kernel_restarted"] is True
            assert "idle" in after.status["reason"]
            assert running.gateway.store.get(file_id, "alice") is not None
    finally:
        await stop_gateway(running)


async def test_queue_is_bounded(data_root):
    running = await start_gateway(test_settings(data_root / "queue", pool_size=1,
                                                max_queued_executions=3))
    try:
        async with await running.client() as client:
            thread = client.thread("q")
            await thread.run("import time")
            calls = [await thread.execute("time.sleep(0.5)") for _ in range(6)]
            results = [await thread.collect(call, timeout=60) for call in calls]
            states = [r.state for r in results]
            refused = [r for r in results if r.state == "protocol_error"]
            assert refused and all(r.error["code"] == "queue_full" for r in refused)
            assert states.count("complete") >= 3
            assert set(states) == {"complete", "protocol_error"}
    finally:
        await stop_gateway(running)


async def test_warm_target_rises_under_a_burst_and_falls_back_when_idle(data_root):
    from prometheus_client.parser import text_string_to_metric_families

    running = await start_gateway(test_settings(
        data_root / "adaptive", pool_adaptive=True, pool_size=1, pool_burst_window=15.0,
        pool_rate_window=3.0,
        pool_horizon=1.0))
    pool = running.gateway.pool
    try:
        assert pool.snapshot()["target"] == 1
        async with await running.client() as client:
            threads = [client.thread(f"burst-{i}") for i in range(4)]
            runs = asyncio.gather(*(t.run("1+1") for t in threads))
            risen = pool.snapshot()
            for _ in range(600):  # the leases raise it at once; kernels may take a while
                if risen["target"] >= 4:
                    break
                await asyncio.sleep(0.05)
                risen = pool.snapshot()
            assert risen["target"] >= 4, risen
            assert risen["target_driver"] == "burst", risen
            assert "new threads in the last 15 s" in risen["target_reason"]
            results = await runs
            assert [r.output for r in results] == ["2\n"] * 4
            metrics = {f.name: f for f in text_string_to_metric_families(
                running.gateway.metrics.render().decode())}
            now = pool.snapshot()
            assert metrics["gateway_pool_target"].samples[0].value == now["target"]
            drivers = {s.labels["driver"]: s.value
                       for s in metrics["gateway_pool_target_driver"].samples}
            assert drivers[now["target_driver"]] == 1.0 and sum(drivers.values()) == 1.0
            for _ in range(600):  # idle: the burst lapses, the average decays (5 s ticks)
                if pool.snapshot()["target"] == 1:
                    break
                await asyncio.sleep(0.1)
            fallen = pool.snapshot()
            assert fallen["target"] == 1 and fallen["target_driver"] == "floor", fallen
            for _ in range(600):  # warm kernels above the floor are shut down
                if fallen["warm"] <= 1:
                    break
                await asyncio.sleep(0.1)
                fallen = pool.snapshot()
            assert fallen["warm"] <= 1, fallen
    finally:
        await stop_gateway(running)
