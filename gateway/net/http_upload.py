"""HTTP uploads of large files, streamed: ``PUT /threads/{thread_id}/files/{filename}``.

    PUT /threads/{thread_id}/files/{filename}     Authorization: Bearer TOKEN
    (body: the file's bytes; Content-Length or chunked)

Served on the websocket's own port (``gateway/net/front.py`` hands non-websocket requests to
``gateway/net/http_handler.py``, which calls ``UploadHandler``). The body goes through
``Gateway.upload`` in parts, the same path as websocket uploads (name checks, size cap, no
symlink followed), and the thread's listeners get the same ``file_uploaded`` chunk. h11 does
the HTTP; this module only moves bytes and maps errors.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import logging
import re
import secrets
import urllib.parse

import h11

from ..app import Gateway
from ..cluster.relay import IDENTITY_HEADER, SECRET_HEADER
from ..errors import GatewayError, ProtocolError
from ..signed_tokens import Access
from ..wire.protocol import Upload
from .http11 import next_event

PLACEMENT_ATTEMPTS = 3

log = logging.getLogger(__name__)

PATH = re.compile(r"/threads/([^/?#]+)/files/([^?#]+)")
PART_BYTES = 8 * 2**20  # written per worker-thread hop, not per socket read
MAX_CONCURRENT = 16  # uploads in flight; each buffers up to PART_BYTES
HTTP_STATUS = {
    "bad_request": 400, "bad_filename": 400, "bad_offset": 400,
    "unauthorized": 401, "forbidden": 403, "not_found": 404, "method_not_allowed": 405,
    "thread_moved": 409, "too_large": 413, "pool_exhausted": 503, "busy": 503, "upload_failed": 507,
}


@dataclasses.dataclass(frozen=True)
class Elsewhere:
    """Cluster: another node owns the upload's thread."""

    node_id: str
    thread_id: str
    identity: str
    content_length: bytes | None


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


