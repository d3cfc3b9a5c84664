"""HTTP uploads of large files, streamed, on a port of their own.

websockets' server parses only GET requests (a handshake has no body), so a file too large to
send comfortably as base64 websocket messages is PUT here instead:

    PUT /threads/{thread_id}/files/{filename}     Authorization: Bearer TOKEN
    (body: the file's bytes; Content-Length or chunked)

The body goes through ``Gateway.upload`` in parts, the same path as websocket uploads (name
checks, size cap, no symlink followed), and the thread's listeners get the same
``file_uploaded`` chunk. h11 does the HTTP; this module only moves bytes and maps errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import secrets
import ssl
import urllib.parse

import h11
import orjson

from . import auth
from .app import Gateway
from .errors import GatewayError, ProtocolError
from .protocol import Upload

log = logging.getLogger(__name__)

PATH = re.compile(r"/threads/([^/?#]+)/files/([^?#]+)")
READ_BYTES = 256 * 2**10
PART_BYTES = 8 * 2**20  # written per worker-thread hop, not per socket read
IDLE_TIMEOUT = 60.0  # a client that sends nothing for this long is cut off
MAX_HEADER_BYTES = 16 * 2**10
MAX_CONCURRENT = 16  # uploads in flight; each buffers up to PART_BYTES
HTTP_STATUS = {
    "bad_request": 400, "bad_filename": 400, "bad_offset": 400,
    "unauthorized": 401, "forbidden": 403, "not_found": 404, "method_not_allowed": 405,
    "too_large": 413, "pool_exhausted": 503, "busy": 503, "upload_failed": 507,
}


class UploadServer:
    def __init__(self, gateway: Gateway, ssl_context: ssl.SSLContext | None = None) -> None:
        self.gateway = gateway
        self.ssl = ssl_context  # the websocket port's context: one certificate, one reload
        self.server: asyncio.Server | None = None
        self._slots = asyncio.Semaphore(MAX_CONCURRENT)

    async def start(self) -> None:
        s = self.gateway.settings
        self.server = await asyncio.start_server(self._serve, s.host, s.upload_port,
                                                 limit=READ_BYTES, ssl=self.ssl)

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # One request per connection: uploads are large and rare, keep-alive buys nothing.
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        try:
            if self._slots.locked():
                status, body = 503, {"error": {"code": "busy",
                                               "message": "too many uploads; try again later"}}
            else:
                async with self._slots:
                    status, body = await self._handle(conn, reader)
        except h11.RemoteProtocolError as exc:
            status, body = 400, {"error": {"code": "bad_request", "message": str(exc)}}
        except (TimeoutError, ConnectionError):
            writer.close()
            return
        except Exception:
            log.exception("HTTP upload failed")
            status, body = 500, {"error": {"code": "internal_error",
                                           "message": "the gateway failed to store the upload"}}
        payload = orjson.dumps(body)
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload))),
                   ("Connection", "close"), ("Cache-Control", "no-store")]
        try:
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                writer.write(conn.send(h11.Response(status_code=status, headers=headers)))
                writer.write(conn.send(h11.Data(data=payload)))
                writer.write(conn.send(h11.EndOfMessage()))
                await writer.drain()
        except (h11.LocalProtocolError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _next_event(self, conn: h11.Connection, reader: asyncio.StreamReader):
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await asyncio.wait_for(reader.read(READ_BYTES), IDLE_TIMEOUT)
            conn.receive_data(data)

    async def _handle(self, conn: h11.Connection,
                      reader: asyncio.StreamReader) -> tuple[int, dict]:
        request = await self._next_event(conn, reader)
        if not isinstance(request, h11.Request):
            raise h11.RemoteProtocolError("expected a request")
        try:
            session, first, call_id = self._route(request)
            result = await self._receive(conn, reader, session, first)
        except GatewayError as exc:
            return HTTP_STATUS.get(exc.code, 400), {"error": {"code": exc.code,
                                                              "message": str(exc)}}
        session.emit({"type": "file_uploaded", "content": result}, call_id)
        log.info("thread %s: HTTP upload of %d bytes", session.thread_id, result["size"],
                 extra={"thread_id": session.thread_id, "call_id": call_id})
        return 201, result

    def _route(self, request: h11.Request):
        target = request.target.decode("ascii", "replace")
        parts = urllib.parse.urlsplit(target)
        match = PATH.fullmatch(parts.path)
        if match is None:
            raise ProtocolError("expected PUT /threads/{thread_id}/files/{filename}",
                                code="not_found")
        if request.method not in (b"PUT", b"POST"):
            raise ProtocolError("use PUT", code="method_not_allowed")
        headers = {name.lower(): value for name, value in request.headers}
        bearer = headers.get(b"authorization", b"").decode("latin-1")
        identity = auth.identity_for(self.gateway.settings.tokens,
                                     bearer.removeprefix("Bearer ").strip()
                                     if bearer.startswith("Bearer ") else "")
        if identity is None:
            raise ProtocolError("missing or invalid token", code="unauthorized")
        length = headers.get(b"content-length")
        if length is not None and int(length) > self.gateway.settings.max_upload_total:
            raise ProtocolError(f"upload larger than {self.gateway.settings.max_upload_total} "
                                "bytes", code="too_large")
        try:
            thread_id = urllib.parse.unquote(match.group(1), errors="strict")
            filename = urllib.parse.unquote(match.group(2), errors="strict")
        except UnicodeDecodeError:
            raise ProtocolError("the path is not UTF-8 once decoded", code="bad_filename") from None
        call_id = urllib.parse.parse_qs(parts.query).get("call_id", [None])[0]
        # Validates the ids and the name before a byte of the body is read; the parts of the
        # body share this request's id (the call id, if the client gave one).
        first = Upload(thread_id, filename, b"", call_id=call_id or f"http_{secrets.token_hex(8)}",
                       final=False)
        session = self.gateway.thread(thread_id, identity, create=True)
        return session, first, call_id

    async def _receive(self, conn: h11.Connection, reader: asyncio.StreamReader, session,
                       first: Upload) -> dict:
        buffered: list[bytes] = []
        size = offset = 0
        while True:
            event = await self._next_event(conn, reader)
            if isinstance(event, h11.Data):
                buffered.append(bytes(event.data))
                size += len(event.data)
                if size - offset >= PART_BYTES:
                    offset = await self._write(session, first, buffered, offset, final=False)
            elif isinstance(event, h11.EndOfMessage):
                await self._write(session, first, buffered, offset, final=True)
                return {"filename": first.filename, "size": size,
                        "path": f"/mnt/data/{first.filename}"}
            else:
                raise h11.RemoteProtocolError("connection closed before the body ended")

    async def _write(self, session, first: Upload, buffered: list[bytes], offset: int, *,
                     final: bool) -> int:
        data = b"".join(buffered)
        buffered.clear()
        await self.gateway.upload(session, dataclasses.replace(first, data=data, offset=offset,
                                                               final=final))
        return offset + len(data)
