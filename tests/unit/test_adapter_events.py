"""The adapters' pure translators: SDK events in, actions out (no gateway, no sockets)."""

from __future__ import annotations

import json

import pytest

from gateway.integrations.adapters.anthropic_messages import MessagesEvents
from gateway.integrations.adapters.calls import ArgumentsDelta, CallClosed, gateway_call_id
from gateway.integrations.adapters.openai_chat import ChatCompletionsEvents
from gateway.integrations.adapters.openai_responses import ResponsesEvents
from gateway.integrations.adapters.raw import RawCodeEvents

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")
from anthropic.types import RawMessageStreamEvent  # noqa: E402
from openai.types.chat import ChatCompletionChunk  # noqa: E402
from openai.types.responses import ResponseStreamEvent  # noqa: E402
from pydantic import TypeAdapter  # noqa: E402


def chunk(delta: dict, finish: str | None = None) -> ChatCompletionChunk:
    return ChatCompletionChunk.model_validate({
        "id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def tool_delta(index: int, arguments: str, call_id: str | None = None,
               name: str | None = None) -> dict:
    call: dict = {"index": index, "function": {"arguments": arguments}}
    if call_id:
        call |= {"id": call_id, "type": "function"}
        call["function"]["name"] = name
    return {"tool_calls": [call]}


def test_chat_interleaved_calls_by_index_close_at_finish_reason():
    events = ChatCompletionsEvents()
    actions = []
    actions += events.feed(chunk({"role": "assistant", "content": "Hi"}))
    actions += events.feed(chunk(tool_delta(0, "", "call_a", "code_interpreter")))
    actions += events.feed(chunk(tool_delta(1, '{"co', "call_b", "python")))
    actions += events.feed(chunk(tool_delta(0, '{"code": "1"}')))
    actions += events.feed(chunk(tool_delta(1, 'de": "2"}')))
    assert actions == [ArgumentsDelta("call_b", '{"co'), ArgumentsDelta("call_a", '{"code": "1"}'),
                       ArgumentsDelta("call_b", 'de": "2"}')]
    assert events.feed(chunk({}, "tool_calls")) == [
        CallClosed("call_a", "code_interpreter", '{"code": "1"}'),
        CallClosed("call_b", "python", '{"code": "2"}')]
    assert events.close() == []  # closed once
    assert events.assistant_message() == {"role": "assistant", "content": "Hi", "tool_calls": [
        {"id": "call_a", "type": "function",
         "function": {"name": "code_interpreter", "arguments": '{"code": "1"}'}},
        {"id": "call_b", "type": "function",
         "function": {"name": "python", "arguments": '{"code": "2"}'}}]}


def test_chat_other_tools_are_kept_for_the_conversation_but_not_run():
    events = ChatCompletionsEvents()
    assert events.feed(chunk(tool_delta(0, '{"city": "Oslo"}', "call_w", "weather"))) == []
    assert events.feed(chunk({}, "tool_calls")) == []
    assert events.assistant_message()["tool_calls"][0]["function"]["name"] == "weather"
    everything = ChatCompletionsEvents(tool_names=None)
    assert everything.feed(chunk(tool_delta(0, "{}", "call_w", "weather"))) == [
        ArgumentsDelta("call_w", "{}")]


def test_responses_deltas_and_done():
    adapter = TypeAdapter(ResponseStreamEvent)
    events = ResponsesEvents()
    item = {"type": "function_call", "id": "fc_1", "call_id": "call_1",
            "name": "code_interpreter", "arguments": "", "status": "in_progress"}
    stream = [
        {"type": "response.output_item.added", "sequence_number": 1, "output_index": 0,
         "item": item},
        {"type": "response.function_call_arguments.delta", "sequence_number": 2,
         "item_id": "fc_1", "output_index": 0, "delta": '{"code": "print(\\'},
        {"type": "response.function_call_arguments.delta", "sequence_number": 3,
         "item_id": "fc_1", "output_index": 0, "delta": '"hi\\")"}'},
        {"type": "response.function_call_arguments.done", "sequence_number": 4,
         "item_id": "fc_1", "output_index": 0, "arguments": '{"code": "print(\\"hi\\")"}'},
        {"type": "response.output_item.done", "sequence_number": 5, "output_index": 0,
         "item": {**item, "arguments": '{"code": "print(\\"hi\\")"}', "status": "completed"}},
    ]
    actions = [a for event in stream for a in events.feed(adapter.validate_python(event))]
    assert actions == [ArgumentsDelta("call_1", '{"code": "print(\\'),
                       ArgumentsDelta("call_1", '"hi\\")"}'),
                       CallClosed("call_1", "code_interpreter", '{"code": "print(\\"hi\\")"}')]
    assert events.function_call_items() == [{
        "type": "function_call", "call_id": "call_1", "name": "code_interpreter",
        "arguments": '{"code": "print(\\"hi\\")"}'}]


def test_responses_final_arguments_win_over_fragments():
    adapter = TypeAdapter(ResponseStreamEvent)
    events = ResponsesEvents()
    events.feed(adapter.validate_python({
        "type": "response.output_item.added", "sequence_number": 1, "output_index": 0,
        "item": {"type": "function_call", "id": "fc_1", "call_id": "call_1",
                 "name": "python", "arguments": "", "status": "in_progress"}}))
    events.feed(adapter.validate_python({
        "type": "response.function_call_arguments.delta", "sequence_number": 2,
        "item_id": "fc_1", "output_index": 0, "delta": '{"code": "1'}))
    done = events.feed(adapter.validate_python({
        "type": "response.function_call_arguments.done", "sequence_number": 3,
        "item_id": "fc_1", "output_index": 0, "arguments": '{"code": "2"}'}))
    assert done == [CallClosed("call_1", "python", '{"code": "2"}')]


def test_anthropic_tool_use_blocks():
    adapter = TypeAdapter(RawMessageStreamEvent)
    events = MessagesEvents()
    stream = [
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text",
                                                                       "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta",
                                                               "text": "Let me see."}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {
            "type": "tool_use", "id": "toolu_1", "name": "code_interpreter", "input": {}}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta",
                                                               "partial_json": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta",
                                                               "partial_json": '{"code": "\\u'}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta",
                                                               "partial_json": '00e9"}'}},
        {"type": "content_block_stop", "index": 1},
        {"type": "message_stop"},
    ]
    actions = [a for event in stream for a in events.feed(adapter.validate_python(event))]
    assert actions == [ArgumentsDelta("toolu_1", '{"code": "\\u'),
                       ArgumentsDelta("toolu_1", '00e9"}'),
                       CallClosed("toolu_1", "code_interpreter", '{"code": "\\u00e9"}')]
    assert events.assistant_message() == {"role": "assistant", "content": [
        {"type": "text", "text": "Let me see."},
        {"type": "tool_use", "id": "toolu_1", "name": "code_interpreter",
         "input": {"code": "\u00e9"}}]}


def test_raw_code():
    events = RawCodeEvents("r1")
    assert events.feed("print(") + events.feed("1)") + events.close() == [
        ArgumentsDelta("r1", "print("), ArgumentsDelta("r1", "1)"),
        CallClosed("r1", "python", "print(1)")]
    assert events.feed("more") == [] and events.close() == []


def test_provider_ids_the_gateway_refuses_are_mapped_stably():
    assert gateway_call_id("call_abc-1") == "call_abc-1"
    odd = gateway_call_id("tool/../x y")
    assert odd.startswith("call-") and odd == gateway_call_id("tool/../x y")
    assert json.dumps(odd).isascii()