class UploadHandler:
    """One PUT: checks from the head alone (route, token, ownership, size), then the body in
    parts of ``PART_BYTES`` into ``Gateway.upload``."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._slots = asyncio.Semaphore(MAX_CONCURRENT)

    async def handle(self, conn: h11.Connection, request: h11.Request,
                     reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> tuple[int, dict]:
        """(status, JSON body) for an upload request whose head h11 has parsed."""
        if self._slots.locked():
            return 503, error_body("busy", "too many uploads; try again later")
        async with self._slots:
            return await self._handle(conn, request, reader, writer)

    async def _handle(self, conn: h11.Connection, request: h11.Request,
                      reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> tuple[int, dict]:
        try:
            routed = await self._route(request)
            if isinstance(routed, Elsewhere):
                answer = await self._forward(routed, request, conn, reader, writer)
                if answer is not None:
                    return answer
                routed = await self._route(request)  # the thread came to this node meanwhile
                if isinstance(routed, Elsewhere):
                    return 503, error_body("thread_moved", "the thread keeps moving between "
                                           "nodes; send the upload again")
            session, first, call_id = routed
            if conn.they_are_waiting_for_100_continue:
                # curl sends Expect: 100-continue for large bodies and otherwise waits a second.
                writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
            result = await self._receive(conn, reader, session, first)
        except GatewayError as exc:
            return HTTP_STATUS.get(exc.code, 400), error_body(exc.code, str(exc))
        session.emit({"type": "file_uploaded", "content": result}, call_id)
        log.info("thread %s: HTTP upload of %d bytes", session.thread_id, result["size"],
                 extra={"thread_id": session.client_thread_id, "identity": session.owner,
                        "call_id": call_id})
        return 201, result

    async def _route(self, request: h11.Request):
        target = request.target.decode("ascii", "replace")
        parts = urllib.parse.urlsplit(target)
        match = PATH.fullmatch(parts.path)
        if match is None:
            raise ProtocolError("expected PUT /threads/{thread_id}/files/{filename}",
                                code="not_found")
        if request.method not in (b"PUT", b"POST"):
            raise ProtocolError("use PUT", code="method_not_allowed")
        headers = {name.lower(): value for name, value in request.headers}
        access, internal = self._identity(headers)
        if access is None:
            raise ProtocolError("missing or invalid token", code="unauthorized")
        identity = access.identity
        length = headers.get(b"content-length")
        if length is not None and int(length) > self.gateway.settings.max_upload_total:
            raise ProtocolError(f"upload larger than {self.gateway.settings.max_upload_total} "
                                "bytes", code="too_large")
        try:
            thread_id = urllib.parse.unquote(match.group(1), errors="strict")
            filename = urllib.parse.unquote(match.group(2), errors="strict")
        except UnicodeDecodeError:
            raise ProtocolError("the path is not UTF-8 once decoded", code="bad_filename") from None
        if not access.allows(thread_id):
            raise ProtocolError(f"unknown thread {thread_id!r}", code="not_found")
        call_id = urllib.parse.parse_qs(parts.query).get("call_id", [None])[0]
        # Validates the ids and the name before a byte of the body is read; the parts of the
        # body share this request's id (the call id, if the client gave one).
        first = Upload(thread_id, filename, b"", call_id=call_id or f"http_{secrets.token_hex(8)}",
                       final=False)
        if self.gateway.cluster is not None:
            # The bytes must land in the working directory of the kernel that runs the
            # thread's cells: served here if this node holds (or now claims) the thread, else
            # streamed on to the node that does (after the same identity check as here).
            node_id = await self.gateway.cluster.place(thread_id, identity, internal=internal)
            if node_id is not None:
                if internal:  # never relayed twice: the sending node places it again
                    raise ProtocolError(f"thread {thread_id!r} is served by node {node_id}",
                                        code="thread_moved")
                return Elsewhere(node_id, thread_id, identity,
                                 headers.get(b"content-length"))
        session = self.gateway.thread(thread_id, identity, create=True)
        return session, first, call_id

    def _identity(self, headers: dict[bytes, bytes]) -> tuple[Access | None, bool]:
        """The uploader's identity, and whether another node of the cluster sent the request
        for its client (the cluster secret instead of a client token)."""
        settings = self.gateway.settings
        offered = headers.get(SECRET_HEADER.lower().encode())
        if offered is not None:
            secret = settings.cluster_token
            if self.gateway.cluster is None or not secret or not hmac.compare_digest(
                    offered, secret.encode()):
                return None, True
            identity = headers.get(IDENTITY_HEADER.lower().encode(), b"").decode("utf-8",
                                                                                 "replace")
            return (Access(identity) if identity else None), True
        bearer = headers.get(b"authorization", b"").decode("latin-1")
        return self.gateway.access_for(bearer.removeprefix("Bearer ").strip()
                                       if bearer.startswith("Bearer ") else ""), False

    async def _forward(self, elsewhere: Elsewhere, request: h11.Request, conn: h11.Connection,
                       reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> tuple[int, dict] | None:
        """Cluster: stream the upload to the node that owns the thread; its answer is ours.
        Placed again if that node gave the thread up (or cannot be reached) before the body;
        None if it is this node's now."""
        from .forward import Lost, Refused, Unreachable, forward_upload

        node = self.gateway.cluster
        assert node is not None  # only a cluster places a thread elsewhere
        target = elsewhere.node_id
        for attempt in range(PLACEMENT_ATTEMPTS):
            if attempt:
                placed = await node.place(elsewhere.thread_id, elsewhere.identity,
                                          internal=False)
                if placed is None:
                    return None  # now served here
                target = placed
            url = node.live.get(target, {}).get("advertise_url")
            try:
                if not url:
                    raise OSError(f"node {target} has no address in the registry")
                return await forward_upload(
                    url, request.target, elsewhere.content_length,
                    secret=self.gateway.settings.cluster_token, identity=elsewhere.identity,
                    from_node=node.node_id, client=conn, reader=reader, writer=writer)
            except Refused as refused:
                if refused.code != "thread_moved":
                    return refused.status, refused.body
                node.live = await node.registry.live_nodes()
            except Lost as exc:
                return 503, error_body("node_lost", f"the node serving thread "
                                       f"{elsewhere.thread_id!r} was lost during the upload "
                                       f"({exc}); send it again")
            except Unreachable as exc:
                log.warning("upload for thread %s: node %s unreachable (%s)",
                            elsewhere.thread_id, target, exc)
                await node.wait_for_expiry(elsewhere.thread_id, elsewhere.identity, target)
        return 503, error_body("pool_exhausted", f"thread {elsewhere.thread_id!r}: no node "
                               "could take the upload")

    async def _receive(self, conn: h11.Connection, reader: asyncio.StreamReader, session,
                       first: Upload) -> dict:
        buffered: list[bytes] = []
        size = offset = 0
        while True:
            event = await next_event(conn, reader)
            if isinstance(event, h11.Data):
                buffered.append(bytes(event.data))
                size += len(event.data)
                if size - offset >= PART_BYTES:
                    offset = (await self._write(session, first, buffered, offset,
                                                final=False))["received"]
            elif isinstance(event, h11.EndOfMessage):
                # filename, size, path (and in a cluster the stored file's file_id, sha256)
                return await self._write(session, first, buffered, offset, final=True)
            else:
                raise h11.RemoteProtocolError("connection closed before the body ended")

    async def _write(self, session, first: Upload, buffered: list[bytes], offset: int, *,
                     final: bool) -> dict:
        data = b"".join(buffered)
        buffered.clear()
        return await self.gateway.upload(session, dataclasses.replace(
            first, data=data, offset=offset, final=final))
