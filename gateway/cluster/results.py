"""Finished calls' final statuses, shared by every node through Redis.

One key per call, ``gw:call:THREAD:CALL``, kept ``result_retention`` seconds (PX), holding the
thread's identity and either the final status envelope (with the call's files) or, from the
moment the call was accepted until it ends, a ``running`` marker naming the node and the claim it
runs under. A ``result`` request, a retried ``execute`` or ``GET /threads/{t}/calls/{c}`` on any
node finds the status there after the node that ran the call is gone. A marker whose node is no
longer live, or whose thread is now held under another claim, stands for a call that was lost
with its node: the first node to look turns it into the ``killed`` status (atomically: every
node answers the same status, and the one-status rule holds).

Each node also keeps its own ``CallResults`` in memory: a call it ran is answered without
Redis. Writes of final statuses leave the event loop at once (a task), so recording costs the
cell nothing; a status is bounded (``MAX_BYTES``) before it is stored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import cast

import orjson
import redis

from ..wire import envelopes
from ..wire.protocol import client_thread_id
from ..wire.replay import CallResults, FinishedCall
from .ownership import Claim
from .registry import PREFIX
from .relay import lost_reason

log = logging.getLogger(__name__)

MAX_BYTES = 16 * 2**10  # per stored call; a status carries up to ~4 KB of tool_output
MAX_FILES = 64  # files listed per stored call
CUT_TEXT = 4096  # longest string value of a status kept when a record is over MAX_BYTES

# KEYS: the call. ARGV: the running marker, ms to keep. The record already there (nil: none,
# and the marker is now set): an execute of a call id this thread used before is answered
# from it instead of running again.
BEGIN = """
local current = redis.call('GET', KEYS[1])
if current then return current end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""

# KEYS: the call. ARGV: the marker read, the record replacing it, ms to keep. The record now held.
REPLACE = """
local current = redis.call('GET', KEYS[1])
if current ~= ARGV[1] then return current end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return ARGV[2]
"""

# KEYS: the call. ARGV: the marker to drop (a call that was refused before it was queued).
FORGET = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def bounded(record: dict) -> bytes:
    """The record as stored: at most ``MAX_BYTES`` (long strings of the status cut, files
    capped), never failing on a large one."""
    raw = orjson.dumps(record)
    if len(raw) <= MAX_BYTES:
        return raw
    status = record["status"]
    chunk = dict(status.get("chunk", {}))
    content = {key: (value[:CUT_TEXT] + " [cut]" if isinstance(value, str)
                     and len(value) > CUT_TEXT else value)
               for key, value in chunk.get("content", {}).items()}
    chunk["content"] = content
    record = {**record, "status": {**status, "chunk": chunk},
              "files": record.get("files", [])[:MAX_FILES]}
    raw = orjson.dumps(record)
    if len(raw) <= MAX_BYTES:
        return raw
    chunk["content"] = {key: content[key] for key in ("state", "reason", "error_code")
                        if isinstance(content.get(key), str)}
    chunk["content"] = {key: value[:1024] for key, value in chunk["content"].items()}
    return orjson.dumps({**record, "files": []})


