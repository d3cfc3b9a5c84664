"""The adaptive warm target as pure logic, on a fake clock (no kernel, no event loop)."""

from __future__ import annotations

import pytest

from gateway.execution.pool import WarmTarget


def policy(**overrides) -> WarmTarget:
    values = dict(floor=2, ceiling=16, rate_window=120.0, burst_window=30.0, horizon=30.0)
    values.update(overrides)
    return WarmTarget(**values)


def test_idle_pool_keeps_the_floor():
    target = policy()
    decision = target.decide(0.0)
    assert (decision.target, decision.driver) == (2, "floor")
    assert "pool_size" in decision.reason
    assert target.decide(10_000.0).target == 2


def test_burst_raises_the_target_at_once():
    target = policy(ceiling=32)
    for i in range(10):
        target.leased(100.0 + i * 0.01)
    decision = target.decide(100.2, leased=10)
    assert decision.target == 10
    assert decision.driver == "burst"
    assert decision.recent_leases == 10
    assert "10 new threads in the last 30 s" in decision.reason


def test_waiting_threads_count_as_burst():
    target = policy()
    target.leased(0.0)
    decision = target.decide(0.1, leased=1, waiting=4)
    assert decision.target == 5
    assert "4 waiting" in decision.reason


def test_burst_is_capped_by_the_kernel_limit_minus_leased_kernels():
    target = policy(ceiling=12)
    for i in range(60):
        target.leased(i * 0.01)
    decision = target.decide(1.0, leased=8)
    assert decision.target == 4  # 12 kernels fit in memory, 8 are in use
    assert decision.capped
    assert "kernel limit of 12" in decision.reason


def test_ceiling_never_undercuts_the_operators_floor():
    target = policy(floor=3, ceiling=4)
    for i in range(20):
        target.leased(i * 0.1)
    assert target.decide(2.0, leased=4).target == 3


def test_steady_rate_keeps_horizon_of_demand_warm_and_converges():
    target = policy(ceiling=64, rate_window=60.0, horizon=60.0)
    now = 0.0
    for _ in range(600):  # one new thread every 2 s for 20 minutes: 0.5 per second
        now += 2.0
        target.leased(now)
    assert target.rate(now) == pytest.approx(0.5, rel=0.05)
    decision = target.decide(now + 1.0, leased=5)
    assert decision.target == 30  # 0.5/s for 60 s ahead, above the 15-in-30-s burst signal
    assert decision.driver == "demand"
    assert decision.rate_per_minute == pytest.approx(30, rel=0.05)


def test_target_falls_back_to_the_floor_when_idle():
    target = policy()
    for i in range(60):
        target.leased(i * 0.05)
    assert target.decide(3.0).target == 16
    after_burst = target.decide(3.0 + 31)  # the burst lapsed; the average still remembers it
    assert after_burst.driver == "demand"
    assert 2 < after_burst.target < 16
    later = [target.decide(3.0 + minutes * 60).target for minutes in (2, 4, 8, 16)]
    assert later == sorted(later, reverse=True), "the target only falls while idle"
    assert later[-1] == 2
    assert target.decide(3.0 + 16 * 60).driver == "floor"


def test_a_new_burst_after_quiet_raises_it_again():
    target = policy()
    target.leased(0.0)
    assert target.decide(1000.0).target == 2
    for i in range(6):
        target.leased(1000.0 + i)
    assert target.decide(1006.0).target == 6


def test_resize_sets_the_floor_and_forgets_demand():
    target = policy()
    for i in range(10):
        target.leased(i * 0.1)
    assert target.decide(1.0).target == 10
    target.resize(3)
    decision = target.decide(1.0)
    assert (decision.target, decision.driver, decision.floor) == (3, "floor", 3)
    for i in range(5):
        target.leased(2.0 + i * 0.1)
    assert target.decide(2.5).target == 5  # new demand counts again


def test_rate_never_depends_on_queries():
    asked, silent = policy(), policy()
    for i in range(20):
        asked.leased(i * 3.0)
        silent.leased(i * 3.0)
        asked.decide(i * 3.0 + 1.0)
    assert asked.rate(100.0) == pytest.approx(silent.rate(100.0))


def test_bad_windows_are_refused():
    with pytest.raises(ValueError):
        policy(rate_window=0)
    with pytest.raises(ValueError):
        policy(burst_window=-1)
