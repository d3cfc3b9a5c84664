"""Signed short-lived tokens on a real gateway: minted by the admin endpoint or the library,
scoped to one identity and maybe named threads, refused alike when expired, tampered with or
signed with a rotated key, and never logged."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
import time
import urllib.parse

import pytest
import pytest_asyncio
from websockets.exceptions import InvalidStatus

from gateway import signed_tokens
from gateway.client import GatewayClient
from gateway.ops import redact
from support.gateways import start_gateway, stop_gateway, test_settings
from support.http import download, http_get

pytestmark = pytest.mark.asyncio(loop_scope="session")
ADMIN = "adm-token-for-minting"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gw(tmp_path_factory):
    running = await start_gateway(test_settings(tmp_path_factory.mktemp("signed"), pool_size=1,
                                                admin_token=ADMIN))
    yield running
    await stop_gateway(running)


async def minted(gw, query: str, token: str = ADMIN) -> tuple[int, dict]:
    import json

    status, body, headers = await http_get(f"{gw.http}/admin/token?{query}", token)
    if status == 200:
        assert headers["Cache-Control"] == "no-store"
    return status, json.loads(body)


async def refused(gw, token: str) -> int:
    with pytest.raises(InvalidStatus) as info:
        await GatewayClient.connect(gw.url, token, reconnect=False)
    return info.value.response.status_code


async def test_the_admin_endpoint_mints_and_refuses(gw) -> None:
    status, answer = await minted(gw, "identity=alice&thread=t1&thread=t2&ttl=5m")
    assert status == 200
    assert answer["identity"] == "alice" and answer["threads"] == ["t1", "t2"]
    assert answer["expires_in"] == 300 and answer["token"].startswith("gw1.")
    assert (await minted(gw, "identity=alice", token="tok-alice"))[0] == 401
    assert (await minted(gw, "identity=alice", token=""))[0] == 401
    for bad in ("identity=", "identity=alice&ttl=2d", "identity=alice&ttl=soon",
                "identity=alice&thread=..%2Fx"):
        assert (await minted(gw, bad))[0] == 400, bad


async def test_a_scoped_token_reaches_its_threads_and_nothing_else(gw) -> None:
    # Every logger at DEBUG through the gateway's formatter: websockets logs each header.
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(redact.RedactingFormatter(logging.Formatter("%(name)s %(message)s")))
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.DEBUG)
    try:
        await _scoped(gw)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    logged = stream.getvalue()
    assert "HTTP upload" in logged, "the handler saw the gateway's lines"
    assert "gw1." not in logged.replace("[redacted]", "")


async def _scoped(gw) -> None:
    owner = await GatewayClient.connect(gw.url, "tok-alice")
    try:
        other = await owner.thread("other").run("open('o.txt', 'w').write('x')")
        other_file = other.files[0]["file_id"]
    finally:
        await owner.close()
    _, answer = await minted(gw, "identity=alice&thread=mine")
    token = answer["token"]
    browser = await GatewayClient.connect(gw.url, token)
    try:
        result = await browser.thread("mine").run("open('m.txt', 'w').write('y'); print('ok')")
        assert result.state == "complete" and result.output == "ok\n"
        # Another of alice's threads: the answer of a thread that does not exist.
        denied = await browser.thread("other").run("print('no')")
        assert denied.state == "protocol_error"
        assert denied.error == {"code": "forbidden", "message": "unknown thread 'other'"}
    finally:
        await browser.close()
    status, body, _ = await download(gw.http, result.files[0]["file_id"], token)
    assert (status, body) == (200, b"y")
    assert (await download(gw.http, other_file, token))[0] == 404
    assert (await download(gw.http, other_file, "tok-alice"))[0] == 200
    for path in ("/threads/other/notebook", f"/threads/other/calls/{other.call_id}",
                 "/threads/nope/notebook"):
        assert (await http_get(gw.http + path, token))[0] == 404, path
    assert (await http_get(f"{gw.http}/threads/mine/calls/{result.call_id}", token))[0] == 200
    put = await asyncio.to_thread(_put, gw, "/threads/other/files/x.txt", token)
    assert put == 404
    assert await asyncio.to_thread(_put, gw, "/threads/mine/files/x.txt", token) == 201


def _put(gw, path: str, token: str) -> int:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", urllib.parse.urlsplit(gw.http).port,
                                            timeout=60)
    try:
        connection.request("PUT", path, body=b"abc", headers={"Authorization": f"Bearer {token}"})
        return connection.getresponse().status
    finally:
        connection.close()


async def test_expired_tampered_and_rotated_tokens_get_401(gw) -> None:
    key = gw.gateway.signing_key()
    expired = signed_tokens.mint(key, "alice", 60, now=time.time() - 120)
    assert await refused(gw, expired) == 401
    good = signed_tokens.mint(key, "alice", 600)
    payload, signature = good[4:].split(".")
    assert await refused(gw, f"gw1.{payload}x.{signature}") == 401
    assert (await http_get(f"{gw.http}/threads/t/notebook", expired))[0] == 401
    # Rotation: the open connection is closed at the reload, new ones are refused.
    connected = await GatewayClient.connect(gw.url, good, reconnect=False)
    try:
        signed_tokens.rotate_key(gw.gateway.settings.data_dir)
        assert await refused(gw, good) == 401
        gw.server.reload(dataclasses.replace(gw.gateway.settings))
        await asyncio.wait_for(connected.connection.wait_closed(), 60)
        assert connected.connection.close_code == 1008
    finally:
        await connected.close()
    fresh = signed_tokens.mint(gw.gateway.signing_key(), "alice", 600)
    assert fresh != good
    still = await GatewayClient.connect(gw.url, fresh, reconnect=False)
    await still.close()
