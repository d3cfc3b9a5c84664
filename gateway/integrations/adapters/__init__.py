"""Model-stream adapters: pre-stream a model's tool call from the provider SDKs' own events.

The SDKs are optional extras (``openai``, ``anthropic``): the translators only read the events'
attributes, the SDK types are imported for type checking alone.
"""

from .calls import DEFAULT_TOOL_NAMES, ArgumentsDelta, CallClosed
from .runner import ToolCallRunner, ToolResult
from .stream import AnthropicAdapter, OpenAIChatAdapter, OpenAIResponsesAdapter, RawCodeAdapter
from .tools import anthropic_tool, openai_chat_tool, openai_responses_tool

__all__ = [
    "DEFAULT_TOOL_NAMES",
    "AnthropicAdapter",
    "ArgumentsDelta",
    "CallClosed",
    "OpenAIChatAdapter",
    "OpenAIResponsesAdapter",
    "RawCodeAdapter",
    "ToolCallRunner",
    "ToolResult",
    "anthropic_tool",
    "openai_chat_tool",
    "openai_responses_tool",
]
