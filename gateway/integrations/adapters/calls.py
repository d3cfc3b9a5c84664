"""What every provider's tool-call stream comes down to: calls that open, grow and close.

The provider modules turn SDK events into these actions without any I/O (sans-I/O, like
``gateway.hotcode``), so each is tested by feeding events; ``runner`` is the one place that talks
to the gateway.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass, field

from ...wire.protocol import ID_PATTERN

DEFAULT_TOOL_NAMES = frozenset({"code_interpreter", "python", "run_code", "execute_python"})


@dataclass(frozen=True)
class ArgumentsDelta:
    """A fragment of a call's arguments (json) or of its code (raw): send it now."""

    call_id: str
    delta: str


@dataclass(frozen=True)
class CallClosed:
    """The model finished the call: execute it. ``arguments`` is its whole argument text."""

    call_id: str
    name: str
    arguments: str


Action = ArgumentsDelta | CallClosed


def gateway_call_id(provider_id: str) -> str:
    """The provider's call id when the gateway accepts it as is (so envelopes and tool results
    carry the id the model knows), else a stable digest of it."""
    if ID_PATTERN.fullmatch(provider_id) and ".." not in provider_id:
        return provider_id
    return "call-" + hashlib.sha256(provider_id.encode()).hexdigest()[:32]


@dataclass
class ToolCall:
    """One tool call as it is being assembled from a stream."""

    provider_id: str
    name: str | None = None
    pieces: list[str] = field(default_factory=list)
    # Fragments seen before the call's name: held until we know whether the call is ours.
    held: list[str] = field(default_factory=list)
    closed: bool = False

    @property
    def call_id(self) -> str:
        return gateway_call_id(self.provider_id)

    @property
    def arguments(self) -> str:
        return "".join(self.pieces)


class CallTracker:
    """Calls keyed by the provider's handle (an index or an item id), filtered by tool name.

    ``tool_names=None`` takes every function call; otherwise calls to other tools are assembled
    (the conversation needs them) but produce no actions.
    """

    def __init__(self, tool_names: Collection[str] | None = DEFAULT_TOOL_NAMES) -> None:
        self.tool_names = None if tool_names is None else frozenset(tool_names)
        self.calls: dict[object, ToolCall] = {}

    def ours(self, call: ToolCall) -> bool:
        return call.name is not None and (self.tool_names is None or call.name in self.tool_names)

    def open(self, handle: object, provider_id: str | None, name: str | None) -> list[Action]:
        """A call starts, or learns its id or name; fragments held back are released."""
        call = self.calls.get(handle)
        if call is None:
            call = self.calls[handle] = ToolCall(provider_id or str(handle))
        elif provider_id and not call.pieces and not call.held:
            call.provider_id = provider_id
        if name and call.name is None:
            call.name = name
        if call.held and self.ours(call):
            held, call.held = "".join(call.held), []
            return [ArgumentsDelta(call.call_id, held)]
        return []

    def grow(self, handle: object, delta: str) -> list[Action]:
        call = self.calls.get(handle)
        if call is None:
            call = self.calls[handle] = ToolCall(str(handle))
        if not delta or call.closed:
            return []
        call.pieces.append(delta)
        if call.name is None:
            call.held.append(delta)
            return []
        return [ArgumentsDelta(call.call_id, delta)] if self.ours(call) else []

    def close(self, handle: object, final_arguments: str | None = None) -> list[Action]:
        call = self.calls.get(handle)
        if call is None or call.closed:
            return []
        call.closed = True
        if final_arguments is not None and final_arguments != call.arguments:
            # The provider's final text wins; the runner sees the mismatch and executes it.
            call.pieces = [final_arguments]
        if not self.ours(call):
            return []
        return [CallClosed(call.call_id, call.name or "", call.arguments)]

    def close_all(self) -> list[Action]:
        actions: list[Action] = []
        for handle in list(self.calls):
            actions += self.close(handle)
        return actions
