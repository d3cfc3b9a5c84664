"""A second client of one kernel, for a Jupyter client's requests.

Its own shell and control sockets (so the replies come back here, never to the ``Kernel``'s,
which runs the thread's cells), and its own iopub subscription (iopub reaches every subscriber:
the Jupyter client sees every cell of the thread, the model's too). Messages go out as the
Jupyter client wrote them, signed with the kernel's key; they come back decoded, untouched.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import zmq
import zmq.asyncio

from .kernel import _decode, _receive_ready

if TYPE_CHECKING:
    from .kernel import Kernel

log = logging.getLogger(__name__)


class SideChannels:
    def __init__(self, kernel: Kernel, deliver: Callable[[str, dict], None]) -> None:
        self.kernel = kernel
        self._deliver = deliver  # (channel, message) for each message from the kernel
        self._client = kernel.side_client()
        self._client.start_channels(shell=True, iopub=True, stdin=False, hb=False,
                                    control=True)
        self._channels = {"shell": self._client.shell_channel,
                          "iopub": self._client.iopub_channel,
                          "control": self._client.control_channel}
        self._reader = asyncio.create_task(self._read(), name=f"side-{kernel.id}")

    def send(self, channel: str, message: dict) -> None:
        """``message`` (header, parent_header, metadata, content, buffers) on ``channel``."""
        self._channels[channel].send(message)

    async def _read(self) -> None:
        poller = zmq.asyncio.Poller()
        by_socket = {}
        for name, channel in self._channels.items():
            poller.register(channel.socket, zmq.POLLIN)
            by_socket[channel.socket] = (name, channel)
        while True:
            ready = await poller.poll()
            for socket, _ in ready:
                name, channel = by_socket[socket]
                while (frames := _receive_ready(socket)) is not None:
                    try:
                        message = _decode(channel, frames)
                    except Exception:  # one bad message must not end the relay
                        log.warning("kernel %s: undecodable %s message dropped",
                                    self.kernel.id, name)
                        continue
                    self._deliver(name, message)
                    # Let the connections' writers send it before the next: a flood must not
                    # fill their buffers faster than a client that does read empties them.
                    await asyncio.sleep(0)

    def close(self) -> None:
        self._reader.cancel()
        self._client.stop_channels()
