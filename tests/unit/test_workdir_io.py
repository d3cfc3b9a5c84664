"""The working-directory executor: a thread whose file work is stuck keeps nobody else waiting,
and holds at most its share of the executor.

The pure half; the gateway half is tests/kernel/test_workdir_io_gateway.py."""

from __future__ import annotations

import asyncio

import pytest

from gateway.sandbox.workdir_io import PER_THREAD, WorkdirExecutor
from support.blocking import Blocker, guarded

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_stuck_thread_holds_its_share_and_nobody_else_waits():
    executor = WorkdirExecutor(workers=4)
    stuck, other = executor.for_thread(limit=2), executor.for_thread(limit=2)
    blocker = Blocker()
    try:
        jobs = [asyncio.create_task(stuck.run(blocker.job, n)) for n in range(3)]
        first_two = {await guarded(blocker.started.get()) for _ in range(2)}
        assert first_two == {0, 1}
        # Another thread's jobs, more of them than its share, and the default executor.
        assert await guarded(asyncio.gather(*(other.run(sum, [n, 1]) for n in range(6)))) == \
            [1, 2, 3, 4, 5, 6]
        assert await guarded(asyncio.to_thread(sum, [2, 3])) == 5
        # The stuck thread's third job was submitted before all of those and has not started.
        assert blocker.started.empty() and not jobs[2].done()
        # A caller that stops waiting does not free its slot while its job still runs.
        jobs[0].cancel()
        assert await guarded(other.run(sum, [0])) == 0
        assert blocker.started.empty() and not jobs[2].done()
        blocker.release.set()
        assert await guarded(blocker.started.get()) == 2
        assert await guarded(asyncio.gather(jobs[1], jobs[2])) == [1, 2]
        assert jobs[0].cancelled()
    finally:
        blocker.release.set()
        executor.shutdown()


async def test_the_per_thread_bound_counts_running_jobs_not_waiters():
    executor = WorkdirExecutor(workers=8)
    jobs_of_one_thread = executor.for_thread()
    blocker = Blocker()
    try:
        waiting = [asyncio.create_task(jobs_of_one_thread.run(blocker.job, n))
                   for n in range(PER_THREAD + 3)]
        started = {await guarded(blocker.started.get()) for _ in range(PER_THREAD)}
        assert started == set(range(PER_THREAD))
        # Three workers later (the executor has eight), still only PER_THREAD have started.
        assert await guarded(asyncio.gather(*(executor_job(executor) for _ in range(3)))) == \
            [7, 7, 7]
        assert blocker.started.empty()
        blocker.release.set()
        assert sorted(await guarded(asyncio.gather(*waiting))) == list(range(PER_THREAD + 3))
    finally:
        blocker.release.set()
        executor.shutdown()


async def executor_job(executor: WorkdirExecutor) -> int:
    return await asyncio.wrap_future(executor.submit(sum, [3, 4]))
