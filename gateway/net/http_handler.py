"""Plain HTTP requests that are not websocket handshakes: downloads and uploads.

``gateway/net/front.py`` hands a connection here (with the bytes it already read) when its first
request is not for websockets: ``GET``/``HEAD /files/{id}`` streams a stored file
(``gateway/net/downloads.py``), ``PUT /threads/{id}/files/{name}`` receives one
(``gateway/net/http_upload.py``). One request per connection: downloads and uploads are large, so
keep-alive would save nothing worth the state. Every connection is tracked so a shutdown can
cut the ones still sending.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import urllib.parse

import h11

from .. import hosts
from ..app import Gateway
from ..wire.protocol import client_thread_id
from . import downloads, http11, tls
from .http_upload import UploadHandler, error_body
from .jupyter_kernels import JupyterKernels, is_jupyter_path, split_path

log = logging.getLogger(__name__)

MAX_DOWNLOADS = 64  # at once; each holds an open file and a socket, not a buffer
MAX_JUPYTER_BODY = 64 * 2**10  # a kernel start request is a name and a few variables
NOTEBOOK_PATH = re.compile(r"/threads/([^/]+)/notebook")


def bearer_of(headers: dict[str, str], target: str) -> str | None:
    """The token of a request: ``Authorization: Bearer T``, else ``?token=T`` (browsers)."""
    value = headers.get("authorization", "")
    if value.startswith("Bearer "):
        return value[len("Bearer "):].strip()
    query = urllib.parse.urlsplit(target).query
    return urllib.parse.parse_qs(query).get("token", [None])[0]


class HttpHandler:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.uploads = UploadHandler(gateway)
        self.jupyter = JupyterKernels(gateway)
        self._downloads = asyncio.Semaphore(MAX_DOWNLOADS)
        self._writers: set[asyncio.StreamWriter] = set()
        # Which Host headers are answered depends on it (gateway/net/hosts.py); the address is
        # fixed for the life of the server.
        self.loopback = tls.is_loopback(gateway.settings.host)

    def host_allowed(self, host_headers: list[str]) -> bool:
        """May a request with these Host headers be answered (DNS rebinding)? The websocket
        side asks this too, so both halves of the port follow one rule."""
        return hosts.request_allowed(host_headers, self.gateway.settings, loopback=self.loopback)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer the one request on this connection, then close it."""
        conn = http11.new_connection()
        self._writers.add(writer)
        try:
            request = await http11.next_event(conn, reader)
            if not isinstance(request, h11.Request):
                raise h11.RemoteProtocolError("expected a request")
            await self._route(conn, request, reader, writer)
        except h11.RemoteProtocolError as exc:
            await self._answer(conn, writer, 400, error_body("bad_request", str(exc)))
        except (TimeoutError, ConnectionError, h11.LocalProtocolError):
            writer.transport.abort()  # stalled or gone: nothing useful can be said
        except Exception:
            log.exception("HTTP request failed")
            await self._answer(conn, writer, 500, error_body(
                "internal_error", "the gateway failed to answer this request"))
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _answer(self, conn, writer, status: int, body: object, head: bool = False) -> None:
        with contextlib.suppress(ConnectionError, h11.LocalProtocolError):
            await http11.send_json(conn, writer, status, body, head=head)

    async def _route(self, conn: h11.Connection, request: h11.Request,
                     reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        target = request.target.decode("ascii", "replace")
        path = urllib.parse.urlsplit(target).path
        host_headers = [value.decode("ascii", "replace") for name, value in request.headers
                        if name == b"host"]
        if not self.host_allowed(host_headers):
            await self._answer(conn, writer, hosts.REFUSAL_STATUS, hosts.REFUSAL,
                               head=request.method == b"HEAD")
            return
        if path.startswith("/files/"):
            await self._download(conn, request, target, path, writer)
            return
        if is_jupyter_path(path):
            await self._jupyter(conn, request, reader, writer, target, path)
            return
        if match := NOTEBOOK_PATH.fullmatch(path):
            await self._notebook(conn, request, target, urllib.parse.unquote(match.group(1)),
                                 writer)
            return
        # Everything else is an upload or the upload handler's 404/405.
        status, body = await self.uploads.handle(conn, request, reader, writer)
        await self._answer(conn, writer, status, body)

    async def _jupyter(self, conn: h11.Connection, request: h11.Request,
                       reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: str,
                       path: str) -> None:
        """Jupyter's kernel gateway REST API (``gateway/net/jupyter_kernels.py``)."""
        headers = http11.headers_of(request)
        identity = self.jupyter.identity(headers.get("authorization", ""), target)
        if identity is None:
            await self._answer(conn, writer, 401, {"message": "missing or invalid token"})
            return
        body = bytearray()
        while not isinstance(event := await http11.next_event(conn, reader), h11.EndOfMessage):
            if isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_JUPYTER_BODY:
                    await self._answer(conn, writer, 413, {"message": "body too large"})
                    return
        path = split_path(path)[1]
        status, answer = await self.jupyter.answer(request.method.decode("ascii", "replace"),
                                                   path.rstrip("/") or "/", identity,
                                                   bytes(body))
        if status == 204:
            await http11.send_head(conn, writer, 204, [("Cache-Control", "no-store")])
            writer.write(conn.send(h11.EndOfMessage()))
            await writer.drain()
            return
        await self._answer(conn, writer, status, answer)

    async def _download(self, conn: h11.Connection, request: h11.Request, target: str,
                        path: str, writer: asyncio.StreamWriter) -> None:
        method = request.method.decode("ascii", "replace")
        head = method == "HEAD"
        if method not in ("GET", "HEAD"):
            await self._answer(conn, writer, 405, {"error": "use GET or HEAD"})
            return
        headers = http11.headers_of(request)
        access = self.gateway.access_for(bearer_of(headers, target))
        if access is None:
            await self._answer(conn, writer, 401, {"error": "missing or invalid token"}, head)
            return
        match = downloads.FILE_PATH.fullmatch(path)
        stored = self.gateway.store.get(match.group(1), access.identity) if match else None
        if stored is not None and not access.allows(client_thread_id(stored.thread_id)):
            stored = None  # a signed token's other threads: as unknown as anyone else's
        if stored is None:  # unknown and not-yours look the same
            await self._answer(conn, writer, 404, {"error": "no such file"}, head)
            return
        if self._downloads.locked():
            await self._answer(conn, writer, 503, {"error": "too many downloads; retry"}, head)
            return
        async with self._downloads:
            plan = downloads.plan(method, headers, stored)
            try:
                # Another node's file is fetched from the object store first (cluster).
                local = await asyncio.to_thread(self.gateway.store.path, stored)
            except FileNotFoundError:
                await self._answer(conn, writer, 503, {
                    "error": "the file is not in the shared store yet; retry"}, head)
                return
            await http11.send_head(conn, writer, plan.status, plan.headers)
            if plan.length:
                await downloads.send_body(writer, local, plan.offset, plan.length)
            await writer.drain()

    async def _notebook(self, conn: h11.Connection, request: h11.Request, target: str,
                        thread_id: str, writer: asyncio.StreamWriter) -> None:
        """``GET /threads/{id}/notebook``: the thread's cells as ``.ipynb``, owner only (404
        otherwise, exactly like a thread that ran nothing)."""
        if request.method != b"GET":
            await self._answer(conn, writer, 405, {"error": "use GET"})
            return
        headers = http11.headers_of(request)
        access = self.gateway.access_for(bearer_of(headers, target))
        if access is None:
            await self._answer(conn, writer, 401, {"error": "missing or invalid token"})
            return
        body = (await self.gateway.notebook(thread_id, access.identity)
                if access.allows(thread_id) else None)
        if body is None:
            await self._answer(conn, writer, 404, {"error": "no such notebook"})
            return
        await http11.send_head(conn, writer, 200, [
            ("Content-Type", "application/x-ipynb+json"), ("Content-Length", str(len(body))),
            ("Content-Disposition", downloads.content_disposition(f"{thread_id}.ipynb")),
            ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")])
        writer.write(conn.send(h11.Data(data=body)))
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()

    def close(self) -> None:
        """Cut every connection still open (a shutdown does not wait for a long download)."""
        for writer in list(self._writers):
            writer.transport.abort()
