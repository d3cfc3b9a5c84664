"""The log safety net: no token survives formatting, whatever the logger and level.

The pure half; the gateway half is tests/kernel/test_redact_handshake.py."""

from __future__ import annotations

import io
import logging

import pytest

from gateway.net.http_handler import bearer_of
from gateway.ops import redact
from gateway.ops.logs import JsonFormatter


def test_redact_patterns():
    line = ('< GET /ws?token=abc123 HTTP/1.1 | /files/x?a=1&token=def456 | '
            'Authorization: Bearer ghi789 | {"token": "jkl012"} | admin_token=mno345')
    out = redact.redact(line)
    for secret in ("abc123", "def456", "ghi789", "jkl012", "mno345"):
        assert secret not in out
    assert out.count(redact.MASK) == 5
    assert redact.redact("thread t1: 3 tokens used") == "thread t1: 3 tokens used"


def test_installed_on_handlers_covers_tracebacks_and_json():
    logger = logging.getLogger("test-redact")
    logger.propagate = False
    stream = io.StringIO()
    for formatter in (logging.Formatter("%(levelname)s %(message)s"), JsonFormatter()):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(formatter)
        logger.handlers[:] = [handler]
        redact.install(logger)
        logger.setLevel(logging.DEBUG)
        logger.debug("request %s", "/ws?token=sekrit1")
        try:
            raise ValueError("bad header Authorization: Bearer sekrit2")
        except ValueError:
            logger.exception("failed")
    text = stream.getvalue()
    assert "sekrit" not in text and text.count(redact.MASK) >= 4


def _spellings(name: str) -> list[str]:
    """Every spelling of ``name`` with each letter bare or percent-encoded (upper hex)."""
    spellings = [""]
    for letter in name:
        spellings = [s + form for s in spellings for form in (letter, f"%{ord(letter):02X}")]
    return spellings


@pytest.mark.parametrize("key", [*_spellings("token"), "TOKEN", "tok+en", "t%20oken"])
def test_a_query_token_the_server_accepts_is_redacted(key):
    """Redact what the server accepts: a key it decodes to ``token`` hides its value."""
    target = f"/ws?thread=t1&{key}=sekrit&x=1"
    line = redact.redact(f"< GET {target} HTTP/1.1")
    if bearer_of({}, target) == "sekrit":
        assert "sekrit" not in line, line
    assert "thread=t1" in line and "x=1" in line


@pytest.mark.parametrize("text", [
    "{'token': 'sekrit'}", "{'token': b'sekrit'}", "{b'token': b'sekrit'}",
    "{'token': ['sekrit']}", "[('token', 'sekrit')]", '{"token":"sekrit"}',
    '{"message": "got {\\"token\\": \\"sekrit\\"}"}',  # a repr inside a JSON log line
    "Settings(admin_token='sekrit', cluster_token='sekrit', store_key='sekrit')",
    "GATEWAY_TOKENS=alice:sekrit,bob:sekrit",
    "next=/ws?token=sekrit",  # inside another parameter's value
    "< Authorization: Bearer sekrit", "Authorization: Basic sekrit",
    "[(b'authorization', b'Bearer sekrit')]", "{'Authorization': 'Bearer sekrit'}",
    '{"authorization": "Bearer sekrit"}', "< X-Gateway-Cluster-Secret: sekrit",
    "{b'x-gateway-cluster-secret': b'sekrit'}",
    "https://bucket.s3.amazonaws.com/k?X-Amz-Security-Token=sekrit&X-Amz-Date=1",
])
def test_reprs_headers_and_settings_are_redacted(text):
    out = redact.redact(text)
    assert "sekrit" not in out and redact.MASK in out, out


@pytest.mark.parametrize("text", [
    "thread t1: 3 tokens used", "GET /ws?thread=t1 HTTP/1.1", "{'max_tokens': 5}",
    "http://127.0.0.1:8765/ws", "Bearer [redacted]",
])
def test_other_text_is_left_alone(text):
    assert redact.redact(text) == text


def test_the_cluster_secret_header_is_one_the_server_reads():
    from gateway.cluster.relay import SECRET_HEADER

    assert SECRET_HEADER.lower() in redact.SECRET_HEADERS
