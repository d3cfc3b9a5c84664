"""Sequence numbers, the replay buffer and results by id: pure, with a fake clock."""

from __future__ import annotations

import time

from hypothesis import given
from hypothesis import strategies as st

from gateway.wire.replay import CallResults, ReplayBuffer, approximate_size, final_state


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def output(text: str, call: str = "c1") -> dict:
    return {"stream_type": "code_execution", "chunk": {"type": "hot_code_output",
                                                        "content": text},
            "thread_id": "t", "call_id": call}


def status(state: str, call: str = "c1", tool_output: str | None = None) -> dict:
    content: dict = {"state": state}
    if tool_output is not None:
        content["tool_output"] = tool_output
    return {"stream_type": "code_execution", "chunk": {"type": "status", "content": content},
            "thread_id": "t", "call_id": call}


def test_every_envelope_gets_the_next_seq():
    buffer = ReplayBuffer(10_000, 60)
    seqs = [buffer.stamp(output(str(i)))["seq"] for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    assert buffer.last_seq == 5


@given(st.lists(st.text(max_size=50), min_size=1, max_size=40), st.data())
def test_resuming_from_any_seq_gives_exactly_what_came_after(texts, data):
    buffer = ReplayBuffer(1_000_000, 60)
    sent = [buffer.stamp(output(text)) for text in texts]
    seen = data.draw(st.integers(0, len(sent)))
    replay = buffer.since(seen)
    assert replay.gap is None
    assert replay.missed == sent[seen:]


def test_a_gap_is_named_and_the_calls_that_ended_in_it_are_still_told():
    buffer = ReplayBuffer(2_000, 60)
    buffer.stamp(output("a" * 100, "c1"))
    first_status = buffer.stamp(status("complete", "c1"))
    for _ in range(30):  # pushes everything above out of the 2,000-byte buffer
        buffer.stamp(output("b" * 200, "c2"))
    last = buffer.stamp(status("error", "c2"))
    replay = buffer.since(0)
    assert replay.gap is not None
    first_missing, last_missing = replay.gap
    assert first_missing == 1
    assert last_missing == replay.missed[0]["seq"] - 1
    assert replay.ended_in_gap == [first_status]
    assert replay.missed[-1] is last
    # No duplicate and no hole between the gap and what is replayed.
    assert [m["seq"] for m in replay.missed] == list(range(last_missing + 1, last["seq"] + 1))


def test_the_buffer_stays_within_its_cap_under_a_flood():
    buffer = ReplayBuffer(64 * 1024, 600)
    for _ in range(10_000):
        buffer.stamp(output("x" * 1000))
    assert buffer.size <= 64 * 1024
    assert buffer.last_seq == 10_000


def test_the_cap_bounds_real_memory_not_just_the_estimate():
    import tracemalloc

    cap = 2 * 2**20
    for size in (10, 300, 5000):  # many tiny envelopes are the costly case per byte
        tracemalloc.start()
        buffer = ReplayBuffer(cap, 600)
        for _ in range(4 * cap // (size + 100)):
            buffer.stamp(output("x" * size))
        held, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert held < 1.25 * cap, (size, held)


def test_old_envelopes_age_out():
    clock = Clock()
    buffer = ReplayBuffer(1_000_000, 60, clock=clock)
    buffer.stamp(output("old"))
    clock.now += 61
    recent = buffer.stamp(output("new"))
    replay = buffer.since(0)
    assert replay.gap == (1, 1)
    assert replay.missed == [recent]


def test_a_client_ahead_of_the_buffer_gets_nothing_twice():
    buffer = ReplayBuffer(1_000, 60)
    buffer.stamp(output("x"))
    assert buffer.since(99).missed == []
    assert buffer.since(1).missed == []


def test_final_states_and_sizes():
    assert final_state(status("complete")) == "complete"
    assert final_state(status("running")) is None
    assert final_state(output("x")) is None
    assert approximate_size(output("x" * 1000)) > 1000


def test_results_belong_to_their_owner_and_expire():
    clock = Clock()
    results = CallResults(retention=3600, clock=clock)
    envelope = status("complete")
    results.record("t", "c1", "alice", envelope, [{"filename": "a.png", "file_id": "f",
                                                   "mime_type": "image/png"}])
    assert results.get("t", "c1", "alice") is envelope
    assert results.finished("t", "c1", "alice").files[0]["file_id"] == "f"
    assert results.get("t", "c1", "bob") is None
    assert results.get("t", "nope", "alice") is None
    clock.now += 3601
    assert results.get("t", "c1", "alice") is None
    assert len(results) == 0


def test_results_are_bounded_in_count():
    results = CallResults(retention=3600, max_calls=3)
    for i in range(5):
        results.record("t", f"c{i}", "alice", status("complete", f"c{i}"))
    assert len(results) == 3
    assert results.get("t", "c0", "alice") is None
    assert results.get("t", "c4", "alice") is not None


def test_results_are_bounded_in_bytes_oldest_first():
    results = CallResults(retention=3600, max_bytes=20_000)
    for i in range(10):
        results.record("t", f"c{i}", "alice", status("complete", f"c{i}", "x" * 4000))
    assert results.bytes <= 20_000
    assert 1 <= len(results) < 10
    assert results.get("t", "c9", "alice") is not None and results.get("t", "c0", "alice") is None
    results.record("t", "c9", "alice", status("complete", "c9"))  # a re-record replaces
    assert results.bytes == sum(call.size for call in results._calls.values())


def test_a_reused_thread_id_continues_above_its_earlier_seqs():
    from gateway.wire.replay import seq_origin

    earlier = ReplayBuffer(1_000, 60, start_after=seq_origin())
    last = [earlier.stamp(output(str(i)))["seq"] for i in range(3)][-1]
    time.sleep(0.001)  # the guarantee: fewer envelopes than microseconds went by
    later = ReplayBuffer(1_000, 60, start_after=seq_origin())
    assert later.stamp(output("again"))["seq"] > last
    assert last < 2**53
