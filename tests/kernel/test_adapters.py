"""The adapters driven by the real ``openai`` and ``anthropic`` clients, pointed by ``base_url``
at a replay server on 127.0.0.1 that streams provider-format SSE, against a real gateway.

Each test holds the model's stream open at a gate after the last argument fragment, and a second
connection (a watcher, like the live page) must see the whole ``hot_code`` fence before the gate
opens: the code reaches watchers while the model is still "writing".
"""

from __future__ import annotations

import asyncio
import json

import pytest
import pytest_asyncio

from gateway.integrations.adapters import (
    AnthropicAdapter,
    OpenAIChatAdapter,
    OpenAIResponsesAdapter,
    RawCodeAdapter,
)
from gateway.wire.envelopes import FENCE_CLOSE, FENCE_OPEN
from scripts.benchlib.sse_replay import (
    CODE,
    ReplayServer,
    arguments,
    chat_stream,
    chat_text,
    fragments,
    messages_stream,
    messages_text,
    responses_stream,
)

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")

pytestmark = pytest.mark.kernel

EXPECTED_LINE = 'café "quoted" \t tab \u2014 \U0001F600 \\ backslash } 4.0\n'
EXPECTED_OUTPUT = EXPECTED_LINE + "{'a': [1, 2]}\n"


@pytest_asyncio.fixture(loop_scope="session")
async def replay():
    server = await ReplayServer().start()
    yield server
    await server.close()


class Watcher:
    """A second connection subscribed to the thread: records each call's ``hot_code`` and
    whether the model's stream was still open when the fence closed."""

    def __init__(self, running, thread_id: str, replay: ReplayServer) -> None:
        self.running, self.thread_id, self.replay = running, thread_id, replay
        self.hot_code: dict[str, str] = {}
        self.open_at_fence_close: dict[str, bool] = {}

    async def __aenter__(self) -> Watcher:
        self.client = await self.running.client()
        await self.client.thread(self.thread_id).subscribe()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.client.close()

    async def watch(self, call_id: str, gate: asyncio.Event | None = None) -> None:
        text = ""
        while not text.endswith(FENCE_CLOSE) or text == FENCE_OPEN:
            envelope = await self.client.next_envelope(self.thread_id, call_id)
            if envelope["chunk"]["type"] == "hot_code":
                text += envelope["chunk"]["content"]
        self.hot_code[call_id] = text
        self.open_at_fence_close[call_id] = not self.replay.stream_ended.is_set()
        if gate is not None:
            gate.set()


def fenced(code: str) -> str:
    return FENCE_OPEN + code + FENCE_CLOSE


async def test_openai_chat_completions(running, client, replay, thread_id):
    second = 'total = sum(range(10))\nprint("total", total, "\u00fc\\n")\n'
    args_a, args_b = arguments(CODE), arguments(second, ascii_only=False)
    gate = asyncio.Event()
    replay.scripts = [
        chat_stream([("call_A1", "code_interpreter", fragments(args_a)),
                     ("call_B2", "code_interpreter", fragments(args_b, (2, 7, 1)))], gate),
        chat_text("Done: the message and the total are printed."),
    ]
    model = openai.AsyncOpenAI(base_url=f"{replay.url}/v1", api_key="replay", max_retries=0)
    adapter = OpenAIChatAdapter(client.thread(thread_id))
    messages = [{"role": "user", "content": "Print the message, then a total."}]
    async with Watcher(running, thread_id, replay) as watcher:
        both = asyncio.gather(watcher.watch("call_A1"), watcher.watch("call_B2"))
        both.add_done_callback(lambda _: gate.set())
        stream = await model.chat.completions.create(model="replay-model", messages=messages,
                                                     stream=True)
        async for chunk in stream:
            await adapter.feed(chunk)
        await both
        results = await adapter.finish()
    assert watcher.open_at_fence_close == {"call_A1": True, "call_B2": True}
    assert [r.provider_id for r in results] == ["call_A1", "call_B2"]
    for result, args in zip(results, (args_a, args_b), strict=True):
        assert result.state == "complete", result.result.envelopes
        assert result.arguments == args
        code = json.loads(args)["code"]
        assert watcher.hot_code[result.call_id] == fenced(code)
        assert result.result.hot_code == fenced(code)  # what ran is what the model wrote
    assert results[0].result.output == EXPECTED_OUTPUT
    assert results[1].result.output == "total 45 \u00fc\n\n"

    messages += [adapter.assistant_message(), *adapter.tool_messages(results)]
    await model.chat.completions.create(model="replay-model", messages=messages)
    sent = replay.requests[1]["body"]["messages"]
    assistant = sent[1]
    assert [c["id"] for c in assistant["tool_calls"]] == ["call_A1", "call_B2"]
    assert [c["function"]["arguments"] for c in assistant["tool_calls"]] == [args_a, args_b]
    assert sent[2:] == [{"role": "tool", "tool_call_id": r.provider_id, "content": r.text}
                        for r in results]
    assert sent[2]["content"] == results[0].result.status["tool_output"]
    assert EXPECTED_LINE.rstrip("\n") in sent[2]["content"]


