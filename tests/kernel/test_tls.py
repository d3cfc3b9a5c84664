"""TLS on the websocket/HTTP port and the upload port, with a CA the test makes (trustme)."""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import pytest_asyncio
import trustme
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidMessage

from gateway.client import GatewayClient, client_context
from support.gateways import start_gateway, stop_gateway, test_settings
from support.tls import make_pki

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def tls_gateway(pki, data_root):
    settings = test_settings(data_root / "tls", pool_size=1, max_kernels=4,
                             tls_cert=str(pki.cert_file), tls_key=str(pki.key_file))
    running = await start_gateway(settings)
    running.url = f"wss://127.0.0.1:{running.server.port}/ws"
    running.http = f"https://127.0.0.1:{running.server.port}"
    yield running
    await stop_gateway(running)


def fetch(url: str, context: ssl.SSLContext | None, token: str | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60,
                                    context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def test_cell_over_wss_download_and_upload_over_https(tls_gateway, pki):
    async with await GatewayClient.connect(tls_gateway.url, "tok-alice",
                                           ssl=pki.context()) as client:
        thread = client.thread("tls-cell")
        result = await thread.run("1 + 1")
        assert result.state == "complete" and result.output == "2\n"

        made = await thread.run("open('tls.csv', 'w').write('a,b\\n1,2\\n')")
        (announced,) = made.files
        assert await asyncio.to_thread(client.download, announced["file_id"]) == b"a,b\n1,2\n"

        uploaded = await asyncio.to_thread(client.upload_http, "tls-cell", "up.bin",
                                           b"x" * 100_000)
        assert uploaded["size"] == 100_000
        check = await thread.run("import os; os.path.getsize('up.bin')")
        assert check.output == "100000\n"
    await tls_gateway.gateway.close_thread("tls-cell", "alice")


async def test_untrusted_certificate_is_refused_by_clients(tls_gateway):
    with pytest.raises(ssl.SSLCertVerificationError):
        await GatewayClient.connect(tls_gateway.url, "tok-alice", ssl=ssl.create_default_context())


def plain_request(port: int) -> int | None:
    """A plain HTTP request to a TLS port: the HTTP status, or None when the server hung up."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("GET", "/healthz", headers={"Authorization": "Bearer tok-alice"})
        return connection.getresponse().status
    except (http.client.HTTPException, ConnectionError):
        return None
    finally:
        connection.close()


async def test_plain_connections_to_the_tls_port_are_refused(tls_gateway):
    gw = tls_gateway
    assert await asyncio.to_thread(plain_request, gw.server.port) is None
    with pytest.raises((InvalidMessage, ConnectionError)):
        async with connect(f"ws://127.0.0.1:{gw.server.port}/ws",
                           additional_headers={"Authorization": "Bearer tok-alice"},
                           open_timeout=60):
            pass
    status, body = await asyncio.to_thread(fetch, f"{gw.http}/healthz", _context_of(gw))
    assert status == 200 and json.loads(body)["status"] == "ok"


def _context_of(gw) -> ssl.SSLContext:
    return client_context(str(Path(gw.gateway.settings.tls_cert).parent / "ca.pem"))


async def test_certificate_reload_keeps_open_connections(tls_gateway, pki):
    async with await GatewayClient.connect(tls_gateway.url, "tok-alice",
                                           ssl=pki.context()) as client:
        thread = client.thread("tls-reload")
        assert (await thread.run("x = 41")).state == "complete"

        renewed = trustme.CA()
        pki.issue(renewed)
        try:
            summary = tls_gateway.server.reload(dataclasses.replace(tls_gateway.gateway.settings))
            assert summary["connections_closed"] == 0

            # The open connection carries on under the old certificate ...
            assert (await thread.run("x + 1")).output == "42\n"
            # ... new handshakes get the renewed one.
            with pytest.raises(ssl.SSLCertVerificationError):
                await GatewayClient.connect(tls_gateway.url, "tok-alice", ssl=pki.context())
            new_ca = pki.ca_file.parent / "renewed-ca.pem"
            renewed.cert_pem.write_to_path(str(new_ca))
            async with await GatewayClient.connect(
                    tls_gateway.url, "tok-alice", ssl=client_context(str(new_ca))) as second:
                result = await second.thread("tls-reload-2").run("'renewed'")
                assert result.output == "'renewed'\n"
        finally:
            pki.issue(pki.ca)
            tls_gateway.server.reload(dataclasses.replace(tls_gateway.gateway.settings))
    for tid in ("tls-reload", "tls-reload-2"):
        await tls_gateway.gateway.close_thread(tid, "alice")


async def test_a_broken_renewal_leaves_the_old_certificate_serving(tls_gateway, pki, tmp_path):
    other = trustme.CA().issue_cert("127.0.0.1")
    mismatched_key = tmp_path / "other-key.pem"
    other.private_key_pem.write_to_path(str(mismatched_key))
    bad = dataclasses.replace(tls_gateway.gateway.settings, tls_key=str(mismatched_key))
    with pytest.raises(ssl.SSLError):
        tls_gateway.server.reload(bad)
    status, _ = await asyncio.to_thread(fetch, f"{tls_gateway.http}/healthz", pki.context())
    assert status == 200


async def test_mutual_tls_requires_a_client_certificate(pki, data_root, tmp_path, monkeypatch):
    client_ca = trustme.CA()
    client_ca_file = tmp_path / "client-ca.pem"
    client_ca.cert_pem.write_to_path(str(client_ca_file))
    # A CA the system trusts (OpenSSL's default verify file) must not sign client certificates.
    system_ca = trustme.CA()
    system_ca.cert_pem.write_to_path(str(tmp_path / "system-ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "system-ca.pem"))
    settings = test_settings(data_root / "mtls", pool_size=0, max_kernels=2,
                             tls_cert=str(pki.cert_file), tls_key=str(pki.key_file),
                             tls_client_ca=str(client_ca_file))
    running = await start_gateway(settings)
    try:
        url = f"https://127.0.0.1:{running.server.port}/healthz"
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            await asyncio.to_thread(fetch, url, pki.context())

        def client_cert(ca: trustme.CA, name: str) -> ssl.SSLContext:
            issued = ca.issue_cert(f"{name}@clients.example")
            cert_file, key_file = tmp_path / f"{name}.pem", tmp_path / f"{name}-key.pem"
            issued.cert_chain_pems[0].write_to_path(str(cert_file))
            issued.private_key_pem.write_to_path(str(key_file))
            return client_context(str(pki.ca_file), str(cert_file), str(key_file))

        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            await asyncio.to_thread(fetch, url, client_cert(system_ca, "mallory"))
        context = client_cert(client_ca, "alice")
        status, body = await asyncio.to_thread(fetch, url, context)
        assert status == 200 and json.loads(body)["status"] == "ok"
        async with await GatewayClient.connect(f"wss://127.0.0.1:{running.server.port}/ws",
                                               "tok-alice", ssl=context) as client:
            await client.thread("mtls").subscribe()
    finally:
        await stop_gateway(running)
