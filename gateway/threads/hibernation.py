"""Which idle threads give up their kernel first: the least recently used, never one that runs
or awaits a cell (pure: the gateway feeds it each thread's state, the session hibernates).

A hibernated thread keeps its namespace snapshot, its working directory's files in the store
and its cwd, environment and execution count (inside the snapshot); its kernel is stopped and
its next request restores it on a new one (session.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# Why threads are hibernated: the label of the hibernation counters.
IDLE = "idle"  # idle for hibernate_after
CAPACITY = "capacity"  # another thread needs a kernel and all max_kernels are in use
HEADROOM = "headroom"  # all max_kernels are in use: a warm kernel for the next thread instead
PRESSURE = "pressure"  # the host is short of memory
SHUTDOWN = "shutdown"  # the gateway stops
REQUESTED = "requested"  # an operator asked
REASONS = (IDLE, CAPACITY, HEADROOM, PRESSURE, SHUTDOWN, REQUESTED)
# What the thread's next status says about the reason (with how long it had been idle).
DESCRIPTIONS = {IDLE: "idle for {idle:.0f} s",
                CAPACITY: "idle for {idle:.0f} s when another thread needed its kernel",
                HEADROOM: "idle for {idle:.0f} s when every kernel was in use (a warm kernel "
                          "is kept for the next thread)",
                PRESSURE: "idle for {idle:.0f} s when the host ran short of memory",
                SHUTDOWN: "the gateway stopped", REQUESTED: "by an operator"}


@dataclass(frozen=True)
class ThreadState:
    key: str
    last_active: float  # monotonic
    has_kernel: bool
    busy: bool  # a cell runs
    queued: int  # cells waiting
    locked: bool  # its kernel is being leased, replaced, restored or hibernated right now


def can_hibernate(state: ThreadState) -> bool:
    """Idle with a kernel: nothing running, nothing queued, no kernel work under way."""
    return state.has_kernel and not state.busy and not state.queued and not state.locked


def least_recent_idle(states: Iterable[ThreadState], count: int,
                      idle_since: float | None = None) -> list[str]:
    """Up to ``count`` threads that may be hibernated, least recently used first; with
    ``idle_since``, only those not active since then."""
    chosen = [s for s in states if can_hibernate(s)
              and (idle_since is None or s.last_active <= idle_since)]
    chosen.sort(key=lambda s: (s.last_active, s.key))
    return [s.key for s in chosen[:max(0, count)]]
