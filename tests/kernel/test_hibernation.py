"""Threads outnumber kernels: an idle thread is hibernated (its variables, files, cwd,
environment and execution count stored, its kernel stopped) and restored by its next request;
at max_kernels the least recently used idle thread makes room (real gateways, real kernels)."""

from __future__ import annotations

import asyncio

import pytest

from gateway.net.admin import execute_admin
from gateway.threads.snapshots import latest_snapshot
from support.blocking import CELL_UNTIL_GO, HANG_GUARD, guarded, let_cell_go, wait_busy
from support.gateways import session_of, start_gateway, stop_gateway, test_settings, thread_key

pytestmark = pytest.mark.kernel


async def test_at_capacity_the_least_recently_used_idle_thread_makes_room(data_root):
    running = await start_gateway(test_settings(
        data_root / "hib-capacity", pool_size=0, max_kernels=2, lease_wait=3.0))
    gateway = running.gateway
    try:
        async with await running.client() as client:
            a, b, c, d, e = (client.thread(name) for name in "abcde")
            assert (await a.run("value = 'a'; print(value)")).output == "a\n"
            assert (await b.run("value = 'b'; print(value)")).output == "b\n"
            assert (await a.run("value += '!'; print(value)")).output == "a!\n"
            # Both kernels in use, b the least recently used: a new thread takes b's.
            first = await c.run("value = 'c'; print(value)")
            assert first.output == "c\n", first.status
            assert "restored" not in first.status
            assert session_of(gateway, "b").hibernated == "capacity"
            assert session_of(gateway, "a").hibernated is None
            assert session_of(gateway, "b").kernel is None

            # A running cell is never evicted, even when its thread is the least recent.
            blocked_a = asyncio.ensure_future(a.run(CELL_UNTIL_GO))
            await wait_busy(session_of(gateway, "a"))
            assert (await c.run("print(value)")).output == "c\n"
            assert (await d.run("value = 'd'; print(value)")).output == "d\n"
            assert session_of(gateway, "c").hibernated == "capacity"
            assert session_of(gateway, "a").kernel is not None

            # Every kernel runs a cell: a new thread waits lease_wait, then is refused; nobody
            # was evicted for it.
            blocked_d = asyncio.ensure_future(d.run(CELL_UNTIL_GO))
            await wait_busy(session_of(gateway, "d"))
            refused = await e.run("print(1)")
            assert refused.status["state"] == "error", refused.status
            assert refused.status["error_code"] == "pool_exhausted", refused.status
            assert session_of(gateway, "a").hibernated is None
            assert session_of(gateway, "d").hibernated is None
            let_cell_go(session_of(gateway, "a"))
            let_cell_go(session_of(gateway, "d"))
            assert (await guarded(blocked_a)).output == "go\n"
            assert (await guarded(blocked_d)).output == "go\n"

            # Two hibernated threads come back at once: each hibernates one idle thread, and
            # no more; their variables are back.
            back_b, back_c = await asyncio.gather(b.run("print(value)"), c.run("print(value)"))
            assert back_b.output == "b\n" and back_c.output == "c\n", (back_b, back_c)
            for result in (back_b, back_c):
                restored = result.status["restored"]
                assert restored["hibernated"] == "capacity" and "failed" not in restored
                assert "hibernated" in result.status["reason"]
            assert {session_of(gateway, name).hibernated for name in "ad"} == {"capacity"}
            stats = gateway.hibernation_stats()
            assert stats["hibernations"] == {"capacity": 4}, stats
            assert stats["hibernated"] == 2 and stats["restores"] == 2, stats
            assert gateway.pool.snapshot()["leased"] == 2
            assert gateway.pool.snapshot()["reserved"] == 0
    finally:
        await stop_gateway(running)


