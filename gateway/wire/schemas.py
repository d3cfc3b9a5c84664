"""The protocol as JSON Schema (``schema/*.v1.json``, shipped as package data).

The schemas describe the wire shapes of docs/protocol.md for clients in any language; the
gateway itself validates with ``protocol.parse_request`` (which also checks what a schema cannot
say) and the tests hold the two together.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

__all__ = ["VERSION", "KINDS", "load"]

#: Bumped only when a message changes incompatibly; new optional keys keep the version.
VERSION = 1
KINDS = ("request", "envelope")


def load(kind: str, version: int = VERSION) -> dict[str, Any]:
    """The schema of a ``request`` or an ``envelope`` as a dict."""
    if kind not in KINDS:
        raise ValueError(f"no schema {kind!r}; expected one of {', '.join(KINDS)}")
    text = (resources.files(__package__) / "schema" / f"{kind}.v{version}.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema
