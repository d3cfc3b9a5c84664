"""The working-directory executor: a thread whose file work is stuck keeps nobody else waiting,
and holds at most its share of the executor.

The gateway half; the pure half is tests/unit/test_workdir_io.py."""

from __future__ import annotations

import asyncio

import pytest

from gateway.sandbox.workdir_io import PER_THREAD
from support.blocking import HANG_GUARD, Blocker, guarded
from support.gateways import session_of

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_stuck_thread_of_the_gateway_slows_no_other_thread(running, client, thread_id):
    """The same through a real gateway: thread A's workdir slots are taken (as by a stuck
    job); thread B's cell, its generated file and its upload go through, and A's upload
    waits for its own slots only."""
    gateway = running.gateway
    thread_a, thread_b = client.thread(f"{thread_id}-a"), client.thread(f"{thread_id}-b")
    for thread in (thread_a, thread_b):
        assert (await thread.run("1")).state == "complete"
    session_a = session_of(gateway, thread_a.id)
    blocker = Blocker()
    try:
        stuck = [asyncio.create_task(session_a.workdir_jobs.run(blocker.job, n))
                 for n in range(PER_THREAD)]
        for _ in range(PER_THREAD):
            await guarded(blocker.started.get())
        upload_a = asyncio.create_task(thread_a.upload("a.txt", b"from a"))

        made = await thread_b.run("open('made.txt', 'w').write('by b')", wait=HANG_GUARD)
        assert made.state == "complete"
        assert [f["filename"] for f in made.files] == ["made.txt"]
        uploaded = await guarded(thread_b.upload("b.txt", b"from b"))
        assert uploaded["type"] == "file_uploaded" and uploaded["content"]["size"] == 6
        assert await guarded(asyncio.to_thread(sum, [1, 1])) == 2
        assert not upload_a.done(), "thread A's upload waits for A's own slots"

        blocker.release.set()
        assert await guarded(asyncio.gather(*stuck)) == list(range(PER_THREAD))
        done = await guarded(upload_a)
        assert done["type"] == "file_uploaded" and done["content"]["size"] == 6
    finally:
        blocker.release.set()
