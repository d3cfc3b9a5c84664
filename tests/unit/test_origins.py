"""Origin checks of browser websocket handshakes (pure rules; live handshakes in
test_exposure.py and a real browser in test_page_origins.py)."""

from __future__ import annotations

import pytest

from gateway import origins


@pytest.mark.parametrize(("origin", "host", "tls", "ok"), [
    ("http://127.0.0.1:8765", "127.0.0.1:8765", False, True),
    ("HTTP://LocalHost:8765", "localhost:8765", False, True),
    ("https://gw.example.com", "gw.example.com", False, True),  # TLS proxy in front
    ("https://gw.example.com", "gw.example.com:443", True, True),
    ("http://gw.example.com", "gw.example.com", True, False),  # the gateway speaks TLS
    ("http://127.0.0.1:9999", "127.0.0.1:8765", False, False),
    ("http://evil.example", "127.0.0.1:8765", False, False),
    ("null", "127.0.0.1:8765", False, False),
    ("http://[::1]:8765", "[::1]:8765", False, True),
    ("file://", "127.0.0.1:8765", False, False),
    ("http://127.0.0.1:8765", None, False, False),
])
def test_same_origin(origin, host, tls, ok):
    assert origins.allowed(origin, host, (), tls=tls) is ok


def test_no_origin_is_not_a_browser():
    assert origins.allowed(None, "127.0.0.1:8765", (), tls=False)


def test_allowed_list_and_star():
    allowed = origins.parse_list("https://app.example.com, http://localhost:3000")
    assert origins.allowed("https://app.example.com:443", "gw:1", allowed, tls=True)
    assert origins.allowed("http://localhost:3000", "gw:1", allowed, tls=True)
    assert not origins.allowed("https://app.example.com.evil.example", "gw:1", allowed, tls=True)
    assert not origins.allowed("http://app.example.com", "gw:1", allowed, tls=True)
    assert origins.allowed("http://anything.example", "gw:1", ("*",), tls=False)


@pytest.mark.parametrize("bad", ["app.example.com", "https://a.example/path", "ftp://a.example"])
def test_malformed_entries_are_refused_at_start(bad):
    with pytest.raises(ValueError):
        origins.parse_list(bad)
