"""What ``gateway node ...`` and ``gateway pool --node`` ask the registry (no node is called)."""

from __future__ import annotations

import asyncio
import time

from .registry import Registry

DRAIN_POLL = 0.2


async def node_rows(registry_url: str) -> list[dict]:
    registry = Registry(registry_url, lease=1.0)
    try:
        live = await registry.live_nodes()
    finally:
        await registry.close()
    now = time.time()
    return [{"node": node_id, "advertise_url": record.get("advertise_url"),
             "heartbeat_age_seconds": round(now - float(record.get("heartbeat", now)), 1),
             "kernels": int(record.get("kernels", 0)), "threads": int(record.get("threads", 0)),
             "load": float(record.get("load", 0)), "draining": record["draining"]}
            for node_id, record in live.items()]


async def admin_url_of(registry_url: str, node_id: str) -> str:
    registry = Registry(registry_url, lease=1.0)
    try:
        record = (await registry.live_nodes()).get(node_id)
    finally:
        await registry.close()
    if record is None:
        raise LookupError(f"no live node {node_id!r} in the registry")
    return record["advertise_url"].rstrip("/") + "/admin"


async def drain_node(registry_url: str, node_id: str, wait: float) -> dict:
    """Ask ``node_id`` to drain; with ``wait``, until it holds no thread (or the time ends)."""
    registry = Registry(registry_url, lease=1.0)
    try:
        if node_id not in await registry.live_nodes():
            raise LookupError(f"no live node {node_id!r} in the registry")
        await registry.request_drain(node_id)
        deadline = time.monotonic() + wait
        record: dict = {}
        while time.monotonic() < deadline:
            record = (await registry.live_nodes()).get(node_id, {})
            if record.get("drained") == "True":
                break
            await asyncio.sleep(DRAIN_POLL)
        return {"node": node_id, "drain_requested": True,
                "drained": record.get("drained") == "True",
                "threads": int(record.get("threads", 0)) if record else None}
    finally:
        await registry.close()
