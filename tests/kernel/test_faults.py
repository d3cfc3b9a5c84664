"""Faults from outside: kernels killed or frozen by the host, the gateway itself SIGKILLed and
restarted on the same data directory, close racing a kernel replacement, connection churn.

The gateway-process tests run ``gateway serve`` as a real subprocess (the only way to SIGKILL it).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import random
import re
import signal
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from gateway.client import GatewayClient
from support.gateways import session_of, start_gateway, stop_gateway, test_settings
from support.host import host_processes, needs_linux, swap_race_cells
from support.http import http_get
from support.processes import GatewayProcess, unmount_leftovers, wait_until, workdir_mounts

pytestmark = [pytest.mark.asyncio(loop_scope="session"), needs_linux]

ALICE = {"Authorization": "Bearer tok-alice"}


# -- helpers ---------------------------------------------------------------------------------
def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def descendants(root: int) -> list[int]:
    """``root`` and every process below it (by ppid), from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack += parents.get(pid, [])
    return found


def kernel_ids_alive(data_dir: Path) -> set[str]:
    """Ids of kernels with a live process, from the runtime dir in their command lines."""
    prefix = (str(data_dir / "runtime") + "/").encode()
    ids = set()
    for pid in host_processes(prefix):
        # A forked kernel's command line is one string with spaces (setproctitle).
        for arg in cmdline(pid).replace(b"\0", b" ").split():
            if arg.startswith(prefix):
                ids.add(arg[len(prefix):].split(b"/")[0].decode())
    return ids


def cgroup_exists(kernel_id: str) -> bool:
    root = Path("/sys/fs/cgroup")
    candidates = [root / "code-interpreter-gateway" / kernel_id]
    candidates += [d / "code-interpreter-gateway" / kernel_id for d in root.iterdir()
                   if d.is_dir()]
    return any(c.exists() for c in candidates)


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


async def first_output(client: GatewayClient, thread_id: str, call_id: str) -> list[dict]:
    """Envelopes of a call up to its first output (the cell is running)."""
    seen = []
    while True:
        envelope = await client.next_envelope(thread_id, call_id, timeout=120)
        seen.append(envelope)
        if envelope["chunk"]["type"] == "hot_code_output":
            return seen
        assert envelope["chunk"]["type"] == "hot_code", envelope


# -- kernels dying or freezing ---------------------------------------------------------------
@pytest.mark.parametrize("target", ["kernel_process", "sandbox_root"])
async def test_kernel_killed_from_outside_mid_execution(running, client, thread_id, target):
    thread = client.thread(thread_id)
    try:
        await thread.run("open('kept.txt', 'w').write('kept')\nv = 1")
        call = await thread.execute("import time\nprint('started', flush=True)\ntime.sleep(300)")
        started = await first_output(client, thread.id, call)
        kernel = session_of(running.gateway, thread_id).kernel
        tree = descendants(kernel.pid)
        if target == "sandbox_root":
            victim = kernel.pid  # the outer bwrap, the gateway's own child
        else:
            victim = next(p for p in tree if b"ipykernel_launcher" in cmdline(p))
        os.kill(victim, signal.SIGKILL)
        result = await thread.collect(call, timeout=120)
        assert result.state == "killed", result.status
        assert result.status.get("kernel_restarted") is True
        assert "SIGKILL" in result.status["reason"], result.status
        assert started[-1]["chunk"]["content"] == "started\n" and result.output == ""
        marker = kernel.id.encode()
        assert await wait_until(lambda: not host_processes(marker), 15), host_processes(marker)
        after = await thread.run("print(open('kept.txt').read(), 'v' in globals())")
        # v comes back from the snapshot taken after the cell that set it (test_snapshots.py)
        assert after.state == "complete" and after.output == "kept True\n", after.status
        restored = after.status["restored"]
        assert (restored["names"], restored["skipped"]) == (1, []) and "failed" not in restored
        assert session_of(running.gateway, thread_id).kernel.id != kernel.id
    finally:
        await thread.close()