class SharedResults(CallResults):
    """``CallResults`` whose records also go to Redis, where every node finds them."""

    def __init__(self, retention: float, registry_url: str,
                 placement: Callable[[str], Awaitable[tuple[dict, Claim | None]]],
                 holder: Callable[[str], tuple[str, Claim | None]],
                 max_bytes: int = 64 * 2**20) -> None:
        super().__init__(retention, max_bytes=max_bytes)
        from .registry import connect

        self.redis = connect(registry_url)
        self.retention_ms = max(1, int(retention * 1000))
        self._begin = self.redis.register_script(BEGIN)
        self._replace = self.redis.register_script(REPLACE)
        self._forget = self.redis.register_script(FORGET)
        self._placement = placement  # thread -> (live nodes, its claim now)
        self._holder = holder  # thread -> (this node's id, the claim it holds on the thread)
        self._writes: set[asyncio.Task] = set()

    @staticmethod
    def key(thread_id: str, call_id: str) -> str:
        return f"{PREFIX}call:{thread_id}:{call_id}"

    async def close(self) -> None:
        if self._writes:
            await asyncio.wait(list(self._writes), timeout=5)
        await self.redis.aclose()

    # -- writing ----------------------------------------------------------------------------
    def record(self, thread_id: str, call_id: str, owner: str, status: dict,
               files: list[dict] | None = None) -> None:
        super().record(thread_id, call_id, owner, status, files)
        raw = bounded({"owner": owner, "status": status, "files": files or [],
                       "finished": time.time()})
        task = asyncio.get_running_loop().create_task(self._store(thread_id, call_id, raw))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _store(self, thread_id: str, call_id: str, raw: bytes) -> None:
        try:
            await self.redis.set(self.key(thread_id, call_id), raw, px=self.retention_ms)
        except redis.RedisError as exc:
            log.warning("call %s of thread %s: final status not shared (%s); only this node "
                        "knows it", call_id, thread_id, exc)

    def _marker(self, thread_id: str, owner: str) -> str:
        node_id, claim = self._holder(thread_id)
        return orjson.dumps({"owner": owner, "running": {
            "node": node_id, "claim": claim.encode() if claim else None}}).decode()

    async def begin(self, thread_id: str, call_id: str, owner: str) -> FinishedCall | None:
        """Before a call is queued here: mark it running on this node. A call id the thread
        used before (here or on a lost node) gives its final status instead (None: run it)."""
        marker = self._marker(thread_id, owner)
        try:
            held = await self._begin(keys=[self.key(thread_id, call_id)],
                                     args=[marker, self.retention_ms])
        except redis.RedisError as exc:
            log.warning("call %s of thread %s: not marked running (%s)", call_id, thread_id,
                        exc)
            return None
        if held is None:
            return None
        return await self._resolve(thread_id, call_id, owner, held)

    def refused(self, thread_id: str, call_id: str, owner: str) -> None:
        """The call ``begin`` marked was refused before it was queued: drop the marker."""
        marker = self._marker(thread_id, owner)
        task = asyncio.get_running_loop().create_task(self._drop(thread_id, call_id, marker))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _drop(self, thread_id: str, call_id: str, marker: str) -> None:
        try:
            await self._forget(keys=[self.key(thread_id, call_id)], args=[marker])
        except redis.RedisError:
            pass  # it expires with the retention

    # -- reading ----------------------------------------------------------------------------
    async def lookup(self, thread_id: str, call_id: str, identity: str) -> FinishedCall | None:
        """The finished call, from this node's memory or the cluster's; only for the identity
        that owns the thread; None also while it runs on a live node."""
        found = self.finished(thread_id, call_id, identity)
        if found is not None:
            return found
        try:
            # decode_responses=True (connect): str, which redis-py's annotations cannot say.
            held = cast("str | None", await self.redis.get(self.key(thread_id, call_id)))
        except redis.RedisError as exc:
            log.warning("call %s of thread %s: shared results unreachable (%s)", call_id,
                        thread_id, exc)
            return None
        if held is None:
            return None
        return await self._resolve(thread_id, call_id, identity, held)

    async def _resolve(self, thread_id: str, call_id: str, identity: str,
                       held: str) -> FinishedCall | None:
        try:
            record = orjson.loads(held)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(record, dict) or record.get("owner") != identity:
            return None  # another identity's call is as unknown as a made-up one
        running = record.get("running")
        if isinstance(running, dict):
            final = await self._lost_call(thread_id, call_id, held, record, running)
            if final is None:
                return None
            record = orjson.loads(final)
            if record.get("owner") != identity or "status" not in record:
                return None
        status = record.get("status")
        if not isinstance(status, dict):
            return None
        return FinishedCall(identity, status, time.monotonic(), record.get("files") or [])

    async def _lost_call(self, thread_id: str, call_id: str, held: str, record: dict,
                         running: dict) -> str | None:
        """A call marked running: if its node is gone (or the thread moved on), its ``killed``
        status, stored once for every node; None while it may still run."""
        node_id = str(running.get("node"))
        try:
            live, claim = await self._placement(thread_id)
        except redis.RedisError:
            return None
        gone = node_id not in live or (
            claim is not None and claim.encode() != running.get("claim"))
        if not gone:
            return None
        status = envelopes.envelope(envelopes.status("killed", reason=lost_reason(node_id)),
                                    client_thread_id(thread_id), call_id)
        final = orjson.dumps({"owner": record["owner"], "status": status, "files": [],
                              "finished": time.time()}).decode()
        try:
            return await self._replace(keys=[self.key(thread_id, call_id)],
                                       args=[held, final, self.retention_ms])
        except redis.RedisError:
            return None
