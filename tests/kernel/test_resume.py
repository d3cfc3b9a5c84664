"""A dropped connection never costs a result: seq, resume with since_seq, gap, results by id."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import pytest

from gateway.client import GatewayClient
from support.gateways import TOKENS, session_of, start_gateway, stop_gateway, test_settings

pytestmark = pytest.mark.asyncio(loop_scope="session")

STEPS_CELL = """
import time
for i in range(8):
    print(f"step {i}", flush=True)
    time.sleep(0.05)
print("done")
"""
STEPS_OUTPUT = "".join(f"step {i}\n" for i in range(8)) + "done\n"
CODE_FRAGMENTS = ['{"code": "import time\\nfor i in range(8):\\n    ',
                  'print(f\\"step {i}\\", flush=True)\\n    time.sleep(0.05)\\n',
                  'print(\\"done\\")\\n"}']


def drop(client: GatewayClient) -> None:
    """Cut the TCP connection under the client: no close frame, as a network would."""
    client.connection.transport.abort()


async def run_with_drop(client: GatewayClient, thread_id: str, call_id: str,
                        drop_after: int) -> list[dict]:
    """Stream the call's code, execute it, and drop the connection after ``drop_after``
    envelopes of the call; collect everything the client ends up with."""
    received: list[dict] = []
    thread = client.thread(thread_id)
    reconnects = client.reconnects

    dropped = False

    async def maybe_drop() -> None:
        nonlocal dropped
        if len(received) == drop_after and not dropped:
            dropped = True
            drop(client)

    for fragment in CODE_FRAGMENTS:
        await thread.send_code(call_id, [fragment])
        await asyncio.sleep(0.01)
        if drop_after == 0 and not dropped:  # mid-way through the hot code
            await maybe_drop()
            # A delta written into a connection already dead is lost like any TCP write; a
            # client goes on once it knows the connection is back (docs/protocol.md, "Resuming").
            while client.reconnects == reconnects:
                await asyncio.sleep(0.01)
    await thread.execute(call_id=call_id)
    async for envelope in thread.stream(call_id):
        received.append(envelope)
        await maybe_drop()
    assert client.reconnects == reconnects + 1
    return received


@pytest.mark.parametrize("drop_after", [0, 1, 3, 5, 8, 11, 12])
async def test_a_dropped_connection_loses_nothing(running, thread_id, drop_after):
    client = await running.client()
    try:
        received = await run_with_drop(client, thread_id, f"c-{drop_after}", drop_after)
    finally:
        await client.close()
    kinds = [e["chunk"]["type"] for e in received]
    hot = "".join(e["chunk"]["content"] for e in received if kinds and
                  e["chunk"]["type"] == "hot_code")
    output = "".join(e["chunk"]["content"] for e in received
                     if e["chunk"]["type"] == "hot_code_output")
    assert hot.startswith("```python\n") and hot.endswith("\n```")
    assert output == STEPS_OUTPUT, (drop_after, kinds)
    statuses = [e for e in received if e["chunk"]["type"] == "status"]
    assert len(statuses) == 1 and statuses[0]["chunk"]["content"]["state"] == "complete"
    seqs = [e["seq"] for e in received]
    assert seqs == sorted(set(seqs)), "duplicates or disorder"


async def test_a_result_finished_while_away_is_replayed_on_resume(running, client, thread_id):
    thread = client.thread(thread_id)
    await thread.run("1")
    call = await thread.execute("print('while you were away')")
    drop(client)
    result = await thread.collect(call, timeout=120)
    assert result.state == "complete"
    assert result.output == "while you were away\n"
    assert result.status["tool_output"].startswith("while you were away")


async def test_a_gap_names_what_is_lost_and_still_tells_how_calls_ended(data_root):
    running = await start_gateway(test_settings(data_root / "tiny-replay", pool_size=1,
                                                replay_buffer_bytes=16384))
    try:
        watcher = await running.client()
        runner = await running.client()
        thread = runner.thread("gappy")
        await thread.run("1")
        seen = session_of(running.gateway, "gappy").replay.last_seq
        first = await thread.run("print('x' * 3000)")
        second = await thread.run("for i in range(40): print('y' * 200)")
        assert first.state == second.state == "complete"
        # A client that saw up to ``seen`` comes back after both calls ended.
        await watcher.send({"type": "subscribe", "thread_id": "gappy", "since_seq": seen})
        ack = await watcher.next_envelope("gappy", None, timeout=30)
        assert ack["chunk"]["type"] == "subscribed"
        gap = await watcher.next_envelope("gappy", None, timeout=30)
        assert gap["chunk"]["type"] == "gap"
        assert gap["chunk"]["content"]["first_seq"] == seen + 1
        first_final = await watcher.next_envelope("gappy", first.call_id, timeout=30)
        assert first_final["chunk"]["type"] == "status"
        assert first_final["chunk"]["content"]["state"] == "complete"
        # The second call: what the buffer still holds, or at least its final status (in the
        # gap's finals when the buffer no longer holds even that), exactly once.
        tail = []
        while True:
            envelope = await watcher.next_envelope("gappy", second.call_id, timeout=30)
            tail.append(envelope)
            if envelope["chunk"]["type"] == "status":
                break
        assert tail[-1]["chunk"]["content"]["state"] == "complete"
        last_missing = gap["chunk"]["content"]["last_seq"]
        held = [e["seq"] for e in tail if e["seq"] > last_missing]
        assert held == list(range(last_missing + 1, last_missing + 1 + len(held)))
        assert tail[-1]["seq"] == session_of(running.gateway, "gappy").replay.last_seq
        await watcher.close()
        await runner.close()
    finally:
        await stop_gateway(running)


def http_get_json(url: str, token: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


async def test_results_by_id_outlive_the_kernel_and_only_for_their_owner(running, client,
                                                                         thread_id):
    thread = client.thread(thread_id)
    done = await thread.run("import matplotlib.pyplot as plt\nplt.plot([1, 2]); plt.show()\n"
                            "print('answer', 42)")
    assert done.state == "complete"
    session = session_of(running.gateway, thread_id)
    assert await session.hibernate("requested", wait=True)
    assert session.kernel is None
    url = f"{running.http}/threads/{thread_id}/calls/{done.call_id}"
    status, body = await asyncio.to_thread(http_get_json, url, "tok-alice")
    assert status == 200
    assert body["status"]["state"] == "complete"
    assert "answer 42" in body["status"]["tool_output"]
    assert body["files"][0]["filename"] == "plot_1.png" and body["files"][0]["file_id"]
    # Another identity, or a made-up call, is 404 alike; no token is 401.
    assert (await asyncio.to_thread(http_get_json, url, "tok-bob"))[0] == 404
    assert (await asyncio.to_thread(http_get_json, url + "x", "tok-alice"))[0] == 404
    assert (await asyncio.to_thread(http_get_json, url, "nope"))[0] == 401
    # Over the websocket: the same final status, marked as replayed.
    await client.send({"type": "result", "thread_id": thread_id, "call_id": done.call_id})
    again = await client.next_envelope(thread_id, done.call_id, timeout=30)
    assert again["replayed"] is True
    assert again["chunk"] == done.envelopes[-1]["chunk"]


async def test_a_foreign_identity_can_neither_resume_nor_fetch(running, client, thread_id):
    thread = client.thread(thread_id)
    done = await thread.run("print('private')")
    bob = await GatewayClient.connect(running.url, "tok-bob")
    try:
        # The same id is Bob's own (new, empty) thread: nothing of Alice's is replayed.
        await bob.send({"type": "subscribe", "thread_id": thread_id, "since_seq": 0})
        subscribed = await bob.next_envelope(thread_id, None, timeout=30)
        assert subscribed["chunk"]["type"] == "subscribed", subscribed
        replayed = []
        with pytest.raises(TimeoutError):
            while True:  # a new thread's seqs start high: a gap before them, nothing else
                replayed.append(await bob.next_envelope(thread_id, None, timeout=1.0))
        assert [m["chunk"]["type"] for m in replayed] in ([], ["gap"]), replayed
        with pytest.raises(TimeoutError):
            replayed = await bob.next_envelope(thread_id, done.call_id, timeout=1.0)
            raise AssertionError(f"bob was replayed {replayed}")
        await bob.send({"type": "result", "thread_id": thread_id, "call_id": done.call_id})
        unknown = await bob.next_envelope(thread_id, done.call_id, timeout=30)
        assert unknown["chunk"]["content"]["code"] == "unknown_call"
    finally:
        await bob.close()
    assert "tok-bob" in TOKENS


async def test_a_retried_execute_is_idempotent(client, thread_id):
    thread = client.thread(thread_id)
    first = await thread.run("counter = globals().get('counter', 0) + 1\ncounter")
    await thread.execute("counter = globals().get('counter', 0) + 1\ncounter",
                         call_id=first.call_id)
    replayed = await client.next_envelope(thread_id, first.call_id, timeout=30)
    assert replayed["replayed"] is True
    assert replayed["chunk"] == first.envelopes[-1]["chunk"]
    check = await thread.run("counter")
    assert check.output == "1\n"  # the retry did not run the cell again
