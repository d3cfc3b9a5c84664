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
