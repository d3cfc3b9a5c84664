"""``gateway mcp`` driven by the official ``mcp`` SDK's own client, over stdio (a real
``gateway mcp`` process) and over Streamable HTTP, against the shared real gateway."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import pytest_asyncio

mcp = pytest.importorskip("mcp")

import httpx2  # noqa: E402  (comes with mcp)
from mcp import Client, StdioServerParameters  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from mcp.types import EmbeddedResource, ImageContent, ResourceLink, TextContent  # noqa: E402

from gateway.integrations.mcp_server.backend import GatewayBackend  # noqa: E402
from gateway.integrations.mcp_server.run import McpOptions, serve_http  # noqa: E402

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parents[2]
TOOLS = {"run_code", "upload_file", "list_files", "read_file", "restart"}
CSV = "region,units\nNorth,12\nSouth,30\nEast,7\n"
DOCX_CODE = """\
import hashlib
from docx import Document
doc = Document()
doc.add_heading("Units by region", 0)
doc.add_paragraph(f"total units: {units}")
doc.save("report.docx")
print("sha256", hashlib.sha256(open("report.docx", "rb").read()).hexdigest())
"""


@pytest_asyncio.fixture(loop_scope="session")
async def mcp_http(running):
    """``gateway mcp --transport http`` on a free port, in this event loop."""
    backend = GatewayBackend(running.url)
    listening: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    options = McpOptions(transport="http", url=running.url, port=0)
    task = asyncio.create_task(serve_http(backend, options, listening.set_result))
    url = await listening
    yield url
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await backend.close()


def http_client(url: str, token: str | None, mode: str = "auto") -> Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    transport = streamable_http_client(url, http_client=httpx2.AsyncClient(
        headers=headers, timeout=httpx2.Timeout(30, read=300)))
    return Client(transport, mode=mode)


def stdio_client(running, token: str = "tok-alice") -> Client:
    env = {"GATEWAY_TOKEN": token, "PYTHONPATH": str(ROOT)}
    env.update({k: os.environ[k] for k in ("PATH", "HOME") if k in os.environ})
    return Client(StdioServerParameters(command=sys.executable,
                                        args=["-m", "gateway", "mcp", "--url", running.url],
                                        env=env, cwd=str(ROOT)))


def text_of(result) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


def fetch(url: str, token: str) -> bytes:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read()


async def exercise(client: Client) -> None:
    """The whole tour: the same for every transport."""
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == TOOLS
    assert "/mnt/data" in tools["run_code"].description
    assert "persist" in tools["run_code"].description
    assert tools["run_code"].input_schema["required"] == ["code"]

    first = await client.call_tool("run_code", {"code": "x = 41\nprint('set')"})
    assert not first.is_error and text_of(first) == "set"
    second = await client.call_tool("run_code", {"code": "print(x + 1)"})
    assert text_of(second) == "42"  # the same kernel: state persisted
    assert second.structured_content["state"] == "complete"
    assert second.structured_content["execution_count"] == first.structured_content[
        "execution_count"] + 1

    upload = await client.call_tool("upload_file", {"filename": "sales.csv", "text": CSV})
    assert not upload.is_error, text_of(upload)
    read = await client.call_tool("run_code", {"code": (
        "import pandas as pd\nunits = int(pd.read_csv('sales.csv')['units'].sum())\n"
        "print(units)")})
    assert text_of(read) == "49"

    plot = await client.call_tool("run_code", {"code": (
        "import matplotlib.pyplot as plt\nplt.bar(['a', 'b'], [1, 3])\nplt.show()")})
    images = [c for c in plot.content if isinstance(c, ImageContent)]
    assert len(images) == 1 and images[0].mime_type == "image/png"
    assert base64.b64decode(images[0].data).startswith(b"\x89PNG\r\n\x1a\n")

    report = await client.call_tool("run_code", {"code": DOCX_CODE})
    assert not report.is_error, text_of(report)
    digest = text_of(report).split("sha256 ", 1)[1].split()[0]
    (link,) = [c for c in report.content if isinstance(c, ResourceLink)]
    assert link.name == "report.docx"
    assert link.mime_type == ("application/vnd.openxmlformats-officedocument"
                              ".wordprocessingml.document")
    assert [f["url"] for f in report.structured_content["files"]] == [str(link.uri)]
    data = await asyncio.to_thread(fetch, str(link.uri), "tok-alice")
    assert hashlib.sha256(data).hexdigest() == digest

    listing = await client.call_tool("list_files", {})
    paths = {f["path"]: f["size"] for f in listing.structured_content["files"]}
    assert paths["sales.csv"] == len(CSV) and "report.docx" in paths
    content = await client.call_tool("read_file", {"path": "sales.csv"})
    (resource,) = content.content
    assert isinstance(resource, EmbeddedResource) and resource.resource.text == CSV
    capped = await client.call_tool("read_file", {"path": "report.docx", "max_bytes": 100})
    assert capped.structured_content["truncated"] is True
    assert len(base64.b64decode(capped.content[0].resource.blob)) == 100

    failed = await client.call_tool("run_code", {"code": "1 / 0"})
    assert failed.is_error and "ZeroDivisionError" in text_of(failed)
    assert failed.structured_content["state"] == "error"

    restarted = await client.call_tool("restart", {})
    assert not restarted.is_error, text_of(restarted)
    after = await client.call_tool("run_code", {"code": "print('x' in globals())"})
    assert text_of(after) == "False"


async def test_stdio(running):
    async with stdio_client(running) as client:
        await exercise(client)


# "auto" speaks the sessionless 2026 revision (one thread per token); "legacy" the
# initialize handshake with an Mcp-Session-Id (one thread per session).
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_streamable_http(mcp_http, mode):
    async with http_client(mcp_http, "tok-alice", mode) as client:
        await exercise(client)


async def test_http_sessions_are_separate_threads(mcp_http):
    async with http_client(mcp_http, "tok-alice", "legacy") as one, \
            http_client(mcp_http, "tok-alice", "legacy") as other:
        await one.call_tool("run_code", {"code": "secret = 1"})
        seen = await other.call_tool("run_code", {"code": "print('secret' in globals())"})
        assert text_of(seen) == "False"


@pytest.mark.parametrize("token", [None, "wrong-token"])
async def test_http_refused_without_a_gateway_token(mcp_http, token):
    def post() -> int:
        headers = {"Content-Type": "application/json",
                   "Accept": "application/json, text/event-stream"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        body = (b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": '
                b'{"name": "run_code", "arguments": {"code": "print(1)"}}}')
        request = urllib.request.Request(mcp_http, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    assert await asyncio.to_thread(post) == 401
    with pytest.raises(Exception):  # noqa: B017 - the SDK's own error for a 401
        async with http_client(mcp_http, token) as client:
            await client.list_tools()
