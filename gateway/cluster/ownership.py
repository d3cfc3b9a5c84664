"""Where a request for a thread is served: here, relayed to its owner, or claimed (pure).

A claim in the registry is ``"NODE EPOCH"`` under a lease; the epoch grows by one with every
claim of the thread, so a node holding an older epoch knows it lost the thread (fencing).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Claim:
    node_id: str
    epoch: int

    def encode(self) -> str:
        return f"{self.node_id} {self.epoch}"

    @classmethod
    def decode(cls, raw: str | bytes | None) -> Claim | None:
        if raw is None:
            return None
        text = raw.decode() if isinstance(raw, bytes) else raw
        node_id, _, epoch = text.rpartition(" ")
        if not node_id or not epoch.isdigit():
            return None
        return cls(node_id, int(epoch))


@dataclass(frozen=True)
class Local:
    """This node owns the thread under ``claim``: serve it here."""

    claim: Claim


@dataclass(frozen=True)
class Relay:
    """Another live node owns the thread: relay to it."""

    node_id: str


@dataclass(frozen=True)
class ClaimHere:
    """Nobody holds the thread: claim it on this node."""


@dataclass(frozen=True)
class ClaimElsewhere:
    """Nobody holds the thread and this node takes no claims (draining): relay to ``node_id``,
    which claims it."""

    node_id: str


@dataclass(frozen=True)
class WaitForLease:
    """The owner is not among the live nodes but its claim has not expired yet."""

    node_id: str


@dataclass(frozen=True)
class Refuse:
    """This node is draining and no other node can take the thread."""

    reason: str


Route = Local | Relay | ClaimHere | ClaimElsewhere | WaitForLease | Refuse


def route(claim: Claim | None, me: str, live: dict[str, dict], draining: bool) -> Route:
    """Decide for one request. ``live`` maps live node ids to their registry record (with a
    ``draining`` flag and a ``threads`` count)."""
    if claim is not None:
        if claim.node_id == me:
            return Local(claim)
        if claim.node_id in live:
            return Relay(claim.node_id)
        return WaitForLease(claim.node_id)
    if not draining:
        return ClaimHere()
    target = least_loaded(live, exclude=me)
    if target is None:
        return Refuse("this node is draining and no other node takes new threads")
    return ClaimElsewhere(target)


def least_loaded(live: dict[str, dict], exclude: str) -> str | None:
    """The live, not draining node with the fewest threads (ties: by id, for stable tests)."""
    candidates = [(int(record.get("threads", 0)), node_id) for node_id, record in live.items()
                  if node_id != exclude and not record.get("draining")]
    return min(candidates)[1] if candidates else None
