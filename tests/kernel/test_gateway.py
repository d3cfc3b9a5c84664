"""End to end through a real server, real websocket clients and real sandboxed kernels."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import urllib.request

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from gateway.client import is_final
from support.gateways import session_of, thread_key

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_state_survives_between_turns(client, thread_id):
    thread = client.thread(thread_id)
    first = await thread.run("x = 41")
    assert first.state == "complete"
    second = await thread.run("x + 1")
    assert second.state == "complete"
    assert second.output.strip() == "42"
    assert second.status["execution_count"] == first.status["execution_count"] + 1


async def test_working_directory_and_imports_persist(client, thread_id):
    thread = client.thread(thread_id)
    await thread.run("import os, json\nos.makedirs('sub', exist_ok=True)\nos.chdir('sub')")
    result = await thread.run("print(os.getcwd(), json.dumps([1]))")
    assert result.output == "/mnt/data/sub [1]\n"


async def test_stdout_streams_in_order_before_the_status(client, thread_id):
    thread = client.thread(thread_id)
    call = await thread.execute(
        "import time\nfor i in range(3):\n    print('line', i, flush=True)\n    time.sleep(0.3)")
    seen = []
    async for envelope in thread.stream(call):
        chunk = envelope["chunk"]
        if chunk["type"] == "hot_code_output":
            seen.append(chunk["content"])
        if chunk["type"] == "status":
            status = chunk["content"]
    assert "".join(seen) == "line 0\nline 1\nline 2\n"
    assert len(seen) >= 2, "output should arrive while the cell runs, not in one piece at the end"
    assert status["state"] == "complete"


async def test_every_line_of_a_flushing_loop_arrives(client, thread_id):
    # One iopub message per line, faster than a busy gateway reads: with ZeroMQ's default
    # high-water mark the kernel dropped blocks of hundreds of lines (and could drop "idle").
    thread = client.thread(thread_id)
    hwm = await thread.run("import zmq\n"
                           "print(get_ipython().kernel.iopub_thread.socket.get(zmq.SNDHWM))")
    assert hwm.output == "0\n", hwm.output
    lines = 20_000
    result = await thread.run(f"import sys\nfor i in range({lines}):\n"
                              "    sys.stdout.write(f'{i}\\n')\n    sys.stdout.flush()")
    assert result.state == "complete", result.status
    assert result.output.splitlines() == [str(i) for i in range(lines)]


async def test_every_envelope_carries_routing_keys_and_one_status(client, thread_id):
    thread = client.thread(thread_id)
    result = await thread.run("print('hi')\n1")
    for envelope in result.envelopes:
        assert envelope["stream_type"] == "code_execution"
        assert envelope["thread_id"] == thread_id
        assert envelope["call_id"] == result.call_id
        assert "type" not in envelope
    statuses = [e for e in result.envelopes if e["chunk"]["type"] == "status"]
    assert len(statuses) == 1 and statuses[0] is result.envelopes[-1]
    assert result.hot_code == "```python\nprint('hi')\n1\n```"
    assert result.output == "hi\n1\n"


async def test_plot_yields_a_valid_png(client, thread_id):
    from PIL import Image

    thread = client.thread(thread_id)
    result = await thread.run(
        "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.title('t')\nplt.show()")
    assert result.state == "complete"
    assert len(result.files) == 1
    plot = result.files[0]
    assert plot["filename"] == "plot_1.png"
    assert plot["mime_type"] == "image/png"
    assert plot["file_id"].startswith("file_")
    data = base64.b64decode(plot["base64"])
    image = Image.open(io.BytesIO(data))
    image.verify()
    assert image.size[0] > 100 and image.size[1] > 100
    second = await thread.run("plt.plot([1, 2]); plt.show()")
    assert [f["filename"] for f in second.files] == ["plot_2.png"]


async def test_exception_gives_clean_traceback_and_error_state(client, thread_id):
    thread = client.thread(thread_id)
    result = await thread.run("def f():\n    return 1 / 0\nf()")
    assert result.state == "error"
    assert "ZeroDivisionError" in result.output
    assert "\x1b" not in result.output
    assert result.status["error"]["ename"] == "ZeroDivisionError"
    again = await thread.run("'still alive'")
    assert again.state == "complete" and "still alive" in again.output


async def test_infinite_loop_times_out_and_thread_recovers(client, thread_id):
    thread = client.thread(thread_id)
    await thread.run("kept = 'yes'")
    result = await thread.run("while True:\n    pass", timeout=1.5)
    assert result.state == "timeout"
    assert "timed out" in result.status["reason"]
    after = await thread.run("kept")
    assert after.state == "complete" and "yes" in after.output


async def test_two_threads_run_concurrently_and_do_not_share_variables(client, thread_id):
    slow, fast = client.thread(thread_id + "-slow"), client.thread(thread_id + "-fast")
    await asyncio.gather(slow.run("secret = 'slow'"), fast.run("pass"))
    slow_call = await slow.execute("import time\ntime.sleep(3)\n'slow done'")
    fast_result = await fast.run("'secret' in globals()")
    # The fast thread finished while the slow one was still sleeping: no final status yet.
    pending = list(client._calls[(slow.id, slow_call)]._queue)
    assert not any(is_final(e) for e in pending)
    slow_result = await slow.collect(slow_call, timeout=60)
    assert fast_result.output.strip() == "False"
    assert slow_result.state == "complete"


async def test_wrong_or_missing_token_is_refused_at_handshake(running):
    for headers in ({"Authorization": "Bearer wrong"}, {}):
        with pytest.raises(InvalidStatus) as info:
            async with connect(running.url, additional_headers=headers):
                pass
        assert info.value.response.status_code == 401


async def test_token_in_query_string_is_accepted(running):
    async with connect(running.url + "?token=tok-alice") as ws:
        await ws.send(json.dumps({"type": "subscribe", "thread_id": "query-token"}))
        reply = json.loads(await ws.recv())
        assert reply["chunk"]["type"] == "subscribed"


async def test_malformed_messages_get_error_chunks_and_connection_carries_on(running):
    async with connect(running.url, additional_headers={"Authorization": "Bearer tok-alice"}) as ws:
        for bad in ["{not json", '{"type": "bogus"}', '{"type": "execute"}', "[]", b"\x00\x01"]:
            await ws.send(bad)
            reply = json.loads(await ws.recv())
            assert reply["chunk"]["type"] == "error", bad
            assert reply["chunk"]["content"]["code"] in {"bad_request", "unknown_type"}
            assert reply["chunk"]["content"]["message"]
        await ws.send(json.dumps({"type": "execute", "thread_id": "after-bad", "call_id": "c1",
                                  "code": "6 * 7"}))
        while True:
            envelope = json.loads(await ws.recv())
            if is_final(envelope):
                break
            if envelope["chunk"]["type"] == "hot_code_output":
                assert envelope["chunk"]["content"].strip() == "42"
        assert envelope["chunk"]["content"]["state"] == "complete"


async def test_another_identity_using_the_same_id_gets_a_thread_of_its_own(running, client,
                                                                          thread_id):
    """Thread ids are scoped per identity: Bob's requests for Alice's id act on Bob's own
    thread. Nothing tells him the id is in use, and nothing he does reaches Alice's."""
    await client.thread(thread_id).run("mine = 1\nopen('alice.txt', 'w').write('a')")
    async with await running.client("tok-bob") as bob:
        theirs = bob.thread(thread_id)
        await bob.send({"type": "subscribe", "thread_id": thread_id})
        subscribed = await bob.next_envelope(thread_id, None, timeout=30)
        assert subscribed["chunk"]["type"] == "subscribed", subscribed
        seen = await theirs.run("import os\nprint(sorted(os.listdir('.')))\nmine")
        assert seen.output.startswith("[]\n") and seen.state == "error", seen.envelopes
        assert "NameError" in json.dumps(seen.envelopes)
        await theirs.restart()
        await theirs.interrupt()
        await theirs.close()
        states = []
        while "closed" not in states:  # after bob's own restart's status
            seen = await bob.next_envelope(thread_id, None, timeout=30)
            if seen["chunk"]["type"] == "status":
                states.append(seen["chunk"]["content"]["state"])
        assert states == ["restarted", "closed"], states
    assert thread_key(thread_id, "alice") in running.gateway.threads
    after = await client.thread(thread_id).run("print(mine, open('alice.txt').read())")
    assert after.output == "1 a\n" and after.status["execution_count"] == 2, after.envelopes


