"""Inbound message parsing (gateway/wire/protocol.py): pure, fast, no I/O."""

from __future__ import annotations

import base64
import json
import math

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import ProtocolError
from gateway.wire.protocol import (
    ID_PATTERN,
    MAX_ID_LENGTH,
    REQUEST_TYPES,
    Close,
    CodeDelta,
    Execute,
    Interrupt,
    Request,
    Restart,
    Subscribe,
    Upload,
    parse_request,
    validate_filename,
    validate_id,
)


def dumps(obj: object) -> str:
    return json.dumps(obj)


def fail(raw: str | bytes, code: str = "bad_request", **kwargs: object) -> ProtocolError:
    """Parse ``raw``, expecting a ProtocolError with ``code``; return it for more checks."""
    with pytest.raises(ProtocolError) as info:
        parse_request(raw, **kwargs)  # type: ignore[arg-type]
    assert info.value.code == code, str(info.value)
    assert len(str(info.value)) < 400  # never echoes huge input
    return info.value


def fail_msg(obj: object, code: str = "bad_request", **kwargs: object) -> ProtocolError:
    return fail(dumps(obj), code, **kwargs)


# --- each type parses -------------------------------------------------------------------------


def test_code_delta_json_and_raw() -> None:
    msg = {"type": "code_delta", "thread_id": "t1", "call_id": "c1",
           "delta": '{"code": "impo', "format": "json"}
    assert parse_request(dumps(msg)) == CodeDelta("t1", "c1", '{"code": "impo', "json")
    msg = {"type": "code_delta", "thread_id": "t1", "call_id": "c1", "delta": "rt os\n",
           "format": "raw"}
    assert parse_request(dumps(msg)) == CodeDelta("t1", "c1", "rt os\n", "raw")


def test_code_delta_defaults_and_empty_delta() -> None:
    req = parse_request(dumps({"type": "code_delta", "thread_id": "t", "call_id": "c",
                               "delta": ""}))
    assert req == CodeDelta("t", "c", "", "json")
    req = parse_request(dumps({"type": "code_delta", "thread_id": "t", "call_id": "c",
                               "delta": "x", "format": None}))
    assert isinstance(req, CodeDelta) and req.format == "json"


def test_execute_minimal_and_full() -> None:
    req = parse_request(b'{"type": "execute", "thread_id": "t1", "call_id": "c1"}')
    assert req == Execute("t1", "c1")
    assert req.code is None and req.timeout is None
    req = parse_request(dumps({"type": "execute", "thread_id": "t1", "call_id": "c2",
                               "code": "1+1", "timeout": 30}))
    assert req == Execute("t1", "c2", "1+1", 30.0)
    assert isinstance(req.timeout, float)
    req = parse_request(dumps({"type": "execute", "thread_id": "t", "call_id": "c",
                               "code": None, "timeout": None}))
    assert req == Execute("t", "c")
    req = parse_request(dumps({"type": "execute", "thread_id": "t", "call_id": "c",
                               "code": "", "timeout": 0.5}))
    assert req == Execute("t", "c", "", 0.5)


@pytest.mark.parametrize("kind,cls", [("interrupt", Interrupt), ("restart", Restart),
                                      ("close", Close), ("subscribe", Subscribe)])
def test_thread_only_types(kind: str, cls: type) -> None:
    assert parse_request(dumps({"type": kind, "thread_id": "t1"})) == cls("t1")
    fail_msg({"type": kind}, "bad_request")


def test_upload() -> None:
    payload = b"a,b\n1,2\n\x00\xff"
    req = parse_request(dumps({"type": "upload", "thread_id": "t1", "filename": "sales.csv",
                               "base64": base64.b64encode(payload).decode()}))
    assert req == Upload("t1", "sales.csv", payload)
    assert req.call_id is None
    assert "data" not in repr(req)  # payload kept out of logs
    req = parse_request(dumps({"type": "upload", "thread_id": "t1", "filename": "in/d.txt",
                               "base64": "", "call_id": "c9"}))
    assert req == Upload("t1", "in/d.txt", b"", "c9")


