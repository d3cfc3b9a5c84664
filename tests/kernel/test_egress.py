"""Egress through the policy proxy, on this machine's loopback only (docs/egress.md).

A local package index (pypiserver) serves a wheel built here, and a local HTTPS server holds a
certificate from a throwaway CA; the kernels reach them under test names that the proxy's
resolver (replaced here, never a setting) maps to 127.0.0.1. The pure policy has its tests in
tests/unit/test_egress_policy.py."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.server
import socket
import ssl
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest
import trustme
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import MiB
from support.gateways import session_of, start_gateway, stop_gateway, test_settings

on_loop = pytest.mark.asyncio(loop_scope="session")
GUARD = 120.0  # seconds: only so that a wait that cannot end fails instead of hanging
BIG = 3 * MiB  # served by the HTTPS server; more than the gateway's byte limit below
BYTE_LIMIT = 2 * MiB
CONNECTIONS = 4
RESOLVED = {"pypi.test": "127.0.0.1", "tls.test": "127.0.0.1", "denied.test": "127.0.0.1",
            "rebind.test": "10.0.0.7", "api.test": "127.0.0.1"}
SECRET = "Bearer egress-test-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_wheel(directory: Path) -> Path:
    """A pure-Python wheel, written by hand: nothing to build, nothing fetched."""
    name, version = "egressdemo", "1.0"
    files = {
        f"{name}/__init__.py": b"VALUE = 'installed through the egress proxy'\n",
        f"{name}-{version}.dist-info/METADATA":
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{name}-{version}.dist-info/WHEEL":
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = f"{name}-{version}.dist-info/RECORD"
    lines = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        lines.append(f"{path},sha256={digest},{len(data)}")
    lines.append(f"{record},,")
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
        archive.writestr(record, "\n".join(lines) + "\n")
    return wheel


class Servers:
    """The package index and the HTTPS server, both on 127.0.0.1."""

    def __init__(self, root: Path) -> None:
        packages = root / "packages"
        packages.mkdir(parents=True)
        build_wheel(packages)
        self.index_port, self.tls_port, self.closed_port = free_port(), free_port(), free_port()
        self.index = subprocess.Popen(
            [sys.executable, "-m", "pypiserver", "run", "-p", str(self.index_port),
             "-i", "127.0.0.1", "-a", ".", "-P", ".", "--disable-fallback", str(packages)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.ca = trustme.CA()
        certificate = self.ca.issue_cert("tls.test", "denied.test", "rebind.test")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        certificate.configure_cert(context)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                body = b"x" * BIG if self.path == "/big" else b"hello over TLS\n"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.https = http.server.ThreadingHTTPServer(("127.0.0.1", self.tls_port), Handler)
        self.https.socket = context.wrap_socket(self.https.socket, server_side=True)
        threading.Thread(target=self.https.serve_forever, daemon=True).start()

        class API(http.server.BaseHTTPRequestHandler):
            """Says whether the operator's header arrived, never its value."""

            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                seen = self.headers.get_all("Authorization") or []
                body = f"authorized={seen == [SECRET]} host={self.headers['Host']}\n".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.api_port = free_port()
        self.api = http.server.ThreadingHTTPServer(("127.0.0.1", self.api_port), API)
        threading.Thread(target=self.api.serve_forever, daemon=True).start()

    async def wait_for_index(self) -> None:
        for _ in range(int(GUARD * 10)):
            try:
                with socket.create_connection(("127.0.0.1", self.index_port), timeout=1):
                    return
            except OSError:
                assert self.index.poll() is None, "pypiserver exited"
                await asyncio.sleep(0.1)
        raise AssertionError("pypiserver did not listen")

    def close(self) -> None:
        for server in (self.https, self.api):
            server.shutdown()
            server.server_close()
        self.index.terminate()
        self.index.wait(timeout=GUARD)


async def fake_resolve(host: str, port: int) -> list[str]:
    if host not in RESOLVED:
        raise OSError(f"test resolver: no such name {host!r}")
    return [RESOLVED[host]]


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    servers = Servers(tmp_path_factory.mktemp("egress-servers"))
    yield servers
    servers.close()


