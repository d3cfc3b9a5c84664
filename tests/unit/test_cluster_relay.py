"""What a relay link remembers of the calls it carries (gateway/cluster/relay.py), without
sockets: which calls get a ``killed`` status when the node behind it is lost."""

from __future__ import annotations

import orjson

from gateway.cluster.relay import RelayLink
from gateway.wire import envelopes


def link() -> tuple[RelayLink, list[str]]:
    released: list[str] = []
    return RelayLink("n2", "ws://127.0.0.1:1", lambda text: None, lambda link: None,
                     released.append), released


def inbound(chunk: dict, thread: str = "t1", call: str | None = "c1", **extra) -> str:
    return orjson.dumps({**envelopes.envelope(chunk, thread, call), **extra}).decode()


def test_a_running_call_gets_exactly_one_killed_status():
    relay, _ = link()
    relay._track(orjson.dumps({"type": "execute", "thread_id": "t1", "call_id": "c1",
                               "code": "1"}).decode(), outbound=True)
    relay._track(inbound(envelopes.hot_code("```python\n")), outbound=False)
    (killed,) = relay.lost_statuses("node n2 was lost")
    assert killed["thread_id"] == "t1" and killed["call_id"] == "c1"
    assert killed["chunk"]["content"] == {"state": "killed", "reason": "node n2 was lost"}
    assert relay.lost_statuses("again") == []  # never a second one


def test_finished_and_refused_calls_are_not_killed():
    relay, _ = link()
    for call in ("done", "refused"):
        relay._track(orjson.dumps({"type": "execute", "thread_id": "t1",
                                   "call_id": call}).decode(), outbound=True)
    relay._track(inbound(envelopes.status("complete"), call="done"), outbound=False)
    relay._track(inbound(envelopes.error("queue_full", "full"), call="refused"), outbound=False)
    assert relay.lost_statuses("lost") == []


def test_a_subscribers_view_of_a_running_call_counts():
    relay, _ = link()
    relay._track(inbound(envelopes.output("working\n"), call="seen"), outbound=False)
    relay._track(inbound(envelopes.output("old\n"), call="replayed", replayed=True),
                 outbound=False)
    assert [s["call_id"] for s in relay.lost_statuses("lost")] == ["seen"]


def test_a_released_thread_is_reported():
    relay, released = link()
    relay._track(inbound(envelopes.status("released", reason="drained"), call=None),
                 outbound=False)
    assert released == ["t1"]
    relay._track("not json", outbound=False)
    relay._track("[1, 2]", outbound=False)
    assert released == ["t1"]


def test_a_node_that_no_longer_serves_the_thread_is_reported():
    relay, released = link()
    relay._track(inbound(envelopes.error("thread_moved", "served by n3"), thread="t2"),
                 outbound=False)
    relay._track(inbound(envelopes.status("error", error_code="thread_moved"), thread="t3"),
                 outbound=False)
    relay._track(inbound(envelopes.status("error", error_code="queue_full"), thread="t4"),
                 outbound=False)
    assert released == ["t2", "t3"]


def test_a_shared_final_status_is_bounded():
    """A status stored in Redis for every node stays under MAX_BYTES, whatever it carries,
    and keeps how the call ended."""
    from gateway.cluster.results import MAX_BYTES, bounded

    small = {"owner": "alice", "files": [], "status": envelopes.envelope(
        envelopes.status("complete", tool_output="x" * 4000), "t1", "c1")}
    assert orjson.loads(bounded(small)) == small  # a usual status is stored whole
    huge = {"owner": "alice", "files": [{"filename": "f" * 200, "file_id": "file_1"}] * 500,
            "status": envelopes.envelope(envelopes.status(
                "error", reason="boom " * 10_000, tool_output="y" * 100_000,
                extra=["z" * 1000] * 100), "t1", "c1")}
    stored = orjson.loads(bounded(huge))
    assert len(bounded(huge)) <= MAX_BYTES
    assert stored["owner"] == "alice"
    assert stored["status"]["chunk"]["content"]["state"] == "error"
    assert stored["status"]["chunk"]["content"]["reason"].startswith("boom boom")
