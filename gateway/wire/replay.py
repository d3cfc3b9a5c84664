"""What a reconnecting client missed: per-thread sequence numbers, a bounded replay buffer, and
the final result of every call kept by id. Pure: no sockets, no clock of its own.

Every envelope of a thread gets the next ``seq``. A client that comes back with the last seq it
saw gets exactly the envelopes after it; when some of them have already left the buffer (it is
capped by bytes and by age), it gets a ``gap`` chunk naming what is lost and, still, the final
status of every call that ended in the gap: a client always learns how each call ended.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .mimebundle import display_size

FINAL_STATES = frozenset({"complete", "error", "timeout", "interrupted", "killed"})
# What one held envelope costs in Python objects beside its content (two dicts, the deque
# entry, small ints): measured with tracemalloc, so the byte cap is a real memory bound.
ENVELOPE_OVERHEAD = 520
VALUE_OVERHEAD = 64  # a str object's header, per value of a dict content


def final_state(message: dict[str, Any]) -> str | None:
    """The state when ``message`` is the status that ends a call, else None."""
    chunk = message.get("chunk")
    if not isinstance(chunk, dict) or chunk.get("type") != "status":
        return None
    state = chunk.get("content", {}).get("state")
    return state if state in FINAL_STATES else None


def approximate_size(message: dict[str, Any]) -> int:
    """A cheap estimate of the memory a held message takes (no serialisation or traversal:
    this runs for every envelope on the hot path)."""
    chunk = message.get("chunk", {})
    content = chunk.get("content")
    if chunk.get("type") == "display" and isinstance(content, dict):  # its data is nested
        return ENVELOPE_OVERHEAD + display_size(content)
    if isinstance(content, str):
        return ENVELOPE_OVERHEAD + len(content)
    if isinstance(content, dict):
        return ENVELOPE_OVERHEAD + sum(
            VALUE_OVERHEAD + (len(value) if isinstance(value, str) else 32)
            for value in content.values())
    return ENVELOPE_OVERHEAD


def seq_origin() -> int:
    """Where a new thread session's seqs start: microseconds since the epoch. A thread id used
    again (after ``close``, or after a gateway restart) then continues above every seq its
    earlier sessions sent, so a client's "drop what I already had" stays right; 2**53 (the
    largest integer every JSON reader keeps exactly) is centuries away."""
    return time.time_ns() // 1000


@dataclass
class Replay:
    """What to send a resuming client, in this order: ``gap`` (if any), the final statuses
    of calls that ended inside the gap, then ``missed``."""

    missed: list[dict[str, Any]] = field(default_factory=list)
    gap: tuple[int, int] | None = None  # first and last seq that can no longer be sent
    ended_in_gap: list[dict[str, Any]] = field(default_factory=list)


class ReplayBuffer:
    """The recent envelopes of one thread, at most ``max_bytes`` (estimated) and ``max_age``
    seconds old; the final statuses of the last ``max_finals`` calls are kept apart, so a gap
    never hides how a call ended."""

    def __init__(self, max_bytes: int, max_age: float, max_finals: int = 1024,
                 clock: Callable[[], float] = time.monotonic, start_after: int = 0) -> None:
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.max_finals = max_finals
        self.clock = clock
        self.last_seq = start_after
        self.size = 0  # estimated bytes held
        # seq, time, size, message
        self._entries: deque[tuple[int, float, int, dict[str, Any]]] = deque()
        # seq -> final status envelope
        self._finals: OrderedDict[int, dict[str, Any]] = OrderedDict()

    def stamp(self, message: dict[str, Any]) -> dict[str, Any]:
        """Give ``message`` the thread's next seq and keep it for replay; returns it."""
        self.last_seq += 1
        message["seq"] = self.last_seq
        size = approximate_size(message)
        self._entries.append((self.last_seq, self.clock(), size, message))
        self.size += size
        if final_state(message):
            self._finals[self.last_seq] = message
            while len(self._finals) > self.max_finals:
                self._finals.popitem(last=False)
        self._evict()
        return message

    def _evict(self) -> None:
        oldest_allowed = self.clock() - self.max_age
        while self._entries and (self.size > self.max_bytes
                                 or self._entries[0][1] < oldest_allowed):
            _, _, size, _ = self._entries.popleft()
            self.size -= size

    @property
    def first_buffered(self) -> int:
        """The oldest seq still held (``last_seq + 1`` when empty)."""
        self._evict()
        return self._entries[0][0] if self._entries else self.last_seq + 1

    def since(self, seen: int) -> Replay:
        """Everything after seq ``seen`` (the last one the client got; 0: from the start)."""
        seen = max(0, min(seen, self.last_seq))
        first = self.first_buffered
        replay = Replay(missed=[message for seq, _, _, message in self._entries if seq > seen])
        if seen + 1 < first:
            replay.gap = (seen + 1, first - 1)
            replay.ended_in_gap = [message for seq, message in self._finals.items()
                                   if seen < seq < first]
        return replay


