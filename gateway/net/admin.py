"""The admin API: pool inspection and management for operators, over an authenticated websocket.

``execute_admin`` maps one command (a JSON object) to a JSON-able answer; the server moves the
messages and the CLI prints them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import GatewayError, ProtocolError
from ..threads.cells import INTERNAL_PREFIX
from ..threads.hibernation import DESCRIPTIONS, REQUESTED
from ..wire.protocol import client_thread_id

if TYPE_CHECKING:
    from ..app import Gateway
    from ..execution.kernel import Kernel
    from ..threads.session import ThreadSession


def _rss(kernel: Kernel, gateway: Gateway) -> int | None:
    """Memory of the kernel's whole sandbox: its cgroup's usage, else the RSS of its processes."""
    cgroups = gateway.host.cgroups
    if cgroups and "memory" in cgroups.controllers:
        usage = cgroups.memory_usage(kernel.id)
        if usage is not None:
            return usage
    pid = kernel.pid
    return _tree_rss(pid) if pid else None


def process_rss(pid: int | str | None) -> int | None:
    """Resident memory of a process in bytes (``"self"`` for this one); None if it is gone or
    ``pid`` is None."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _tree_rss(pid: int) -> int | None:
    total, stack, seen = 0, [pid], set()
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        total += process_rss(current) or 0
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        stack.extend(int(child) for child in children)
    return total or None


async def kernel_rows(gateway: Gateway) -> list[dict[str, Any]]:
    owners = {s.kernel.id: s for s in gateway.threads.values() if s.kernel is not None}
    now = time.monotonic()
    rows = []
    pooled = [(pool.language.name, kernel, pool_state) for pool in gateway.pools.values()
              for kernel, pool_state in pool.kernels()]
    for language, kernel, pool_state in pooled:
        session = owners.get(kernel.id)
        alive = await kernel.is_alive()
        if not alive:
            state = "dead"
        elif session is None:
            state = "idle" if pool_state == "idle" else "leased"
        else:
            state = "busy" if session.busy else "idle"
        rows.append({
            "kernel": kernel.id,
            "language": language,
            "thread": session.client_thread_id if session else None,
            "owner": session.owner if session else None,
            "state": state,
            "pooled": pool_state == "idle" and session is None,
            "pid": kernel.pid,
            "age_seconds": round(now - kernel.started_at, 1),
            "idle_seconds": round(now - session.last_active, 1) if session else None,
            "rss_bytes": _rss(kernel, gateway),
            "executions": kernel.executions,
        })
    for pool in gateway.pools.values():
        rows += [{"kernel": None, "language": pool.language.name, "thread": None,
                  "owner": None, "state": "starting", "pooled": True, "pid": None,
                  "age_seconds": None, "idle_seconds": None, "rss_bytes": None,
                  "executions": 0}] * pool.snapshot()["starting"]
    return rows


async def execute_admin(gateway: Gateway, command: dict[str, Any]) -> Any:
    op = command.get("op")
    match op:
        case "pool.ls":
            return await kernel_rows(gateway)
        case "pool.stats":  # Python's pool, and each language's under "languages"
            return {**gateway.pool.snapshot(), "hibernation": gateway.hibernation_stats(),
                    "languages": gateway.languages(), "capacity": gateway.capacity()}
        case "pool.resize":
            size = command.get("size")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise ProtocolError("pool.resize: size must be a non-negative integer")
            if size > gateway.settings.kernel_limit:
                raise ProtocolError(f"pool.resize: size exceeds max_kernels "
                                    f"({gateway.settings.kernel_limit})")
            gateway.pool.resize(size)
            return gateway.pool.snapshot()
        case "pool.drain":
            return await gateway.drain(timeout=float(command.get("timeout", 60)))
        case "thread.ls":
            return [s.describe() for s in gateway.threads.values()]
        case "thread.restart" | "thread.kill":
            session = _session(gateway, command.get("thread_id"))
            if op == "thread.restart":
                await session.restart()
            else:
                await gateway.close_thread(session.client_thread_id, session.owner)
            return session.describe()
        case "thread.snapshot":
            session = _session(gateway, command.get("thread_id"))
            return {"thread_id": session.client_thread_id, "owner": session.owner,
                    **await session.snapshot("requested")}
        case "thread.hibernate":
            session = _session(gateway, command.get("thread_id"))
            done = await session.hibernate(REQUESTED, DESCRIPTIONS[REQUESTED], wait=True)
            answer = {"thread_id": session.client_thread_id, "owner": session.owner,
                      "hibernated": done}
            if not done:
                answer["reason"] = ("already hibernated" if session.hibernated is not None
                                    else "the thread has no kernel")
            return answer
        case "files.ls":
            # The gateway's own files of a thread (snapshots, cell records) only when asked.
            thread_id, everything = command.get("thread_id"), command.get("all") is True
            if isinstance(thread_id, str):
                thread_id = _scoped(gateway, thread_id)
            return [{**vars(f), "thread_id": client_thread_id(f.thread_id)}
                    for f in gateway.store.list(thread_id)
                    if everything or not f.name.startswith(INTERNAL_PREFIX)]
        case "files.usage":
            return identity_usage(gateway)
        case "files.gc":
            older = command.get("older_than", gateway.settings.file_retention)
            if not isinstance(older, int | float) or isinstance(older, bool) or older < 0:
                raise ProtocolError("files.gc: older_than must be a number of seconds")
            return {"deleted": gateway.store.collect_garbage(float(older))}
        case "health":
            return gateway.health()
    raise ProtocolError(f"unknown admin op {op!r}", code="unknown_type")


def identity_usage(gateway: Gateway) -> list[dict[str, Any]]:
    """Per identity: stored bytes against identity_file_quota, live threads against
    max_threads_per_identity (every configured identity, and any that still has files)."""
    settings = gateway.settings
    stored = gateway.store.usage_by_owner()
    live = gateway.live_threads_by_identity()
    identities = sorted(set(settings.tokens.values()) | set(stored) | set(live))
    return [{"identity": identity, "file_bytes": stored.get(identity, 0),
             "file_quota": settings.identity_file_limit,
             "live_threads": live.get(identity, 0),
             "max_threads": settings.identity_thread_limit}
            for identity in identities]


def error_answer(exc: GatewayError) -> dict[str, Any]:
    return {"ok": False, "error": {"code": exc.code, "message": str(exc)}}


def _scoped(gateway: Gateway, given: str) -> str:
    """The scoped id an operator means: IDENTITY/THREAD as given, or the thread's own id when
    exactly one identity has a live thread of that name (lists show the two as owner and id)."""
    if "/" in given:
        return given
    matches = sorted(key for key, s in gateway.threads.items() if s.client_thread_id == given)
    if len(matches) > 1:
        raise ProtocolError(f"thread {given!r} is ambiguous: name one of {', '.join(matches)}",
                            code="ambiguous")
    return matches[0] if matches else given


def _session(gateway: Gateway, given: object) -> ThreadSession:
    session = gateway.threads.get(_scoped(gateway, given)) if isinstance(given, str) else None
    if session is None:
        raise ProtocolError(f"no thread {given!r}", code="not_found")
    return session
