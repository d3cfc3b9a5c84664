"""The MCP server's side of the gateway: connections per token, a thread per MCP session.

The MCP server keeps no secret of its own: each MCP client's token (the HTTP bearer token, or
the one ``gateway mcp`` was started with for stdio) opens that client's own websocket to the
gateway, so the gateway checks it and owns threads by identity exactly as for any client.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import tempfile
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path

from websockets.exceptions import InvalidStatus

from gateway.client import GatewayClient, Thread


class GatewayBackend:
    """Talks to one gateway at ``url`` (``ws://HOST:PORT/ws``)."""

    def __init__(self, url: str, *, public_url: str | None = None, ssl=None) -> None:
        self.url = url
        self.ssl = ssl
        parts = urllib.parse.urlsplit(url)
        scheme = "https" if parts.scheme == "wss" else "http"
        # Where MCP clients download files from: the gateway's public address if it differs.
        self.files_base = (public_url or f"{scheme}://{parts.netloc}").rstrip("/")
        self._clients: dict[str, GatewayClient] = {}
        self._threads: dict[tuple[str, object], Thread] = {}
        self._lock = asyncio.Lock()

    async def client_for(self, token: str) -> GatewayClient:
        """This token's connection, opened on first use and again if it dropped."""
        async with self._lock:
            client = self._clients.get(token)
            if client is None or client.connection.close_code is not None:
                client = await GatewayClient.connect(self.url, token, ssl=self.ssl)
                self._clients[token] = client
            return client

    async def accepts(self, token: str) -> bool:
        """Does the gateway take this token? (It refuses the websocket handshake if not.)"""
        try:
            await self.client_for(token)
        except InvalidStatus:
            return False
        return True

    async def thread_for(self, token: str, session: object) -> Thread:
        """The thread of one MCP session: made on the session's first tool call."""
        client = await self.client_for(token)
        thread = self._threads.get((token, session))
        if thread is None or thread.client is not client:
            thread_id = thread.id if thread else f"mcp-{secrets.token_hex(8)}"
            thread = self._threads[(token, session)] = client.thread(thread_id)
        return thread

    def download_url(self, file_id: str) -> str:
        return f"{self.files_base}/files/{file_id}"

    async def close(self) -> None:
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                await client.close()
        self._clients.clear()


@contextlib.asynccontextmanager
async def embedded_gateway(data_dir: Path | None = None, **settings) -> AsyncIterator[
        tuple[str, str]]:
    """A gateway in this process on 127.0.0.1 (any free port) with a fresh token; yields
    ``(ws_url, token)``. Settings come from the environment (``GATEWAY_*``) and ``settings``."""
    from ...config import from_environment
    from ...embed import serve_embedded

    token = secrets.token_urlsafe(32)
    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_dir = Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix="gateway-mcp-")))
        values = {"host": "127.0.0.1", "port": 0, "pool_size": 1, **settings,
                  "data_dir": data_dir, "tokens": {token: "mcp"}}
        async with serve_embedded(from_environment(**values)) as embedded:
            yield embedded.url, token
