"""A second client of one kernel, for a Jupyter client's requests.

Its own shell and control sockets (so the replies come back here, never to the ``Kernel``'s,
which runs the thread's cells), and its own iopub subscription (iopub reaches every subscriber:
the Jupyter client sees every cell of the thread, the model's too). Messages go out as the
Jupyter client wrote them, signed with the kernel's key; they come back decoded, untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import zmq
import zmq.asyncio

from .kernel import _decode, _receive_ready

if TYPE_CHECKING:
    from .kernel import Kernel

log = logging.getLogger(__name__)

PROBE_INTERVAL = 0.5  # seconds between kernel_info_requests until iopub delivers


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
        # Set once iopub delivers: a subscription takes a moment to reach the kernel, and a
        # client that got its kernel_info_reply but no status after it takes the kernel for
        # dead (jupyter_client's wait_for_ready).
        self.ready = asyncio.Event()
        self._probes: set[str] = set()  # our own kernel_info_requests: their answers stay here
        self._reader = asyncio.create_task(self._read(), name=f"side-{kernel.id}")
        self._prober = asyncio.create_task(self._probe(), name=f"side-probe-{kernel.id}")

    async def _probe(self) -> None:
        while not self.ready.is_set():
            request = self._client.session.msg("kernel_info_request", {})
            self._probes.add(request["header"]["msg_id"])
            self._channels["shell"].send(request)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ready.wait(), PROBE_INTERVAL)

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
                    if message["parent_header"].get("msg_id") in self._probes:
                        if name == "iopub":
                            self.ready.set()
                        continue
                    self._deliver(name, message)
                    # Let the connections' writers send it before the next: a flood must not
                    # fill their buffers faster than a client that does read empties them.
                    await asyncio.sleep(0)

    def close(self) -> None:
        self._reader.cancel()
        self._prober.cancel()
        self._client.stop_channels()
