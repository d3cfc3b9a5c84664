"""One cell through the public client, timed to its first result: what a user waits for
before anything happens (the kernel leased, restored or started, the code run)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from gateway.client import Result, Thread, is_final

# A chunk the cell produced; ``hot_code`` (the code echoed back) and queued/running statuses
# come before the kernel did anything.
RESULT_CHUNKS = frozenset({"hot_code_output", "display", "code_interpreter_stream"})


@dataclass
class Timed:
    first: float | None = None  # seconds to the first result (or the final status)
    total: float | None = None  # seconds to the final status
    result: Result = field(default_factory=lambda: Result(""))
    timed_out: bool = False

    @property
    def state(self) -> str | None:
        return "client_timeout" if self.timed_out else self.result.state

    @property
    def statuses(self) -> list[dict]:
        return [e["chunk"]["content"] for e in self.result.envelopes
                if e["chunk"]["type"] == "status"]

    @property
    def failure(self) -> str | None:
        """Why the cell did not complete: an error code, an exception's name or the state."""
        if self.state == "complete":
            return None
        if self.result.error:
            return self.result.error.get("code", "protocol_error")
        status = self.result.status
        if isinstance(status.get("error"), dict) and status["error"].get("ename"):
            return str(status["error"]["ename"])
        return status.get("error_code") or self.state or "no_status"


async def timed_run(thread: Thread, code: str, wait: float) -> Timed:
    """Run ``code`` on ``thread``; gives up after ``wait`` seconds (``timed_out``)."""
    timed = Timed()
    began = time.perf_counter()
    call_id = await thread.execute(code)
    timed.result = Result(call_id)

    async def gather() -> None:
        async for envelope in thread.stream(call_id):
            timed.result.envelopes.append(envelope)
            chunk_type = envelope["chunk"]["type"]
            if timed.first is None and (chunk_type in RESULT_CHUNKS or is_final(envelope)):
                timed.first = time.perf_counter() - began
        timed.total = time.perf_counter() - began

    try:
        await asyncio.wait_for(gather(), max(wait, 0.001))
    except TimeoutError:
        timed.timed_out = True
    return timed
