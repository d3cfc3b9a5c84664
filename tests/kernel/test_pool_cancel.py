"""A lease cancelled on its way (its thread closed, its client gone) leaves nothing counted or
mounted behind, and the gateway still stops: a start counted forever once kept ``close()``
waiting, and with it the end of a whole test run."""

from __future__ import annotations

import asyncio
import threading

import pytest

from support.blocking import HANG_GUARD, guarded
from support.gateways import start_gateway, stop_gateway, test_settings

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_lease_cancelled_while_its_workdir_is_made_counts_no_start(data_root,
                                                                            monkeypatch):
    running = await start_gateway(test_settings(data_root / "cancelled-lease", pool_size=0))
    pool = running.gateway.pool
    try:
        entered, release, made = threading.Event(), threading.Event(), threading.Event()
        make = pool.workdirs.create

        def slow_create():
            entered.set()
            assert release.wait(HANG_GUARD), "hang guard: never released"
            try:
                return make()
            finally:
                made.set()

        monkeypatch.setattr(pool.workdirs, "create", slow_create)
        lease = asyncio.create_task(pool.lease())
        assert await guarded(asyncio.to_thread(entered.wait, HANG_GUARD))
        assert pool.snapshot()["starting"] == 1
        lease.cancel()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await lease
        assert pool.snapshot()["starting"] == 0
        # The directory made for nobody is removed once it exists (its mount and uid too).
        assert await guarded(asyncio.to_thread(made.wait, HANG_GUARD))
        for _ in range(200):
            if not any(pool.workdirs.root.iterdir()):
                break
            await asyncio.sleep(0.05)
        assert list(pool.workdirs.root.iterdir()) == []
        # The pool still starts kernels for the next thread.
        monkeypatch.setattr(pool.workdirs, "create", make)
        async with await running.client() as client:
            assert (await client.thread("after").run("1 + 1")).output == "2\n"
    finally:
        await stop_gateway(running)
