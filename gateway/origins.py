"""Which browser origins may open a websocket to the gateway (cross-site websocket hijacking).

A browser attaches ``Origin`` to every websocket handshake and lets any page open one to any
host, with the victim's cookies or a token the attacker's page got hold of. The gateway's own
page is always allowed (same origin: the Origin names the host the request was sent to);
``allowed_origins`` adds others, ``*`` allows all. Clients that are not browsers send no Origin
and are not affected.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable

DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize(origin: str) -> str | None:
    """``scheme://host:port`` in lower case with the port always explicit; None if malformed
    (``null``, a path, an unknown scheme)."""
    try:
        parts = urllib.parse.urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return None
    if parts.query or parts.fragment or parts.username or parts.password:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port or DEFAULT_PORTS[scheme]}"


def parse_list(spec: str | Iterable[str]) -> tuple[str, ...]:
    """``"https://a.example, https://b.example"`` (or a list) -> a tuple of entries; a malformed
    entry is an error at start-up rather than a silent refusal later."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    entries = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        if item != "*" and normalize(item) is None:
            raise ValueError(f"bad origin {item!r}: expected scheme://host[:port] or *")
        entries.append(item)
    return tuple(entries)


def same_origin(origin: str, host_header: str | None, *, tls: bool) -> bool:
    """Does ``origin`` name the host this request was sent to? Behind a TLS-terminating proxy
    the page is https while the gateway speaks http, so without TLS both schemes count."""
    wanted = normalize(origin)
    if wanted is None or not host_header:
        return False
    schemes = ("https",) if tls else ("http", "https")
    for scheme in schemes:
        if normalize(f"{scheme}://{host_header}") == wanted:
            return True
    return False


def allowed(origin: str | None, host_header: str | None, allowed_origins: Iterable[str], *,
            tls: bool) -> bool:
    """May a handshake with this ``Origin`` header proceed?"""
    if origin is None:
        return True  # not a browser: nothing to hijack
    if same_origin(origin, host_header, tls=tls):
        return True
    entries = tuple(allowed_origins)
    if "*" in entries:
        return True
    wanted = normalize(origin)
    return wanted is not None and wanted in {normalize(entry) for entry in entries}