@dataclass
class FinishedCall:
    owner: str
    status: dict[str, Any]  # the final status envelope, as sent
    finished_at: float
    # filename, file_id, mime_type of each
    files: list[dict[str, Any]] = field(default_factory=list)
    size: int = 0  # approximate bytes held


class CallResults:
    """The final status of finished calls by (thread, call), for ``result`` requests, retried
    ``execute`` and ``GET /threads/{thread}/calls/{call}``; bounded by age, count and bytes
    (a status carries up to a few KB of ``tool_output``: by count alone a busy gateway could
    hold hundreds of MB of them for the whole retention)."""

    def __init__(self, retention: float, max_calls: int = 100_000,
                 max_bytes: int = 64 * 2**20,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.retention = retention
        self.max_calls = max_calls
        self.max_bytes = max_bytes
        self.clock = clock
        self.bytes = 0
        self._calls: OrderedDict[tuple[str, str], FinishedCall] = OrderedDict()

    def record(self, thread_id: str, call_id: str, owner: str, status: dict[str, Any],
               files: list[dict[str, Any]] | None = None) -> None:
        key = (thread_id, call_id)
        self._remove_call(key)
        files = files or []
        size = approximate_size(status) + VALUE_OVERHEAD * 4 * len(files)
        self._calls[key] = FinishedCall(owner, status, self.clock(), files, size)
        self.bytes += size
        self._expire()

    def finished(self, thread_id: str, call_id: str, identity: str) -> FinishedCall | None:
        """The finished call, only for the identity that owns the thread."""
        self._expire()
        found = self._calls.get((thread_id, call_id))
        return found if found is not None and found.owner == identity else None

    async def lookup(self, thread_id: str, call_id: str, identity: str) -> FinishedCall | None:
        """The finished call wherever it ran: here, one gateway's memory (``finished``)."""
        return self.finished(thread_id, call_id, identity)

    async def begin(self, thread_id: str, call_id: str, owner: str) -> FinishedCall | None:
        """Before a call is queued: its final status if the call id ran elsewhere before and
        must not run again (None: run it). One gateway has no elsewhere."""
        return None

    def refused(self, thread_id: str, call_id: str, owner: str) -> None:
        """The call ``begin`` let through was refused before it was queued."""

    async def close(self) -> None:
        """Nothing to flush in memory."""

    def get(self, thread_id: str, call_id: str, identity: str) -> dict[str, Any] | None:
        """The call's final status envelope, only for the identity that owns the thread."""
        found = self.finished(thread_id, call_id, identity)
        return found.status if found is not None else None

    def _remove_call(self, key: tuple[str, str]) -> None:
        gone = self._calls.pop(key, None)
        if gone is not None:
            self.bytes -= gone.size

    def _expire(self) -> None:
        oldest_allowed = self.clock() - self.retention
        while self._calls and (len(self._calls) > self.max_calls or self.bytes > self.max_bytes
                               or next(iter(self._calls.values())).finished_at < oldest_allowed):
            _, gone = self._calls.popitem(last=False)
            self.bytes -= gone.size

    def __len__(self) -> int:
        return len(self._calls)
