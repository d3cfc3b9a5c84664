"""Adapters: a provider's streaming events in, pre-streamed and executed tool calls out.

    adapter = OpenAIChatAdapter(client.thread("t1"))
    async for chunk in await openai.chat.completions.create(..., stream=True, tools=[TOOL]):
        await adapter.feed(chunk)          # code_delta goes out as each fragment arrives
    results = await adapter.finish()       # calls were executed as they closed
    messages += [adapter.assistant_message(), *adapter.tool_messages(results)]

Each adapter pairs a pure event translator (one module per provider) with a ``ToolCallRunner``.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Collection
from typing import TYPE_CHECKING, Any

from gateway.client import Thread

from .anthropic_messages import MessagesEvents
from .calls import DEFAULT_TOOL_NAMES
from .openai_chat import ChatCompletionsEvents
from .openai_responses import ResponsesEvents
from .raw import RawCodeEvents
from .runner import ToolCallRunner, ToolResult

if TYPE_CHECKING:
    from anthropic.types import RawMessageStreamEvent
    from openai.types.chat import ChatCompletionChunk
    from openai.types.responses import ResponseStreamEvent


class _Adapter:
    """Shared shell: translate an event, apply its actions, collect the results."""

    def __init__(self, events: Any, runner: ToolCallRunner) -> None:
        self.events = events
        self.runner = runner

    async def _feed(self, event: Any) -> None:
        await self.runner.apply(self.events.feed(event))

    async def finish(self) -> list[ToolResult]:
        """The model's stream ended: execute calls still open, wait for every result."""
        await self.runner.apply(self.events.close())
        ids = {call.call_id: call.provider_id for call in self.events.tracker.calls.values()}
        return await self.runner.results(ids)

    async def consume(self, stream: AsyncIterable[Any]) -> list[ToolResult]:
        """Feed a whole stream, then ``finish()``."""
        async for event in stream:
            await self._feed(event)
        return await self.finish()


class OpenAIChatAdapter(_Adapter):
    """OpenAI Chat Completions (``stream=True``); tools as ``{"code": ...}`` functions."""

    def __init__(self, thread: Thread, *, tool_names: Collection[str] | None = DEFAULT_TOOL_NAMES,
                 timeout: float | None = None) -> None:
        super().__init__(ChatCompletionsEvents(tool_names),
                         ToolCallRunner(thread, "json", timeout=timeout))

    async def feed(self, chunk: ChatCompletionChunk) -> None:
        await self._feed(chunk)

    def assistant_message(self) -> dict:
        return self.events.assistant_message()

    @staticmethod
    def tool_messages(results: list[ToolResult]) -> list[dict]:
        """One ``role: tool`` message per executed call, to follow the assistant message."""
        return [{"role": "tool", "tool_call_id": r.provider_id, "content": r.text}
                for r in results]


class OpenAIResponsesAdapter(_Adapter):
    """OpenAI Responses (``stream=True``); function tools with a ``code`` parameter."""

    def __init__(self, thread: Thread, *, tool_names: Collection[str] | None = DEFAULT_TOOL_NAMES,
                 timeout: float | None = None) -> None:
        super().__init__(ResponsesEvents(tool_names),
                         ToolCallRunner(thread, "json", timeout=timeout))

    async def feed(self, event: ResponseStreamEvent) -> None:
        await self._feed(event)

    def function_call_items(self) -> list[dict]:
        """The calls as input items, for a next request without ``previous_response_id``."""
        return self.events.function_call_items()

    @staticmethod
    def tool_outputs(results: list[ToolResult]) -> list[dict]:
        return [{"type": "function_call_output", "call_id": r.provider_id, "output": r.text}
                for r in results]


class AnthropicAdapter(_Adapter):
    """Anthropic Messages (``stream=True``); a tool whose input is ``{"code": ...}``."""

    def __init__(self, thread: Thread, *, tool_names: Collection[str] | None = DEFAULT_TOOL_NAMES,
                 timeout: float | None = None) -> None:
        super().__init__(MessagesEvents(tool_names),
                         ToolCallRunner(thread, "json", timeout=timeout))

    async def feed(self, event: RawMessageStreamEvent) -> None:
        await self._feed(event)

    def assistant_message(self) -> dict:
        return self.events.assistant_message()

    @staticmethod
    def tool_result_message(results: list[ToolResult]) -> dict:
        """The user turn carrying a ``tool_result`` block per executed call."""
        return {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": r.provider_id, "content": r.text,
             "is_error": r.is_error} for r in results]}


class RawCodeAdapter:
    """A model that writes code itself: fragments are code (``format: raw``)."""

    def __init__(self, thread: Thread, call_id: str, *, timeout: float | None = None) -> None:
        self.events = RawCodeEvents(call_id)
        self.runner = ToolCallRunner(thread, "raw", timeout=timeout)

    async def feed(self, fragment: str) -> None:
        await self.runner.apply(self.events.feed(fragment))

    async def finish(self) -> ToolResult:
        await self.runner.apply(self.events.close())
        (result,) = await self.runner.results({self.events.call_id: self.events.provider_id})
        return result
