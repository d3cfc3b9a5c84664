"""Hot code through the server: deltas in, hot_code out, then exactly that code runs."""

from __future__ import annotations

import json

import pytest

from gateway.wire.envelopes import FENCE_CLOSE, FENCE_OPEN

pytestmark = pytest.mark.asyncio(loop_scope="session")

CODE = 'msg = "héllo \\"world\\" 😀"\r\nprint(msg)\nprint(len(msg))'


def fragments(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


async def collect_hot_code(client, thread_id: str, call_id: str) -> list[str]:
    pieces = []
    while not pieces or pieces[-1] != FENCE_CLOSE:
        envelope = await client.next_envelope(thread_id, call_id, timeout=30)
        assert envelope["chunk"]["type"] == "hot_code", envelope
        pieces.append(envelope["chunk"]["content"])
    return pieces


async def test_json_deltas_stream_then_execute_exactly_that_code(client, running, thread_id):
    thread = client.thread(thread_id)
    arguments = json.dumps({"code": CODE, "other": {"code": "not this"}})
    async with await running.client() as watcher:
        await watcher.thread(thread_id).subscribe()
        await thread.send_code("c1", fragments(arguments, 3), "json")
        pieces = await collect_hot_code(client, thread_id, "c1")
        watched = await collect_hot_code(watcher, thread_id, "c1")
        assert pieces[0] == FENCE_OPEN and pieces[-1] == FENCE_CLOSE
        assert "".join(pieces[1:-1]) == CODE
        assert watched == pieces, "subscribers see the same hot_code stream live"
        await thread.execute(call_id="c1")
        result = await thread.collect("c1", timeout=60)
        assert result.state == "complete"
        assert result.output == 'héllo "world" 😀\n15\n'
        watched_result = await watcher.thread(thread_id).collect("c1", timeout=60)
        assert watched_result.output == result.output


async def test_raw_deltas_close_the_fence_at_execute(client, thread_id):
    thread = client.thread(thread_id)
    await thread.send_code("r1", fragments("x = 6\nx * 7", 1), "raw")
    await thread.execute(call_id="r1")
    result = await thread.collect("r1", timeout=60)
    assert result.hot_code == FENCE_OPEN + "x = 6\nx * 7" + FENCE_CLOSE
    assert result.output == "42\n"


@pytest.mark.parametrize("arguments", ['{"code": 42}', '{"cmd": "print(1)"}', "not json",
                                       '["print(1)"]'])
async def test_invalid_arguments_run_nothing(client, thread_id, arguments):
    thread = client.thread(thread_id)
    await thread.run("ran = False")
    await thread.send_code("bad", [arguments.replace("print(1)", "ran = True")], "json")
    await thread.execute(call_id="bad")
    result = await thread.collect("bad", timeout=60)
    assert result.state == "protocol_error"
    assert result.error["code"] == "bad_arguments"
    check = await thread.run("ran")
    assert check.output == "False\n"


async def test_deltas_after_execute_are_refused(client, thread_id):
    thread = client.thread(thread_id)
    await thread.send_code("once", ['{"code": "1"}'], "json")
    await thread.execute(call_id="once")
    await thread.collect("once", timeout=60)
    await thread.send_code("once", ["more"], "raw")
    reply = await client.next_envelope(thread_id, "once", timeout=30)
    assert reply["chunk"]["type"] == "error"
    assert reply["chunk"]["content"]["code"] == "call_executed"


async def test_execute_with_different_code_than_streamed_is_refused(client, thread_id):
    thread = client.thread(thread_id)
    await thread.send_code("mm", ["print(1)"], "raw")
    await thread.execute("print(2)", call_id="mm")
    result = await thread.collect("mm", timeout=60)
    assert result.state == "protocol_error"
    assert result.error["code"] == "code_mismatch"
    same = await thread.run("'ok'")
    assert same.state == "complete"
    await thread.send_code("same", ["print(3)"], "raw")
    await thread.execute("print(3)", call_id="same")
    assert (await thread.collect("same", timeout=60)).output == "3\n"
