"""Interop with the projectdavid SDK: real gateway envelopes through its chunk-to-event mapping.

The SDK turns each raw stream chunk into a typed event in
``projectdavid.clients.synchronous_inference_wrapper.SynchronousInferenceStream._map_chunk_to_event``:
it unwraps ``{"stream_type": "code_execution", "chunk": {...}}`` (reading ``type`` before
``stream_type``), then dispatches on the inner chunk's ``type``:

- ``hot_code``        -> ``HotCodeEvent(content)``
- ``hot_code_output`` -> ``CodeExecutionOutputEvent(content)``
- ``code_interpreter_file`` (flat: ``filename``, ``file_id``, ``base64``, ``mime_type``, ``url``)
                      -> ``CodeExecutionGeneratedFileEvent``
- ``error``           -> ``WebStatusEvent(status="failed", message=chunk["error"] or
                         chunk["message"])`` (flat keys, not our nested ``content``)
- anything else (our ``code_interpreter_stream``, ``status``, ``subscribed``) -> ``None``.

So hot code and output interoperate as they are; files and errors need the flat compat shapes
of ``envelopes.projectdavid_compatible``, which the opt-in ``projectdavid_compat`` setting emits.

The pure half; the gateway half is tests/kernel/test_projectdavid.py."""

from __future__ import annotations

import pytest

from gateway.wire import envelopes
from support.projectdavid import to_event, to_projectdavid_file_chunk

pytestmark = pytest.mark.asyncio(loop_scope="session")







async def test_compat_helper_shapes():
    nested = envelopes.file("big.docx", "file_" + "0" * 32, "",
                            "application/vnd.openxmlformats-officedocument."
                            "wordprocessingml.document")
    assert to_projectdavid_file_chunk(nested, "http://gw:8765/") == {
        "type": "code_interpreter_file",
        "filename": "big.docx",
        "file_id": "file_" + "0" * 32,
        "base64": "",  # above inline_file_limit: fetch by url
        "mime_type": nested["content"]["mime_type"],
        "url": "http://gw:8765/files/file_" + "0" * 32,
    }
    assert "url" not in to_projectdavid_file_chunk(nested)
    other = envelopes.hot_code("x = 1")
    assert to_projectdavid_file_chunk(other) is other


async def test_error_chunk_message_is_lost_by_the_sdk_without_a_flat_message(sdk_stream):
    """Our error chunk nests ``{code, message}`` in ``content``; the SDK reads flat keys."""
    from projectdavid.events import WebStatusEvent

    error = envelopes.envelope(envelopes.error("queue_full", "too many queued"), "t1", "c1")
    event = to_event(sdk_stream, error)
    assert isinstance(event, WebStatusEvent) and event.status == "failed"
    assert event.message == "None"  # what a projectdavid frontend would show today

    flat = {**error, "chunk": {**error["chunk"], "message": "queue_full: too many queued",
                               "tool": "code_interpreter"}}
    event = to_event(sdk_stream, flat)
    assert (event.message, event.tool) == ("queue_full: too many queued", "code_interpreter")
