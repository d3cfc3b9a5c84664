"""The log safety net: no token survives formatting, whatever the logger and level.

The gateway half; the pure half is tests/unit/test_redact.py."""

from __future__ import annotations

import io
import logging

from websockets.asyncio.client import connect

from gateway.ops import redact


async def test_a_real_handshake_with_an_encoded_token_key_is_redacted(running):
    """The gateway signs in ``?tok%65n=T`` like ``?token=T``; websockets' debug lines of that
    handshake (the client's and the server's request line) must not carry T."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(redact.RedactingFormatter(logging.Formatter("%(name)s %(message)s")))
    root = logging.getLogger()
    root.addHandler(handler)
    loggers = [logging.getLogger(name) for name in ("websockets.server", "websockets.client")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    try:
        async with connect(f"{running.url}?tok%65n=tok-alice") as connection:
            assert connection.response.status_code == 101  # the server took the token
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
        root.removeHandler(handler)
    text = stream.getvalue()
    assert f"/ws?tok%65n={redact.MASK}" in text  # the request line was logged
    assert "tok-alice" not in text