async def test_frozen_kernel_times_out_and_is_replaced(running, client, thread_id):
    thread = client.thread(thread_id)
    try:
        await thread.run("open('kept.txt', 'w').write('kept')")
        call = await thread.execute("import time\nprint('started', flush=True)\ntime.sleep(300)",
                                    timeout=4)
        await first_output(client, thread.id, call)
        kernel = session_of(running.gateway, thread_id).kernel
        for pid in descendants(kernel.pid):  # SIGSTOP everything: nothing answers any more
            os.kill(pid, signal.SIGSTOP)
        result = await thread.collect(call, timeout=120)
        assert result.state == "timeout", result.status
        assert result.status.get("kernel_restarted") is True
        marker = kernel.id.encode()
        assert await wait_until(lambda: not host_processes(marker), 15), host_processes(marker)
        after = await thread.run("print(open('kept.txt').read())")
        assert after.state == "complete" and after.output == "kept\n", after.status
    finally:
        await thread.close()


async def test_close_during_kernel_replacement_leaks_no_kernel(tmp_path):
    data_dir = tmp_path / "close-race"
    running = await start_gateway(test_settings(data_dir, pool_size=1))
    try:
        pool = running.gateway.pool
        async with await running.client() as client:
            thread = client.thread("close-race")
            assert (await thread.run("1")).state == "complete"
            # The pool has refilled: from now on only the replacement starts a kernel.
            assert await wait_until(lambda: pool._starting == 0 and len(pool._warm) == 1, 120)
            await thread.execute("import os\nos._exit(1)")
            assert await wait_until(lambda: pool._starting >= 1, 30), "no replacement started"
            await thread.close()
            await client.next_envelope(thread.id, None, timeout=60)  # "closed"
        await asyncio.sleep(1)
        assert await wait_until(lambda: pool._starting == 0, 60)
        await asyncio.sleep(3)  # a leaked start would have its process running by now
        known = {kernel.id for kernel, _ in pool.kernels()}
        alive = kernel_ids_alive(data_dir)
        assert alive <= known, f"kernel processes the pool does not know: {alive - known}"
    finally:
        await stop_gateway(running)
        await wait_until(lambda: not kernel_ids_alive(data_dir), 15)


# -- the gateway process killed --------------------------------------------------------------
async def test_gateway_sigkill_mid_execution_then_restart_on_the_same_data(tmp_path):
    data_dir = tmp_path / "data"
    marker = str(data_dir).encode()
    gateway = await GatewayProcess(data_dir).start()
    try:
        async with await GatewayClient.connect(gateway.url, "tok-alice") as client:
            thread = client.thread("survivor")
            made = await thread.run("import pandas as pd\n"
                                    "pd.DataFrame({'a': [1, 2, 3]}).to_csv('out.csv', "
                                    "index=False)\nx = 42")
            assert made.state == "complete", made.status
            produced = made.files[0]
            content = base64.b64decode(produced["base64"])
            assert content == b"a\n1\n2\n3\n"
            sleeper = random.randint(60_000, 69_000)
            call = await thread.execute(
                f"import subprocess, time\nsubprocess.Popen(['sleep', '{sleeper}'])\n"
                "print('started', flush=True)\ntime.sleep(600)")
            await first_output(client, thread.id, call)
            before_ids = kernel_ids_alive(data_dir)
            before_mounts = workdir_mounts(data_dir)
            assert before_ids and before_mounts
            assert host_processes(f"sleep\0{sleeper}".encode())
            gateway.kill(signal.SIGKILL)
            assert await gateway.proc.wait() == -signal.SIGKILL
        # --die-with-parent: every sandboxed process goes with the gateway.
        assert await wait_until(lambda: not host_processes(marker), 15), [
            cmdline(p)[:200] for p in host_processes(marker)]
        assert not host_processes(f"sleep\0{sleeper}".encode())

        gateway = await GatewayProcess(data_dir).start()
        status, body, headers = await http_get(f"{gateway.http}/files/{produced['file_id']}",
                                               "tok-alice")
        assert status == 200 and body == content
        assert headers["X-File-Sha256"] == hashlib.sha256(content).hexdigest()
        assert (await http_get(f"{gateway.http}/files/{produced['file_id']}", "tok-bob"))[0] \
            == 404
        # Leftovers of the killed gateway were cleaned at start-up.
        assert not (before_mounts & workdir_mounts(data_dir))
        assert not any(cgroup_exists(kernel_id) for kernel_id in before_ids)
        assert not any((data_dir / "runtime" / kernel_id).exists() for kernel_id in before_ids)
        async with await GatewayClient.connect(gateway.url, "tok-alice") as client:
            thread = client.thread("survivor")
            fresh = await thread.run("print('x' in globals())")
            assert fresh.state == "complete", fresh.status
            # A fresh kernel, with the variables of the snapshot taken after the first cell
            # (the running cell's could not be taken: the gateway was SIGKILLed), and says so.
            assert fresh.output == "True\n"
            restored = fresh.status["restored"]
            assert (restored["names"], restored["skipped"]) == (2, [])  # pd and x
            # The snapshot keeps the execution count too: numbering goes on after cell 1.
            assert restored["state"]["execution_count"] == 2
            assert fresh.status["execution_count"] == 2
            again = await thread.run("y = 1\ny + 1")
            assert again.state == "complete" and again.output == "2\n"
            await thread.close()
    finally:
        await gateway.stop()
        gateway.kill()
        unmount_leftovers(data_dir)  # only if the test failed before the restart cleaned them
    assert await wait_until(lambda: not host_processes(marker), 15)


