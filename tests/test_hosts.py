"""The Host check against DNS rebinding: the pure rules, then every kind of request to a real
gateway on 127.0.0.1 (websocket and admin handshakes, the small GETs websockets answers, and
the HTTP handler's downloads, uploads and notebooks)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os

import pytest

from gateway import hosts
from gateway.config import Settings

# -- pure rules ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "normalized"), [
    ("localhost", "localhost"),
    ("LocalHost:8765", "localhost"),
    ("localhost.:8765", "localhost"),
    ("127.0.0.1:8765", "127.0.0.1"),
    ("127.1.2.3", "127.1.2.3"),
    ("[::1]:8765", "::1"),
    ("[0:0:0:0:0:0:0:1]", "::1"),
    ("::1", "::1"),  # an allowed_hosts entry may leave out the brackets
    ("GW.Example.COM.", "gw.example.com"),
    ("bücher.example", "xn--bcher-kva.example"),
    ("xn--bcher-kva.example:443", "xn--bcher-kva.example"),
    ("", None),
    (":8765", None),
    ("evil.example:", None),
    ("evil.example:http", None),
    ("[::1", None),
    ("[::1]x", None),
    ("[evil.example]:80", None),
    ("user@evil.example", None),
    ("evil.example/path", None),
    ("evil example", None),
    ("a..example", None),
    ("-a.example", None),
    ("127.0.0.1:8765, evil.example", None),
])
def test_normalize(value, normalized):
    assert hosts.normalize(value) == normalized


@pytest.mark.parametrize("host", ["localhost:8765", "127.0.0.1:8765", "127.0.0.1", "127.9.9.9:1",
                                  "[::1]:8765", "[::ffff:127.0.0.1]:8765", "LOCALHOST",
                                  "localhost.:8765"])
def test_loopback_listener_answers_local_names(host):
    assert hosts.allowed([host], (), loopback=True)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8765", "localhost.evil.example",
                                  "127.0.0.1.evil.example", "10.0.0.5:8765", "[::2]:8765",
                                  "0.0.0.0:8765", "[::]:8765", "", "localhost:x",
                                  "127.0.0.1:8765 evil.example"])
def test_loopback_listener_refuses_other_names(host):
    assert not hosts.allowed([host], (), loopback=True)


def test_several_host_headers_are_refused():
    assert not hosts.allowed(["127.0.0.1:1", "evil.example"], (), loopback=True)
    assert not hosts.allowed(["127.0.0.1:1", "127.0.0.1:1"], ("gw.example",), loopback=False)


def test_no_host_header_is_a_local_tool_not_a_browser():
    assert hosts.allowed([], (), loopback=True)
    assert hosts.allowed([], ("gw.example",), loopback=False)


def test_allowed_hosts_add_names_case_insensitively_without_port():
    entries = hosts.parse_list("gw.example, Bücher.Example., 10.0.0.5, [fd00::1]")
    for host in ("gw.example:8765", "GW.EXAMPLE", "gw.example.", "xn--bcher-kva.example:1",
                 "10.0.0.5:80", "[fd00::1]:8765", "localhost:8765"):
        assert hosts.allowed([host], entries, loopback=True), host
    for host in ("evil.example", "gw.example.evil.example", "sub.gw.example", "10.0.0.6"):
        assert not hosts.allowed([host], entries, loopback=True), host


def test_star_allows_any_host():
    assert hosts.allowed(["evil.example"], ("*",), loopback=True)
    assert hosts.allowed(["evil.example"], ("*",), loopback=False)


def test_beyond_loopback_the_check_is_off_unless_allowed_hosts_is_set():
    assert hosts.allowed(["anything.example:8765"], (), loopback=False)
    assert hosts.allowed(["10.0.0.5"], (), loopback=False, own_hosts=("gw.example",))
    assert not hosts.allowed(["anything.example"], ("gw.example",), loopback=False)
    assert hosts.allowed(["gw.example:443"], ("gw.example",), loopback=False)
    # Local names stay accepted: a rebinding page can only send its own name.
    assert hosts.allowed(["127.0.0.1:8765"], ("gw.example",), loopback=False)


def test_the_gateways_own_urls_name_it():
    own = hosts.own_hosts("https://GW.example.com/", "", "ws://10.0.0.5:8765", "not a url")
    assert own == ("gw.example.com", "10.0.0.5")
    assert hosts.allowed(["gw.example.com"], (), loopback=True, own_hosts=own)
    assert hosts.allowed(["10.0.0.5:8765"], ("other.example",), loopback=False, own_hosts=own)
    assert not hosts.allowed(["evil.example"], (), loopback=True, own_hosts=own)


@pytest.mark.parametrize("bad", ["https://gw.example", "gw.example:443", "[::1]:8765",
                                 "gw.example/path", "gw example", "a..example"])
def test_malformed_entries_are_refused_at_start(bad):
    with pytest.raises(ValueError, match="allowed_hosts"):
        hosts.parse_list(bad)
    with pytest.raises(ValueError, match="allowed_hosts"):
        Settings(allowed_hosts=(bad,))


def test_settings_take_a_comma_separated_list():
    from gateway import config

    settings = config.from_environment(
        {"GATEWAY_ALLOWED_HOSTS": "gw.example, 10.0.0.5"})
    assert settings.allowed_hosts == ("gw.example", "10.0.0.5")


# -- a real gateway on 127.0.0.1 ----------------------------------------------------------------

EVIL = "evil.example"


async def raw_request(port: int, method: str, path: str, host: str | None,
                      headers: dict[str, str] | None = None, body: bytes = b"",
                      version: str = "HTTP/1.1") -> tuple[int, bytes]:
    """One request with exactly these headers (``host`` None: no Host header at all); the
    status and whatever body came before the server closed or switched protocols."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        lines = [f"{method} {path} {version}"]
        if host is not None:
            lines.append(f"Host: {host}")
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if body or method == "PUT":
            lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        if method == "HEAD" or not length:
            return status, b""
        return status, await reader.readexactly(length)
    finally:
        writer.close()


