"""The exact wire shapes of docs/protocol.md: clients parse them as they are, so no extra or
missing keys."""

from __future__ import annotations

import orjson
import pytest

from gateway.wire import envelopes


def test_hot_code_chunk():
    assert envelopes.hot_code("import os\n") == {"type": "hot_code", "content": "import os\n"}


def test_fences():
    assert envelopes.FENCE_OPEN == "```python\n"
    assert envelopes.FENCE_CLOSE == "\n```"


def test_output_chunk():
    assert envelopes.output("clean") == {"type": "hot_code_output", "content": "clean"}


def test_file_chunk():
    chunk = envelopes.file("plot_1.png", "file_abc", "iVBOR", "image/png")
    assert chunk == {
        "type": "code_interpreter_stream",
        "content": {"filename": "plot_1.png", "file_id": "file_abc", "base64": "iVBOR",
                    "mime_type": "image/png"},
    }
    assert list(chunk) == ["type", "content"]
    assert set(chunk["content"]) == {"filename", "file_id", "base64", "mime_type"}


def test_status_chunk():
    chunk = envelopes.status("complete", execution_count=3, duration_ms=12.5)
    assert chunk == {"type": "status",
                     "content": {"state": "complete", "execution_count": 3, "duration_ms": 12.5}}
    assert envelopes.status("queued") == {"type": "status", "content": {"state": "queued"}}


def test_error_chunk():
    assert envelopes.error("bad_request", "no thread_id") == {
        "type": "error", "content": {"code": "bad_request", "message": "no thread_id"}}


CHUNKS = [
    envelopes.hot_code("```python\n"),
    envelopes.output("x\n"),
    envelopes.file("a.csv", "file_1", "YSwxCg==", "text/csv"),
    envelopes.status("error", execution_count=None, duration_ms=1.0, files=["a.csv"]),
    envelopes.error("bad_request", "oops"),
]


@pytest.mark.parametrize("chunk", CHUNKS, ids=lambda c: c["type"])
def test_envelope_shape_has_routing_keys_and_no_top_level_type(chunk):
    env = envelopes.envelope(chunk, "t1", "c1")
    assert env == {"stream_type": "code_execution", "chunk": chunk,
                   "thread_id": "t1", "call_id": "c1"}
    assert "type" not in env
    assert set(env["chunk"]) == {"type", "content"}


def test_envelope_without_routing_keys_still_has_no_type():
    env = envelopes.envelope(envelopes.output("x"))
    assert env["stream_type"] == "code_execution" and "type" not in env


@pytest.mark.parametrize("chunk", CHUNKS, ids=lambda c: c["type"])
def test_dumps_round_trips(chunk):
    env = envelopes.envelope(chunk, "t1", "c1")
    text = envelopes.dumps(env)
    assert isinstance(text, str)
    assert orjson.loads(text) == env


def test_dumps_keeps_unicode_and_escapes():
    env = envelopes.envelope(envelopes.hot_code('print("\\n😀")\n'), "t", "c")
    assert orjson.loads(envelopes.dumps(env))["chunk"]["content"] == 'print("\\n😀")\n'
