"""A Jupyter MIME bundle -> the ``display`` chunk's content (docs/protocol.md, "Envelopes"),
without I/O.

Text representations (HTML, Markdown, LaTeX, SVG, JSON, Vega-Lite and Plotly specs, ...) travel
inline; a binary image (or PDF) is stored and announced as a file exactly as before, and the
bundle names it by file id, so a frontend can place it and replace it by ``display_id``. Inline
data counts against a per-execution budget so one giant HTML table cannot flood a client.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

import orjson

from . import envelopes
from .envelopes import Chunk

#: Base64-encoded in a bundle: decoded and stored as a file, in this order of preference.
BINARY_TYPES = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif",
                "image/webp": "webp", "application/pdf": "pdf"}
SVG = "image/svg+xml"
#: Metadata is a hint (image sizes, ``isolated``); a bundle's larger than this goes without it.
METADATA_LIMIT = 10_000


@dataclass(frozen=True)
class DisplayedFile:
    """An image the kernel displayed; the I/O layer stores it and turns it into a file chunk."""

    filename: str  # plot_1.png, plot_2.svg, ... numbered per translator from first_plot_number
    mime_type: str  # image/png, image/jpeg, ..., or image/svg+xml when no raster came with it
    data: bytes  # decoded: binary types base64-decoded, svg utf-8 encoded


@dataclass(frozen=True)
class Display:
    """One rich display. The I/O layer stores ``file`` (if any), then sends :meth:`chunk`."""

    source: str  # execute_result | display_data | update_display_data
    data: dict[str, Any]  # MIME type -> inline text, or a JSON value for the *json types
    display_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    omitted: dict[str, int] = field(default_factory=dict)  # MIME type -> characters withheld
    file: DisplayedFile | None = None

    def chunk(self, file_id: str | None = None) -> Chunk:
        """The wire chunk; ``file_id`` is the stored id of :attr:`file` (None: not stored)."""
        content: dict[str, Any] = {"source": self.source, "display_id": self.display_id,
                                   "data": self.data}
        if self.metadata:
            content["metadata"] = self.metadata
        if self.omitted:
            content["omitted"] = self.omitted
        if self.file is not None and file_id is not None:
            content["files"] = {self.file.mime_type: {"filename": self.file.filename,
                                                      "file_id": file_id}}
        return envelopes.display(content)


def as_text(value: Any) -> str:
    """Mime data is a string, but nbformat-style producers may send a list of lines."""
    if isinstance(value, list):
        return "".join(str(v) for v in value)
    return value if isinstance(value, str) else str(value)


def is_json_type(mime_type: str) -> bool:
    return mime_type == "application/json" or mime_type.endswith("+json")


def inline_size(value: Any) -> int:
    """What an inline value costs a client, in characters (JSON values as serialized)."""
    if isinstance(value, str):
        return len(value)
    try:
        return len(orjson.dumps(value))
    except (TypeError, orjson.JSONEncodeError):
        return 0


def display_size(content: dict[str, Any]) -> int:
    """Roughly what a display chunk's content holds, for memory bounds (the replay buffer)."""
    data = content.get("data")
    values = data.values() if isinstance(data, dict) else ()
    return sum(64 + inline_size(value) for value in values) + inline_size(
        content.get("metadata") or {})


def binary_file(data: dict[str, Any]) -> tuple[str, str, bytes] | None:
    """The bundle's preferred binary representation, decoded: ``(mime, extension, bytes)``.
    An SVG counts when no raster came with it (it was always stored as a file)."""
    for mime_type, extension in BINARY_TYPES.items():
        if mime_type in data:
            try:
                return mime_type, extension, base64.b64decode(as_text(data[mime_type]))
            except (binascii.Error, ValueError):
                continue  # not valid base64: the next representation
    if SVG in data:
        return SVG, "svg", as_text(data[SVG]).encode()
    return None


class DisplayBudget:
    """Inline display data allowed per execution; what does not fit is named, not sent."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.omitted_chars = 0

    def take(self, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, int]]:
        """The inline part of ``data`` that fits (binary types never: they travel as files),
        smallest first so a huge HTML table does not cost the plain text beside it."""
        inline: dict[str, Any] = {}
        omitted: dict[str, int] = {}
        sized = []
        for mime_type, value in data.items():
            if mime_type in BINARY_TYPES or not isinstance(mime_type, str):
                continue
            value = value if is_json_type(mime_type) else as_text(value)
            sized.append((inline_size(value), mime_type, value))
        for size, mime_type, value in sorted(sized, key=lambda entry: entry[0]):
            if self.used + size <= self.limit:
                self.used += size
                inline[mime_type] = value
            else:
                omitted[mime_type] = size
                self.omitted_chars += size
        # The kernel's order (richest first, as IPython sends it), not the budget's.
        return {key: inline[key] for key in data if key in inline}, omitted


def display_id(content: dict[str, Any]) -> str | None:
    transient = content.get("transient")
    if isinstance(transient, dict) and isinstance(display_id := transient.get("display_id"), str):
        return display_id
    return None


def small_metadata(content: dict[str, Any]) -> dict[str, Any]:
    metadata = content.get("metadata")
    if not isinstance(metadata, dict) or not metadata:
        return {}
    return metadata if inline_size(metadata) <= METADATA_LIMIT else {}
