"""The protocol's JSON Schema (gateway/wire/schema) against the parser and the envelope
constructors: what the gateway accepts the schema accepts, and the reverse wherever a schema can
say it (the schema's description names what it cannot)."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from unit.test_protocol import shaped_messages, valid_requests

from gateway.errors import ProtocolError
from gateway.wire import envelopes, schemas
from gateway.wire.protocol import parse_request

REQUEST = Draft202012Validator(schemas.load("request"))
ENVELOPE = Draft202012Validator(schemas.load("envelope"))


def accepted(msg: dict) -> bool:
    try:
        parse_request(json.dumps(msg), max_upload_bytes=2**20)
    except ProtocolError:
        return False
    return True


def test_schemas_are_valid_and_versioned() -> None:
    for kind in schemas.KINDS:
        schema = schemas.load(kind)
        Draft202012Validator.check_schema(schema)
        assert schema["$id"].endswith(f":v{schemas.VERSION}:{kind}")
    with pytest.raises(ValueError, match="request, envelope"):
        schemas.load("nope")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_requests())
def test_every_valid_request_matches_the_schema(pair: tuple[dict, object]) -> None:
    msg, _ = pair
    REQUEST.validate(msg)


def _schema_can_judge(msg: dict) -> bool:
    """Leave out what only the gateway checks (the schema's description): file names beyond
    ASCII, unknown languages' availability, and huge numbers orjson refuses."""
    name = msg.get("filename")
    if msg.get("type") == "upload" and not (isinstance(name, str) and name.isascii()):
        return False
    try:
        json.dumps(msg).encode().decode("ascii")
    except UnicodeError:
        return False
    return all(not (isinstance(v, int) and abs(v) >= 2**63) for v in msg.values())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shaped_messages)
def test_schema_and_parser_agree_on_shaped_messages(msg: dict) -> None:
    if accepted(msg):
        REQUEST.validate(msg)  # the schema is never stricter than the gateway
    elif _schema_can_judge(msg) and REQUEST.is_valid(msg):
        with pytest.raises(ProtocolError):  # says why in the failure
            parse_request(json.dumps(msg), max_upload_bytes=2**20)
        pytest.fail(f"the schema accepts what the gateway refuses: {msg!r}")


@pytest.mark.parametrize("msg", [
    {"type": "execute", "thread_id": "../x", "call_id": "c"},
    {"type": "execute", "thread_id": "a..b", "call_id": "c"},
    {"type": "execute", "thread_id": "t", "call_id": "c", "timeout": 0},
    {"type": "execute", "thread_id": "t", "call_id": "c", "env": {"1X": "v"}},
    {"type": "upload", "thread_id": "t", "filename": "../etc", "base64": ""},
    {"type": "upload", "thread_id": "t", "filename": "a/.hidden", "base64": ""},
    {"type": "upload", "thread_id": "t", "filename": "/abs", "base64": ""},
    {"type": "upload", "thread_id": "t", "filename": "a\\b", "base64": ""},
    {"type": "upload", "thread_id": "t", "filename": "a//b", "base64": ""},
    {"type": "upload", "thread_id": "t", "filename": "f", "base64": "", "final": False},
    {"type": "subscribe", "thread_id": "t", "since_seq": -1},
    {"type": "code_delta", "thread_id": "t", "call_id": "c", "delta": "x", "format": "xml"},
    {"type": "nope", "thread_id": "t"},
])
def test_both_refuse(msg: dict) -> None:
    assert not accepted(msg)
    assert not REQUEST.is_valid(msg)


def test_parts_upload_matches() -> None:
    msg = {"type": "upload", "thread_id": "t", "filename": "big.bin", "call_id": "u1",
           "base64": base64.b64encode(b"abc").decode(), "offset": 3, "final": False}
    assert accepted(msg)
    REQUEST.validate(msg)


@pytest.mark.parametrize("chunk", [
    envelopes.hot_code("```python\n"),
    envelopes.output("42\n"),
    envelopes.output("oops\n", "stderr"),
    envelopes.display({"source": "display_data", "display_id": None,
                       "data": {"text/html": "<b>x</b>"},
                       "files": {"image/png": {"filename": "plot_1.png", "file_id": "f1"}}}),
    envelopes.rewind(7),
    envelopes.file("a.csv", "f2", "YQ==", "text/csv"),
    envelopes.status("complete", execution_count=1, duration_ms=2.5, files=["a.csv"],
                     tool_output="42"),
    envelopes.status("error", reason="x", error_code="thread_moved"),
    envelopes.error("bad_request", "nope"),
    *envelopes.projectdavid_compatible(envelopes.file("a.csv", "f2", "", "text/csv"), "http://h"),
    *envelopes.projectdavid_compatible(envelopes.error("forbidden", "no")),
])
def test_constructed_envelopes_match(chunk: dict) -> None:
    ENVELOPE.validate({**envelopes.envelope(chunk, "t", "c"), "seq": 3})
    ENVELOPE.validate(envelopes.envelope(chunk))


def test_envelope_refusals() -> None:
    good = envelopes.envelope(envelopes.output("x"), "t", "c")
    assert ENVELOPE.is_valid(good)
    assert not ENVELOPE.is_valid({**good, "stream_type": "other"})
    assert not ENVELOPE.is_valid({**good, "chunk": {"type": "hot_code_output", "content": "\r"}})
    assert not ENVELOPE.is_valid({**good, "chunk": {"type": "mystery", "content": 1}})
    assert not ENVELOPE.is_valid({**good, "chunk": envelopes.status("pondering")})


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_any_output_text_the_translator_could_send(text: str) -> None:
    from gateway.wire.translate import clean

    ENVELOPE.validate(envelopes.envelope(envelopes.output(clean(text))))
