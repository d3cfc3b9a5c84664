"""Raw code streams: a model that writes the code itself (gpt-oss's python tool, a
``<code>`` channel) rather than JSON arguments. Fragments are the code, ``format: raw``."""

from __future__ import annotations

from .calls import Action, ArgumentsDelta, CallClosed, gateway_call_id


class RawCodeEvents:
    """One call's code, fragment by fragment; ``close()`` when the model ends it."""

    def __init__(self, call_id: str, name: str = "python") -> None:
        self.call_id = gateway_call_id(call_id)
        self.provider_id = call_id
        self.name = name
        self.pieces: list[str] = []
        self.closed = False

    def feed(self, fragment: str) -> list[Action]:
        if not fragment or self.closed:
            return []
        self.pieces.append(fragment)
        return [ArgumentsDelta(self.call_id, fragment)]

    def close(self) -> list[Action]:
        if self.closed:
            return []
        self.closed = True
        return [CallClosed(self.call_id, self.name, "".join(self.pieces))]
