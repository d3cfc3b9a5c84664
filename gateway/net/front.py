"""One port for everything: each connection's first request line picks who serves it.

websockets' asyncio server reads only GET requests without bodies, so on its own it can
neither take an upload nor stream a download. ``FrontProtocol`` is the asyncio protocol the
listening socket creates for each connection (websockets' ``create_connection`` hook): it reads
the request line, then hands the transport and every byte read so far to

- websockets' ``ServerConnection`` (its sans-I/O ``ServerProtocol`` inside) for ``GET``s that are
  not downloads: the websocket and admin handshakes, the page, ``/healthz``, ``/metrics`` -
  exactly as before, origin checks and token checks included;
- the h11 ``HttpHandler`` for everything else: ``GET``/``HEAD /files/...`` and uploads.

Neither side ever sees the front: it only peeks, and TLS (already terminated by the transport)
is unaffected.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from .http11 import READ_BYTES

log = logging.getLogger(__name__)

MAX_REQUEST_LINE = 16 * 2**10
REQUEST_LINE_TIMEOUT = 10.0  # websockets' own open_timeout: a silent client is dropped
HttpServe = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Coroutine[Any, Any, None]]


def goes_to_websockets(request_line: bytes) -> bool:
    """Is this request for websockets' server (a handshake or a small GET it answers itself)
    rather than for the HTTP handler (downloads, uploads, any other method)?"""
    parts = request_line.split(b" ")
    if len(parts) != 3 or parts[0] != b"GET":
        return False  # h11 answers malformed lines and other methods with 400/404/405
    target = parts[1]
    if target.startswith((b"/api/", b"/kernelspecs/", b"/jupyter/")) \
            or target.split(b"?")[0] == b"/api":
        # Jupyter's REST API (bodies, DELETEs) is the HTTP handler's; its kernel channels are
        # websockets.
        return target.split(b"?")[0].endswith(b"/channels")
    # Downloads, and a thread's notebook (built off the event loop), go to the HTTP handler.
    return not target.startswith(b"/files/") and b"/notebook" not in target


class FrontProtocol(asyncio.Protocol):
    def __init__(self, make_websocket: Callable[[], asyncio.Protocol], serve_http: HttpServe,
                 tasks: set[asyncio.Task]) -> None:
        self._make_websocket = make_websocket
        self._serve_http = serve_http
        self._tasks = tasks
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(REQUEST_LINE_TIMEOUT, transport.abort)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > MAX_REQUEST_LINE:
                self._hand_to_http()  # h11 answers an overlong line with 400
            return
        if goes_to_websockets(bytes(self._buffer[:end])):
            self._hand_to_websockets()
        else:
            self._hand_to_http()

    def eof_received(self) -> bool | None:
        self._stop_timer()
        return None  # closes the transport: nothing was asked

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _hand_to_websockets(self) -> None:
        self._stop_timer()
        assert self._transport is not None
        connection = self._make_websocket()
        self._transport.set_protocol(connection)
        connection.connection_made(self._transport)
        connection.data_received(bytes(self._buffer))
        self._buffer.clear()

    def _hand_to_http(self) -> None:
        self._stop_timer()
        transport = self._transport
        assert transport is not None
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=READ_BYTES, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        reader.feed_data(bytes(self._buffer))
        self._buffer.clear()
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        task = loop.create_task(self._serve_http(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