async def test_new_thread_gets_a_prewarmed_kernel(running, client, thread_id):
    pool = running.gateway.pool
    for _ in range(300):  # the pool refills in the background after earlier tests
        if pool.snapshot()["warm"] >= 1:
            break
        await asyncio.sleep(0.1)
    warm_ids = {k.id for k in pool._warm}
    starts_before = pool.stats.starts
    result = await client.thread(thread_id).run("1 + 1")
    assert result.state == "complete"
    session = session_of(running.gateway, thread_id)
    assert session.kernel.id in warm_ids, "the thread should get a kernel started ahead of time"
    # A refill may have begun, but the lease itself started nothing on the request path.
    assert pool.stats.starts - starts_before <= 1


async def test_pool_warm_up_cell_leaves_no_trace(client, thread_id):
    # Pooled kernels run a throwaway cell so the first real one is fast; a user must not be
    # able to tell: first execution count 1, no output history, no `_` from it.
    result = await client.thread(thread_id).run("print(repr(_), dict(Out), len(In))")
    assert result.state == "complete"
    assert result.status["execution_count"] == 1
    assert result.output == "'' {} 2\n"

async def test_healthz_reports_pool_and_sandbox(running):
    def get():
        request = urllib.request.Request(running.http + "/healthz",
                                         headers={"Authorization": "Bearer tok-alice"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    health = await asyncio.to_thread(get)
    assert health["status"] == "ok"
    assert health["sandbox"] == "bubblewrap"
    assert "memory" in health["limits"]["enforced"]
    assert health["pool"]["max_kernels"] == running.gateway.settings.max_kernels
    capacity = health["capacity"]
    assert capacity["kernel_limit"] == running.gateway.settings.kernel_limit
    assert 0 < capacity["memory_floor_bytes"] and 0 < capacity["memory_available_bytes"]


async def test_execution_request_for_unknown_call_without_code_is_an_error(client, thread_id):
    await client.send({"type": "execute", "thread_id": thread_id, "call_id": "nothing"})
    reply = await client.next_envelope(thread_id, "nothing", timeout=30)
    assert reply["chunk"]["type"] == "error"
    assert re.search("no code", reply["chunk"]["content"]["message"])