@pytest.fixture(scope="module")
async def egress(servers, data_root):
    await servers.wait_for_index()
    index, tls = servers.index_port, servers.tls_port
    settings = test_settings(
        data_root / "egress", pool_size=1, max_kernels=6,
        egress_allow=(f"pypi.test:{index}", f"tls.test:{tls}", f"denied.test:{tls}",
                      f"rebind.test:{tls}", f"api.test:{servers.api_port}",
                      f"127.0.0.1:{index}", f"127.0.0.1:{tls}", f"127.0.0.1:{servers.api_port}"),
        egress_headers={f"api.test:{servers.api_port}": f"Authorization: {SECRET}"},
        egress_deny=("denied.test",),
        identity_egress_allow={"bob": ""},  # bob: no egress at all
        egress_pip_index=f"http://pypi.test:{index}/simple/",
        egress_bytes_per_thread=BYTE_LIMIT, egress_connections_per_thread=CONNECTIONS,
        egress_header_timeout=5.0)
    running = await start_gateway(settings)
    assert running.gateway.egress is not None
    running.gateway.egress.resolve = fake_resolve
    yield running
    await stop_gateway(running)


def fetch_code(servers: Servers, url: str) -> str:
    """A cell that fetches ``url`` with the standard library, trusting the test CA."""
    pem = servers.ca.cert_pem.bytes().decode()
    return (f"import ssl, urllib.request\nopen('/tmp/ca.pem', 'w').write({pem!r})\n"
            "context = ssl.create_default_context(cafile='/tmp/ca.pem')\n"
            f"body = urllib.request.urlopen({url!r}, context=context, timeout=60).read()\n"
            "print(len(body), body[:40])")


@on_loop
async def test_pip_install_from_the_allowed_index(egress, servers):
    async with await egress.client() as client:
        thread = client.thread("pip")
        installed = await thread.run("%pip install egressdemo", wait=GUARD)
        assert installed.state == "complete", installed.output
        assert "Successfully installed egressdemo-1.0" in installed.output, installed.output
        used = installed.status["egress"]
        host = f"pypi.test:{servers.index_port}"
        assert [h["host"] for h in used["hosts"]] == [host], used
        assert used["bytes"] > 0
        imported = await thread.run("import egressdemo\nprint(egressdemo.VALUE)")
        assert imported.output == "installed through the egress proxy\n", imported.output


@on_loop
async def test_https_under_an_allowed_name(egress, servers, caplog):
    caplog.set_level("DEBUG")
    async with await egress.client() as client:
        thread = client.thread("https")
        fetched = await thread.run(fetch_code(servers, f"https://tls.test:{servers.tls_port}/"),
                                   wait=GUARD)
        assert fetched.output == "15 b'hello over TLS\\n'\n", fetched.output
        assert fetched.status["egress"]["hosts"][0]["host"] == f"tls.test:{servers.tls_port}"
    allowed = f"egress CONNECT tls.test:{servers.tls_port} (127.0.0.1) allowed"
    assert allowed in caplog.text, caplog.text
    assert "hello over TLS" not in caplog.text  # per thread what and how much, never a body


@on_loop
async def test_egress_follows_the_thread_to_its_next_kernel(egress, servers):
    """After a restart and after hibernation the thread holds another kernel: the socket moves
    with it, and the old kernel's is gone."""
    url = f"https://tls.test:{servers.tls_port}/"
    async with await egress.client() as client:
        thread = client.thread("moves")
        assert (await thread.run(fetch_code(servers, url), wait=GUARD)).output.startswith("15 ")
        session = session_of(egress.gateway, "moves")
        first = session.kernel.spec.runtime_dir / "egress.sock"
        assert first.exists()
        await thread.restart()
        again = await thread.run(fetch_code(servers, url), wait=GUARD)
        assert again.output.startswith("15 "), again.output
        assert session.egress.socket_path == session.kernel.spec.runtime_dir / "egress.sock"
        assert session.egress.socket_path != first and not first.exists()
        assert await asyncio.wait_for(session.hibernate("requested", wait=True), GUARD)
        assert session.egress.socket_path is None
        woke = await thread.run(fetch_code(servers, url), wait=GUARD)
        assert woke.output.startswith("15 "), woke.output


