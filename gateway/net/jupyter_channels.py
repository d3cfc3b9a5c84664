"""``WS /api/kernels/{id}/channels``: a Jupyter client on one of our threads.

Frames are Jupyter's (the legacy JSON protocol with a ``channel`` field, or
``v1.kernel.websocket.jupyter.org``; ``gateway/wire/jupyter.py`` reads and writes both).
Messages are relayed as the kernel sends them. Where the thread has to take part, they go
through it rather than around it:

- ``execute_request`` is one of the thread's cells: queued behind the model's, under the same
  timeout, snapshots and files, and seen by our protocol's clients too; its reply is written
  here when the cell is over (``CellEnd``), its iopub messages are the kernel's own;
- ``interrupt_request`` and ``shutdown_request`` act on the thread (as the REST API does);
- ``kernel_info_request`` on a hibernated thread is answered here, so opening a notebook does
  not wake it; other requests (complete, inspect, comms...) wake it and go to the kernel
  through ``SideChannels``, which also relays iopub: every cell of the thread, the model's too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from websockets.exceptions import ConnectionClosed

from ..errors import GatewayError, ProtocolError
from ..execution.side_channels import SideChannels
from ..threads.session import JupyterCell
from ..wire import jupyter
from ..wire.jupyter import CellEnd
from ..wire.languages import DEFAULT, LANGUAGES, Language

if TYPE_CHECKING:
    from websockets.asyncio.server import ServerConnection

    from ..app import Gateway
    from ..threads.session import ThreadSession
    from .jupyter_kernels import JupyterKernels

log = logging.getLogger(__name__)

OUTBOUND_BUFFER_BYTES = 64 * 2**20  # a client that reads slower than this is disconnected
MAX_CALL_ID = 128
READY_GUARD = 30.0  # seconds a request waits for new sockets on the kernel to deliver


class JupyterChannels:
    def __init__(self, connection: ServerConnection, session: ThreadSession, gateway: Gateway,
                 kernels: JupyterKernels, kernel_id: str) -> None:
        self.connection = connection
        self.kernel_id = kernel_id
        self.session = session
        self.gateway = gateway
        self.kernels = kernels
        self.subprotocol = connection.subprotocol
        self._queue: asyncio.Queue[str | bytes] = asyncio.Queue()
        self._buffered = 0
        self.dropped = False
        self._side: SideChannels | None = None
        self._tasks: set[asyncio.Task] = set()
        self._to_kernel: asyncio.Queue[tuple[str, dict]] = asyncio.Queue()

    async def serve(self) -> None:
        key = self.session.thread_id
        self.kernels.connections[key] = self.kernels.connections.get(key, 0) + 1
        self.session.kernel_watchers.add(self._follow_kernel)
        self._follow_kernel()
        writer = asyncio.create_task(self._write())
        self._spawn(self._forward())
        try:
            async for frame in self.connection:
                if self.dropped:
                    break
                self._receive(frame)
        except ConnectionClosed:
            pass
        finally:
            self.session.kernel_watchers.discard(self._follow_kernel)
            self.kernels.connections[key] -= 1
            if not self.kernels.connections[key]:
                del self.kernels.connections[key]
            writer.cancel()
            for task in list(self._tasks):
                task.cancel()
            if self._side is not None:
                self._side.close()

    # -- to the client ----------------------------------------------------------------------
    def send(self, channel: str, message: dict) -> None:
        if self.dropped:
            return
        frame = jupyter.encode_frame(channel, message, self.subprotocol)
        self._buffered += len(frame)
        if self._buffered > OUTBOUND_BUFFER_BYTES:
            # A close frame would queue behind what the client is not reading: cut it now.
            self.dropped = True
            log.warning("Jupyter client of thread %s reads too slowly: disconnecting",
                        self.session.client_thread_id)
            while not self._queue.empty():
                self._queue.get_nowait()
            self._buffered = 0
            self.connection.transport.abort()
            return
        self._queue.put_nowait(frame)

    async def _write(self) -> None:
        while True:
            frame = await self._queue.get()
            self._buffered -= len(frame)
            await self.connection.send(frame)

    def _follow_kernel(self) -> None:
        """The thread's kernel changed (or this connection opened): new sockets on it."""
        kernel = self.session.kernel
        if self._side is not None and self._side.kernel is kernel:
            return
        if self._side is not None:
            self._side.close()
            self._side = None
        if kernel is not None:
            self._side = SideChannels(kernel, self.send)

    # -- from the client --------------------------------------------------------------------
    def _receive(self, frame: str | bytes) -> None:
        try:
            channel, message = jupyter.decode_frame(frame, self.subprotocol)
        except ProtocolError as exc:
            # Jupyter's protocol has no error message for a frame it cannot read: dropped.
            log.warning("Jupyter client of thread %s: frame dropped: %s",
                        self.session.client_thread_id, exc)
            return
        self.session.last_active = time.monotonic()
        kind = message["header"]["msg_type"]
        if kind == "execute_request" and channel == "shell":
            self._execute(message)
        elif kind == "interrupt_request":
            self._spawn(self._interrupt(channel, message))
        elif kind == "shutdown_request":
            self._spawn(self._shutdown(channel, message))
        elif kind == "kernel_info_request" and self.session.kernel is None:
            self._reply(channel, message, "kernel_info_reply",
                        jupyter.kernel_info(_language(self.session)))
        elif channel == "stdin":
            if self.session.kernel is not None:
                self.session.kernel.send_stdin(message)
        else:  # one at a time, in order (comms rely on it)
            self._to_kernel.put_nowait((channel, message))

    def _reply(self, channel: str, request: dict, kind: str, content: dict) -> None:
        self.send(channel, jupyter.reply(request, kind, content, time.time()))

    def _execute(self, message: dict) -> None:
        content = message["content"]
        call_id = f"jupyter-{message['header']['msg_id']}"[:MAX_CALL_ID]
        finished = False

        def done(end: CellEnd) -> None:
            nonlocal finished
            if not finished:
                finished = True
                for channel, out in jupyter.cell_end_messages(message, end, time.time()):
                    self.send(channel, out)

        code = content.get("code")
        if not isinstance(code, str):
            done(CellEnd("refused", reason="execute_request without code", idle_sent=False))
            return
        try:
            self.session.choose_language(None)
            self.session.submit(call_id, code, None, None, jupyter=JupyterCell(
                message, lambda request: self.send("stdin", request), done, self._side_ready))
        except GatewayError as exc:
            done(CellEnd("refused", reason=str(exc), idle_sent=False))

    async def _side_ready(self) -> None:
        side = self._side
        if side is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(side.ready.wait(), READY_GUARD)

    async def _interrupt(self, channel: str, message: dict) -> None:
        await self.session.interrupt()
        self._reply(channel, message, "interrupt_reply", {"status": "ok"})

    async def _shutdown(self, channel: str, message: dict) -> None:
        restart = bool(message["content"].get("restart"))
        if restart:
            await self.session.restart()
        else:
            with contextlib.suppress(GatewayError):
                await self.kernels.shut_down(self.session, self.kernel_id)
        self._reply(channel, message, "shutdown_reply", {"status": "ok", "restart": restart})

    async def _forward(self) -> None:
        while True:
            channel, message = await self._to_kernel.get()
            try:
                if self.session.kernel is None:
                    await self.session.awake_kernel()  # _follow_kernel opens sockets on it
                side = self._side
                if side is None:
                    continue
                await asyncio.wait_for(side.ready.wait(), READY_GUARD)
                side.send(channel, message)
            except (GatewayError, TimeoutError) as exc:
                log.warning("Jupyter request on thread %s not delivered: %r",
                            self.session.client_thread_id, exc)

    def _spawn(self, coro) -> None:
        async def run() -> None:
            try:
                await coro
            except GatewayError as exc:
                log.warning("Jupyter request on thread %s refused: %s",
                            self.session.client_thread_id, exc)
            except Exception:
                log.exception("Jupyter request on thread %s failed",
                              self.session.client_thread_id)

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _language(session: ThreadSession) -> Language:
    return LANGUAGES[session.language or DEFAULT]
