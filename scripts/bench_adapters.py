"""Delay from an SSE fragment leaving a (replayed) model provider to its ``hot_code`` envelope
reaching a subscriber of the thread, per adapter.

    .venv/bin/python -m scripts.bench_adapters [--url ws://... --token T] [--runs 4] [--pace 0.005]

A replay server on 127.0.0.1 streams provider-format SSE (scripts/benchlib/sse_replay.py, which
the adapter tests use too) to the real ``openai``/``anthropic`` clients; the adapter sends each
fragment as a ``code_delta``; a second
connection, subscribed to the thread like the live page, timestamps every ``hot_code`` envelope.
A fragment's delay runs from just after the server wrote it to the first envelope that carries
the code it made certain (a fragment ending mid-escape makes nothing certain; the next one is
timed from its own send). Without ``--url`` an embedded gateway is started.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import anthropic
import openai

from gateway.client import GatewayClient
from gateway.integrations.adapters import (
    AnthropicAdapter,
    OpenAIChatAdapter,
    OpenAIResponsesAdapter,
    RawCodeAdapter,
)
from gateway.integrations.mcp_server.backend import embedded_gateway
from gateway.wire.envelopes import FENCE_CLOSE, FENCE_OPEN
from gateway.wire.hotcode import CodeExtractor
from scripts.benchlib import sse_replay as replay
from scripts.demo import CALLS

CODE = "\n".join(code for _, code in CALLS)  # ~2,700 characters of real analysis code


def certain_lengths(pieces: list[str], fmt: str) -> list[int]:
    """Characters of code known after each fragment (what the gateway can show by then)."""
    extractor, total, out = CodeExtractor(fmt), 0, []  # type: ignore[arg-type]
    for piece in pieces:
        total += len(extractor.feed(piece))
        out.append(total)
    return out


async def one_run(kind: str, server: replay.ReplayServer, client: GatewayClient,
                  watcher: GatewayClient, thread_id: str, call_id: str) -> list[float]:
    fmt = "raw" if kind == "raw" else "json"
    pieces = replay.fragments(CODE if fmt == "raw" else replay.arguments(CODE), (3, 5, 8, 4))
    thread = client.thread(thread_id)
    if kind == "chat":
        server.scripts = [replay.chat_stream([(call_id, "code_interpreter", pieces)])]
    elif kind == "responses":
        server.scripts = [replay.responses_stream(call_id, "code_interpreter", pieces)]
    elif kind == "anthropic":
        server.scripts = [replay.messages_stream(call_id, "code_interpreter", pieces)]
    else:  # a model writing code as text (e.g. a python channel), carried as content deltas
        chunks = [replay.Fragment(replay._chunk({"content": p}), p) for p in pieces]
        server.scripts = [[*chunks, replay._chunk({}, "stop"), replay.sse("[DONE]")]]
    server.sent.clear()
    received: list[tuple[float, int]] = []

    async def watch() -> None:
        length = 0
        while True:
            envelope = await watcher.next_envelope(thread_id, call_id)
            chunk = envelope["chunk"]
            if chunk["type"] != "hot_code":
                continue
            now = time.perf_counter()
            if chunk["content"] == FENCE_CLOSE:
                return
            if chunk["content"] != FENCE_OPEN:
                length += len(chunk["content"])
                received.append((now, length))

    watching = asyncio.create_task(watch())
    model_openai = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
    if kind == "chat":
        adapter = OpenAIChatAdapter(thread)
        await adapter.consume(await model_openai.chat.completions.create(
            model="m", messages=[], stream=True))
    elif kind == "responses":
        adapter = OpenAIResponsesAdapter(thread)
        await adapter.consume(await model_openai.responses.create(model="m", input="", stream=True))
    elif kind == "anthropic":
        model = anthropic.AsyncAnthropic(base_url=server.url, api_key="x", max_retries=0)
        adapter = AnthropicAdapter(thread)
        await adapter.consume(await model.messages.create(model="m", max_tokens=1, messages=[],
                                                          stream=True))
    else:
        raw = RawCodeAdapter(thread, call_id)
        async for chunk in await model_openai.chat.completions.create(model="m", messages=[],
                                                                      stream=True):
            for choice in chunk.choices:
                if choice.delta and choice.delta.content:
                    await raw.feed(choice.delta.content)
        await raw.finish()
    await watching
    delays, previous, cursor = [], 0, 0
    for (sent_at, _), length in zip(server.sent, certain_lengths(pieces, fmt), strict=True):
        if length <= previous:
            continue
        previous = length
        while received[cursor][1] < length:
            cursor += 1
        delays.append((received[cursor][0] - sent_at) * 1000)
    return delays


async def main(args: argparse.Namespace) -> None:
    async with _gateway(args) as (url, token):
        server = await replay.ReplayServer(pace=args.pace).start()
        client = await GatewayClient.connect(url, token)
        watcher = await GatewayClient.connect(url, token)
        thread_id = f"bench-adapters-{int(time.time())}"
        await watcher.thread(thread_id).subscribe()
        await client.thread(thread_id).run("pass")  # the kernel is leased before timing
        report = {}
        for kind in args.adapters:
            delays: list[float] = []
            for run in range(args.runs):
                delays += await one_run(kind, server, client, watcher, thread_id,
                                        f"{kind}-{run}")
            delays.sort()
            report[kind] = {"fragments": len(delays),
                            "median_ms": round(statistics.median(delays), 3),
                            "p99_ms": round(delays[int(len(delays) * 0.99) - 1], 3),
                            "max_ms": round(delays[-1], 3)}
            print(f"{kind:10} n={len(delays):5}  median {report[kind]['median_ms']:7.3f} ms  "
                  f"p99 {report[kind]['p99_ms']:7.3f} ms  max {report[kind]['max_ms']:7.3f} ms",
                  flush=True)
        await client.close()
        await watcher.close()
        await server.close()
        if args.json:
            print(json.dumps(report, indent=2))


def _gateway(args: argparse.Namespace):
    if args.url:
        from contextlib import asynccontextmanager

        @asynccontextmanager
        async def given():
            yield args.url, args.token

        return given()
    return embedded_gateway()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running gateway (default: an embedded one)")
    parser.add_argument("--token", default="")
    parser.add_argument("--runs", type=int, default=4, help="calls per adapter")
    parser.add_argument("--pace", type=float, default=0.005,
                        help="seconds between fragments (a model's token rate)")
    parser.add_argument("--adapters", nargs="+",
                        default=["chat", "responses", "anthropic", "raw"])
    parser.add_argument("--json", action="store_true")
    asyncio.run(main(parser.parse_args()))