@on_loop
async def test_refusals_name_their_rule(egress, servers, caplog):
    caplog.set_level("INFO", logger="gateway.sandbox.egress_proxy")
    tls = servers.tls_port
    cases = {
        f"https://denied.test:{tls}/": f"denied.test:{tls} matches egress_deny 'denied.test'",
        f"https://rebind.test:{tls}/": "rebind.test resolves to 10.0.0.7, a private",
        f"https://tls.test:{servers.closed_port}/":
            f"port {servers.closed_port} is not listed; allowed: {tls}",
        "https://elsewhere.test/": "elsewhere.test:443 matches no rule of egress_allow",
    }
    async with await egress.client() as client:
        thread = client.thread("refused")
        for url, rule in cases.items():
            refused = await thread.run(fetch_code(servers, url), wait=GUARD)
            assert refused.state == "error", refused.output
            assert "Egress refused" in refused.output and rule in refused.output, refused.output
            assert rule in refused.status["egress"]["refused"][0], refused.status
        # Plain HTTP is refused with the same words, as the response's status line.
        plain = await thread.run(
            "import urllib.request, urllib.error\ntry:\n"
            "    urllib.request.urlopen('http://elsewhere.test/', timeout=60)\n"
            "except urllib.error.HTTPError as exc:\n    print(exc.code, exc.reason)", wait=GUARD)
        assert plain.output.startswith("403 Egress refused: elsewhere.test:80 matches no rule")
    refusals = [r for r in caplog.records if r.getMessage().endswith("matches egress_deny "
                                                                     "'denied.test'")]
    assert refusals and refusals[0].thread_id.endswith("refused"), caplog.text


@on_loop
async def test_an_execution_narrows_but_never_widens(egress, servers):
    tls = f"tls.test:{servers.tls_port}"
    async with await egress.client() as client:
        thread = client.thread("narrowed")
        narrowed = await thread.run(fetch_code(servers, f"https://{tls}/"), wait=GUARD,
                                    egress_allow=[f"pypi.test:{servers.index_port}"])
        assert f"{tls} is not in this execution's egress_allow" in narrowed.output
        widened = await thread.run(fetch_code(servers, "https://other.test/"), wait=GUARD,
                                   egress_allow=["other.test"])
        assert "other.test:443 matches no rule of egress_allow" in widened.output
        allowed = await thread.run(fetch_code(servers, f"https://{tls}/"), wait=GUARD,
                                   egress_allow=[tls])
        assert allowed.output.startswith("15 "), allowed.output
        bad = await thread.run("print(1)", egress_allow=["not a host"])
        assert bad.state == "protocol_error" and "egress_allow" in bad.error["message"]


@on_loop
async def test_a_configured_header_reaches_the_host_but_never_the_kernel(egress, servers, caplog):
    api = f"api.test:{servers.api_port}"
    caplog.set_level("DEBUG")
    async with await egress.client() as client:
        thread = client.thread("headers")
        called = await thread.run(
            "import os, urllib.request\n"
            f"request = urllib.request.Request('http://{api}/', headers={{'Host': 'x.test', "
            "'Authorization': 'a guess'})\n"
            "print(urllib.request.urlopen(request, timeout=60).read().decode(), end='')\n"
            "print(any('egress-test-secret' in v for v in os.environ.values()))", wait=GUARD)
    assert called.output == f"authorized=True host={api}\nFalse\n", called.output
    # A client that half-closes after its request still gets the whole answer.
    async with await egress.client() as client:
        half = await client.thread("headers").run(
            PROXY_SOCKET + "sock = connect()\n"
            f"sock.sendall(b'GET http://{api}/ HTTP/1.1\\r\\n\\r\\n')\n"
            "sock.shutdown(socket.SHUT_WR)\ndata = b''\n"
            "while chunk := sock.recv(1000):\n    data += chunk\n"
            "print(data.split(b'\\r\\n')[0].decode(), data.endswith(b'\\n'))", wait=GUARD)
    assert half.output == "HTTP/1.0 200 OK True\n", half.output
    assert "egress-test-secret" not in caplog.text
    assert "1 configured header(s) added" in caplog.text


@on_loop
async def test_an_identity_without_egress(egress, servers):
    async with await egress.client("tok-bob") as bob:
        refused = await bob.thread("bob").run(
            fetch_code(servers, f"https://tls.test:{servers.tls_port}/"), wait=GUARD)
        assert "egress is off for this thread" in refused.output, refused.output


PROXY_SOCKET = ("import os, socket\nproxy = os.environ['HTTPS_PROXY'].rsplit(':', 1)\n"
                "def connect():\n"
                "    sock = socket.create_connection((proxy[0][len('http://'):], int(proxy[1])))\n"
                "    sock.settimeout(60)\n    return sock\n"
                "def answer(sock):\n    data = b''\n"
                "    while chunk := sock.recv(1000):\n        data += chunk\n"
                "    return data.split(b'\\r\\n')[0].decode()\n")


