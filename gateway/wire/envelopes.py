"""Envelope constructors and serialization: the exact wire shapes of
docs/protocol.md (the contract, versioned with the code).

Chunks are plain dicts so they serialize in one orjson call; the constructors are the only place
that knows their keys.
"""

from __future__ import annotations

from typing import Any

import orjson

STREAM_TYPE = "code_execution"
FENCE_OPEN = "```python\n"
FENCE_CLOSE = "\n```"

Chunk = dict[str, Any]


def hot_code(content: str) -> Chunk:
    return {"type": "hot_code", "content": content}


def output(content: str, stream: str | None = None) -> Chunk:
    """Text output; ``stream`` says where it came from (:data:`OUTPUT_STREAMS`)."""
    if stream is None:
        return {"type": "hot_code_output", "content": content}
    return {"type": "hot_code_output", "content": content, "stream": stream}


#: The ``stream`` of a ``hot_code_output`` chunk: the kernel's stdout and stderr, the text/plain
#: of a result or a display, a traceback, or a note from the gateway itself (a cap, a file
#: that could not be saved).
OUTPUT_STREAMS = ("stdout", "stderr", "result", "display", "traceback", "note")


def display(content: dict[str, Any]) -> Chunk:
    """A rich result: ``{"source", "display_id", "data": {mime: value}, ...}`` (mimebundle)."""
    return {"type": "display", "content": content}


def rewind(chars: int) -> Chunk:
    """Progress output rewrote its line: drop the last ``chars`` characters of this call's
    ``hot_code_output`` (that line, as sent) before showing the output that follows."""
    return {"type": "rewind", "content": {"chars": chars}}


def file(filename: str, file_id: str, base64: str, mime_type: str) -> Chunk:
    return {
        "type": "code_interpreter_stream",
        "content": {
            "filename": filename,
            "file_id": file_id,
            "base64": base64,
            "mime_type": mime_type,
        },
    }


def status(state: str, **details: Any) -> Chunk:
    """The one chunk that ends every execution (and reports queued/running/restarted)."""
    return {"type": "status", "content": {"state": state, **details}}


def error(code: str, message: str) -> Chunk:
    return {"type": "error", "content": {"code": code, "message": message}}


def envelope(chunk: Chunk, thread_id: str | None = None,
             call_id: str | None = None) -> dict[str, Any]:
    """Wrap a chunk with its routing keys. Never a top-level ``type`` (docs/protocol.md,
    "Envelopes")."""
    return {
        "stream_type": STREAM_TYPE,
        "chunk": chunk,
        "thread_id": thread_id,
        "call_id": call_id,
    }


def projectdavid_file(chunk: Chunk, base_url: str | None = None) -> Chunk:
    """Our nested file chunk as the flat ``code_interpreter_file`` chunk the projectdavid SDK
    (1.48+) reads; ``url`` is ``{base_url}/files/{file_id}`` when a public base URL is known."""
    content = chunk["content"]
    flat = {"type": "code_interpreter_file", **content}
    if base_url:
        flat["url"] = f"{base_url.rstrip('/')}/files/{content['file_id']}"
    return flat


def projectdavid_compatible(chunk: Chunk, base_url: str | None = None) -> list[Chunk]:
    """Opt-in compatibility: the contract's chunk, plus what the projectdavid SDK understands.

    Files are announced twice (nested per the contract, then flat); error chunks gain the flat
    ``message`` and ``tool`` keys the SDK reads. Everything else is unchanged.
    """
    if chunk["type"] == "code_interpreter_stream":
        return [chunk, projectdavid_file(chunk, base_url)]
    if chunk["type"] == "error":
        content = chunk["content"]
        return [{**chunk, "message": f"{content['code']}: {content['message']}",
                 "tool": "code_interpreter"}]
    return [chunk]


def dumps(message: dict[str, Any]) -> str:
    return orjson.dumps(message).decode()
