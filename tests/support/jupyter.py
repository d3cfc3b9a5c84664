"""A minimal Jupyter kernel-protocol client for the tests: REST calls and the channels
websocket, in the legacy JSON protocol or ``v1.kernel.websocket.jupyter.org``."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
import uuid

from websockets.asyncio.client import connect

from gateway.wire import jupyter

GUARD = 120.0  # seconds: a wait that never ends fails instead of hanging


async def rest(base: str, method: str, path: str, token: str | None = "tok-alice",
               body: dict | None = None) -> tuple[int, object]:
    def call() -> tuple[int, object]:
        headers = {"Authorization": f"token {token}"} if token else {}
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(base + path, data=data, method=method,
                                         headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=GUARD) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            return exc.code, json.loads(raw) if raw else None

    return await asyncio.to_thread(call)


def message(msg_type: str, content: dict | None = None, session: str = "test") -> dict:
    return {"header": {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "session": session,
                       "username": "test", "date": "2026-01-01T00:00:00Z",
                       "version": "5.3"},
            "parent_header": {}, "metadata": {}, "content": content or {}, "buffers": []}


class Channels:
    """One kernel websocket; frames read in the background into a list."""

    def __init__(self, ws, protocol: str | None) -> None:
        self.ws = ws
        self.protocol = protocol
        self.received: list[tuple[str, dict]] = []
        self._arrived = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str, token: str = "tok-alice",
                   protocol: str | None = None) -> Channels:
        ws = await connect(url, additional_headers={"Authorization": f"token {token}"},
                           subprotocols=[protocol] if protocol else None,  # type: ignore[list-item]
                           max_size=None)
        return cls(ws, ws.subprotocol)  # what the server chose (none: the legacy protocol)

    async def _read(self) -> None:
        async for frame in self.ws:
            if isinstance(frame, str) or self.protocol is None:
                data = json.loads(frame) if isinstance(frame, str) else None
                if data is None:
                    continue
                channel = data.pop("channel")
            else:
                channel, data = _decode_v1(frame)
            self.received.append((channel, data))
            self._arrived.set()

    async def send(self, channel: str, msg: dict) -> None:
        if self.protocol is None:
            await self.ws.send(json.dumps({**msg, "buffers": [], "channel": channel}))
        else:
            await self.ws.send(jupyter.encode_frame(channel, msg, self.protocol))

    async def until(self, predicate, guard: float = GUARD) -> list[tuple[str, dict]]:
        """Frames received so far once one matches ``predicate(channel, msg)``."""
        async def wait() -> None:
            while not any(predicate(c, m) for c, m in self.received):
                self._arrived.clear()
                await self._arrived.wait()

        await asyncio.wait_for(wait(), guard)
        return list(self.received)

    def of(self, request: dict) -> list[tuple[str, dict]]:
        """What answered ``request`` (its children)."""
        msg_id = request["header"]["msg_id"]
        return [(c, m) for c, m in self.received
                if m.get("parent_header", {}).get("msg_id") == msg_id]

    async def request(self, channel: str, msg: dict, reply: str) -> dict:
        await self.send(channel, msg)
        msg_id = msg["header"]["msg_id"]
        await self.until(lambda c, m: m["header"]["msg_type"] == reply
                         and m["parent_header"].get("msg_id") == msg_id)
        return next(m for _, m in self.of(msg) if m["header"]["msg_type"] == reply)

    async def execute(self, code: str, **content) -> tuple[dict, list[dict]]:
        """The execute_reply and the iopub messages of one cell, once both are in."""
        msg = message("execute_request", {"code": code, "silent": False,
                                          "store_history": True, "user_expressions": {},
                                          "allow_stdin": False, **content})
        await self.send("shell", msg)
        msg_id = msg["header"]["msg_id"]

        def ended(kind, predicate=lambda m: True):
            return lambda c, m: (m["header"]["msg_type"] == kind and predicate(m)
                                 and m["parent_header"].get("msg_id") == msg_id)

        await self.until(ended("execute_reply"))
        await self.until(ended("status", lambda m: m["content"]["execution_state"] == "idle"))
        answers = self.of(msg)
        reply = next(m for c, m in answers if c == "shell")
        return reply, [m for c, m in answers if c == "iopub"]

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()


def _decode_v1(frame: bytes) -> tuple[str, dict]:
    count = int.from_bytes(frame[:8], "little")
    offsets = [int.from_bytes(frame[8 * (i + 1):8 * (i + 2)], "little") for i in range(count)]
    parts = [frame[offsets[i]:offsets[i + 1]] for i in range(count - 1)]
    header, parent, metadata, content = (json.loads(p) for p in parts[1:5])
    return parts[0].decode(), {"header": header, "parent_header": parent,
                               "metadata": metadata, "content": content}


def results(iopub: list[dict]) -> list[str]:
    """The text/plain of a cell's execute_results."""
    return [m["content"]["data"]["text/plain"] for m in iopub
            if m["header"]["msg_type"] == "execute_result"]


def stream_text(iopub: list[dict]) -> str:
    return "".join(m["content"]["text"] for m in iopub if m["header"]["msg_type"] == "stream")
