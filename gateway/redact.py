"""Tokens never reach a log line, whatever logger wrote it and at whatever level.

The gateway's own code logs identities, not tokens; this is the safety net for everything else
(a library's debug line with a request path, an exception quoting a header). The final text of
each record is scrubbed, so plain and JSON lines, messages and tracebacks alike are covered.
"""

from __future__ import annotations

import logging
import re

# ?token=..., &token=..., "token": "...", Authorization: Bearer ..., admin_token=...
SECRET = re.compile(
    r"(?P<key>(?:[?&;]|\b)(?:admin_)?token=|\bBearer\s+|\"(?:admin_)?token\"\s*:\s*\"?)"
    r"(?P<value>[^\s&;\"',)\]}]+)",
    re.IGNORECASE)
MASK = "[redacted]"


def redact(text: str) -> str:
    return SECRET.sub(lambda m: m.group("key") + MASK, text)


class RedactingFormatter(logging.Formatter):
    """Wraps a formatter and scrubs what it produced."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.inner.format(record))


def install(logger: logging.Logger | None = None) -> None:
    """Scrub every handler of ``logger`` (the root logger by default)."""
    for handler in (logger or logging.getLogger()).handlers:
        inner = handler.formatter or logging.Formatter()
        if not isinstance(inner, RedactingFormatter):
            handler.setFormatter(RedactingFormatter(inner))