def test_extra_fields_ignored_and_str_bytes_equivalent() -> None:
    msg = {"type": "interrupt", "thread_id": "t1", "seq": 5, "extra": {"nested": [1, 2]}}
    assert parse_request(dumps(msg)) == Interrupt("t1")
    assert parse_request(dumps(msg).encode()) == Interrupt("t1")
    assert parse_request(bytearray(dumps(msg).encode())) == Interrupt("t1")  # type: ignore[arg-type]


def test_unicode_content_survives() -> None:
    code = 'print("héllo 😀")\n'
    req = parse_request(dumps({"type": "execute", "thread_id": "t", "call_id": "c",
                               "code": code}).encode())
    assert isinstance(req, Execute) and req.code == code


def test_request_types_registry() -> None:
    assert set(REQUEST_TYPES) == {"code_delta", "execute", "interrupt", "restart", "close",
                                  "subscribe", "result", "upload"}


def test_events_are_frozen() -> None:
    req = Execute("t", "c")
    with pytest.raises(AttributeError):
        req.code = "x"  # type: ignore[misc]


# --- envelope-level failures ------------------------------------------------------------------


def test_invalid_utf8() -> None:
    err = fail(b'{"type": "close", "thread_id": "\xff"}')
    assert "UTF-8" in str(err)
    fail(b"\xc3\x28")


@pytest.mark.parametrize("raw", ["", "{", "{'type': 'close'}", "NaN", '{"type": "close",}',
                                 "[" * 100000, "[" * 2000 + "]" * 2000, '"\\ud800"'])
def test_invalid_json(raw: str) -> None:
    assert str(fail(raw)).startswith("invalid JSON")


@pytest.mark.parametrize("raw", ["[]", "1", '"execute"', "null", "true", '[{"type": "close"}]'])
def test_top_level_not_object(raw: str) -> None:
    assert "JSON object" in str(fail(raw))


@pytest.mark.parametrize("msg", [{}, {"thread_id": "t"}, {"type": None}, {"type": 1},
                                 {"type": ["execute"]}, {"type": "exec"}, {"type": "EXECUTE"},
                                 {"type": ""}, {"type": "x" * 100000}])
def test_unknown_type(msg: dict) -> None:
    err = fail_msg(msg, "unknown_type")
    assert "execute" in str(err)  # lists the known types


# --- field failures ---------------------------------------------------------------------------


@pytest.mark.parametrize("msg,needle", [
    ({"type": "execute", "call_id": "c"}, "execute.thread_id: required string"),
    ({"type": "execute", "thread_id": "t"}, "execute.call_id: required string"),
    ({"type": "execute", "thread_id": 1, "call_id": "c"}, "execute.thread_id: expected string"),
    ({"type": "execute", "thread_id": "t", "call_id": "c", "code": 5}, "execute.code"),
    ({"type": "execute", "thread_id": "t", "call_id": "c", "code": ["x"]}, "execute.code"),
    ({"type": "code_delta", "thread_id": "t", "call_id": "c"}, "code_delta.delta: required"),
    ({"type": "code_delta", "thread_id": "t", "call_id": "c", "delta": 1}, "code_delta.delta"),
    ({"type": "code_delta", "thread_id": "t", "call_id": "c", "delta": "", "format": "xml"},
     "code_delta.format"),
    ({"type": "code_delta", "thread_id": "t", "call_id": "c", "delta": "", "format": 1},
     "code_delta.format"),
    ({"type": "upload", "thread_id": "t", "filename": "a"}, "upload.base64: required"),
    ({"type": "upload", "thread_id": "t", "filename": "a", "base64": 3}, "upload.base64"),
    ({"type": "upload", "thread_id": "t", "filename": "a", "base64": "", "call_id": 3},
     "upload.call_id"),
    ({"type": "subscribe", "thread_id": None}, "subscribe.thread_id: required string"),
])
def test_missing_and_wrong_fields(msg: dict, needle: str) -> None:
    assert needle in str(fail_msg(msg))


@pytest.mark.parametrize("timeout", [True, False, "30", [30], {"s": 30}, 0, 0.0, -1, -0.5,
                                     3600.001, 1e308, 10**30])