async def test_openai_responses(running, client, replay, thread_id):
    args = arguments(CODE, ascii_only=False)
    gate = asyncio.Event()
    replay.scripts = [responses_stream("call_R1", "code_interpreter", fragments(args), gate),
                      chat_text("unused")]
    model = openai.AsyncOpenAI(base_url=f"{replay.url}/v1", api_key="replay", max_retries=0)
    adapter = OpenAIResponsesAdapter(client.thread(thread_id))
    async with Watcher(running, thread_id, replay) as watcher:
        watching = asyncio.create_task(watcher.watch("call_R1", gate))
        stream = await model.responses.create(model="replay-model", input="Print it.",
                                              stream=True)
        async for event in stream:
            await adapter.feed(event)
        await watching
        results = await adapter.finish()
    (result,) = results
    assert watcher.open_at_fence_close == {"call_R1": True}
    assert result.state == "complete" and result.result.output == EXPECTED_OUTPUT
    assert watcher.hot_code["call_R1"] == result.result.hot_code == fenced(CODE)

    next_input = [*adapter.function_call_items(), *adapter.tool_outputs(results)]
    replay.scripts = [chat_text("unused")]
    await model.responses.create(model="replay-model", input=next_input,
                                 previous_response_id=None)
    body = replay.requests[-1]["body"]
    assert body["input"] == [
        {"type": "function_call", "call_id": "call_R1", "name": "code_interpreter",
         "arguments": args},
        {"type": "function_call_output", "call_id": "call_R1", "output": result.text}]
    assert EXPECTED_LINE.rstrip("\n") in result.text


async def test_anthropic_messages(running, client, replay, thread_id):
    args = arguments(CODE)
    gate = asyncio.Event()
    replay.scripts = [messages_stream("toolu_01X", "code_interpreter", fragments(args), gate),
                      messages_text("The message is printed.")]
    model = anthropic.AsyncAnthropic(base_url=replay.url, api_key="replay", max_retries=0)
    adapter = AnthropicAdapter(client.thread(thread_id))
    messages = [{"role": "user", "content": "Print the message."}]
    async with Watcher(running, thread_id, replay) as watcher:
        watching = asyncio.create_task(watcher.watch("toolu_01X", gate))
        stream = await model.messages.create(model="replay-model", max_tokens=1024,
                                             messages=messages, stream=True)
        async for event in stream:
            await adapter.feed(event)
        await watching
        results = await adapter.finish()
    (result,) = results
    assert watcher.open_at_fence_close == {"toolu_01X": True}
    assert result.state == "complete" and result.result.output == EXPECTED_OUTPUT
    assert watcher.hot_code["toolu_01X"] == result.result.hot_code == fenced(CODE)

    messages += [adapter.assistant_message(), adapter.tool_result_message(results)]
    await model.messages.create(model="replay-model", max_tokens=1024, messages=messages)
    sent = replay.requests[-1]["body"]["messages"]
    assert sent[1] == {"role": "assistant", "content": [
        {"type": "text", "text": "Computing."},
        {"type": "tool_use", "id": "toolu_01X", "name": "code_interpreter",
         "input": {"code": CODE}}]}
    assert sent[2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_01X", "content": result.text,
         "is_error": False}]}


async def test_raw_code_stream(running, client, replay, thread_id):
    adapter = RawCodeAdapter(client.thread(thread_id), "raw-1")
    async with Watcher(running, thread_id, replay) as watcher:
        watching = asyncio.create_task(watcher.watch("raw-1"))
        for piece in fragments(CODE):
            await adapter.feed(piece)
        # The fence of a raw call closes only at execute; everything before it was streamed.
        result = await adapter.finish()
        await watching
    assert result.state == "complete" and result.result.output == EXPECTED_OUTPUT
    assert watcher.hot_code["raw-1"] == result.result.hot_code == fenced(CODE)


async def test_an_error_in_the_code_is_a_tool_error(client, replay, thread_id):
    replay.scripts = [messages_stream("toolu_err", "code_interpreter",
                                      fragments(arguments("1 / 0\n")))]
    model = anthropic.AsyncAnthropic(base_url=replay.url, api_key="replay", max_retries=0)
    adapter = AnthropicAdapter(client.thread(thread_id))
    stream = await model.messages.create(model="replay-model", max_tokens=64,
                                         messages=[{"role": "user", "content": "x"}],
                                         stream=True)
    (result,) = await adapter.consume(stream)
    assert result.state == "error" and result.is_error
    assert "ZeroDivisionError" in result.text
    assert adapter.tool_result_message([result])["content"][0]["is_error"] is True