async def test_swapping_a_file_for_a_fifo_cannot_hang_the_gateway(tmp_path):
    gateway = await GatewayProcess(tmp_path / "fifo").start()
    try:
        async with await GatewayClient.connect(gateway.url, "tok-alice") as client:
            thread = client.thread("fifo")
            setup, touch = swap_race_cells("p", "os.mkfifo(other)", "regular")
            deadline = time.monotonic() + 40
            executions = 0
            while time.monotonic() < deadline and executions < 300:
                code = setup if executions == 0 else touch
                executions += 1
                try:
                    result = await thread.run(code, wait=30)
                except TimeoutError:
                    result = None
                assert await gateway.healthy(), f"gateway hung at execution {executions}"
                assert result is not None and result.state == "complete", (
                    f"execution {executions} never finished")
    finally:
        gateway.kill()
        await gateway.proc.wait()
        unmount_leftovers(tmp_path / "fifo")


# -- connection churn ------------------------------------------------------------------------
async def test_many_connects_and_disconnects_leave_no_connections(tmp_path):
    running = await start_gateway(test_settings(tmp_path / "churn", pool_size=1))
    gauge = "gateway_websocket_connections"
    try:
        async def open_close(i: int) -> None:
            async with connect(running.url, additional_headers=ALICE) as ws:
                if i % 4 == 0:
                    await ws.send(json.dumps({"type": "subscribe", "thread_id": "churn"}))
                    await asyncio.wait_for(ws.recv(), 30)

        async def abort_after_handshake() -> None:
            ws = await connect(running.url, additional_headers=ALICE)
            ws.transport.abort()

        async def half_handshake() -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", running.server.port)
            writer.write(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
            await writer.drain()
            writer.close()

        async def garbage() -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", running.server.port)
            writer.write(os.urandom(512))
            await writer.drain()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(reader.read(), 10)
            writer.close()

        for i in range(200):
            await open_close(i)
        await asyncio.gather(*(open_close(i) for i in range(50)))
        await asyncio.gather(*(abort_after_handshake() for _ in range(30)),
                             *(half_handshake() for _ in range(20)),
                             *(garbage() for _ in range(20)))

        # Connections that leave mid-execution: the cell still ends, nobody is left listening.
        async def leave_mid_execution(i: int) -> None:
            async with connect(running.url, additional_headers=ALICE) as ws:
                await ws.send(json.dumps({"type": "execute", "thread_id": "churn",
                                          "call_id": f"leave-{i}",
                                          "code": "import time\ntime.sleep(0.2)"}))
                await asyncio.wait_for(ws.recv(), 60)

        await asyncio.gather(*(leave_mid_execution(i) for i in range(10)))

        def connections() -> float:
            return metric(running.gateway.metrics.render().decode(), gauge)

        assert await wait_until(lambda: connections() == 0, 15), connections()
        status, body, _ = await http_get(running.http + "/metrics", token="tok-alice")
        assert status == 200 and metric(body.decode(), gauge) == 0
        session = session_of(running.gateway, "churn")
        assert await wait_until(lambda: not session.busy and not session.queued, 60)
        assert not session.listeners
        assert session.executions == 10
        async with await running.client() as client:
            result = await client.thread("churn").run("print('still here')")
            assert result.state == "complete" and result.output == "still here\n"
        status, body, _ = await http_get(running.http + "/healthz")
        assert status == 200 and json.loads(body)["status"] == "ok"
    finally:
        await stop_gateway(running)