def test_bad_timeout(timeout: object) -> None:
    err = fail_msg({"type": "execute", "thread_id": "t", "call_id": "c", "timeout": timeout})
    assert "execute.timeout" in str(err)


def test_bool_timeout_message_says_boolean() -> None:
    err = fail_msg({"type": "execute", "thread_id": "t", "call_id": "c", "timeout": True})
    assert "boolean" in str(err)


def test_timeout_limit_is_configurable() -> None:
    msg = dumps({"type": "execute", "thread_id": "t", "call_id": "c", "timeout": 60})
    assert parse_request(msg, max_timeout=60).timeout == 60.0  # type: ignore[union-attr]
    fail(msg, max_timeout=59.9)
    ok = dumps({"type": "execute", "thread_id": "t", "call_id": "c", "timeout": 3600})
    assert parse_request(ok).timeout == 3600.0  # type: ignore[union-attr]


def test_non_finite_timeout_rejected_on_direct_construction() -> None:
    # JSON cannot carry NaN/inf (orjson rejects them), but the dataclass guards itself too.
    for bad in (math.nan, math.inf, -math.inf, 10**400):
        with pytest.raises(ProtocolError):
            Execute("t", "c", None, bad)  # type: ignore[arg-type]


BAD_IDS = ["../x", "..", "a..b", "a/b", "", "x" * 200, "x" * (MAX_ID_LENGTH + 1), "a\x00b",
           " a", "a b", "-a", ".a", "_a", "a\n", "é", "a\\b", "a%2e", "😀"]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_ids(bad: str) -> None:
    with pytest.raises(ProtocolError) as info:
        validate_id(bad, "x.thread_id")
    assert info.value.code == "bad_request"
    assert "x.thread_id" in str(info.value)
    fail_msg({"type": "close", "thread_id": bad})
    fail_msg({"type": "execute", "thread_id": "t", "call_id": bad})


@pytest.mark.parametrize("good", ["t1", "a", "A" * MAX_ID_LENGTH, "thread_abc-123",
                                  "user@example.com:7", "0", "a.b.c", "run_2024-01-01T00:00"])
def test_good_ids(good: str) -> None:
    assert validate_id(good, "f") == good
    assert parse_request(dumps({"type": "close", "thread_id": good})) == Close(good)


def test_long_input_is_clipped_in_messages() -> None:
    err = fail_msg({"type": "close", "thread_id": "x" * 10**6})
    assert "xxxxx" * 30 not in str(err)
    err = fail_msg({"type": "close", "thread_id": "/" * 10**6})
    assert len(str(err)) < 300
    err = fail_msg({"type": "upload", "thread_id": "t", "filename": "\x00" * 10**5, "base64": ""},
                   "bad_filename")
    assert len(str(err)) < 300


# --- filenames --------------------------------------------------------------------------------


BAD_FILENAMES = ["../etc/passwd", "/abs", "/", "a/../b", "a/..", "..", "a\x00", "a\\b", ".",
                 "", "a//b", "a/", "./a", "a/./b", ".hidden", "d/.git/config", "a\nb", "a\tb",
                 "a\x7fb", "evil\u202etxt.exe", "a\u200bb", "a\u2028b", "x" * 256,
                 "a/" + "é" * 128, "/".join(["d" * 100] * 11), None, 5, ["a"], b"a"]


@pytest.mark.parametrize("bad", BAD_FILENAMES)
def test_bad_filenames(bad: object) -> None:
    with pytest.raises(ProtocolError) as info:
        validate_filename(bad)
    assert info.value.code == "bad_filename"
    assert len(str(info.value)) < 300
    if bad is not None and not isinstance(bad, bytes):
        msg = {"type": "upload", "thread_id": "t", "filename": bad, "base64": ""}
        fail_msg(msg, "bad_filename")


def test_missing_filename() -> None:
    err = fail_msg({"type": "upload", "thread_id": "t", "base64": ""}, "bad_filename")
    assert "upload.filename: required" in str(err)


