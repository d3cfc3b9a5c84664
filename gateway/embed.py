"""The one place that starts a gateway: the library's ``Gateway`` behind its server, on one port.

``gateway serve``, ``gateway exec``, the MCP server's own gateway, the tests and the
benchmarks all start one here, so start-up and clean-up happen in one order everywhere.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from .app import Gateway
from .config import Settings
from .net import tls
from .net.server import GatewayServer


@dataclass
class Embedded:
    """A started gateway and its server."""

    gateway: Gateway
    server: GatewayServer

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        """The websocket endpoint, as clients connect to it."""
        _, ws = tls.schemes(self.gateway.settings)
        return f"{ws}://{self.gateway.settings.host}:{self.port}/ws"

    @property
    def http(self) -> str:
        """The base of the HTTP endpoints on the same port."""
        web, _ = tls.schemes(self.gateway.settings)
        return f"{web}://{self.gateway.settings.host}:{self.port}"

    async def close(self) -> None:
        """Stop at once (``server.shutdown`` is the graceful stop)."""
        await self.server.close()
        await self.gateway.close()


async def start_embedded(settings: Settings) -> Embedded:
    """Start a gateway (kernels checked, pool filled) and its server; the caller closes it."""
    gateway = Gateway(settings)
    await gateway.start()
    server = GatewayServer(gateway)
    try:
        await server.start()
    except BaseException:
        await gateway.close()
        raise
    gateway.data_lock.set_port(server.port)
    return Embedded(gateway, server)


@asynccontextmanager
async def serve_embedded(settings: Settings) -> AsyncIterator[Embedded]:
    """A gateway for the length of a ``with`` block."""
    embedded = await start_embedded(settings)
    try:
        yield embedded
    finally:
        await embedded.close()
