"""An HTTP upload for a thread another node owns, streamed on to that node.

The receiving node has checked the client's token and that the thread is the client's; it then
sends the same ``PUT`` to the owner's own port with the cluster secret and the client's identity
instead of the client's token (the client's headers are not passed on: the node token never
reaches a client or a kernel, the client token never reaches another node). The request asks
``Expect: 100-continue``: the owner checks everything it can from the head first, so a refusal
(``thread_moved`` after a race, ``forbidden``, ``too_large``) comes back before a byte of the body
is sent and the thread can be placed again. Then the body goes through as it arrives, and the
owner's answer (``filename``, ``size``, ``path``, ``file_id``, ``sha256``) is the client's answer.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.parse

import h11
import orjson

from ..cluster.relay import IDENTITY_HEADER, NODE_HEADER, SECRET_HEADER
from . import http11

CONNECT_TIMEOUT = 3.0
ANSWER_TIMEOUT = 600.0  # the owner stores the file (maybe in the bucket) before it answers


class Unreachable(Exception):
    """The owner could not be reached or broke off before the body: place the thread again."""


class Lost(Exception):
    """The owner broke off after the body started (the client must send it again)."""


class Refused(Exception):
    """The owner answered before taking the body: (status, JSON body)."""

    def __init__(self, status: int, body: dict) -> None:
        super().__init__(status)
        self.status, self.body = status, body

    @property
    def code(self) -> str | None:
        error = self.body.get("error") if isinstance(self.body, dict) else None
        return error.get("code") if isinstance(error, dict) else None


def http_address(advertise_url: str) -> tuple[str, int, bool]:
    """``ws://host:port`` (the node's websocket address, also its HTTP port) -> host, port, tls."""
    parts = urllib.parse.urlsplit(advertise_url)
    tls = parts.scheme in ("wss", "https")
    if not parts.hostname:
        raise OSError(f"bad advertise_url {advertise_url!r}")
    return parts.hostname, parts.port or (443 if tls else 80), tls


async def forward_upload(advertise_url: str, target: bytes, content_length: bytes | None, *,
                         secret: str, identity: str, from_node: str,
                         client: h11.Connection, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> tuple[int, dict]:
    """Stream the client's upload body to the owner; (status, JSON body) of its answer.
    Raises ``Refused`` when the owner refused from the head alone and ``Unreachable`` when it
    could not be reached (in both cases no body byte was read from the client), ``Lost`` when it
    broke off after the body started."""
    try:
        host, port, tls = http_address(advertise_url)
        context = ssl.create_default_context() if tls else None
        owner_reader, owner_writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context, limit=http11.READ_BYTES),
            CONNECT_TIMEOUT)
    except OSError as exc:  # TimeoutError included
        raise Unreachable(str(exc) or type(exc).__name__) from exc
    try:
        owner = h11.Connection(h11.CLIENT, max_incomplete_event_size=http11.MAX_HEADER_BYTES)
        named = f"[{host}]" if ":" in host else host  # an IPv6 literal keeps its brackets
        headers = [("Host", f"{named}:{port}"), ("Expect", "100-continue"),
                   (SECRET_HEADER, secret), (IDENTITY_HEADER, identity),
                   (NODE_HEADER, from_node), ("Connection", "close")]
        if content_length is not None:
            headers.append(("Content-Length", content_length.decode("ascii")))
        else:
            headers.append(("Transfer-Encoding", "chunked"))
        try:
            owner_writer.write(owner.send(h11.Request(method="PUT", target=target,
                                                      headers=headers)))
            await owner_writer.drain()
            event = await _owner_event(owner, owner_reader)
            if isinstance(event, h11.Response):
                raise Refused(*await _answer(owner, owner_reader, event))
            if not isinstance(event, h11.InformationalResponse):
                raise ConnectionResetError("the owning node did not answer the upload")
        except OSError as exc:
            raise Unreachable(str(exc) or type(exc).__name__) from exc
        if client.they_are_waiting_for_100_continue:
            writer.write(client.send(h11.InformationalResponse(status_code=100, headers=[])))
        await _pump(client, reader, owner, owner_writer)
        try:
            event = await _owner_event(owner, owner_reader)
            while not isinstance(event, h11.Response):
                if isinstance(event, h11.ConnectionClosed):
                    raise ConnectionResetError("the owning node closed without an answer")
                event = await _owner_event(owner, owner_reader)
            return await _answer(owner, owner_reader, event)
        except OSError as exc:
            raise Lost(str(exc) or type(exc).__name__) from exc
    finally:
        owner_writer.close()


async def _pump(client: h11.Connection, reader: asyncio.StreamReader, owner: h11.Connection,
                owner_writer: asyncio.StreamWriter) -> None:
    while True:
        event = await http11.next_event(client, reader)
        if isinstance(event, h11.Data):
            outgoing = owner.send(h11.Data(data=bytes(event.data)))
        elif isinstance(event, h11.EndOfMessage):
            outgoing = owner.send(h11.EndOfMessage())
        else:
            raise h11.RemoteProtocolError("connection closed before the body ended")
        try:
            owner_writer.write(outgoing)
            await owner_writer.drain()  # the client goes no faster than the owner takes it
        except ConnectionError:
            return  # the owner answered early (e.g. too large) and closed: read its answer
        if isinstance(event, h11.EndOfMessage):
            return


async def _owner_event(owner: h11.Connection, reader: asyncio.StreamReader):
    while True:
        try:
            event = owner.next_event()
        except h11.RemoteProtocolError as exc:
            raise ConnectionResetError(f"the owning node's answer broke off: {exc}") from exc
        if event is h11.PAUSED:
            raise ConnectionResetError("the owning node answered out of turn")
        if event is not h11.NEED_DATA:
            return event
        owner.receive_data(await asyncio.wait_for(reader.read(http11.READ_BYTES),
                                                  ANSWER_TIMEOUT))


async def _answer(owner: h11.Connection, reader: asyncio.StreamReader,
                  response: h11.Response) -> tuple[int, dict]:
    body = bytearray()
    while True:
        event = await _owner_event(owner, reader)
        if isinstance(event, h11.Data):
            body += event.data
            if len(body) > 2**20:
                raise OSError("the owning node's answer is too long")
        elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
            break
    try:
        parsed = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        parsed = {"error": {"code": "internal_error",
                            "message": "the owning node's answer was not JSON"}}
    return response.status_code, parsed if isinstance(parsed, dict) else {}
