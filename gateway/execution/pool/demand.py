"""How many kernels to keep warm: a pure policy, fed lease times, asked for a target.

Sans-I/O like ``translate``: no clock, no pool, no host of its own. The pool tells it when a new
thread leased a kernel and asks, with the time, how many leased and waiting there are; tests
drive it with a fake clock.

The target follows demand between a floor (``pool_size``, the operator's) and a ceiling, the
kernel limit (``max_kernels`` in force) less the kernels leased; whether the host's memory has
room for each kernel the target asks for is ``Capacity``'s to say when it starts. Two signals
raise it:

- the average rate of new threads, a moving average that forgets with a time constant of
  ``rate_window`` seconds: enough warm kernels for ``horizon`` seconds of that demand;
- a burst in progress: as many warm kernels as new threads arrived in the last
  ``burst_window`` seconds (plus those waiting now), since a burst tends to go on.

When demand stops, the burst signal lapses after ``burst_window`` and the average decays, so the
target falls back to the floor by itself.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    """A warm target and why, as ``gateway pool stats`` and /metrics show it."""

    target: int
    driver: str  # what set it: "floor", "burst" or "demand"
    capped: bool  # demand wanted more than the kernel limit allows
    reason: str
    floor: int
    ceiling: int
    rate_per_minute: float  # the moving average of new threads
    recent_leases: int  # new threads in the last burst_window seconds


class WarmTarget:
    """The adaptive warm-pool target; times are seconds on any monotonic clock."""

    def __init__(self, floor: int, ceiling: int, *, rate_window: float = 120.0,
                 burst_window: float = 30.0, horizon: float = 30.0) -> None:
        if rate_window <= 0 or burst_window <= 0 or horizon < 0:
            raise ValueError("rate_window and burst_window must be > 0, horizon >= 0")
        self.floor = max(0, floor)
        self.ceiling = max(0, ceiling)
        self.rate_window = rate_window
        self.burst_window = burst_window
        self.horizon = horizon
        self._rate = 0.0  # new threads per second, as of _rate_at
        self._rate_at: float | None = None
        self._recent: deque[float] = deque()

    def resize(self, floor: int) -> None:
        """The operator set the floor: demand seen so far is forgotten, so the target is the
        new floor at once (``gateway pool resize N`` keeps N warm until new threads arrive)."""
        self.floor = max(0, floor)
        self._rate, self._rate_at = 0.0, None
        self._recent.clear()

    def leased(self, now: float) -> None:
        """A new thread took a kernel (or asked for one) at ``now``."""
        self._rate = self.rate(now) + 1.0 / self.rate_window
        self._rate_at = now
        self._recent.append(now)
        self._forget(now)

    def rate(self, now: float) -> float:
        """New threads per second: each lease adds 1/rate_window, decaying by e every
        rate_window seconds (a steady rate r converges to r)."""
        if self._rate_at is None:
            return 0.0
        return self._rate * math.exp(-max(0.0, now - self._rate_at) / self.rate_window)

    def _forget(self, now: float) -> None:
        while self._recent and self._recent[0] <= now - self.burst_window:
            self._recent.popleft()

    def decide(self, now: float, *, leased: int = 0, waiting: int = 0) -> Decision:
        """How many warm kernels to keep now, with ``leased`` kernels in use and ``waiting``
        new threads waiting for one."""
        self._forget(now)
        rate = self.rate(now)
        steady = math.ceil(rate * self.horizon - 1e-9)
        burst = len(self._recent) + waiting if self._recent or waiting else 0
        want = max(self.floor, steady, burst)
        if want == self.floor:
            driver = "floor"
            reason = "floor (pool_size): no demand above it"
        elif burst >= steady:
            driver = "burst"
            reason = (f"burst: {len(self._recent)} new threads in the last "
                      f"{self.burst_window:g} s" + (f", {waiting} waiting" if waiting else ""))
        else:
            driver = "demand"
            reason = (f"demand: {rate * 60:.1f} new threads/min, warm for the next "
                      f"{self.horizon:g} s")
        room = max(0, self.ceiling - leased)
        target = max(self.floor, min(want, room))
        if target < want:
            reason += (f"; capped at {target} by the kernel limit of {self.ceiling} "
                       f"({leased} leased)")
        return Decision(target, driver, target < want, reason, self.floor, self.ceiling,
                        rate * 60, len(self._recent))