def handshake_headers(origin: str | None, token: str | None = "tok-alice") -> dict[str, str]:
    headers = {"Upgrade": "websocket", "Connection": "Upgrade",
               "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
               "Sec-WebSocket-Version": "13"}
    if origin is not None:
        headers["Origin"] = origin
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return headers


GETS = ["/healthz", "/readyz", "/metrics", "/", "/static/app.js",
        "/threads/t/calls/c", "/threads/t/notebook", f"/files/file_{'0' * 32}"]


@pytest.mark.asyncio(loop_scope="session")
async def test_rebound_name_is_refused_everywhere(running):
    """A page on evil.example whose name now resolves to 127.0.0.1: the browser sends its own
    Host and Origin, and the gateway answers nothing (no 101, no health, no page)."""
    port = running.server.port
    for path in ("/ws", "/admin"):
        status, body = await raw_request(port, "GET", path, f"{EVIL}:{port}",
                                         handshake_headers(f"http://{EVIL}:{port}"))
        assert status == 421, (path, status)
        assert b"allowed_hosts" in body
    auth = {"Authorization": "Bearer tok-alice"}
    for path in GETS:
        for host in (EVIL, f"{EVIL}:{port}", f"{EVIL.upper()}.:{port}"):
            status, body = await raw_request(port, "GET", path, host, auth)
            assert status == 421, (path, host, status)
            assert b"allowed_hosts" in body
    status, _ = await raw_request(port, "HEAD", f"/files/file_{'0' * 32}", EVIL, auth)
    assert status == 421
    status, body = await raw_request(port, "PUT", "/threads/rebound/files/a.txt", EVIL, auth,
                                     b"data")
    assert status == 421 and b"allowed_hosts" in body
    assert "rebound" not in running.gateway.threads


@pytest.mark.asyncio(loop_scope="session")
async def test_local_names_are_answered(running):
    port = running.server.port
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "localhost"):
        status, _ = await raw_request(port, "GET", "/ws", host,
                                      handshake_headers(f"http://{host}"))
        assert status == 101, host
        status, body = await raw_request(port, "GET", "/healthz", host)
        assert status == 200 and json.loads(body)["status"] in ("ok", "degraded"), host
        status, _ = await raw_request(port, "GET", "/", host)
        assert status == 200, host
        status, _ = await raw_request(port, "GET", f"/files/file_{'0' * 32}", host,
                                      {"Authorization": "Bearer tok-alice"})
        assert status == 404, host  # past the Host check: the file is unknown


@pytest.mark.asyncio(loop_scope="session")
async def test_http10_without_host_is_answered(running):
    status, body = await raw_request(running.server.port, "GET", "/healthz", None,
                                     version="HTTP/1.0")
    assert status == 200 and json.loads(body)["status"] in ("ok", "degraded")


@pytest.mark.asyncio(loop_scope="session")
async def test_allowed_hosts_admit_a_configured_name(running):
    port = running.server.port
    settings = running.gateway.settings
    saved = settings.allowed_hosts
    settings.allowed_hosts = ("gw.example",)
    try:
        for host in (f"gw.example:{port}", "GW.Example.", "gw.example"):
            status, _ = await raw_request(port, "GET", "/ws", host,
                                          handshake_headers(f"http://{host.lower()}"))
            assert status == 101, host
            status, _ = await raw_request(port, "GET", "/healthz", host)
            assert status == 200, host
            status, _ = await raw_request(port, "GET", f"/files/file_{'0' * 32}", host,
                                          {"Authorization": "Bearer tok-alice"})
            assert status == 404, host
        status, _ = await raw_request(port, "GET", "/healthz", f"{EVIL}:{port}")
        assert status == 421
    finally:
        settings.allowed_hosts = saved


@pytest.mark.asyncio(loop_scope="session")
async def test_a_reload_changes_allowed_hosts_without_restart(running):
    port = running.server.port
    current = running.gateway.settings
    saved = current.allowed_hosts
    try:
        summary = running.server.reload(dataclasses.replace(current, allowed_hosts=("gw.example",)))
        assert summary["changed"] == ["allowed_hosts"] and summary["needs_restart"] == []
        status, _ = await raw_request(port, "GET", "/healthz", f"gw.example:{port}")
        assert status == 200
    finally:
        running.server.reload(dataclasses.replace(current, allowed_hosts=saved))
    status, _ = await raw_request(port, "GET", "/healthz", f"gw.example:{port}")
    assert status == 421
