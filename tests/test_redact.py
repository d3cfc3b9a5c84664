"""The log safety net: no token survives formatting, whatever the logger and level."""

from __future__ import annotations

import io
import logging

from gateway import redact
from gateway.logs import JsonFormatter


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
