"""A kernel swaps its own partial upload for a FIFO between two parts: the next part is refused
at once with a clear error, and another identity's new thread, HTTP upload and /healthz go on
as if nothing happened.

Before, the gateway reopened the partial file without O_NONBLOCK inside a worker of the
default executor: each FIFO held a worker forever, and a handful stalled every
``asyncio.to_thread`` of the gateway (new threads, the file store, HTTP uploads).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import stat
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
import pytest_asyncio

from support.gateways import start_gateway, stop_gateway, test_settings
from support.host import needs_linux

pytestmark = [pytest.mark.asyncio(loop_scope="session"), needs_linux]

HANG_GUARD = 120  # seconds; not a timing assertion: only so that a stall fails, not hangs
THREADS = 8  # more FIFOs than the default executor has workers on a 2-core machine (6)
PART_ONE = b"first part|"
PART_TWO = b"second part"


@pytest_asyncio.fixture(loop_scope="session")
async def gateway(data_root):
    running = await start_gateway(test_settings(
        data_root / "hostile-uploads", pool_size=2, max_kernels=THREADS + 4,
        max_threads_per_identity=THREADS + 2))
    yield running
    # On a build that blocks on the FIFOs, let its stuck workers go before closing (they share
    # the event loop's default executor with every other gateway of the session).
    readers = release_fifos(running.gateway)
    try:
        await stop_gateway(running)
    finally:
        for fd in readers:
            os.close(fd)


async def guarded(awaitable, what: str):
    try:
        return await asyncio.wait_for(awaitable, HANG_GUARD)
    except TimeoutError:
        pytest.fail(f"hang guard: {what}: no answer in {HANG_GUARD} s")


def upload_part(thread_id: str, call_id: str, data: bytes, offset: int, final: bool) -> dict:
    return {"type": "upload", "thread_id": thread_id, "call_id": call_id,
            "filename": "input.bin", "base64": base64.b64encode(data).decode(),
            "offset": offset, "final": final}


async def prepare_fifo(client, thread_id: str, call_id: str) -> None:
    """Part 1 of an upload, then the thread's code replaces the partial file with a FIFO."""
    await client.send(upload_part(thread_id, call_id, PART_ONE, 0, final=False))
    reply = await guarded(client.next_envelope(thread_id, call_id), f"part 1 of {call_id}")
    assert reply["chunk"]["type"] == "file_uploaded", reply
    assert reply["chunk"]["content"]["received"] == len(PART_ONE)
    swapped = await client.thread(thread_id).run(
        f"import os\nos.unlink('.upload-{call_id}')\nos.mkfifo('.upload-{call_id}')", wait=None)
    assert swapped.state == "complete", swapped.status


def release_fifos(gateway) -> list[int]:
    """Open every FIFO left at the top of a working directory for reading: a writer waiting in
    open() for a peer goes on. The descriptors stay open until the caller closes them."""
    readers = []
    for session in gateway.threads.values():
        if session.kernel is None:
            continue
        for entry in os.scandir(session.kernel.spec.workdir):
            if stat.S_ISFIFO(entry.stat(follow_symlinks=False).st_mode):
                readers.append(os.open(entry.path, os.O_RDONLY | os.O_NONBLOCK))
    return readers


def http_request(method: str, url: str, token: str | None = None,
                 body: bytes | None = None) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=HANG_GUARD) as response:
        return response.status, json.loads(response.read())


async def timed(awaitable) -> tuple[float | None, object]:
    """(seconds, result) of an awaited round trip; (None, the error) when it failed or hung."""
    began = time.monotonic()
    try:
        result = await asyncio.wait_for(awaitable, HANG_GUARD)
    except Exception as exc:  # reported with the others, then asserted on
        return None, exc
    return time.monotonic() - began, result


async def test_fifo_swapped_for_a_partial_upload_stalls_nothing(gateway, caplog):
    caplog.set_level(logging.WARNING)
    # The test's own blocking HTTP calls get workers of their own: on a build that stalls the
    # default executor they must still measure the gateway, not wait behind it.
    test_pool = ThreadPoolExecutor(4, thread_name_prefix="test-http")
    loop = asyncio.get_running_loop()
    alice_ids = [f"fifo-alice-{n}" for n in range(THREADS)]
    calls = {thread_id: f"up-{n}" for n, thread_id in enumerate(alice_ids)}
    alice = await gateway.client("tok-alice")
    alice_again = await gateway.client("tok-alice")  # part 2 comes on another connection
    bob = await gateway.client("tok-bob")
    try:
        await asyncio.gather(*(prepare_fifo(alice, t, calls[t]) for t in alice_ids))
        for thread_id in alice_ids:
            await alice_again.send(upload_part(thread_id, calls[thread_id], PART_TWO,
                                               len(PART_ONE), final=True))

        # Meanwhile, from another identity: a new thread's cells, an HTTP upload, /healthz.
        bob_thread = bob.thread("fifo-bob")

        async def bob_cells() -> list[tuple[float | None, object]]:
            answers = []
            for n in range(3):
                answers.append(await timed(bob_thread.run(f"print({n} * 7)", wait=None)))
                if answers[-1][0] is None:
                    break  # one hang guard is enough
            return answers

        (cells, upload, health, *replies) = await asyncio.gather(
            bob_cells(),
            timed(loop.run_in_executor(test_pool, http_request, "PUT",
                                       f"{gateway.http}/threads/fifo-bob/files/b.txt",
                                       "tok-bob", b"bob's file")),
            timed(loop.run_in_executor(test_pool, http_request, "GET",
                                       f"{gateway.http}/healthz")),
            *(timed(alice_again.next_envelope(t, calls[t])) for t in alice_ids))
        print("\nbob's round trips (s; None: no answer in the hang guard's "
              f"{HANG_GUARD} s) while alice's {THREADS} FIFO uploads were refused:",
              {"cells": [round(t, 3) if t else t for t, _ in cells],
               "http_upload": upload[0] and round(upload[0], 3),
               "healthz": health[0] and round(health[0], 3)})

        for n, (seconds, result) in enumerate(cells):
            assert seconds is not None, f"bob's cell {n}: {result!r}"
            assert result.state == "complete" and result.output == f"{n * 7}\n"
        assert upload[0] is not None, f"bob's HTTP upload: {upload[1]!r}"
        assert upload[1] == (201, {"filename": "b.txt", "size": 10, "path": "/mnt/data/b.txt"})
        assert health[0] is not None, f"/healthz: {health[1]!r}"
        assert health[1][0] == 200 and health[1][1]["status"] == "ok"
        check = await guarded(bob_thread.run("print(open('b.txt').read())", wait=None),
                              "bob's cell after the upload")
        assert check.output == "bob's file\n"

        for thread_id, (seconds, reply) in zip(alice_ids, replies, strict=True):
            assert seconds is not None, f"alice's part 2 on {thread_id}: {reply!r}"
            chunk = reply["chunk"]
            assert chunk["type"] == "error", reply
            assert chunk["content"]["code"] == "bad_filename"
            assert chunk["content"]["message"] == (
                f"upload refused: '.upload-{calls[thread_id]}' is not a regular file")
        # The refused upload's leftovers are gone; the thread works on.
        left = await guarded(alice.thread(alice_ids[0]).run(
            "import os\nprint(sorted(n for n in os.listdir('.') if n.startswith('.')))",
            wait=None), "alice's cell after the refusal")
        assert left.output == "[]\n"
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], \
            "a refused upload is a client error, never a traceback in the log"
    finally:
        for client in (alice, alice_again, bob):
            await client.close()
        test_pool.shutdown(wait=False)
