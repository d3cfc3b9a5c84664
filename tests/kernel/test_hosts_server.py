"""The Host check against DNS rebinding: the pure rules, then every kind of request to a real
gateway on 127.0.0.1 (websocket and admin handshakes, the small GETs websockets answers, and
the HTTP handler's downloads, uploads and notebooks).

The gateway half; the pure half is tests/unit/test_hosts.py."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os

import pytest

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
