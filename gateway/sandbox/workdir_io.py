"""The gateway's file work in kernel-owned working directories, on an executor of its own.

Uploads, restores, snapshot placing and the collection of generated files open entries a
hostile kernel can swap at any moment. Those opens are made not to wait (``workdirs``), but
should one ever block, it must not take the workers that the file store, HTTP and every other
thread use (``asyncio.to_thread``'s default executor): it runs here instead, and each thread
may hold at most ``PER_THREAD`` of these workers, so one thread cannot fill even this pool.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

# Copies into and out of working directories: mostly I/O and hashing, so more workers than
# cores is fine; at PER_THREAD each, four threads at once.
WORKERS = 8
PER_THREAD = 2


class WorkdirExecutor:
    """The gateway's pool of ``WORKERS`` threads for working-directory file work."""

    def __init__(self, workers: int = WORKERS) -> None:
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="workdir")

    def submit(self, function: Callable[..., T], *args: object) -> Future[T]:
        return self._executor.submit(function, *args)

    def for_thread(self, limit: int = PER_THREAD) -> ThreadWorkdirJobs:
        """One chat thread's share: at most ``limit`` of its jobs at a time."""
        return ThreadWorkdirJobs(self, limit)

    def shutdown(self) -> None:
        """No new jobs; queued ones are cancelled. Not waiting: a stuck job must not keep the
        gateway from closing."""
        self._executor.shutdown(wait=False, cancel_futures=True)


class ThreadWorkdirJobs:
    """The working-directory jobs of one chat thread, ``limit`` at a time.

    A slot is held until the job itself ends, not until its caller stops waiting: a caller
    that is cancelled (a timeout) while its job is stuck leaves the slot taken, so a thread
    cannot pile up stuck jobs behind cancelled waits.
    """

    def __init__(self, executor: WorkdirExecutor, limit: int) -> None:
        self._executor = executor
        self._slots = asyncio.Semaphore(limit)

    async def run(self, function: Callable[..., T], *args: object) -> T:
        """``function(*args)`` in a worker of the gateway's working-directory pool."""
        await self._slots.acquire()
        try:
            job = self._executor.submit(function, *args)
        except BaseException:
            self._slots.release()
            raise
        loop = asyncio.get_running_loop()

        def release(_: Future[T]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(self._slots.release)

        job.add_done_callback(release)
        return await asyncio.wrap_future(job)
