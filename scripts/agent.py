"""A real multi-turn agent over a CSV: a model (OpenAI or Anthropic) analyses data through the
gateway, its code pre-streamed as it is written.

    OPENAI_API_KEY=... .venv/bin/python -m scripts.agent --provider openai --model gpt-5-mini
    ANTHROPIC_API_KEY=... .venv/bin/python -m scripts.agent --provider anthropic \\
        --model claude-sonnet-4-5 [--csv my.csv] [--question "..."] [--url ws://... --token T]

Needs a real API key and calls the provider, so it is not run in CI (the adapters' tests replay
provider streams from 127.0.0.1 instead). Without ``--url`` it uses ``make run``'s gateway
(ws://127.0.0.1:8765/ws with .data/token). Envelopes are printed live as the gateway sends them;
open the printed page URL to watch the same thread in a browser; the files the code produced
are listed (and downloaded with ``--out``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import websockets

from gateway.cli.display import print_envelope
from gateway.client import GatewayClient, Thread
from gateway.integrations.adapters import (
    AnthropicAdapter,
    OpenAIChatAdapter,
    ToolResult,
    anthropic_tool,
    openai_chat_tool,
)
from scripts.demo import default_token, page_url, sales_csv

SYSTEM = ("You are a data analyst. Use the code_interpreter tool to analyse the user's CSV in "
          "/mnt/data; print what you find, make one clear chart with plt.show(), and save a "
          "short report as report.docx. Then answer in a few sentences.")
QUESTION = ("{name} holds sales orders. Which regions and products drive revenue, how does it "
            "move month by month, and what should we look into?")


async def openai_turns(thread: Thread, model: str, question: str, max_turns: int) -> str:
    import openai

    llm = openai.AsyncOpenAI()
    messages: list[dict] = [{"role": "system", "content": SYSTEM},
                            {"role": "user", "content": question}]
    for _ in range(max_turns):
        adapter = OpenAIChatAdapter(thread)
        stream = await llm.chat.completions.create(model=model, messages=messages,
                                                   tools=[openai_chat_tool()], stream=True)
        async for chunk in stream:
            await adapter.feed(chunk)
            for choice in chunk.choices:
                if choice.delta and choice.delta.content:
                    print(choice.delta.content, end="", flush=True)
        results = await adapter.finish()
        messages.append(adapter.assistant_message())
        if not results:
            return messages[-1]["content"] or ""
        messages += adapter.tool_messages(results)
    return "(turn limit reached)"


async def anthropic_turns(thread: Thread, model: str, question: str, max_turns: int) -> str:
    import anthropic

    llm = anthropic.AsyncAnthropic()
    messages: list[dict] = [{"role": "user", "content": question}]
    for _ in range(max_turns):
        adapter = AnthropicAdapter(thread)
        stream = await llm.messages.create(model=model, max_tokens=8000, system=SYSTEM,
                                           messages=messages, tools=[anthropic_tool()],
                                           stream=True)
        async for event in stream:
            await adapter.feed(event)
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                print(event.delta.text, end="", flush=True)
        results: list[ToolResult] = await adapter.finish()
        messages.append(adapter.assistant_message())
        if not results:
            return "".join(b.get("text", "") for b in messages[-1]["content"])
        messages.append(adapter.tool_result_message(results))
    return "(turn limit reached)"


async def main(args: argparse.Namespace) -> int:
    thread_id = f"agent-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"thread {thread_id}; watch it live at\n  {page_url(args.url, args.token, thread_id)}\n")
    data = args.csv.read_bytes() if args.csv else sales_csv()
    name = args.csv.name if args.csv else "sales.csv"
    files: list[dict] = []
    async with await GatewayClient.connect(args.url, args.token) as client:
        thread = client.thread(thread_id)
        uploaded = await thread.upload(name, data)
        if uploaded["type"] != "file_uploaded":
            print(f"upload failed: {uploaded['content']}", file=sys.stderr)
            return 1

        async def show() -> None:  # every envelope of the thread, as a frontend sees it
            headers = {"Authorization": f"Bearer {args.token}"}
            async with websockets.connect(args.url, additional_headers=headers,
                                          max_size=None) as watcher:
                await watcher.send(json.dumps({"type": "subscribe", "thread_id": thread_id}))
                async for message in watcher:
                    envelope = json.loads(message)
                    print_envelope(envelope, args.json)
                    if envelope["chunk"]["type"] == "code_interpreter_stream":
                        files.append(envelope["chunk"]["content"])

        printer = asyncio.create_task(show())
        question = args.question or QUESTION.format(name=name)
        turns = openai_turns if args.provider == "openai" else anthropic_turns
        try:
            answer = await turns(thread, args.model, question, args.max_turns)
        finally:
            printer.cancel()
        print(f"\n\nanswer:\n{answer}\n")
        for file in files:
            print(f"file: {file['filename']} ({file['mime_type']}) "
                  f"{client.http_base}/files/{file['file_id']}")
            if args.out:
                args.out.mkdir(parents=True, exist_ok=True)
                target = args.out / Path(file["filename"]).name
                target.write_bytes(await asyncio.to_thread(client.download, file["file_id"]))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--provider", choices=["openai", "anthropic"], required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--csv", type=Path, help="default: a generated sales.csv")
    parser.add_argument("--question")
    parser.add_argument("--max-turns", type=int, default=8)
    parser.add_argument("--url", default=os.environ.get("GATEWAY_URL", "ws://127.0.0.1:8765/ws"))
    parser.add_argument("--token", default=default_token())
    parser.add_argument("--out", type=Path, help="download the files here")
    parser.add_argument("--json", action="store_true", help="print raw envelopes")
    args = parser.parse_args()
    if not args.token:
        parser.error("no token: --token, $GATEWAY_TOKEN or .data/token")
    sys.exit(asyncio.run(main(args)))
