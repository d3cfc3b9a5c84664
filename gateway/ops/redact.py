"""Tokens never reach a log line, whatever logger wrote it and at whatever level.

The gateway's own code logs identities, not tokens; this is the safety net for everything else
(a library's debug line with a request path, an exception quoting a header, a repr of a dict).
The final text of each record is scrubbed, so plain and JSON lines, messages and tracebacks
alike are covered. What is scrubbed follows what the server accepts as a secret: a query key is
decoded the way ``urllib.parse.parse_qs`` decodes it for the server, so ``?tok%65n=T`` is
redacted because it signs in exactly like ``?token=T``.
"""

from __future__ import annotations

import logging
import re
import urllib.parse

MASK = "[redacted]"
# Names whose value is a secret, compared once decoded: the client token (?token=), any
# other token (admin_token, cluster_token, GATEWAY_TOKENS, a library's X-Amz-Security-Token)
# and the object store's key.
SECRET_NAME = re.compile(r"(?:.*[_.-])?token|(?:gateway_)?tokens|store_key")
# Headers the server reads a secret from (gateway/cluster/relay.py names the cluster one).
SECRET_HEADERS = ("authorization", "x-gateway-cluster-secret")

# Python's bytes prefix, then an opening quote, bare or escaped inside a JSON line.
_BYTES = r"""(?:b(?=['"]))?"""
_QUOTE = r"""\\?['"]"""
# NAME=VALUE, NAME: VALUE or ('NAME', VALUE), the name bare or quoted ('token': b'...',
# "token": ["..."], token='...', ?tok%65n=...). Whether NAME is secret is decided in code,
# after decoding it.
NAMED_VALUE = re.compile(rf"""
    (?<![\w%.+-]) {_BYTES} (?P<quote>{_QUOTE}|) (?P<name>[\w%.+-]+) (?P=quote)
    (?: \s*[:=] | (?<=['"])\s*, ) \s* (?:\[\s*)? (?:{_BYTES}{_QUOTE})?
    (?P<value>[^\s&#'"\\]+)
    """, re.VERBOSE)
# A header's value as a line, a tuple, a dict entry or JSON: after "Bearer" the token, else
# the whole value (an unknown scheme and its credentials alike).
HEADER_VALUE = re.compile(rf"""
    (?P<key> \b(?:{"|".join(map(re.escape, SECRET_HEADERS))}) (?:{_QUOTE})? \s*[:,=]\s*
             (?:{_BYTES}{_QUOTE})? (?P<bearer>Bearer[ \t]+)? )
    (?P<value> (?(bearer)|(?:[A-Za-z][\w.-]*[ \t]+)?) [^\s'",\\]+ )
    """, re.VERBOSE | re.IGNORECASE)
# "Bearer T" anywhere else (an exception message, a client's own debug line), unless it was
# a header's and is masked already.
BEARER = re.compile(rf"""(?P<key>\bBearer\s+)(?!{re.escape(MASK)})(?P<value>[^\s&;"',)\]}}]+)""",
                    re.IGNORECASE)

# A signed browser token (gateway/signed_tokens.py) wherever it stands, named or not: it is
# recognisable by its shape, so it is masked even in a path or a message.
SIGNED = re.compile(r"(?P<key>)(?<![\w.-])gw1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def _is_secret(name: str) -> bool:
    """Is ``name`` (as written in the text) a secret's name once decoded like a query key?"""
    return SECRET_NAME.fullmatch(urllib.parse.unquote_plus(name).lower()) is not None


def _mask_named_values(text: str) -> str:
    # A search loop rather than re.sub: a name that is not secret gives back its value to the
    # scan, so "next=/ws?token=T" still finds the token inside another parameter's value.
    pieces, position = [], 0
    while (match := NAMED_VALUE.search(text, position)) is not None:
        if _is_secret(match.group("name")):
            pieces.append(text[position:match.start("value")] + MASK)
            position = match.end("value")
        else:
            pieces.append(text[position:match.end("name")])
            position = match.end("name")
    pieces.append(text[position:])
    return "".join(pieces)


def _mask(pattern: re.Pattern[str], text: str) -> str:
    return pattern.sub(lambda m: m.group("key") + MASK, text)


def redact(text: str) -> str:
    """``text`` with the value of every secret header, name and bearer token masked."""
    return _mask(SIGNED, _mask(BEARER, _mask_named_values(_mask(HEADER_VALUE, text))))


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
