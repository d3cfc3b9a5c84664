"""h11 over asyncio streams: the little I/O every plain-HTTP handler of the gateway shares.

h11 parses and frames; these helpers only move its bytes, with an idle timeout on reads so a
client that stops sending cannot hold a connection (or a buffer) forever.
"""

from __future__ import annotations

import asyncio

import h11
import orjson

READ_BYTES = 256 * 2**10
IDLE_TIMEOUT = 60.0  # a client that sends nothing for this long is cut off
MAX_HEADER_BYTES = 16 * 2**10


def new_connection() -> h11.Connection:
    return h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)


async def next_event(conn: h11.Connection, reader: asyncio.StreamReader):
    """The next h11 event, reading as needed; TimeoutError after ``IDLE_TIMEOUT`` of silence."""
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        data = await asyncio.wait_for(reader.read(READ_BYTES), IDLE_TIMEOUT)
        conn.receive_data(data)


def headers_of(request: h11.Request) -> dict[str, str]:
    """Lower-cased header names -> values (a repeated header keeps its last value)."""
    return {name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in request.headers}


async def send_head(conn: h11.Connection, writer: asyncio.StreamWriter, status: int,
                    headers: list[tuple[str, str]]) -> None:
    """The status line and headers; one request per connection, so always ``Connection: close``."""
    writer.write(conn.send(h11.Response(status_code=status,
                                        headers=[*headers, ("Connection", "close")])))
    await writer.drain()


async def send_json(conn: h11.Connection, writer: asyncio.StreamWriter, status: int,
                    body: object, *, head: bool = False) -> None:
    """A complete small JSON answer, if the connection is still in a state to send one; only
    its headers when answering ``HEAD`` (h11 then refuses body bytes)."""
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    payload = orjson.dumps(body)
    await send_head(conn, writer, status, [
        ("Content-Type", "application/json"), ("Content-Length", str(len(payload))),
        ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")])
    if not head:
        writer.write(conn.send(h11.Data(data=payload)))
    writer.write(conn.send(h11.EndOfMessage()))
    await writer.drain()
