"""Jobs that block on purpose, and a guard so that a broken build fails instead of hanging."""

from __future__ import annotations

import asyncio
import threading

HANG_GUARD = 120  # seconds; only so that a broken build fails instead of hanging


async def guarded(awaitable):
    return await asyncio.wait_for(awaitable, HANG_GUARD)


class Blocker:
    """Jobs that say when they start and then wait for ``release``."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started: asyncio.Queue[int] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()

    def job(self, number: int) -> int:
        self._loop.call_soon_threadsafe(self.started.put_nowait, number)
        assert self.release.wait(HANG_GUARD), "hang guard: never released"
        return number


# A cell that runs until the test puts the file "go" into its working directory
# (``let_cell_go``), then prints "go"; a test that never does fails after HANG_GUARD.
CELL_UNTIL_GO = f"""
import os, time
for _ in range({HANG_GUARD * 20}):
    if os.path.exists("/mnt/data/go"):
        break
    time.sleep(0.05)
else:
    raise TimeoutError("hang guard: never let go")
os.remove("/mnt/data/go")
print("go")
"""


async def wait_busy(session) -> None:
    """Until the thread's cell runs (a ``gateway.threads.session.ThreadSession``)."""
    for _ in range(HANG_GUARD * 20):
        if session.busy:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"thread {session.client_thread_id} never started its cell")


def let_cell_go(session) -> None:
    (session.kernel.spec.workdir / "go").write_text("")
