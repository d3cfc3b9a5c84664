"""The cluster's shared state in Redis: live nodes, thread claims (lease + epoch), drain requests.

Every node is equal; Redis is the only coordinator. A claim is one key per thread,
``"NODE EPOCH"`` with a lease (PX); the epoch is a separate, never-expiring counter, so each new
claim of a thread gets a higher one. Claims, renewals and releases are Lua scripts: the check and
the write are one atomic step, never a read then a write another node could slip between.
"""

from __future__ import annotations

import time
from typing import Any, cast

import redis.asyncio as aioredis
from redis.typing import EncodableT, FieldT

from .ownership import Claim

PREFIX = "gw:"

# KEYS: claim, epoch counter. ARGV: node id, lease ms. Returns the claim now held (maybe not ours).
CLAIM = """
local current = redis.call('GET', KEYS[1])
if current then return current end
local epoch = redis.call('INCR', KEYS[2])
local claim = ARGV[1] .. ' ' .. epoch
redis.call('SET', KEYS[1], claim, 'PX', ARGV[2])
return claim
"""

# KEYS: claim, epoch counter. ARGV: our claim, its epoch, lease ms. 1: renewed, 0: lost.
# A claim that vanished (Redis restarted without it) is taken back if no later epoch was given
# out meanwhile: the counter is raised to ours, so fencing stays monotonic.
RENEW = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
if current then return 0 end
local counter = tonumber(redis.call('GET', KEYS[2]) or '0')
if counter > tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
"""

RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def connect(url: str) -> aioredis.Redis:
    # Short timeouts: a partitioned node must notice quickly that it cannot renew.
    return aioredis.from_url(url, decode_responses=True, socket_timeout=2.0,
                             socket_connect_timeout=2.0)


class Registry:
    def __init__(self, url: str, lease: float) -> None:
        self.redis = connect(url)
        self.lease_ms = max(1, int(lease * 1000))
        self._claim = self.redis.register_script(CLAIM)
        self._renew = self.redis.register_script(RENEW)
        self._release = self.redis.register_script(RELEASE)

    async def close(self) -> None:
        await self.redis.aclose()

    # -- nodes ------------------------------------------------------------------------------
    async def heartbeat(self, node_id: str, record: dict[str, Any]) -> None:
        """Register or refresh this node (also after Redis lost everything)."""
        key = PREFIX + "node:" + node_id
        fields: dict[FieldT, EncodableT] = {k: str(v) for k, v in record.items()}
        fields["heartbeat"] = str(time.time())
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=fields)
            pipe.pexpire(key, self.lease_ms)
            pipe.sadd(PREFIX + "nodes", node_id)
            await pipe.execute()

    async def leave(self, node_id: str) -> None:
        await self.redis.delete(PREFIX + "node:" + node_id)
        await self.redis.srem(PREFIX + "nodes", node_id)

    async def live_nodes(self) -> dict[str, dict[str, Any]]:
        """Each live node's record: strings as heartbeat() stored them, but "draining" a bool."""
        # decode_responses=True (connect): str, which redis-py's annotations cannot express.
        ids = sorted(cast("set[str]", await self.redis.smembers(PREFIX + "nodes")))
        if not ids:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for node_id in ids:
                pipe.hgetall(PREFIX + "node:" + node_id)
            records = await pipe.execute()
        live: dict[str, dict[str, Any]] = {}
        for node_id, record in zip(ids, records, strict=True):
            if record:
                record["draining"] = record.get("draining") == "True"
                live[node_id] = record
            else:  # its lease expired: forget it
                await self.redis.srem(PREFIX + "nodes", node_id)
        return live

    async def request_drain(self, node_id: str) -> None:
        await self.redis.set(PREFIX + "drain:" + node_id, "1")

    async def drain_requested(self, node_id: str) -> bool:
        return bool(await self.redis.exists(PREFIX + "drain:" + node_id))

    async def clear_drain(self, node_id: str) -> None:
        await self.redis.delete(PREFIX + "drain:" + node_id)

    # -- threads ----------------------------------------------------------------------------
    def _keys(self, thread_id: str) -> list[str]:
        return [PREFIX + "claim:" + thread_id, PREFIX + "epoch:" + thread_id]

    async def claim_of(self, thread_id: str) -> Claim | None:
        return Claim.decode(await self.redis.get(self._keys(thread_id)[0]))

    async def claim(self, thread_id: str, node_id: str) -> Claim:
        """Claim the thread for ``node_id`` unless somebody holds it: the claim now held."""
        held = await self._claim(keys=self._keys(thread_id), args=[node_id, self.lease_ms])
        claim = Claim.decode(held)
        assert claim is not None
        return claim

    async def renew(self, thread_id: str, claim: Claim) -> bool:
        return bool(await self._renew(keys=self._keys(thread_id),
                                      args=[claim.encode(), claim.epoch, self.lease_ms]))

    async def renew_all(self, claims: dict[str, Claim]) -> set[str]:
        """Renew many claims in one round trip; the threads whose claim was lost."""
        if not claims:
            return set()
        async with self.redis.pipeline(transaction=False) as pipe:
            for thread_id, claim in claims.items():
                await self._renew(keys=self._keys(thread_id),
                                  args=[claim.encode(), claim.epoch, self.lease_ms], client=pipe)
            answers = await pipe.execute()
        return {t for t, ok in zip(claims, answers, strict=True) if not ok}

    async def release(self, thread_id: str, claim: Claim) -> None:
        await self._release(keys=self._keys(thread_id), args=[claim.encode()])

    async def bind_identity(self, thread_id: str, identity: str) -> str:
        """The identity a thread belongs to, cluster-wide: the first to use it (never expires)."""
        key = PREFIX + "identity:" + thread_id
        await self.redis.set(key, identity, nx=True)
        # decode_responses=True: a str, and not None: set just above (or before) and never expires.
        return cast(str, await self.redis.get(key))
