"""The density benchmark's cells and what their answers mean (scripts/benchlib/touches.py):
the cells run here, in a plain namespace, so the classifier is checked against their real
output."""

from __future__ import annotations

import contextlib
import io
import math

import pytest

from scripts.benchlib import touches
from scripts.benchlib.touches import Expected, classify


def run(code: str, namespace: dict) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code, namespace)
    return out.getvalue()


def test_a_thread_that_keeps_its_namespace_answers_ok_every_time():
    pytest.importorskip("pandas")
    namespace: dict = {}
    expected = Expected(7)
    expected.sent += 1
    output = run(touches.build_cell(7), namespace)
    assert classify(expected, "complete", output) == touches.OK
    expected.answered(touches.OK, output)
    assert namespace["df"].memory_usage(index=False).sum() == 5 * 2**20
    for _ in range(3):
        expected.sent += 1
        output = run(touches.CHECK_CELL, namespace)
        outcome = classify(expected, "complete", output)
        assert outcome == touches.OK, output
        expected.answered(outcome, output)
    assert expected.done == 3


def test_another_threads_namespace_is_a_mismatch():
    pytest.importorskip("pandas")
    namespace: dict = {}
    run(touches.build_cell(3), namespace)
    output = run(touches.CHECK_CELL, namespace)
    assert classify(Expected(4, built=True, done=0, sent=1), "complete", output) \
        == touches.MISMATCH
    assert classify(Expected(3, built=True, done=0, sent=1), "complete", output) == touches.OK


def test_an_older_snapshot_is_stale_and_a_check_given_up_on_may_have_run():
    line = f"{touches.tag(2)} {touches.checksum(2)} 2\n"
    assert classify(Expected(2, built=True, done=2, sent=3), "complete", line) == touches.STALE
    assert classify(Expected(2, built=True, done=1, sent=2), "complete", line) == touches.OK
    # The client gave up on the first check, which ran anyway: 2 is in range.
    assert classify(Expected(2, built=True, done=0, sent=2), "complete", line) == touches.OK
    # A counter beyond the checks ever sent is not this thread's.
    assert classify(Expected(2, built=True, done=0, sent=1), "complete", line) \
        == touches.MISMATCH


def test_missing_variables_are_lost_only_after_the_thread_had_them():
    assert classify(Expected(1, built=True, done=0, sent=1), "error", "", "NameError") \
        == touches.LOST
    assert classify(Expected(1, done=-1, sent=1), "error", "", "NameError") == touches.ERROR
    line = f"{touches.tag(1)} {touches.checksum(1)} 1\n"
    assert classify(Expected(1, built=True, done=0, sent=1), "complete", line,
                    skipped=["df"]) == touches.LOST
    assert classify(Expected(1), "client_timeout", "") == touches.ERROR
    assert classify(Expected(1), "complete", "Traceback") == touches.MISMATCH


def test_restored_details_are_read_from_any_status():
    statuses = [{"state": "running"},
                {"state": "complete", "restored": {"names": 3, "skipped": ["conn"]}}]
    assert touches.restored_of(statuses) == {"names": 3, "skipped": ["conn"]}
    assert touches.restored_of([{"state": "complete"}]) is None
    assert touches.restored_of([{"state": "complete", "restored": 5}]) == {
        "names": 5, "skipped": []}


def test_summary_uses_nearest_rank_and_says_nan_when_empty():
    values = [float(v) for v in range(1, 101)]
    assert touches.summary(values) == {"n": 100, "p50": 50.0, "p99": 99.0, "max": 100.0}
    empty = touches.summary([])
    assert empty["n"] == 0 and math.isnan(empty["p99"]) and math.isnan(empty["max"])
