"""A client's requests for threads another node owns, relayed over one internal websocket.

The receiving node opens ``/internal`` on the owner with the cluster secret and the client's
identity; the owner treats that connection as the client itself. Requests go over as the client
sent them and envelopes come back as the owner sent them: the client cannot tell it from a direct
connection. The link remembers which calls are still running, so when the owner vanishes the
client gets exactly one final ``killed`` status for each (the one-status rule, cluster-wide).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from ..wire import envelopes
from ..wire.replay import final_state

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Gateway-Cluster-Secret"
IDENTITY_HEADER = "X-Gateway-Identity"
NODE_HEADER = "X-Gateway-Node"
CONNECT_TIMEOUT = 3.0
# Chunks of a call under way (what a subscriber sees of a call that has not ended).
CALL_CHUNKS = frozenset({"hot_code", "hot_code_output", "code_interpreter_stream"})
RELEASED = frozenset({"released", "closed"})


def lost_reason(node_id: str) -> str:
    """Why a call that was running on a node that vanished ended (the same words whether a
    relay saw the link break or a node found the call's marker in the registry)."""
    return (f"node {node_id} was lost while this cell ran; the next request for the thread "
            "runs on another node with the thread's files (variables are lost)")


def _moved(kind: str | None, chunk: object) -> bool:
    """Does this chunk say the node no longer serves its thread?"""
    content = chunk.get("content") if isinstance(chunk, dict) else None
    if not isinstance(content, dict):
        return False
    if kind == "status":
        return content.get("state") in RELEASED or content.get("error_code") == "thread_moved"
    return kind == "error" and content.get("code") == "thread_moved"


class RelayLink:
    def __init__(self, node_id: str, url: str, deliver: Callable[[str], None],
                 lost: Callable[[RelayLink], None],
                 released: Callable[[str], None] = lambda thread_id: None) -> None:
        self.node_id = node_id
        self.url = url.rstrip("/") + "/internal"
        self._deliver = deliver
        self._lost = lost
        self._released = released
        self.running: dict[tuple[str, str], None] = {}  # (thread, call) without a final status
        self._connection: ClientConnection | None = None
        self._reader: asyncio.Task | None = None
        self._closing = False

    async def open(self, secret: str, identity: str, from_node: str) -> None:
        self._connection = await connect(
            self.url, additional_headers={SECRET_HEADER: secret, IDENTITY_HEADER: identity,
                                          NODE_HEADER: from_node},
            open_timeout=CONNECT_TIMEOUT, max_size=None, compression=None,
            ping_interval=5, ping_timeout=10)
        self._reader = asyncio.create_task(self._read(), name=f"relay-{self.node_id}")

    async def forward(self, text: str) -> None:
        assert self._connection is not None
        self._track(text, outbound=True)
        await self._connection.send(text)

    async def _read(self) -> None:
        assert self._connection is not None
        try:
            async for text in self._connection:
                text = text if isinstance(text, str) else text.decode()
                self._track(text, outbound=False)
                self._deliver(text)
        except ConnectionClosed:
            pass
        if not self._closing:
            self._lost(self)

    def _track(self, text: str, *, outbound: bool) -> None:
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError:
            return
        if not isinstance(message, dict):
            return
        thread_id, call_id = message.get("thread_id"), message.get("call_id")
        chunk = message.get("chunk")
        kind = chunk.get("type") if isinstance(chunk, dict) else None
        if not outbound and isinstance(thread_id, str) and _moved(kind, chunk):
            self._released(thread_id)  # the node gave the thread up: place it again
        if not isinstance(thread_id, str) or not isinstance(call_id, str):
            return
        if outbound:
            if message.get("type") == "execute":
                self.running[(thread_id, call_id)] = None
            return
        if final_state(message) or kind == "error":
            self.running.pop((thread_id, call_id), None)
        elif kind in CALL_CHUNKS and not message.get("replayed"):
            self.running[(thread_id, call_id)] = None

    def lost_statuses(self, reason: str) -> list[dict]:
        """One final ``killed`` status per call that was still running on the lost node."""
        statuses = [envelopes.envelope(envelopes.status("killed", reason=reason), thread, call)
                    for thread, call in self.running]
        self.running.clear()
        return statuses

    async def close(self) -> None:
        self._closing = True
        if self._connection is not None:
            await self._connection.close()
        if self._reader is not None:
            self._reader.cancel()
