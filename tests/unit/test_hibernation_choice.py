"""Which idle thread is hibernated first, and the counts: pure, no kernel."""

from __future__ import annotations

from gateway.ops.hibernation_stats import RECENT_RESTORES, HibernationStats
from gateway.threads.hibernation import (
    DESCRIPTIONS,
    REASONS,
    ThreadState,
    can_hibernate,
    least_recent_idle,
)


def state(key: str, last_active: float, *, kernel: bool = True, busy: bool = False,
          queued: int = 0, locked: bool = False) -> ThreadState:
    return ThreadState(key, last_active, kernel, busy, queued, locked)


def test_the_least_recently_used_idle_threads_go_first():
    states = [state("new", 30.0), state("old", 10.0), state("middle", 20.0)]
    assert least_recent_idle(states, 1) == ["old"]
    assert least_recent_idle(states, 2) == ["old", "middle"]
    assert least_recent_idle(states, 10) == ["old", "middle", "new"]
    assert least_recent_idle(states, 0) == [] and least_recent_idle(states, -1) == []


def test_a_thread_that_runs_waits_or_is_being_restored_is_never_chosen():
    states = [state("running", 1.0, busy=True), state("queued", 2.0, queued=1),
              state("restoring", 3.0, locked=True), state("asleep", 4.0, kernel=False),
              state("idle", 50.0)]
    assert least_recent_idle(states, 5) == ["idle"]
    assert [s.key for s in states if can_hibernate(s)] == ["idle"]
    assert least_recent_idle(states[:4], 5) == [], "when all are busy: nobody"


def test_only_threads_idle_since_a_time_for_the_idle_culler():
    states = [state("a", 10.0), state("b", 100.0), state("c", 99.0)]
    assert least_recent_idle(states, 10, idle_since=99.0) == ["a", "c"]


def test_ties_are_broken_by_key_so_the_choice_is_stable():
    assert least_recent_idle([state("b", 5.0), state("a", 5.0)], 1) == ["a"]


def test_every_reason_has_words_for_the_status():
    for reason in REASONS:
        assert DESCRIPTIONS[reason].format(idle=12.3)
    assert DESCRIPTIONS["capacity"].format(idle=42.0).startswith("idle for 42 s")


def test_counts_per_reason_restores_and_restore_time():
    stats = HibernationStats()
    stats.hibernated("idle", snapshot_failed=False)
    stats.hibernated("capacity", snapshot_failed=True)
    stats.hibernated("capacity", snapshot_failed=False)
    stats.restored(0.5, failed=False)
    stats.restored(1.5, failed=True)
    stats.restored(0.25, failed=False)
    snapshot = stats.snapshot(hibernated_now=7)
    assert snapshot == {"hibernated": 7, "hibernations": {"capacity": 2, "idle": 1},
                        "hibernation_failures": 1, "restores": 3, "restore_failures": 1,
                        "restore_seconds_total": 2.25, "median_restore_seconds": 0.5,
                        "max_restore_seconds": 1.5}
    assert HibernationStats().snapshot(0)["median_restore_seconds"] is None


def test_restore_times_kept_are_bounded():
    stats = HibernationStats()
    for i in range(RECENT_RESTORES * 3):
        stats.restored(float(i), failed=False)
    assert len(stats.recent_restore_seconds) == RECENT_RESTORES
    assert stats.restores == RECENT_RESTORES * 3
