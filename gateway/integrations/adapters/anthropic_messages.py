"""Anthropic Messages: ``content_block_start`` with a ``tool_use`` block, then
``content_block_delta`` events with ``input_json_delta.partial_json``, then
``content_block_stop``. Blocks are told apart by ``index``. Pure: events in, actions out.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import TYPE_CHECKING

from .calls import DEFAULT_TOOL_NAMES, Action, CallTracker

if TYPE_CHECKING:
    from anthropic.types import RawMessageStreamEvent


class MessagesEvents:
    """Turns ``RawMessageStreamEvent``s into actions and keeps the assistant's content blocks."""

    def __init__(self, tool_names: Collection[str] | None = DEFAULT_TOOL_NAMES) -> None:
        self.tracker = CallTracker(tool_names)
        # Content blocks in order: ("text", [pieces]) or ("tool_use", index).
        self.blocks: dict[int, tuple[str, list[str] | int]] = {}

    def feed(self, event: RawMessageStreamEvent) -> list[Action]:
        if event.type == "content_block_start":
            block = event.content_block
            index = event.index
            if block.type == "tool_use":
                self.blocks[index] = ("tool_use", index)
                return self.tracker.open(index, block.id, block.name)
            if block.type == "text":
                self.blocks[index] = ("text", [block.text] if block.text else [])
        elif event.type == "content_block_delta":
            delta = event.delta
            index = event.index
            if delta.type == "input_json_delta":
                return self.tracker.grow(index, delta.partial_json)
            if delta.type == "text_delta" and index in self.blocks:
                pieces = self.blocks[index][1]
                if isinstance(pieces, list):
                    pieces.append(delta.text)
        elif event.type == "content_block_stop":
            return self.tracker.close(event.index)
        elif event.type == "message_stop":
            return self.tracker.close_all()
        return []

    def close(self) -> list[Action]:
        return self.tracker.close_all()

    def assistant_message(self) -> dict:
        """The assistant turn (text and every tool_use block) for the next request."""
        content: list[dict] = []
        for index in sorted(self.blocks):
            kind, value = self.blocks[index]
            if kind == "text" and isinstance(value, list):
                content.append({"type": "text", "text": "".join(value)})
            elif kind == "tool_use":
                call = self.tracker.calls[value]
                arguments = call.arguments.strip()
                content.append({"type": "tool_use", "id": call.provider_id, "name": call.name,
                                "input": json.loads(arguments) if arguments else {}})
        return {"role": "assistant", "content": content}
