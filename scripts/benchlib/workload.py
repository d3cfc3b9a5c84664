"""What the benchmarks run: the cells, and execute/close over a bare websocket."""

from __future__ import annotations

import asyncio
import time
import uuid

import orjson

from gateway.client import GatewayClient

ANALYSIS_CELL = """\
import numpy as np, pandas as pd, matplotlib.pyplot as plt
_rng = np.random.default_rng(0)
df = pd.DataFrame({"g": _rng.integers(0, 100, 1_000_000), "v": _rng.random(1_000_000)})
s = df.groupby("g")["v"].agg(["mean", "sum", "count"])
fig, ax = plt.subplots(figsize=(6, 3))
s["mean"].plot(ax=ax)
plt.show()
print(len(s))
"""
STDOUT_LINES, STDOUT_WIDTH = 200_000, 50
STDOUT_CELL = f"for i in range({STDOUT_LINES}): print('x'*{STDOUT_WIDTH})"
STDOUT_BYTES = STDOUT_LINES * (STDOUT_WIDTH + 1)  # 10.2 MB


async def raw_roundtrip(ws, thread_id: str) -> float:
    """One execute over a bare websockets connection; seconds until the final status."""
    call = uuid.uuid4().hex[:12]
    began = time.perf_counter()
    await ws.send(orjson.dumps({"type": "execute", "thread_id": thread_id, "call_id": call,
                                "code": "1+1"}).decode())
    while True:
        envelope = orjson.loads(await ws.recv())
        chunk = envelope["chunk"]
        if envelope.get("call_id") == call and (
                chunk["type"] == "error" or (chunk["type"] == "status" and chunk["content"].get(
                    "state") in ("complete", "error", "timeout", "interrupted", "killed"))):
            return time.perf_counter() - began


async def receive_n(client: GatewayClient, thread_id: str, call_id: str, count: int,
                    arrivals: list[float]) -> None:
    for _ in range(count):
        await client.next_envelope(thread_id, call_id, timeout=30)
        arrivals.append(time.perf_counter())


async def raw_close(ws, thread_id: str) -> None:
    await ws.send(orjson.dumps({"type": "close", "thread_id": thread_id}).decode())
    while True:
        envelope = orjson.loads(await asyncio.wait_for(ws.recv(), 60))
        if envelope.get("thread_id") == thread_id and envelope["chunk"]["type"] == "status" \
                and envelope["chunk"]["content"].get("state") == "closed":
            return


