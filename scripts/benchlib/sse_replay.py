"""A model provider on 127.0.0.1 that replays scripted SSE streams, for the adapter tests and
``scripts/bench_adapters.py``: the real ``openai`` and ``anthropic`` clients talk to it through
``base_url``. Event shapes follow the providers' API references (Chat Completions chunks,
Responses streaming events, Anthropic Messages streaming events).

A script is a list of SSE events (bytes) and ``asyncio.Event`` gates: the server waits at a gate
before sending what follows, so a test can hold a stream open until it has seen what it expects.
Every request body is recorded; each sent event's ``time.perf_counter()`` is recorded too.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

# Code with what breaks naive streaming: quotes, backslashes, a tab, non-ASCII, an astral
# character (a surrogate pair when escaped), a "}" inside a string.
CODE = (
    'import math\n'
    'message = "caf\u00e9 \\"quoted\\" \\t tab \u2014 \U0001F600 \\\\ backslash }"\n'
    'print(message, math.sqrt(16))\n'
    'value = {"a": [1, 2]}\n'
    'print(value)\n'
)


def fragments(text: str, sizes: tuple[int, ...] = (1, 2, 3, 5, 8, 4)) -> list[str]:
    """Split ``text`` into pieces of cycling sizes: escapes and surrogate pairs get cut."""
    pieces, i, n = [], 0, 0
    while i < len(text):
        size = sizes[n % len(sizes)]
        pieces.append(text[i : i + size])
        i += size
        n += 1
    return pieces


def arguments(code: str = CODE, ascii_only: bool = True) -> str:
    return json.dumps({"code": code}, ensure_ascii=ascii_only)


def sse(data: dict | str, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


@dataclass
class Fragment:
    """An event carrying one argument fragment (the bench times these)."""

    data: bytes
    text: str


# -- OpenAI Chat Completions -----------------------------------------------------------------

def _chunk(delta: dict, finish: str | None = None) -> bytes:
    return sse({"id": "chatcmpl-replay", "object": "chat.completion.chunk", "created": 1,
                "model": "replay-model", "choices": [{"index": 0, "delta": delta,
                                                      "finish_reason": finish}]})


def chat_stream(calls: list[tuple[str, str, list[str]]], gate: asyncio.Event | None = None,
                text: str = "Let me compute that.") -> list:
    """Tool calls ``(id, name, fragments)``, their fragments interleaved by index."""
    script: list = [_chunk({"role": "assistant", "content": ""}), _chunk({"content": text})]
    for index, (call_id, name, _) in enumerate(calls):
        script.append(_chunk({"tool_calls": [{"index": index, "id": call_id, "type": "function",
                                              "function": {"name": name, "arguments": ""}}]}))
    longest = max(len(pieces) for _, _, pieces in calls)
    for n in range(longest):
        for index, (_, _, pieces) in enumerate(calls):
            if n < len(pieces):
                delta = {"tool_calls": [{"index": index, "function": {"arguments": pieces[n]}}]}
                script.append(Fragment(_chunk(delta), pieces[n]))
    if gate is not None:
        script.append(gate)
    script += [_chunk({}, "tool_calls"), sse("[DONE]")]
    return script


def chat_text(text: str) -> list:
    return [_chunk({"role": "assistant", "content": text}), _chunk({}, "stop"), sse("[DONE]")]


# -- OpenAI Responses ------------------------------------------------------------------------

def _response(status: str, output: list) -> dict:
    return {"id": "resp_replay", "object": "response", "created_at": 1, "status": status,
            "model": "replay-model", "output": output, "parallel_tool_calls": True,
            "tool_choice": "auto", "tools": []}


def responses_stream(call_id: str, name: str, pieces: list[str],
                     gate: asyncio.Event | None = None) -> list:
    sequence = iter(range(1000))
    item = {"type": "function_call", "id": "fc_replay", "call_id": call_id, "name": name,
            "arguments": "", "status": "in_progress"}
    done_item = {**item, "arguments": "".join(pieces), "status": "completed"}
    script: list = [
        sse({"type": "response.created", "sequence_number": next(sequence),
             "response": _response("in_progress", [])}, "response.created"),
        sse({"type": "response.output_item.added", "sequence_number": next(sequence),
             "output_index": 0, "item": item}, "response.output_item.added"),
    ]
    for piece in pieces:
        script.append(Fragment(sse({"type": "response.function_call_arguments.delta",
                                    "sequence_number": next(sequence), "item_id": "fc_replay",
                                    "output_index": 0, "delta": piece},
                                   "response.function_call_arguments.delta"), piece))
    if gate is not None:
        script.append(gate)
    script += [
        sse({"type": "response.function_call_arguments.done", "sequence_number": next(sequence),
             "item_id": "fc_replay", "output_index": 0, "arguments": "".join(pieces)},
            "response.function_call_arguments.done"),
        sse({"type": "response.output_item.done", "sequence_number": next(sequence),
             "output_index": 0, "item": done_item}, "response.output_item.done"),
        sse({"type": "response.completed", "sequence_number": next(sequence),
             "response": _response("completed", [done_item])}, "response.completed"),
    ]
    return script


# -- Anthropic Messages ----------------------------------------------------------------------

def messages_stream(tool_use_id: str, name: str, pieces: list[str],
                    gate: asyncio.Event | None = None, text: str = "Computing.") -> list:
    message = {"id": "msg_replay", "type": "message", "role": "assistant", "content": [],
               "model": "replay-model", "stop_reason": None, "stop_sequence": None,
               "usage": {"input_tokens": 10, "output_tokens": 1}}
    script: list = [
        sse({"type": "message_start", "message": message}, "message_start"),
        sse({"type": "content_block_start", "index": 0,
             "content_block": {"type": "text", "text": ""}}, "content_block_start"),
        sse({"type": "ping"}, "ping"),
        sse({"type": "content_block_delta", "index": 0,
             "delta": {"type": "text_delta", "text": text}}, "content_block_delta"),
        sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        sse({"type": "content_block_start", "index": 1,
             "content_block": {"type": "tool_use", "id": tool_use_id, "name": name,
                               "input": {}}}, "content_block_start"),
        sse({"type": "content_block_delta", "index": 1,
             "delta": {"type": "input_json_delta", "partial_json": ""}}, "content_block_delta"),
    ]
    for piece in pieces:
        script.append(Fragment(sse({"type": "content_block_delta", "index": 1,
                                    "delta": {"type": "input_json_delta",
                                              "partial_json": piece}},
                                   "content_block_delta"), piece))
    if gate is not None:
        script.append(gate)
    script += [
        sse({"type": "content_block_stop", "index": 1}, "content_block_stop"),
        sse({"type": "message_delta", "delta": {"stop_reason": "tool_use",
                                                "stop_sequence": None},
             "usage": {"output_tokens": 42}}, "message_delta"),
        sse({"type": "message_stop"}, "message_stop"),
    ]
    return script


def messages_text(text: str) -> list:
    message = {"id": "msg_replay2", "type": "message", "role": "assistant", "content": [],
               "model": "replay-model", "stop_reason": None, "stop_sequence": None,
               "usage": {"input_tokens": 10, "output_tokens": 1}}
    return [
        sse({"type": "message_start", "message": message}, "message_start"),
        sse({"type": "content_block_start", "index": 0,
             "content_block": {"type": "text", "text": ""}}, "content_block_start"),
        sse({"type": "content_block_delta", "index": 0,
             "delta": {"type": "text_delta", "text": text}}, "content_block_delta"),
        sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        sse({"type": "message_delta", "delta": {"stop_reason": "end_turn",
                                                "stop_sequence": None},
             "usage": {"output_tokens": 5}}, "message_delta"),
        sse({"type": "message_stop"}, "message_stop"),
    ]


# -- the server ------------------------------------------------------------------------------

@dataclass
class ReplayServer:
    """Answers each POST with the next queued script, as ``text/event-stream``."""

    scripts: list[list] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)
    # (perf_counter at send, fragment text) for every Fragment sent, in order
    sent: list[tuple[float, str]] = field(default_factory=list)
    stream_ended: asyncio.Event = field(default_factory=asyncio.Event)
    pace: float = 0.0  # seconds before each fragment event: a model's token rate
    port: int = 0
    _server: asyncio.base_events.Server | None = None

    async def start(self) -> ReplayServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip()
                       for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append({"method": method, "path": path, "headers": headers,
                                  "body": json.loads(body) if body else None})
            if not self.scripts:
                writer.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n"
                             b"Connection: close\r\n\r\n")
                return
            script = self.scripts.pop(0)
            self.stream_ended.clear()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                         b"Cache-Control: no-cache\r\nConnection: close\r\n\r\n")
            await writer.drain()
            for item in script:
                if isinstance(item, asyncio.Event):
                    await item.wait()
                    continue
                if isinstance(item, Fragment) and self.pace:
                    await asyncio.sleep(self.pace)
                data = item.data if isinstance(item, Fragment) else item
                writer.write(data)
                await writer.drain()
                if isinstance(item, Fragment):
                    self.sent.append((time.perf_counter(), item.text))
            self.stream_ended.set()
        finally:
            writer.close()
