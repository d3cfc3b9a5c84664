"""Shared fixtures: a real gateway (real sandboxed kernels) on 127.0.0.1, and real clients."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

# Imported at collection, at a shallow stack: hypothesis' pytest plugin imports it lazily in
# the terminal summary otherwise, deep in pluggy's frames, where CPython 3.11.7's ast.parse
# (pytest rewrites the plugin's modules) fails with "AST constructor recursion depth mismatch"
# and the run exits 1 after every test passed.
import hypothesis  # noqa: F401
import pytest
import pytest_asyncio

from gateway.client import GatewayClient
from gateway.config import MiB, Settings
from gateway.wire.protocol import scoped_thread_id

# A variable the kernels must never see (the sandbox builds their environment from nothing).
os.environ["GATEWAY_TEST_SECRET"] = "must-not-leak"

TOKENS = {"tok-alice": "alice", "tok-bob": "bob"}
_thread_numbers = itertools.count(1)

def host_processes(marker: bytes) -> list[int]:
    """Host pids (not this one) whose command line (NUL-separated argv) contains ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if marker in cmdline:
            found.append(int(entry))
    return found


async def download(http: str, file_id: str, token: str = "tok-alice") -> tuple[int, bytes, dict]:
    """GET /files/{file_id}: (status, body, headers), errors included."""

    def get():
        request = urllib.request.Request(f"{http}/files/{file_id}",
                                         headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), dict(exc.headers)

    return await asyncio.to_thread(get)


SWAP_RACE_CELL = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
RENAME_EXCHANGE, AT_FDCWD = 2, -100
os.makedirs('/mnt/data/x', exist_ok=True)
pairs = []
for i in range(20):
    regular, other = f'/mnt/data/x/f{{i}}.txt', f'/mnt/data/x/.{prefix}{{i}}'
    open(regular, 'w').write({content!r})
    {make_other}
    pairs.append((regular.encode(), other.encode()))
if os.fork() == 0:  # a separate process swaps at full speed (no GIL to share)
    try:
        while True:
            for a, b in pairs:
                libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE)
    finally:
        os._exit(0)
"""


def swap_race_cells(prefix: str, make_other: str, content: str,
                    utime_args: str = "") -> tuple[str, str]:
    """Kernel code racing the gateway's directory scan: 20 regular files in ``x/``, each paired
    with a hidden ``.<prefix>N`` made by ``make_other`` (a statement on ``other``), swapped back
    and forth by a forked process; and a cell that touches them all so every scan finds work."""
    setup = SWAP_RACE_CELL.format(prefix=prefix, content=content, make_other=make_other)
    touch = ("import os\n"
             "for i in range(20):\n"
             f"    for n in (f'x/f{{i}}.txt', f'x/.{prefix}{{i}}'):\n"
             f"        try: os.utime(n{utime_args})\n"
             "        except OSError: pass\n")
    return setup, touch


needs_linux = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                 reason="bubblewrap and cgroups exist only on Linux")


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
        idle_timeout=3600.0,
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


async def stop_gateway(running: Running) -> None:
    await running.server.close()
    await running.gateway.close()


@pytest.fixture(scope="session")
def data_root():
    root = Path(tempfile.mkdtemp(prefix="gateway-test-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def running(data_root):
    """One gateway for the whole session: kernel starts are the slow part of every test."""
    running = await start_gateway(test_settings(data_root / "main"))
    yield running
    await stop_gateway(running)


@pytest_asyncio.fixture(loop_scope="session")
async def client(running):
    client = await running.client()
    yield client
    await client.close()


@pytest_asyncio.fixture(loop_scope="session")
async def thread_id(request):
    """A fresh thread id; afterwards its threads (and ``<id>-suffix`` ones) are closed so their
    kernels go back to the shared gateway's budget."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", request.node.name[:40])
    tid = f"t{next(_thread_numbers)}-{name}"
    yield tid
    if "running" in request.fixturenames:
        gateway = request.getfixturevalue("running").gateway
        await close_threads_named(gateway, tid)


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


# Debian's chromium for the page tests (playwright drives it; no browser download).
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def browser():
    """One headless Chromium per test module."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                   args=CHROMIUM_ARGS)
        yield browser
        await browser.close()