@on_loop
async def test_a_slow_client_is_cut_off(egress, servers):
    """A request head that stops half-way (slow loris) gets 408 after egress_header_timeout
    and holds nothing; the thread's next connection works."""
    tls = f"tls.test:{servers.tls_port}"
    async with await egress.client() as client:
        thread = client.thread("slow")
        slow = await thread.run(
            PROXY_SOCKET + "import time\nsock = connect()\n"
            f"for byte in b'CONNECT {tls} HTTP/1.1\\r\\nHost':\n"
            "    sock.send(bytes([byte]))\n    time.sleep(0.05)\n"
            "print(answer(sock))", wait=GUARD)
        assert slow.output.startswith("HTTP/1.1 408 Egress refused: no complete request head"), \
            slow.output
        assert "no complete request head" in slow.status["egress"]["refused"][0]
        after = await thread.run(fetch_code(servers, f"https://{tls}/"), wait=GUARD)
        assert after.output.startswith("15 "), after.output


@on_loop
async def test_connections_per_thread_are_limited(egress, servers):
    """One connection more than the limit, all open at once: whichever reaches the proxy last
    is refused, the others are tunnelled."""
    connect = f"b'CONNECT tls.test:{servers.tls_port} HTTP/1.1\\r\\n\\r\\n'"
    async with await egress.client() as client:
        thread = client.thread("many")
        many = await thread.run(
            PROXY_SOCKET + f"held = [connect() for _ in range({CONNECTIONS + 1})]\n"
            f"for sock in held:\n    sock.sendall({connect})\n"
            "lines = []\nfor sock in held:\n    data = b''\n"
            "    while b'\\r\\n' not in data and (chunk := sock.recv(1)):\n"
            "        data += chunk\n    lines.append(data.decode().strip())\n"
            "for sock in held:\n    sock.close()\n"
            "print('\\n'.join(sorted(lines)))", wait=GUARD)
        assert many.output.splitlines() == [
            "HTTP/1.1 200 Connection established"] * CONNECTIONS + [
            f"HTTP/1.1 429 Egress refused: more than egress_connections_per_thread "
            f"({CONNECTIONS}) connections at once"], many.output


@on_loop
async def test_a_thread_over_its_byte_limit(egress, servers):
    tls = f"tls.test:{servers.tls_port}"
    async with await egress.client() as client:
        thread = client.thread("bytes")
        big = await thread.run(fetch_code(servers, f"https://{tls}/big"), wait=GUARD)
        assert big.state == "error", big.output  # cut off mid-body
        assert "egress_bytes_per_thread" in big.status["egress"]["refused"][0], big.status
        assert big.status["egress"]["thread_bytes"] > BYTE_LIMIT
        after = await thread.run(fetch_code(servers, f"https://{tls}/"), wait=GUARD)
        assert "the thread used its egress_bytes_per_thread" in after.output, after.output
        other = await client.thread("bytes-other").run(
            fetch_code(servers, f"https://{tls}/"), wait=GUARD)
        assert other.output.startswith("15 "), other.output  # the limit is per thread


@on_loop
async def test_metrics_count_allowed_and_refused(egress, servers):
    async with await egress.client() as client:
        thread = client.thread("metrics")
        await thread.run(fetch_code(servers, f"https://tls.test:{servers.tls_port}/"), wait=GUARD)
        await thread.run(fetch_code(servers, "https://elsewhere.test/"), wait=GUARD)
    counts = {sample.labels.get("outcome"): sample.value
              for family in text_string_to_metric_families(egress.gateway.metrics.render()
                                                           .decode())
              if family.name == "gateway_egress_requests"
              for sample in family.samples if sample.name.endswith("_total")}
    assert counts.get("allowed", 0) >= 1 and counts.get("refused", 0) >= 1, counts


@on_loop
async def test_without_a_policy_there_is_no_network(client, thread_id, servers):
    """The shared gateway sets no egress: no proxy, no forwarder, no route to the host."""
    result = await client.thread(thread_id).run(
        "import os, socket\nprint(sorted(k for k in os.environ if 'PROXY' in k.upper()))\n"
        f"for port in (3128, {servers.tls_port}):\n"
        "    try:\n        socket.create_connection(('127.0.0.1', port), timeout=5)\n"
        "    except OSError as exc:\n        print(port, 'refused', type(exc).__name__)\n"
        "try:\n    socket.getaddrinfo('pypi.org', 443)\nexcept OSError:\n"
        "    print('no DNS')", wait=GUARD)
    assert result.output == (f"[]\n3128 refused ConnectionRefusedError\n{servers.tls_port} "
                             "refused ConnectionRefusedError\nno DNS\n"), result.output
    assert "egress" not in result.status
