"""One owner per data directory (gateway/ops/datadir.py): a second gateway refuses to start and
leaves the first one's threads alone; a SIGKILLed owner's lock is taken over with its leftovers.

The gateway half; the pure half is tests/unit/test_datadir_lock.py."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from gateway.client import GatewayClient
from gateway.ops.datadir import read_owner
from support.host import needs_linux
from support.processes import (
    GATEWAY_BIN,
    GatewayProcess,
    free_port,
    unmount_leftovers,
    wait_until,
    workdir_mounts,
)

pytestmark = [pytest.mark.asyncio(loop_scope="session"), needs_linux]


async def test_second_gateway_on_a_busy_data_dir_refuses_and_the_first_keeps_working(tmp_path):
    data_dir = tmp_path / "data"
    first = await GatewayProcess(data_dir).start()
    try:
        async with await GatewayClient.connect(first.url, "tok-alice") as client:
            thread = client.thread("busy")
            made = await thread.run("x = 41\nopen('keep.txt', 'w').write('kept')")
            assert made.state == "complete", made.status
            mounts = workdir_mounts(data_dir)
            assert mounts

            env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
            env["GATEWAY_TOKENS"] = "alice:tok-alice"
            second = await asyncio.create_subprocess_exec(
                str(GATEWAY_BIN), "serve", "--port", str(free_port()), "--data-dir",
                str(data_dir), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env=env)
            out, err = await asyncio.wait_for(second.communicate(), 180)
            assert second.returncode == 2, (out, err)
            message = err.decode()
            assert "in use by another gateway" in message, message
            assert f"pid {first.proc.pid}" in message and f"port {first.port}" in message
            assert "--data-dir" in message
            assert b"listening" not in out

            # Nothing of the first gateway was touched: state, files, mounts, a new kernel.
            assert mounts <= workdir_mounts(data_dir)  # (its pool may have added one)
            same = await thread.run("x += 1\nprint(x, open('keep.txt').read())")
            assert same.state == "complete" and same.output == "42 kept\n", same.status
            assert not same.status.get("kernel_restarted")
            other = await client.thread("another").run("print('fresh')")
            assert other.state == "complete" and other.output == "fresh\n", other.status
            assert read_owner(data_dir).pid == first.proc.pid
    finally:
        await first.stop()
    assert read_owner(data_dir) is None


async def test_sigkilled_owner_is_replaced_and_its_leftovers_cleaned(tmp_path):
    data_dir = tmp_path / "data"
    first = await GatewayProcess(data_dir).start()
    second = None
    try:
        async with await GatewayClient.connect(first.url, "tok-alice") as client:
            made = await client.thread("t").run("open('a.txt', 'w').write('a')")
            assert made.state == "complete", made.status
        old_mounts = workdir_mounts(data_dir)
        assert old_mounts and read_owner(data_dir).pid == first.proc.pid
        first.kill(signal.SIGKILL)
        await first.proc.wait()
        assert read_owner(data_dir).pid == first.proc.pid  # the stale file stays behind

        second = await GatewayProcess(data_dir).start()
        owner = read_owner(data_dir)
        assert owner.pid == second.proc.pid and owner.port == second.port
        assert await wait_until(lambda: not old_mounts & workdir_mounts(data_dir), 30)
        async with await GatewayClient.connect(second.url, "tok-alice") as client:
            fresh = await client.thread("t").run("print('ok')")
            assert fresh.state == "complete" and fresh.output == "ok\n", fresh.status
        log = (data_dir.parent / f"gateway-{second.port}.log").read_text()
        assert f"pid {first.proc.pid}" in log and "did not exit cleanly" in log
    finally:
        if second is not None:
            await second.stop()
        first.kill()
        unmount_leftovers(data_dir)
