"""Running the MCP server: over stdio or Streamable HTTP, on a running or an embedded gateway."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Literal

from .backend import GatewayBackend, embedded_gateway
from .toolset import build_server

Transport = Literal["stdio", "http"]


@dataclass
class McpOptions:
    """What ``gateway mcp`` was asked for."""

    transport: Transport = "stdio"
    url: str | None = None  # a running gateway's ws URL; None starts an embedded one
    token: str | None = None  # the gateway token for stdio (HTTP clients bring their own)
    host: str = "127.0.0.1"
    port: int = 8770
    path: str = "/mcp"
    public_url: str | None = None  # where clients download files, if not the gateway's URL
    allow_local_paths: bool | None = None  # upload_file(local_path=...); default: stdio only


@contextlib.asynccontextmanager
async def gateway_backend(options: McpOptions) -> AsyncIterator[tuple[GatewayBackend, str]]:
    """The backend and the token stdio uses: the given gateway, or an embedded one."""
    async with contextlib.AsyncExitStack() as stack:
        url, token = options.url, options.token
        if url is None:
            # Its own name: unpacked straight into url, mypy would type it from url (Optional).
            embedded = await stack.enter_async_context(embedded_gateway())
            url, token = embedded
        backend = GatewayBackend(url, public_url=options.public_url)
        stack.push_async_callback(backend.close)
        yield backend, token or ""


async def serve(options: McpOptions,
                on_listening: Callable[[str], None] | None = None) -> None:
    """Serve until cancelled (HTTP) or until the client closes stdin (stdio)."""
    async with gateway_backend(options) as (backend, token):
        if options.transport == "stdio":
            local = True if options.allow_local_paths is None else options.allow_local_paths
            server = build_server(backend, token=token, allow_local_paths=local)
            await server.run_stdio_async()
            return
        await serve_http(backend, options, on_listening)


async def serve_http(backend: GatewayBackend, options: McpOptions,
                     on_listening: Callable[[str], None] | None = None) -> None:
    """Streamable HTTP with the gateway's tokens as bearer tokens (uvicorn on a socket bound
    here, so port 0 works and the URL is known before the first request)."""
    import uvicorn

    listener = socket.create_server((options.host, options.port))
    port = listener.getsockname()[1]
    host = f"[{options.host}]" if ":" in options.host else options.host
    url = f"http://{host}:{port}{options.path}"
    server = build_server(backend, allow_local_paths=bool(options.allow_local_paths),
                          http_url=url)
    app = server.streamable_http_app(streamable_http_path=options.path, host=options.host)
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    if on_listening is not None:
        on_listening(url)
    await uvicorn.Server(config).serve(sockets=[listener])
