"""One owner per data directory (gateway/ops/datadir.py): a second gateway refuses to start and
leaves the first one's threads alone; a SIGKILLed owner's lock is taken over with its leftovers.

The pure half; the gateway half is tests/kernel/test_datadir.py."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from gateway.ops.datadir import DataDirInUse, DataDirLock, read_owner
from support.host import needs_linux

pytestmark = [pytest.mark.asyncio(loop_scope="session"), needs_linux]


async def test_the_lock_refuses_a_second_owner_and_names_the_first(tmp_path):
    first = DataDirLock(tmp_path)
    assert first.acquire(8765) is None  # nobody held it before
    with pytest.raises(DataDirInUse) as refused:
        DataDirLock(tmp_path).acquire(8766)
    message = str(refused.value)
    assert f"pid {os.getpid()}" in message and "port 8765" in message
    assert "--data-dir" in message and "Stop that gateway" in message
    first.set_port(9000)
    assert read_owner(tmp_path).port == 9000
    first.release()
    assert read_owner(tmp_path) is None  # a clean exit leaves nothing to take over
    second = DataDirLock(tmp_path)
    assert second.acquire(8766) is None
    second.release()


async def test_a_dead_owners_lock_is_taken_over(tmp_path):
    # A child takes the lock and is SIGKILLed: the kernel drops its flock, the file stays.
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c",
        "import sys, time\nfrom pathlib import Path\nfrom gateway.ops.datadir import DataDirLock\n"
        f"DataDirLock(Path({str(tmp_path)!r})).acquire(1234)\nprint('locked', flush=True)\n"
        "time.sleep(600)", stdout=asyncio.subprocess.PIPE)
    assert await asyncio.wait_for(child.stdout.readline(), 60) == b"locked\n"
    with pytest.raises(DataDirInUse, match=f"pid {child.pid}, port 1234"):
        DataDirLock(tmp_path).acquire(None)
    child.kill()
    await child.wait()
    lock = DataDirLock(tmp_path)
    dead = lock.acquire(4321)
    assert dead is not None and dead.pid == child.pid and dead.port == 1234
    assert read_owner(tmp_path).pid == os.getpid()
    lock.release()
