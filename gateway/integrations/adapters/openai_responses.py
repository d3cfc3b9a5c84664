"""OpenAI Responses: ``response.output_item.added`` names a function call, then
``response.function_call_arguments.delta`` fragments, then ``.done`` with the whole arguments.

Events refer to the call by its output item id; the tool result refers to it by ``call_id``.
Pure: events in, actions out.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from .calls import DEFAULT_TOOL_NAMES, Action, CallTracker

if TYPE_CHECKING:
    from openai.types.responses import ResponseStreamEvent


class ResponsesEvents:
    """Turns ``ResponseStreamEvent``s into actions and keeps the function-call items."""

    def __init__(self, tool_names: Collection[str] | None = DEFAULT_TOOL_NAMES) -> None:
        self.tracker = CallTracker(tool_names)

    def feed(self, event: ResponseStreamEvent) -> list[Action]:
        if event.type == "response.output_item.added":
            item = event.item
            if item.type == "function_call":
                return self.tracker.open(item.id or item.call_id, item.call_id, item.name)
        elif event.type == "response.function_call_arguments.delta":
            return self.tracker.grow(event.item_id, event.delta)
        elif event.type == "response.function_call_arguments.done":
            return self.tracker.close(event.item_id, event.arguments)
        elif event.type == "response.output_item.done":
            item = event.item
            if item.type == "function_call":
                return self.tracker.close(item.id or item.call_id, item.arguments)
        return []

    def close(self) -> list[Action]:
        return self.tracker.close_all()

    def function_call_items(self) -> list[dict]:
        """The model's function calls as input items (for a request without
        ``previous_response_id``), every call, ours or not."""
        return [{"type": "function_call", "call_id": call.provider_id, "name": call.name,
                 "arguments": call.arguments}
                for call in self.tracker.calls.values() if call.name]
