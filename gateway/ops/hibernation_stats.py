"""Counts of hibernations (per reason) and restores, for ``gateway pool stats`` and /metrics."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

RECENT_RESTORES = 100  # restore times kept for the median and the maximum


@dataclass
class HibernationStats:
    hibernations: Counter[str] = field(default_factory=Counter)  # reason -> count
    hibernation_failures: int = 0  # the snapshot failed: the thread was hibernated anyway
    restores: int = 0
    restore_failures: int = 0  # the namespace did not come back: a clean kernel went on
    restore_seconds_total: float = 0.0
    recent_restore_seconds: list[float] = field(default_factory=list)

    def hibernated(self, reason: str, snapshot_failed: bool) -> None:
        self.hibernations[reason] += 1
        self.hibernation_failures += snapshot_failed

    def restored(self, seconds: float, failed: bool) -> None:
        self.restores += 1
        self.restore_failures += failed
        self.restore_seconds_total += seconds
        self.recent_restore_seconds = [*self.recent_restore_seconds[-(RECENT_RESTORES - 1):],
                                       seconds]

    def snapshot(self, hibernated_now: int) -> dict:
        recent = sorted(self.recent_restore_seconds)
        return {
            "hibernated": hibernated_now,
            "hibernations": dict(sorted(self.hibernations.items())),
            "hibernation_failures": self.hibernation_failures,
            "restores": self.restores,
            "restore_failures": self.restore_failures,
            "restore_seconds_total": round(self.restore_seconds_total, 3),
            "median_restore_seconds": round(recent[len(recent) // 2], 3) if recent else None,
            "max_restore_seconds": round(recent[-1], 3) if recent else None,
        }