@pytest.mark.parametrize("good", ["sales.csv", "a", "dir/sub/file.txt", "x" * 255, "résumé.docx",
                                  "データ.xlsx", "a b.txt", "a..b", "file.", "we-ird_(1)+[2].png",
                                  "/".join(["d" * 100] * 10)])
def test_good_filenames(good: str) -> None:
    assert validate_filename(good) == good


# --- uploads ----------------------------------------------------------------------------------


@pytest.mark.parametrize("b64", ["!!!!", "YQ", "YQ=", "Y Q==", "YQ==\n", "YQ==YQ==x", "é===",
                                 "-_-_"])
def test_bad_base64(b64: str) -> None:
    err = fail_msg({"type": "upload", "thread_id": "t", "filename": "a", "base64": b64})
    assert "base64" in str(err)


def test_upload_size_limits() -> None:
    def msg(n: int) -> str:
        return dumps({"type": "upload", "thread_id": "t", "filename": "a",
                      "base64": base64.b64encode(b"\x01" * n).decode()})

    assert parse_request(msg(3), max_upload_bytes=3).data == b"\x01" * 3  # type: ignore[union-attr]
    fail(msg(4), "too_large", max_upload_bytes=3)  # caught by the encoded-length pre-check
    assert len(parse_request(msg(4), max_upload_bytes=4).data) == 4  # type: ignore[union-attr]
    fail(msg(5), "too_large", max_upload_bytes=4)  # same encoded length, caught after decoding
    fail(msg(0) .replace('""', '"' + "A" * 10**6 + '"'), "too_large", max_upload_bytes=1000)


def test_upload_validates_cheap_fields_before_decoding() -> None:
    huge = "!" * 10**6  # invalid base64, but the bad id must be what is reported
    fail_msg({"type": "upload", "thread_id": "../t", "filename": "a", "base64": huge})
    fail_msg({"type": "upload", "thread_id": "t", "filename": "../a", "base64": huge},
             "bad_filename")


def test_direct_construction_validates() -> None:
    with pytest.raises(ProtocolError):
        CodeDelta("t", "c", "x", "yaml")  # type: ignore[arg-type]
    with pytest.raises(ProtocolError):
        Interrupt("../t")
    with pytest.raises(ProtocolError) as info:
        Upload("t", "../a", b"")
    assert info.value.code == "bad_filename"
    with pytest.raises(ProtocolError):
        Upload("t", "a", "not bytes")  # type: ignore[arg-type]


# --- fuzzing ----------------------------------------------------------------------------------

json_scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False,
                allow_infinity=False) | st.text(max_size=20))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20,
)
FIELDS = ["thread_id", "call_id", "delta", "format", "code", "timeout", "filename", "base64"]
field_values = (json_values | st.sampled_from(["t1", "c1", "", "json", "raw", "../x", "a/b",
                                               "YQ==", "a.txt", "x" * 300])
                | st.floats(min_value=-10, max_value=4000))
shaped_messages = st.fixed_dictionaries(
    {"type": st.sampled_from(sorted(REQUEST_TYPES)) | json_values},
    optional={name: field_values for name in FIELDS},
)


def parses_or_protocol_error(raw: str | bytes) -> None:
    try:
        result = parse_request(raw, max_upload_bytes=64)
    except ProtocolError as exc:
        assert isinstance(exc.code, str) and exc.code
        assert len(str(exc)) < 400
    else:
        assert isinstance(result, Request)  # type: ignore[arg-type,misc]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_fuzz_arbitrary_json(value: object) -> None:
    parses_or_protocol_error(dumps(value))


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(shaped_messages)
def test_fuzz_request_shaped_json(msg: dict) -> None:
    parses_or_protocol_error(dumps(msg))
    parses_or_protocol_error(orjson.dumps(msg) if _orjson_ok(msg) else dumps(msg).encode())


def _orjson_ok(msg: object) -> bool:
    try:
        orjson.dumps(msg)
    except TypeError:  # ints beyond 64 bits
        return False
    return True


@settings(max_examples=300)
@given(st.text())
def test_fuzz_text(raw: str) -> None:
    parses_or_protocol_error(raw)


