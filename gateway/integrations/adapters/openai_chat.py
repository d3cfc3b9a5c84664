"""OpenAI Chat Completions: ``choices[0].delta.tool_calls[i].function.arguments`` fragments.

Several calls may be interleaved, told apart by ``index``; the id and name come with a call's
first fragment only. A call closes when the choice finishes (``finish_reason``), or when the
stream ends. Pure: chunks in, actions out.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from .calls import DEFAULT_TOOL_NAMES, Action, CallTracker

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionChunk


class ChatCompletionsEvents:
    """Turns ``ChatCompletionChunk``s into actions and keeps what the next request needs."""

    def __init__(self, tool_names: Collection[str] | None = DEFAULT_TOOL_NAMES) -> None:
        self.tracker = CallTracker(tool_names)
        self.text: list[str] = []

    def feed(self, chunk: ChatCompletionChunk) -> list[Action]:
        actions: list[Action] = []
        for choice in chunk.choices:
            if choice.index != 0:  # n > 1: only the first choice drives execution
                continue
            delta = choice.delta
            if delta is not None:
                if delta.content:
                    self.text.append(delta.content)
                for tool_call in delta.tool_calls or []:
                    function = tool_call.function
                    name = function.name if function is not None else None
                    actions += self.tracker.open(tool_call.index, tool_call.id, name)
                    if function is not None and function.arguments:
                        actions += self.tracker.grow(tool_call.index, function.arguments)
            if choice.finish_reason is not None:
                actions += self.tracker.close_all()
        return actions

    def close(self) -> list[Action]:
        """The stream ended (perhaps without a finish_reason): close what is open."""
        return self.tracker.close_all()

    def assistant_message(self) -> dict:
        """The assistant turn to append before the tool results (every tool call, ours or not)."""
        message: dict = {"role": "assistant", "content": "".join(self.text) or None}
        calls = [call for call in self.tracker.calls.values() if call.name]
        if calls:
            message["tool_calls"] = [
                {"id": call.provider_id, "type": "function",
                 "function": {"name": call.name, "arguments": call.arguments}}
                for call in calls]
        return message