STATE = """
import os
import pandas as pd
df = pd.DataFrame({"n": range(5000), "s": [f"row{i}" for i in range(5000)]})
count = 0
items = {"a": [1, 2, 3]}
os.makedirs("/mnt/data/sub", exist_ok=True)
with open("/mnt/data/sub/kept.txt", "w") as handle:
    handle.write("kept")
with open("/mnt/data/log.csv", "w") as handle:
    handle.write("cycle\\n")
os.chdir("/mnt/data/sub")
os.environ["THREAD_VAR"] = "set by the thread"
del handle  # a file object, even closed, is not kept: the skipped list stays empty
print("ready")
"""
# Reads everything back, then changes a variable and a file, so each cycle has news to keep.
CYCLE = """
print(count, len(df), df.s.iloc[-1], items["a"], os.getcwd(), os.environ.get("THREAD_VAR"),
      open("/mnt/data/sub/kept.txt").read(), open("/mnt/data/log.csv").read().count("\\n"))
count += 1
items["a"].append(count)
with open("/mnt/data/log.csv", "a") as handle:
    handle.write(f"{count}\\n")
del handle
"""
CYCLES = 20


async def test_twenty_hibernations_keep_every_variable_file_and_setting(data_root):
    running = await start_gateway(test_settings(data_root / "hib-cycles", pool_size=1,
                                                max_kernels=2))
    gateway = running.gateway
    try:
        async with await running.client() as client:
            thread = client.thread("cycles")
            assert (await thread.run(STATE)).output == "ready\n"
            first = await thread.run(CYCLE)
            counts = [first.status["execution_count"]]
            session = session_of(gateway, "cycles")
            for cycle in range(1, CYCLES + 1):
                assert await guarded(session.hibernate("requested", wait=True)), f"cycle {cycle}"
                assert session.kernel is None and session.hibernated == "requested"
                result = await thread.run(CYCLE)
                appended = list(range(1, cycle + 1))
                assert result.output == (
                    f"{cycle} 5000 row4999 {[1, 2, 3, *appended]} /mnt/data/sub "
                    f"set by the thread kept {cycle + 1}\n"), (cycle, repr(result.status))
                restored = result.status["restored"]
                assert "failed" not in restored and restored["hibernated"] == "requested"
                assert restored["skipped"] == [] and restored["files_missing"] == []
                assert restored["files"] == 2, restored  # sub/kept.txt and log.csv
                assert restored["state"]["cwd"] == "/mnt/data/sub"
                assert "THREAD_VAR" in restored["state"]["environment"], restored
                counts.append(result.status["execution_count"])
            # The execution count goes on across kernels, as in one long-lived kernel.
            assert counts == list(range(counts[0], counts[0] + CYCLES + 1)), counts
        stats = gateway.hibernation_stats()
        assert stats["hibernations"] == {"requested": CYCLES} and stats["restores"] == CYCLES
        assert stats["restore_failures"] == 0 and stats["max_restore_seconds"] is not None
        pool_stats = await execute_admin(gateway, {"op": "pool.stats"})
        assert pool_stats["hibernation"]["restores"] == CYCLES
        metrics = gateway.metrics.render().decode()
        assert f'gateway_hibernations_total{{reason="requested"}} {CYCLES}.0' in metrics
        assert f'gateway_restores_total{{outcome="ok"}} {CYCLES}.0' in metrics
        assert "gateway_hibernated_threads 0.0" in metrics
        assert f"gateway_restore_seconds_count {CYCLES}.0" in metrics
    finally:
        await stop_gateway(running)


async def test_a_restore_that_fails_goes_on_with_a_clean_kernel_and_says_so(data_root):
    running = await start_gateway(test_settings(data_root / "hib-corrupt", pool_size=1,
                                                max_kernels=2))
    gateway = running.gateway
    try:
        async with await running.client() as client:
            thread = client.thread("corrupt")
            assert (await thread.run("x = 1\nopen('/mnt/data/f.txt', 'w').write('f')\n"
                                     "print('ok')")).output == "ok\n"
            session = session_of(gateway, "corrupt")
            assert await guarded(session.hibernate("requested", wait=True))
            stored = latest_snapshot(gateway.store, thread_key("corrupt"), "alice")
            assert stored is not None
            gateway.store.path(stored).write_bytes(b"not a snapshot at all" * 100)
            after = await thread.run("print('x' in globals(), open('/mnt/data/f.txt').read())")
            assert after.output == "False f\n", after.status
            restored = after.status["restored"]
            assert "snapshot unreadable" in restored["failed"], restored
            assert restored["files"] == 1, "the files still come back"
            first_line = after.status["tool_output"].splitlines()[0]
            assert "could NOT be restored" in first_line and "starts clean" in first_line
            assert gateway.hibernation_stats()["restore_failures"] == 1
            # The thread goes on: its next cells are plain ones.
            again = await thread.run("x = 2; print(x)")
            assert again.output == "2\n" and "restored" not in again.status
    finally:
        await stop_gateway(running)


