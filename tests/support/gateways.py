"""A real gateway (real sandboxed kernels) on 127.0.0.1 for a test: its settings, start and stop,
and the names of its threads."""

from __future__ import annotations

import asyncio
import io
import sys
import threading
import traceback
from pathlib import Path

from gateway.client import GatewayClient
from gateway.config import MiB, Settings
from gateway.wire.protocol import scoped_thread_id

TOKENS = {"tok-alice": "alice", "tok-bob": "bob"}


def test_settings(data_dir: Path, **overrides) -> Settings:
    values = dict(
        host="127.0.0.1",
        port=0,
        tokens=TOKENS,
        data_dir=data_dir,
        pool_size=2,
        max_kernels=24,
        execution_timeout=60.0,
        interrupt_grace=2.0,
        memory_limit=512 * MiB,
        pids_limit=128,
        disk_limit=64 * MiB,
        hibernate_after=3600.0,
        kernel_start_timeout=120.0,  # shared CI machines can be very slow at times
        # A fixed pool: the suite opens hundreds of threads in minutes, a "burst" that would
        # keep 2 cores busy starting warm kernels and make start counts inexact. The adaptive
        # target has tests of its own (test_pool_demand.py, test_pool.py).
        pool_adaptive=False,
        # Most tests are alice's on one shared gateway and open threads faster than they are
        # closed; the per-identity share has tests of its own (test_identity_limits.py).
        max_threads_per_identity=24,
    )
    values.update(overrides)
    return Settings(**values)


test_settings.__test__ = False  # a helper that test modules import, not a test


class Running:
    """A started gateway and its server, with the URL clients use."""

    def __init__(self, gateway, server) -> None:
        self.gateway = gateway
        self.server = server
        self.url = f"ws://127.0.0.1:{server.port}/ws"
        self.http = f"http://127.0.0.1:{server.port}"

    async def client(self, token: str = "tok-alice") -> GatewayClient:
        return await GatewayClient.connect(self.url, token)


async def start_gateway(settings: Settings) -> Running:
    from gateway.embed import start_embedded

    embedded = await start_embedded(settings)
    return Running(embedded.gateway, embedded.server)


STOP_GUARD = 300.0  # seconds; only so that a gateway that cannot stop fails instead of hanging


async def stop_gateway(running: Running, guard: float = STOP_GUARD) -> None:
    """Stop the server, then the gateway. A stop that takes longer than ``guard`` is a failure
    that says where it is stuck (every task's and thread's stack), not a hang."""

    async def stop() -> None:
        await running.server.close()
        await running.gateway.close()

    task = asyncio.ensure_future(stop())
    done, _ = await asyncio.wait({task}, timeout=guard)
    if not done:
        where = stacks_of_everything()
        print(where, file=sys.stderr, flush=True)
        task.cancel()
        raise AssertionError(f"the gateway did not stop within {guard:.0f} s:\n{where}")
    task.result()


def stacks_of_everything() -> str:
    """Every asyncio task's stack and every thread's, for a report of where a hang is."""
    out = io.StringIO()
    for task in asyncio.all_tasks():
        print(f"--- {task!r}", file=out)
        task.print_stack(limit=20, file=out)
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        print(f"--- thread {names.get(ident, ident)}", file=out)
        out.writelines(traceback.format_stack(frame, limit=20))
    return out.getvalue()


async def close_threads_named(gateway, tid: str) -> None:
    """Close every identity's thread ``tid`` and its ``<tid>-suffix`` threads."""
    for session in list(gateway.threads.values()):
        name = session.client_thread_id
        if (name == tid or name.startswith(tid + "-")) and session.thread_id in gateway.threads:
            await gateway.close_thread(name, session.owner)


def thread_key(thread_id: str, identity: str = "alice") -> str:
    """The gateway's key of ``identity``'s thread (threads are scoped per identity)."""
    return scoped_thread_id(identity, thread_id)


def session_of(gateway, thread_id: str, identity: str = "alice"):
    """``identity``'s live session of ``thread_id`` on ``gateway``."""
    return gateway.threads[thread_key(thread_id, identity)]


async def until_ready(gateway, guard: float = 300.0) -> None:
    """Until the gateway's pool has a warm kernel again (it refills in the background after
    earlier tests). ``guard`` only turns a pool that never refills into a failure, not a hang.
    Calling ``pool.start()`` again instead would start a second zygote beside the first."""

    deadline = asyncio.get_running_loop().time() + guard
    while not gateway.readiness()["ready"]:
        assert asyncio.get_running_loop().time() < deadline, gateway.readiness()["reason"]
        await asyncio.sleep(0.1)