@settings(max_examples=300)
@given(st.binary())
def test_fuzz_bytes(raw: bytes) -> None:
    parses_or_protocol_error(raw)


ids = st.from_regex(ID_PATTERN, fullmatch=True).filter(lambda s: ".." not in s)
component = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Zl", "Zp", "Co", "Cn"),
                           blacklist_characters="/\\"),
    min_size=1, max_size=30,
).filter(lambda s: not s.startswith("."))
filenames = st.lists(component, min_size=1, max_size=4).map("/".join)


@st.composite
def valid_requests(draw: st.DrawFn) -> tuple[dict, Request]:
    kind = draw(st.sampled_from(sorted(REQUEST_TYPES)))
    thread_id = draw(ids)
    if kind == "code_delta":
        call_id, delta = draw(ids), draw(st.text())
        fmt = draw(st.sampled_from(["json", "raw"]))
        return ({"type": kind, "thread_id": thread_id, "call_id": call_id, "delta": delta,
                 "format": fmt}, CodeDelta(thread_id, call_id, delta, fmt))
    if kind == "execute":
        call_id = draw(ids)
        code = draw(st.none() | st.text())
        timeout = draw(st.none() | st.integers(1, 3600)
                       | st.floats(min_value=1e-6, max_value=3600))
        msg = {"type": kind, "thread_id": thread_id, "call_id": call_id}
        if code is not None:
            msg["code"] = code
        if timeout is not None:
            msg["timeout"] = timeout
        return msg, Execute(thread_id, call_id, code, timeout)
    if kind == "upload":
        filename, data = draw(filenames), draw(st.binary(max_size=200))
        call_id = draw(st.none() | ids)
        msg = {"type": kind, "thread_id": thread_id, "filename": filename,
               "base64": base64.b64encode(data).decode(), "call_id": call_id}
        return msg, Upload(thread_id, filename, data, call_id)
    if kind == "result":
        call_id = draw(ids)
        return ({"type": kind, "thread_id": thread_id, "call_id": call_id},
                REQUEST_TYPES[kind](thread_id, call_id))  # type: ignore[call-arg]
    if kind == "subscribe":
        since = draw(st.none() | st.integers(0, 2**40))
        msg = {"type": kind, "thread_id": thread_id}
        if since is not None:
            msg["since_seq"] = since
        return msg, REQUEST_TYPES[kind](thread_id, since)  # type: ignore[call-arg]
    return {"type": kind, "thread_id": thread_id}, REQUEST_TYPES[kind](thread_id)  # type: ignore[call-arg]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(valid_requests(), st.dictionaries(st.text(max_size=8).filter(
    lambda k: k not in {"type", *FIELDS}), json_values, max_size=3), st.booleans())
def test_round_trip(pair: tuple[dict, Request], extra: dict, as_bytes: bool) -> None:
    msg, expected = pair
    raw = dumps({**extra, **msg})
    parsed = parse_request(raw.encode() if as_bytes else raw)
    assert parsed == expected
    assert type(parsed) is type(expected)
    for name in FIELDS:
        if name in msg and name not in ("base64", "type"):
            assert getattr(parsed, name) == msg[name]
    if isinstance(parsed, Upload):
        assert base64.b64encode(parsed.data).decode() == msg["base64"]


def test_subscribe_may_resume_from_a_seq() -> None:
    from gateway.wire.protocol import Result, Subscribe

    assert parse_request('{"type": "subscribe", "thread_id": "t"}') == Subscribe("t")
    assert parse_request('{"type": "subscribe", "thread_id": "t", "since_seq": 41}') == \
        Subscribe("t", 41)
    for bad in ('-1', '1.5', '"3"', 'true'):
        with pytest.raises(ProtocolError, match="since_seq"):
            parse_request('{"type": "subscribe", "thread_id": "t", "since_seq": ' + bad + "}")
    assert parse_request('{"type": "result", "thread_id": "t", "call_id": "c"}') == \
        Result("t", "c")
    with pytest.raises(ProtocolError, match="call_id"):
        parse_request('{"type": "result", "thread_id": "t"}')
