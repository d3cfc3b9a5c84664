"""A thread heals when its surroundings are taken away, start failures are reported, and a user
interrupt is re-sent and then enforced (gateway/threads/healing.py, KernelPool.rebuild,
Kernel.run).

The pure half; the gateway half is tests/kernel/test_healing.py."""

from __future__ import annotations

import pytest

from gateway.errors import KernelStartError
from gateway.threads.healing import StartBackoff
from support.host import needs_linux

pytestmark = [pytest.mark.asyncio(loop_scope="session"), needs_linux]


async def test_start_backoff_doubles_and_resets():
    backoff = StartBackoff(first=30.0, longest=100.0)
    backoff.check()  # nothing failed yet: no wait
    backoff.failed("boom")
    with pytest.raises(KernelStartError, match="1 start.*boom.*next attempt in 30 s"):
        backoff.check()
    backoff.failed("boom again")
    assert backoff.next_attempt - backoff.first * 2 > 0
    for _ in range(5):
        backoff.failed("still")
    with pytest.raises(KernelStartError, match="7 start.*next attempt in 100 s"):
        backoff.check()
    backoff.succeeded()
    backoff.check()
