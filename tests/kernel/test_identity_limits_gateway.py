"""Identities do not crowd each other out: scoped thread ids, a share of threads, a file quota.

The gateway half; the pure half is tests/unit/test_identity_limits.py."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import MiB
from gateway.net.admin import execute_admin
from support.blocking import CELL_UNTIL_GO, guarded, let_cell_go, wait_busy
from support.gateways import session_of, start_gateway, stop_gateway, test_settings

# -- a real gateway -----------------------------------------------------------------------------


@pytest.mark.asyncio(loop_scope="session")
async def test_one_identity_cannot_take_every_kernel_or_the_whole_store(data_root):
    settings = test_settings(data_root / "identity-limits", pool_size=1, max_kernels=6,
                             max_threads_per_identity=2, identity_file_quota=2 * MiB,
                             thread_file_quota=2 * MiB)
    running = await start_gateway(settings)
    gateway = running.gateway
    try:
        async with await running.client() as alice, await running.client("tok-bob") as bob:
            for name in ("a1", "a2"):
                assert (await alice.thread(name).run("x = 1")).state == "complete"
            # At her share, both threads idle: a third one hibernates the least recently used
            # of hers instead of being refused, so she still holds two kernels.
            third = await alice.thread("a3").run("print('third')")
            assert third.output == "third\n", third.envelopes
            assert session_of(gateway, "a1").hibernated == "capacity"
            assert gateway.live_threads_by_identity()["alice"] == 2

            # Both her live threads working: a new thread is refused, and so is a1 coming back.
            working = [asyncio.ensure_future(alice.thread(name).run(CELL_UNTIL_GO))
                       for name in ("a2", "a3")]
            for name in ("a2", "a3"):
                await wait_busy(session_of(gateway, name))
            refused = await alice.thread("a4").run("print('never')")
            assert refused.state == "protocol_error", refused.envelopes
            assert refused.error["code"] == "identity_limit"
            assert "max_threads_per_identity" in refused.error["message"]
            again = await alice.thread("a1").run("print('back')")
            assert again.state == "error" and again.status["error_code"] == "identity_limit"
            assert "max_threads_per_identity" in again.status["reason"], again.status
            assert session_of(gateway, "a1").kernel is None
            for name in ("a2", "a3"):
                let_cell_go(session_of(gateway, name))
            assert [(await guarded(cell)).output for cell in working] == ["go\n", "go\n"]

            # Bob is not crowded out by alice's threads, nor by her files.
            big = "open('big.bin', 'wb').write(b'x' * (1536 * 1024))"
            first = await alice.thread("a2").run(big)
            assert [f["filename"] for f in first.files] == ["big.bin"], first.envelopes
            second = await alice.thread("a3").run(big)
            assert second.files == [] and "identity 'alice'" in second.output, second.output
            mine = await bob.thread("b1").run(big)
            assert [f["filename"] for f in mine.files] == ["big.bin"], mine.envelopes

            families = {f.name: f for f in text_string_to_metric_families(
                gateway.metrics.render().decode())}
            live = {s.labels["identity"]: s.value
                    for s in families["gateway_identity_live_threads"].samples}
            assert live == {"alice": 2, "bob": 1}
            stored = {s.labels["identity"]: s.value
                      for s in families["gateway_identity_file_bytes"].samples}
            assert stored["alice"] >= 1536 * 1024 and stored["bob"] >= 1536 * 1024
            refusals = {s.labels["limit"]: s.value
                        for s in families["gateway_identity_limit_refusals"].samples
                        if s.name.endswith("_total")}
            assert refusals == {"threads": 2}

            usage = {row["identity"]: row for row in
                     await execute_admin(gateway, {"op": "files.usage"})}
            assert usage["alice"]["live_threads"] == 2 and usage["alice"]["max_threads"] == 2
            assert usage["alice"]["file_quota"] == 2 * MiB
            assert usage["bob"]["file_bytes"] >= 1536 * 1024

            # Once one of hers is idle again, a1 comes back in its place, variables and all.
            back = await alice.thread("a1").run("print(x)")
            assert back.output == "1\n", back.status
            assert back.status["restored"]["hibernated"] == "capacity"
            assert session_of(gateway, "a2").hibernated == "capacity"  # the least recent
            assert gateway.live_threads_by_identity()["alice"] == 2
    finally:
        await stop_gateway(running)
