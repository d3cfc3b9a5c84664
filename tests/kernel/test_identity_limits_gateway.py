"""Identities do not crowd each other out: scoped thread ids, a share of threads, a file quota.

The gateway half; the pure half is tests/unit/test_identity_limits.py."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import MiB
from gateway.net.admin import execute_admin
from support.gateways import session_of, start_gateway, stop_gateway, test_settings

# -- a real gateway -----------------------------------------------------------------------------


@pytest.mark.asyncio(loop_scope="session")
async def test_one_identity_cannot_take_every_kernel_or_the_whole_store(data_root):
    settings = test_settings(data_root / "identity-limits", pool_size=1, max_kernels=6,
                             max_threads_per_identity=2, identity_file_quota=2 * MiB,
                             thread_file_quota=2 * MiB)
    running = await start_gateway(settings)
    try:
        async with await running.client() as alice, await running.client("tok-bob") as bob:
            for name in ("a1", "a2"):
                assert (await alice.thread(name).run("x = 1")).state == "complete"
            refused = await alice.thread("a3").run("print('never')")
            assert refused.state == "protocol_error", refused.envelopes
            assert refused.error["code"] == "identity_limit"
            assert "max_threads_per_identity" in refused.error["message"]
            # Bob is not crowded out by alice's threads, nor by her files.
            big = "open('big.bin', 'wb').write(b'x' * (1536 * 1024))"
            first = await alice.thread("a1").run(big)
            assert [f["filename"] for f in first.files] == ["big.bin"], first.envelopes
            second = await alice.thread("a2").run(big)
            assert second.files == [] and "identity 'alice'" in second.output, second.output
            mine = await bob.thread("b1").run(big)
            assert [f["filename"] for f in mine.files] == ["big.bin"], mine.envelopes

            families = {f.name: f for f in text_string_to_metric_families(
                running.gateway.metrics.render().decode())}
            live = {s.labels["identity"]: s.value
                    for s in families["gateway_identity_live_threads"].samples}
            assert live == {"alice": 2, "bob": 1}
            stored = {s.labels["identity"]: s.value
                      for s in families["gateway_identity_file_bytes"].samples}
            assert stored["alice"] >= 1536 * 1024 and stored["bob"] >= 1536 * 1024
            refusals = {s.labels["limit"]: s.value
                        for s in families["gateway_identity_limit_refusals"].samples
                        if s.name.endswith("_total")}
            assert refusals == {"threads": 1}

            usage = {row["identity"]: row for row in
                     await execute_admin(running.gateway, {"op": "files.usage"})}
            assert usage["alice"]["live_threads"] == 2 and usage["alice"]["max_threads"] == 2
            assert usage["alice"]["file_quota"] == 2 * MiB
            assert usage["bob"]["file_bytes"] >= 1536 * 1024

            # A thread alice closes gives her share back.
            await alice.thread("a2").close()
            for _ in range(100):
                if running.gateway.live_threads_by_identity().get("alice") == 1:
                    break
                await alice.thread("a1").run("1")
            assert (await alice.thread("a3").run("print('now')")).output == "now\n"

            # A thread whose kernel went back for idleness is not live; taking a kernel again
            # counts against the share like a new thread does.
            assert await session_of(running.gateway, "a1").hibernate("requested", wait=True)
            assert running.gateway.live_threads_by_identity().get("alice") == 1
            assert (await alice.thread("a4").run("print('fourth')")).output == "fourth\n"
            again = await alice.thread("a1").run("print('back')")
            assert again.state == "error" and again.status["error_code"] == "identity_limit"
            assert "max_threads_per_identity" in again.status["reason"], again.status
            await alice.thread("a4").close()
            for _ in range(100):
                if running.gateway.live_threads_by_identity().get("alice") == 1:
                    break
                await alice.thread("a3").run("1")
            assert (await alice.thread("a1").run("print('back')")).output == "back\n"
    finally:
        await stop_gateway(running)
