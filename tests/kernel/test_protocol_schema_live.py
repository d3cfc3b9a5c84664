"""What the real gateway sends and accepts, against the protocol's JSON Schema: every request
this test sends validates against request.v1.json, and every message the gateway answers with
(output of each stream, rewind, display, files, statuses of every kind, errors, subscribed,
file_uploaded, replayed results) validates against envelope.v1.json."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
from jsonschema import Draft202012Validator
from websockets.asyncio.client import connect

from gateway.wire import schemas

pytestmark = pytest.mark.asyncio(loop_scope="session")
REQUEST = Draft202012Validator(schemas.load("request"))
ENVELOPE = Draft202012Validator(schemas.load("envelope"))
GUARD = 120  # seconds: a bound that fails rather than hangs

CELL = """
import sys, time
from IPython.display import HTML, display
import matplotlib
matplotlib.use("agg")
import matplotlib.pyplot as plt
print("out")
print("err", file=sys.stderr)
for i in range(3):
    print(f"\\rstep {i}", end="", flush=True)
    time.sleep(0.05)
print()
display(HTML("<b>x</b>"))
plt.plot([1, 2]); plt.show()
open("made.csv", "w").write("a,b\\n1,2\\n")
42
"""


async def test_the_gateway_speaks_the_schema(running, thread_id) -> None:
    async with connect(running.url, additional_headers={"Authorization": "Bearer tok-alice"},
                       max_size=None) as ws:
        seen: list[dict] = []

        async def send(message: dict) -> None:
            REQUEST.validate(message)
            await ws.send(json.dumps(message))

        async def until(done) -> dict:
            while True:
                envelope = json.loads(await asyncio.wait_for(ws.recv(), GUARD))
                ENVELOPE.validate(envelope)
                seen.append(envelope)
                if done(envelope):
                    return envelope

        def status_of(call_id: str):
            return lambda e: e["chunk"]["type"] in ("status", "error") and e["call_id"] == call_id

        await send({"type": "subscribe", "thread_id": thread_id})
        await until(lambda e: e["chunk"]["type"] == "subscribed")
        delta = json.dumps({"code": CELL})
        for start in range(0, len(delta), 40):
            await send({"type": "code_delta", "thread_id": thread_id, "call_id": "c1",
                        "delta": delta[start:start + 40], "format": "json"})
        await send({"type": "execute", "thread_id": thread_id, "call_id": "c1", "timeout": 60})
        await until(status_of("c1"))
        await send({"type": "execute", "thread_id": thread_id, "call_id": "c2",
                    "code": "1/0", "env": {"SECRET_X": "v"}})
        failed = await until(status_of("c2"))
        assert failed["chunk"]["content"]["error"]["ename"] == "ZeroDivisionError"
        await send({"type": "execute", "thread_id": thread_id, "call_id": "c1"})  # replayed
        again = await until(status_of("c1"))
        assert again.get("replayed") is True
        await send({"type": "result", "thread_id": thread_id, "call_id": "c2"})
        await until(status_of("c2"))
        data = base64.b64encode(b"x" * 10).decode()
        await send({"type": "upload", "thread_id": thread_id, "filename": "up/part.bin",
                    "call_id": "u1", "base64": data, "offset": 0, "final": False})
        await until(lambda e: e["chunk"]["type"] == "file_uploaded")
        await send({"type": "upload", "thread_id": thread_id, "filename": "up/part.bin",
                    "call_id": "u1", "base64": data, "offset": 10, "final": True})
        await until(lambda e: e["chunk"]["type"] == "file_uploaded"
                    and e["chunk"]["content"].get("size") == 20)
        await ws.send(json.dumps({"type": "execute", "thread_id": "../x", "call_id": "c"}))
        await until(lambda e: e["chunk"]["type"] == "error")
        await send({"type": "restart", "thread_id": thread_id})
        await until(lambda e: e["chunk"]["type"] == "status"
                    and e["chunk"]["content"]["state"] == "restarted")
        await send({"type": "interrupt", "thread_id": thread_id})
        await send({"type": "close", "thread_id": thread_id})
        await until(lambda e: e["chunk"]["type"] == "status"
                    and e["chunk"]["content"]["state"] == "closed")

    kinds = {e["chunk"]["type"] for e in seen}
    assert kinds >= {"subscribed", "hot_code", "hot_code_output", "rewind", "display",
                     "code_interpreter_stream", "status", "error", "file_uploaded"}, kinds
    streams = {e["chunk"].get("stream") for e in seen if e["chunk"]["type"] == "hot_code_output"}
    assert streams >= {"stdout", "stderr", "result", "traceback"}, streams
    states = {e["chunk"]["content"]["state"] for e in seen if e["chunk"]["type"] == "status"}
    assert states >= {"complete", "error", "restarted", "closed"}, states
