"""This node in the cluster: its heartbeat, its thread claims, fencing, drain and departure.

The server asks ``place`` where a request for a thread is served (here, or which node to
relay to); a session asks ``fence`` before each cell whether this node still holds the thread.
The heartbeat renews the node's record and every claim in one round trip each; a node that
cannot renew for a whole lease stops its cells (another node may already have the thread).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import TYPE_CHECKING, Protocol

import redis

from ..errors import NotAllowed, PoolExhausted, ProtocolError
from ..wire import envelopes
from ..wire.protocol import scoped_thread_id
from . import ownership
from .ownership import Claim
from .registry import Registry

if TYPE_CHECKING:
    from ..config import Settings
    from ..threads.session import ThreadSession

log = logging.getLogger(__name__)

DRAIN_WAIT = 600.0  # longest a drain waits for running cells before releasing their threads


class NodeHost(Protocol):
    """What a node needs of the gateway it serves (``app.Gateway`` is one): its live threads,
    by scoped id; telling it that a thread comes from another node; its kernel count."""

    threads: dict[str, ThreadSession]

    def adopt(self, thread_id: str, reason: str) -> None: ...

    def kernel_count(self) -> int: ...


class ClusterNode:
    def __init__(self, settings: Settings, gateway: NodeHost) -> None:
        self.settings = settings
        self.gateway = gateway
        self.node_id = settings.node_id or f"{socket.gethostname()}:{settings.port}"
        self.registry = Registry(settings.registry_url, settings.node_lease)
        self.lease = settings.node_lease
        self.claims: dict[str, Claim] = {}
        self.identities: dict[str, str] = {}  # thread -> identity (never changes once bound)
        self.live: dict[str, dict] = {}
        self.draining = False
        self.drained = False
        self.last_renewed = time.monotonic()
        self._beat: asyncio.Task | None = None
        self._drain: asyncio.Task | None = None

    @property
    def advertise_url(self) -> str:
        return self.settings.advertise_url or f"ws://127.0.0.1:{self.settings.port}"

    async def start(self) -> None:
        await self.registry.clear_drain(self.node_id)  # a restarted node takes threads again
        await self._heartbeat_once()
        self._beat = asyncio.create_task(self._heartbeat(), name="cluster-heartbeat")
        log.info("cluster node %s registered (%s), lease %.1f s", self.node_id,
                 self.advertise_url, self.lease)

    async def close(self) -> None:
        for task in (self._beat, self._drain):
            if task is not None:
                task.cancel()
        try:
            for thread_id, claim in list(self.claims.items()):
                await self.registry.release(thread_id, claim)
            await self.registry.leave(self.node_id)
        except redis.RedisError as exc:
            log.warning("leaving the cluster: registry unreachable (%s)", exc)
        self.claims.clear()
        await self.registry.close()

    def record(self) -> dict:
        return {"advertise_url": self.advertise_url, "threads": len(self.claims),
                "kernels": self.gateway.kernel_count(),
                "load": round(os.getloadavg()[0], 2), "draining": self.draining,
                "drained": self.drained,
                "pid": os.getpid()}

    # -- placement --------------------------------------------------------------------------
    async def place(self, thread_id: str, identity: str, *, internal: bool,
                    claiming: bool = True) -> str | None:
        """None: serve ``identity``'s thread ``thread_id`` here (claimed if it was free); else
        the node id to relay to.

        ``internal``: the request was relayed to us, so never relay it further. ``claiming``:
        the request starts using the thread (a free thread is claimed here; otherwise it is
        served here unclaimed: an interrupt or close of a thread nobody runs)."""
        return await self._place(scoped_thread_id(identity, thread_id), identity,
                                 internal=internal, claiming=claiming)

    async def _place(self, thread_id: str, identity: str, *, internal: bool,
                     claiming: bool) -> str | None:
        await self._check_identity(thread_id, identity)
        if thread_id in self.claims and time.monotonic() - self.last_renewed < self.lease:
            return None  # renewed within the lease: nobody else can hold it
        deadline = time.monotonic() + self.lease + 2.0
        while True:
            claim = await self.registry.claim_of(thread_id)
            if claim is None or claim.node_id not in self.live:
                self.live = await self.registry.live_nodes()
            decision = ownership.route(claim, self.node_id, self.live, self.draining)
            ours = self.claims.get(thread_id)
            if ours is not None and isinstance(decision, ownership.ClaimHere) \
                    and await self.registry.renew(thread_id, ours):
                return None  # our claim had lapsed and nobody took the thread: kept
            if ours is not None and not isinstance(decision, ownership.Local):
                self._lost(thread_id)  # e.g. we were frozen past our lease
            match decision:
                case ownership.Local(claim=held):
                    if thread_id not in self.claims and thread_id not in self.gateway.threads:
                        # Ours in the registry, but this node had stopped it (restarted, or
                        # cut off past its lease): its files come back like after a move.
                        self.gateway.adopt(thread_id, f"node {self.node_id} had stopped the "
                                           "thread (it restarted or lost its registry lease)")
                    self.claims[thread_id] = held
                    return None
                case ownership.ClaimHere() if not claiming:
                    return None
                case ownership.ClaimHere():
                    held = await self.registry.claim(thread_id, self.node_id)
                    if held.node_id == self.node_id:
                        self._claimed(thread_id, held, previous=claim)
                        return None
                case ownership.ClaimElsewhere() if not claiming:
                    return None
                case ownership.ClaimElsewhere(node_id=other):
                    # Also for a relayed request: a node still sending us this thread's
                    # requests learns of the move from the "released" status.
                    return other
                case ownership.Relay(node_id=other):
                    if internal:
                        raise ProtocolError(f"thread {thread_id!r} is served by node {other}",
                                            code="thread_moved")
                    return other
                case ownership.WaitForLease(node_id=other):
                    if time.monotonic() > deadline:
                        raise PoolExhausted(f"thread {thread_id!r}: node {other} is gone and "
                                            "its lease has not expired")
                    await asyncio.sleep(min(0.2, self.lease / 10))
                case ownership.Refuse(reason=reason):
                    raise PoolExhausted(reason)

    async def _check_identity(self, thread_id: str, identity: str) -> None:
        bound = self.identities.get(thread_id)
        if bound is None:
            bound = await self.registry.bind_identity(thread_id, identity)
            self.identities[thread_id] = bound
        if bound != identity:
            raise NotAllowed(f"thread {thread_id!r} belongs to another identity")

    def _claimed(self, thread_id: str, claim: Claim, previous: Claim | None) -> None:
        self.claims[thread_id] = claim
        if claim.epoch <= 1:
            return
        # The thread ran elsewhere before: its files come back from the store, its variables
        # do not. The first cell's status says so.
        reason = (f"thread moved to node {self.node_id} (claim {claim.epoch}): its previous "
                  "node was lost or released it")
        log.info("thread %s: %s", thread_id, reason)
        self.gateway.adopt(thread_id, reason)

    def holder(self, thread_id: str) -> tuple[str, Claim | None]:
        """This node's id and the claim it holds on the thread (None: none now)."""
        return self.node_id, self.claims.get(thread_id)

    async def placement(self, thread_id: str) -> tuple[dict[str, dict], Claim | None]:
        """The live nodes and the thread's claim, read from the registry now."""
        self.live = await self.registry.live_nodes()
        return self.live, await self.registry.claim_of(thread_id)

    async def wait_for_expiry(self, thread_id: str, identity: str, node_id: str) -> None:
        """A node we could not reach still holds ``identity``'s thread: wait (at most a lease
        and a bit) until its claim expires or changes, then let ``place`` decide again."""
        deadline = time.monotonic() + self.lease + 2.0
        key = scoped_thread_id(identity, thread_id)
        while time.monotonic() < deadline:
            claim = await self.registry.claim_of(key)
            if claim is None or claim.node_id != node_id:
                break
            await asyncio.sleep(min(0.2, self.lease / 10))
        self.live = await self.registry.live_nodes()

    async def fence(self, thread_id: str) -> str | None:
        """Before a cell: None if this node still holds the thread, else why not (the cell
        must not run: another node may be running the thread's cells now)."""
        claim = self.claims.get(thread_id)
        if claim is None:
            return f"node {self.node_id} no longer holds thread {thread_id!r}"
        try:
            if await self.registry.renew(thread_id, claim):
                return None
        except redis.RedisError as exc:
            if time.monotonic() - self.last_renewed < self.lease:
                return None  # the lease we renewed last still runs
            return f"node {self.node_id} cannot reach the registry ({exc})"
        self._lost(thread_id)
        return (f"node {self.node_id} lost thread {thread_id!r} (its claim {claim.epoch} is "
                "stale); send the request again")

    def _lost(self, thread_id: str, reason: str = "") -> None:
        self.claims.pop(thread_id, None)
        session = self.gateway.threads.pop(thread_id, None)
        if session is not None:
            asyncio.ensure_future(session.close(
                reason or f"node {self.node_id} lost the thread to another node", "killed"))

    def released(self, thread_id: str) -> None:
        """The thread was closed here: free its claim for any node."""
        claim = self.claims.pop(thread_id, None)
        if claim is not None:
            asyncio.ensure_future(self._release(thread_id, claim))

    async def _release(self, thread_id: str, claim: Claim) -> None:
        try:
            await self.registry.release(thread_id, claim)
        except redis.RedisError as exc:
            log.warning("thread %s: claim not released (%s); it expires", thread_id, exc)

    # -- heartbeat --------------------------------------------------------------------------
    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                await self._heartbeat_once()
            except redis.RedisError as exc:
                silent = time.monotonic() - self.last_renewed
                log.warning("registry unreachable for %.1f s: %s", silent, exc)
                if silent > self.lease and self.claims:
                    await self._partitioned()
            except Exception:
                log.exception("cluster heartbeat failed")

    async def _heartbeat_once(self) -> None:
        began = time.monotonic()
        await self.registry.heartbeat(self.node_id, self.record())
        lost = await self.registry.renew_all(dict(self.claims))
        self.last_renewed = began
        for thread_id in lost:
            log.warning("thread %s: claim lost to another node", thread_id)
            self._lost(thread_id)
        self.live = await self.registry.live_nodes()
        if not self.draining and await self.registry.drain_requested(self.node_id):
            self._drain = asyncio.create_task(self.drain())

    async def _partitioned(self) -> None:
        """No renewal for a whole lease: another node may own our threads by now. Stop every
        cell here and forget the threads."""
        log.error("node %s: lease not renewed for %.1f s; stopping its %d threads",
                  self.node_id, time.monotonic() - self.last_renewed, len(self.claims))
        for thread_id in list(self.claims):
            self._lost(thread_id, f"node {self.node_id} lost contact with the registry and "
                                  "its lease expired: the cell was stopped")

    async def drain(self) -> None:
        """Take no new threads; let running cells finish; release every thread (its files
        are in the store already) so the next request for it lands on another node."""
        self.draining = True
        log.info("node %s draining: %d threads", self.node_id, len(self.claims))
        deadline = time.monotonic() + DRAIN_WAIT
        threads = self.gateway.threads
        while time.monotonic() < deadline and any(s.busy or s.queued for s in threads.values()):
            await asyncio.sleep(0.1)
        for thread_id in list(self.claims):
            session = threads.pop(thread_id, None)
            if session is not None:
                await session.close(f"node {self.node_id} was drained")
                session.emit(envelopes.status("released", reason=f"node {self.node_id} was "
                                              "drained; the next request runs on another "
                                              "node with the thread's files"), None)
            # Released in the registry before "drained" is said: a request that found the
            # claim still ours would take the thread back onto this draining node.
            claim = self.claims.pop(thread_id, None)
            if claim is not None:
                await self._release(thread_id, claim)
        self.drained = True
        log.info("node %s drained", self.node_id)
        try:
            await self._heartbeat_once()  # tell the registry now, not at the next beat
        except redis.RedisError:
            pass
