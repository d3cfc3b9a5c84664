"""Which of a client connection's requests go to another node, and the links that carry them.

Part of the server's shell: ``relayed`` asks the node where a thread is served and, if it is
elsewhere, forwards the request's text over that node's link (one link per node a connection
uses, opened on first need). A link that breaks tells the client which of its calls were lost.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from ..errors import PoolExhausted
from ..wire import protocol
from .relay import RelayLink, lost_reason

if TYPE_CHECKING:
    from .node import ClusterNode

log = logging.getLogger(__name__)

# Requests that start using a thread: only these claim an unowned one.
CLAIMING = (protocol.CodeDelta, protocol.Execute, protocol.Subscribe, protocol.Upload,
            protocol.Restart)
PLACEMENT_ATTEMPTS = 3


class Sink(Protocol):
    identity: str
    internal: bool

    def send(self, message: dict) -> None: ...
    def send_text(self, text: str) -> None: ...


class Relays:
    def __init__(self) -> None:
        self.routes: dict[str, str] = {}  # thread -> node its requests are relayed to
        self.links: dict[str, RelayLink] = {}

    async def relayed(self, node: ClusterNode, client: Sink, request: protocol.Request,
                      message: str) -> bool:
        """Forward ``message`` to the node serving its thread: False when that is this one."""
        thread_id = request.thread_id
        for _ in range(2):  # once more if the link broke just now
            target = self.routes.get(thread_id)
            if target is None:
                target = await self._place(node, client, request)
                if target is None:
                    return False
            try:
                await self.links[target].forward(message)
                return True
            except (ConnectionClosed, KeyError):
                self.routes.pop(thread_id, None)
        raise PoolExhausted(f"thread {thread_id!r}: its node cannot be reached")

    async def _place(self, node: ClusterNode, client: Sink,
                     request: protocol.Request) -> str | None:
        thread_id = request.thread_id
        for _ in range(PLACEMENT_ATTEMPTS):
            target = await node.place(thread_id, client.identity, internal=client.internal,
                                      claiming=isinstance(request, CLAIMING))
            if target is None:
                return None
            try:
                await self._link(node, client, target)
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
                log.warning("node %s unreachable (%s): waiting for its claim on %s to expire",
                            target, exc, thread_id)
                await node.wait_for_expiry(thread_id, client.identity, target)
                continue
            self.routes[thread_id] = target
            return target
        raise PoolExhausted(f"thread {thread_id!r}: no node could take it")

    async def _link(self, node: ClusterNode, client: Sink, target: str) -> None:
        if target in self.links:
            return
        url = node.live.get(target, {}).get("advertise_url")
        if not url:
            raise OSError(f"node {target} has no address in the registry")

        def lost(link: RelayLink) -> None:
            for status in link.lost_statuses(lost_reason(link.node_id)):
                client.send(status)
            if self.links.get(link.node_id) is link:
                del self.links[link.node_id]
            for thread, via in list(self.routes.items()):
                if via == link.node_id:
                    del self.routes[thread]

        def released(thread_id: str) -> None:
            if self.routes.get(thread_id) == target:
                del self.routes[thread_id]

        link = RelayLink(target, url, client.send_text, lost, released)
        await link.open(node.settings.cluster_token, client.identity, node.node_id)
        self.links[target] = link

    async def close(self) -> None:
        for link in list(self.links.values()):
            await link.close()
        self.links.clear()
        self.routes.clear()