async def test_an_idle_thread_is_hibernated_after_hibernate_after(data_root):
    running = await start_gateway(test_settings(data_root / "hib-idle", pool_size=1,
                                                hibernate_after=1.0))
    gateway = running.gateway
    try:
        async with await running.client() as client:
            thread = client.thread("idle")
            assert (await thread.run("y = 7; print(y)")).output == "7\n"
            session = session_of(gateway, "idle")
            for _ in range(HANG_GUARD * 10):
                if session.hibernated is not None:
                    break
                await asyncio.sleep(0.1)
            assert session.hibernated == "idle" and session.kernel is None
            after = await thread.run("print(y)")
            assert after.output == "7\n"
            assert after.status["restored"]["hibernated"] == "idle"
            assert "idle for" in after.status["reason"]
    finally:
        await stop_gateway(running)



async def test_a_thread_of_another_language_comes_back_in_its_language(data_root):
    running = await start_gateway(test_settings(data_root / "hib-bash", pool_size=0,
                                                max_kernels=1))
    gateway = running.gateway
    try:
        if "bash" in gateway.unavailable_languages:
            pytest.skip(gateway.unavailable_languages["bash"])
        async with await running.client() as client:
            shell = client.thread("shell", language="bash")
            assert (await shell.run("echo kept > /mnt/data/f.txt; echo ok")).output == "ok\n"
            # One kernel in all: a Python thread takes the bash thread's place ...
            python = client.thread("py")
            assert (await python.run("print(1)")).output == "1\n"
            assert session_of(gateway, "shell").hibernated == "capacity"
            # ... and gives it back: the bash thread is bash again, with its file.
            back = await client.thread("shell").run("cat /mnt/data/f.txt; echo $BASH_VERSION")
            assert back.output.startswith("kept\n") and back.output.strip() != "kept", back
            assert back.status["restored"]["files"] == 1
            assert "variables are not kept" in back.status["reason"]
            assert gateway.hibernation_stats()["hibernation_failures"] == 0
            assert session_of(gateway, "py").hibernated == "capacity"
    finally:
        await stop_gateway(running)


async def test_at_the_limit_a_long_idle_thread_is_hibernated_for_a_warm_kernel(data_root):
    running = await start_gateway(test_settings(
        data_root / "hib-headroom", pool_size=1, max_kernels=2))
    gateway = running.gateway
    gateway.pool.headroom_idle = 0.5  # seconds (30 in service): the test need not wait
    try:
        async with await running.client() as client:
            a, b, c = (client.thread(name) for name in "abc")
            assert (await a.run("value = 'a'; print(value)")).output == "a\n"
            assert (await b.run("value = 'b'; print(value)")).output == "b\n"
            # Both places taken by threads, none warm: the pool hibernates the thread idle
            # longer than headroom_idle for a warm kernel, before anyone asks for one.
            async with asyncio.timeout(HANG_GUARD):
                while session_of(gateway, "a").hibernated is None or not gateway.pool._warm:
                    await asyncio.sleep(0.1)
            assert session_of(gateway, "a").hibernated == "headroom"
            assert gateway.pool._reserved == 0 and gateway.pool.group_total == 2
            # A new thread takes the warm kernel at once: nobody is hibernated for it.
            first = await c.run("value = 'c'; print(value)")
            assert first.output == "c\n" and "restored" not in first.status, first.status
            assert gateway.hibernation_stats()["hibernations"].get("capacity", 0) == 0
            back = await a.run("print(value)")
            assert back.output == "a\n", back
            assert back.status["restored"]["hibernated"] == "headroom"
            assert "a warm kernel is kept for the next thread" in back.status["reason"]
    finally:
        await stop_gateway(running)
