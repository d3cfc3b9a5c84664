"""Hostile and broken clients against the real server (real kernels where an execution is needed).

Whatever a client sends, the answer is an error chunk or a clean close with a meaningful code, the
gateway stays up, and other clients and threads carry on.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import itertools
import json
import time
import urllib.parse
from pathlib import Path

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from gateway.client import FINAL_STATES
from gateway.errors import ProtocolError
from gateway.net import server
from gateway.net.admin import process_rss
from gateway.wire import protocol
from support.gateways import session_of, start_gateway, stop_gateway, test_settings, thread_key

pytestmark = pytest.mark.asyncio(loop_scope="session")

ALICE = {"Authorization": "Bearer tok-alice"}
BOB = {"Authorization": "Bearer tok-bob"}


# -- helpers ---------------------------------------------------------------------------------
def is_final(envelope: dict) -> bool:
    chunk = envelope["chunk"]
    return chunk["type"] == "error" or (
        chunk["type"] == "status" and chunk["content"].get("state") in FINAL_STATES)


async def recv_json(ws, timeout: float = 30) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_until(ws, predicate, timeout: float = 60) -> list[dict]:
    """Envelopes up to and including the first that satisfies ``predicate``."""
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        envelope = await recv_json(ws, deadline - time.monotonic())
        seen.append(envelope)
        if predicate(envelope):
            return seen


async def ping(ws, tag: str = "ping") -> None:
    """A subscribe round trip: proves the connection is open and answering."""
    await ws.send(json.dumps({"type": "subscribe", "thread_id": f"alive-{tag}"}))
    await recv_until(ws, lambda e: e["chunk"]["type"] == "subscribed"
                     and e["thread_id"] == f"alive-{tag}")


async def http_get(base: str, path: str, token: str | None = "tok-alice") -> tuple[int, bytes]:
    """A raw GET: the path goes on the wire exactly as given (no client-side normalisation)."""
    parts = urllib.parse.urlsplit(base)

    def get():
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    return await asyncio.to_thread(get)


async def healthy(running) -> bool:
    status, body = await http_get(running.http, "/healthz", token=None)
    return status == 200 and json.loads(body)["status"] == "ok"


def abort(ws) -> None:
    """Drop a client connection without a closing handshake (it may be half dead already)."""
    try:
        ws.transport.abort()
    except Exception:
        pass


async def close_threads(url: str, headers: dict, thread_ids) -> None:
    async with connect(url, additional_headers=headers) as ws:
        for thread_id in thread_ids:
            await ws.send(json.dumps({"type": "close", "thread_id": thread_id}))
        for _ in thread_ids:
            try:
                await recv_json(ws, 30)
            except TimeoutError:
                break


# -- identities ------------------------------------------------------------------------------
async def test_other_identity_cannot_reach_a_thread_or_its_files(running, client, thread_id):
    thread = client.thread(thread_id)
    made = await thread.run("open('alice.csv', 'w').write('a,b\\n1,2\\n')\nsecret = 'alice'")
    file_id = made.files[0]["file_id"]
    try:
        assert (await http_get(running.http, f"/files/{file_id}"))[0] == 200
        for path, token in ((f"/files/{file_id}", "tok-bob"),
                            (f"/files/{file_id}?token=tok-bob", None)):
            status, body = await http_get(running.http, path, token)
            assert status == 404 and b"a,b" not in body, (path, status)
        assert (await http_get(running.http, f"/files/{file_id}", token=None))[0] == 401
        async with connect(running.url, additional_headers=BOB) as bob:
            attempts = [
                {"type": "code_delta", "call_id": "b1", "delta": "print(secret)", "format": "raw"},
                {"type": "execute", "call_id": "b1"},
                {"type": "execute", "call_id": "b2", "code": "print(secret)"},
                {"type": "upload", "call_id": "b3", "filename": "evil.py",
                 "base64": base64.b64encode(b"x").decode()},
                {"type": "subscribe"},
                {"type": "restart"},
                {"type": "interrupt"},
                {"type": "close"},
            ]
            # The same id is Bob's own thread: each request acts there, and nothing says the
            # id is in use by somebody else.
            for attempt in attempts:
                await bob.send(json.dumps({**attempt, "thread_id": thread_id}))
            heard = []
            while not any(m["chunk"]["type"] == "status"
                          and m["chunk"]["content"]["state"] == "closed" for m in heard):
                heard.append(await recv_json(bob))
            assert not [m for m in heard if m["chunk"]["type"] == "error"], heard
            assert "alice" not in json.dumps(heard), heard  # neither her secret nor her file
            # Alice works on, untouched; Bob hears nothing of it.
            again = await thread.run("import os\nprint(secret, os.path.exists('evil.py'))")
            assert again.state == "complete" and again.output == "alice False\n"
            with pytest.raises(TimeoutError):
                leaked = await recv_json(bob, 1.0)
                raise AssertionError(f"bob received {leaked}")
        session = session_of(running.gateway, thread_id)
        assert session.owner == "alice"
    finally:
        await thread.close()


async def test_http_paths_cannot_escape_the_file_store_or_static_dir(running):
    for path in ("/files/../../etc/passwd", "/files/..%2F..%2Fetc%2Fpasswd",
                 "/files/file_" + "0" * 32 + "%00", "/files/file_" + "0" * 32 + "/../x",
                 "/static/../server.py", "/static/..%2Fserver.py", "/static/%2e%2e/app.py",
                 "/files/" + "a" * 10_000, "//etc/passwd", "/static/index.html/../../app.py"):
        status, body = await http_get(running.http, path)
        assert status in {400, 404, 414}, (path, status)
        assert b"root:" not in body and b"import" not in body, path
    assert await healthy(running)


# -- malformed frames ------------------------------------------------------------------------
async def test_deeply_nested_json_gets_error_chunks(running):
    depth = 100_000
    frames = [
        "[" * depth + "]" * depth,
        '{"a":' * depth + "1" + "}" * depth,
        json.dumps({"type": "execute", "thread_id": "nested", "call_id": "c"})[:-1]
        + ', "extra": ' + "[" * depth + "]" * depth + "}",
        '{"type": ' + "[" * depth + "]" * depth + "}",
    ]
    async with connect(running.url, additional_headers=ALICE, max_size=None) as ws:
        for frame in frames:
            await ws.send(frame)
            reply = await recv_json(ws)
            assert reply["chunk"]["type"] == "error", reply
            assert reply["chunk"]["content"]["code"] == "bad_request"
            assert len(reply["chunk"]["content"]["message"]) < 500
        await ping(ws, "nested")
    assert thread_key("nested") not in running.gateway.threads
    assert await healthy(running)


@pytest.mark.parametrize("fragmented", [False, True], ids=["one-frame", "fragments"])
async def test_oversized_message_is_closed_with_1009_and_the_gateway_lives(running, fragmented):
    limit = running.gateway.settings.max_message_bytes
    payload = '{"type": "execute", "thread_id": "big", "call_id": "c", "code": "'
    payload += "x" * (limit + 1 - len(payload) - 2) + '"}'
    assert len(payload.encode()) == limit + 1
    ws = await connect(running.url, additional_headers=ALICE, max_size=None)
    try:
        with pytest.raises(ConnectionClosed) as closed:
            if fragmented:
                async def pieces():
                    step = 2**20
                    for start in range(0, len(payload), step):
                        yield payload[start:start + step]
                await ws.send(pieces())
            else:
                await ws.send(payload)
            await recv_json(ws, 30)
        assert closed.value.rcvd is not None, "the server should close with a close frame"
        assert closed.value.rcvd.code == 1009
    finally:
        abort(ws)
    assert thread_key("big") not in running.gateway.threads
    assert await healthy(running)
    async with connect(running.url, additional_headers=ALICE) as ws:
        await ping(ws, "after-oversized")


async def test_binary_frames_are_refused_and_never_executed(running):
    message = json.dumps({"type": "execute", "thread_id": "binary-frame", "call_id": "c1",
                          "code": "1"}).encode()
    async with connect(running.url, additional_headers=ALICE) as ws:
        for frame in (message, b"\xff\xfe\x00", b""):
            await ws.send(frame)
            reply = await recv_json(ws)
            assert reply["chunk"]["type"] == "error"
            assert reply["chunk"]["content"]["code"] == "bad_request"
        await ping(ws, "binary")
    assert thread_key("binary-frame") not in running.gateway.threads


async def test_invalid_utf8_in_a_text_frame_closes_with_1007(running):
    async with connect(running.url, additional_headers=ALICE) as ws:
        await ws.send(b'{"type": "subscribe", "thread_id": "bad\xff\xfeutf8"}', text=True)
        with pytest.raises(ConnectionClosed) as closed:
            await recv_json(ws, 30)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007
    assert await healthy(running)
    async with connect(running.url, additional_headers=ALICE) as ws:
        await ping(ws, "after-utf8")


async def test_control_characters_and_escaped_surrogates_in_json_get_error_chunks(running):
    frames = [
        '{"type": "subscribe", "thread_id": "a\\u0000b"}',
        '{"type": "subscribe", "thread_id": "\\ud800"}',
        '{"type": "execute", "thread_id": "ok", "call_id": "c", "code": "\\udfff"}',
        '{"type": "subscribe", "thread_id": "ok"}\x00',
        '{"type": "subscribe", "thread_id": "ok", "thread_id": "../dup"}',
    ]
    async with connect(running.url, additional_headers=ALICE) as ws:
        for frame in frames:
            await ws.send(frame)
            reply = await recv_json(ws)
            assert reply["chunk"]["type"] == "error", (frame, reply)
            assert reply["chunk"]["content"]["code"] == "bad_request", (frame, reply)
        await ping(ws, "escapes")


HOSTILE_IDS = ["../etc", "a/../b", "..", "a\x00b", "x" * 10_000, "", "-rf", ".hidden", "a b",
               "a/b", "\u202eevil", "日本", 12, None, {"$ne": 1}, ["t1"], True]
HOSTILE_FILENAMES = ["../escape.txt", "/etc/passwd", "a/../../b.txt", "a\x00b.txt",
                     "x" * 5000, ".bashrc", "sub/.hidden", "a\\b.txt", "sub//x.txt", "./x",
                     "ok\u202etxt.exe", "new\nline.txt", "", "y" * 256 + ".txt", 7, None]


async def test_hostile_ids_and_filenames_get_error_chunks(running):
    before = set(running.gateway.threads)
    async with connect(running.url, additional_headers=ALICE, max_size=None) as ws:
        messages = []
        for bad in HOSTILE_IDS:
            messages += [
                {"type": "execute", "thread_id": bad, "call_id": "c1", "code": "1"},
                {"type": "execute", "thread_id": "hostile-ids", "call_id": bad, "code": "1"},
                {"type": "code_delta", "thread_id": bad, "call_id": "c1", "delta": "1"},
                {"type": "subscribe", "thread_id": bad},
                {"type": "close", "thread_id": bad},
                {"type": "upload", "thread_id": bad, "filename": "ok.txt", "base64": "eA=="},
            ]
        for bad in HOSTILE_FILENAMES:
            messages.append({"type": "upload", "thread_id": "hostile-files", "call_id": "u1",
                             "filename": bad, "base64": "eA=="})
        for message in messages:
            await ws.send(json.dumps(message))
            reply = await recv_json(ws)
            content = reply["chunk"]["content"]
            assert reply["chunk"]["type"] == "error", (message, reply)
            assert content["code"] in {"bad_request", "bad_filename"}, (message, content)
            assert len(content["message"]) < 400, "error messages must not echo huge input"
        await ping(ws, "hostile-ids")
    created = set(running.gateway.threads) - before - {thread_key("alive-hostile-ids")}
    assert created == set(), created
    assert await healthy(running)


# -- floods ----------------------------------------------------------------------------------
async def test_execute_flood_on_one_thread_is_bounded_by_the_queue(running, client, thread_id):
    limit = running.gateway.settings.max_queued_executions
    thread = client.thread(thread_id)
    await thread.run("done = []")
    calls = [f"flood-{i}" for i in range(4 * limit)]
    for i, call in enumerate(calls):
        await thread.execute(f"import time\ntime.sleep(0.1)\ndone.append({i})\nprint({i})",
                             call_id=call)
    results = {call: await thread.collect(call, timeout=300) for call in calls}
    try:
        for result in results.values():
            finals = [e for e in result.envelopes if is_final(e)]
            assert len(finals) == 1 and finals[0] is result.envelopes[-1]
        refused = [c for c, r in results.items() if r.state == "protocol_error"]
        accepted = [c for c, r in results.items() if r.state != "protocol_error"]
        assert refused, "a flood beyond the queue must be refused"
        assert {results[c].error["code"] for c in refused} == {"queue_full"}
        assert limit <= len(accepted) <= limit + 2  # the queue, the running one, a race
        assert all(results[c].state == "complete" for c in accepted)
        counts = [results[c].status["execution_count"] for c in accepted]
        assert counts == sorted(counts), "accepted executions run in the order they were sent"
        ran = await thread.run("print(done)")
        assert ran.output == f"[{', '.join(c.removeprefix('flood-') for c in accepted)}]\n"
        # The thread takes new work once the queue has drained.
        assert (await thread.run("len(done)")).state == "complete"
    finally:
        await thread.close()


async def _slow_consumer(tmp_path: Path):
    """A gateway, a client that never reads, and 100 executions printing ~1 MB each."""
    running = await start_gateway(test_settings(tmp_path / "slow", pool_size=2,
                                                max_queued_executions=200))
    baseline = process_rss("self")
    ws = await connect(running.url, additional_headers=ALICE, max_size=None, max_queue=1,
                       compression=None)
    executions = 100
    for i in range(executions):
        await ws.send(json.dumps({"type": "execute", "thread_id": "slow", "call_id": f"c{i}",
                                  "code": "print('x' * 999_000)"}))
    return running, ws, baseline, executions


async def test_slow_consumer_keeps_gateway_memory_bounded_and_others_served(tmp_path):
    running, ws, baseline, executions = await _slow_consumer(tmp_path)
    try:
        peak = 0
        deadline = time.monotonic() + 240
        other = await running.client()
        try:
            served = None
            while time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                peak = max(peak, process_rss("self") - baseline)
                session = running.gateway.threads.get(thread_key("slow"))
                if served is None and session and session.executions > 30:
                    # A well-behaved client is served while the slow one is stuck.
                    began = time.monotonic()
                    served = await other.thread("polite").run("print('served')", wait=60)
                    assert served.output == "served\n"
                    assert time.monotonic() - began < 30
                if session and session.executions >= executions:
                    break
            assert session and session.executions == executions, "executions stalled"
            assert served is not None
        finally:
            await other.close()
        # ~100 MB of output were produced for a client that read none of it.
        assert peak < server.OUTBOUND_BUFFER_BYTES + 96 * 2**20, f"RSS grew by {peak:,} bytes"
    finally:
        abort(ws)
        await stop_gateway(running)


async def test_slow_consumer_is_disconnected_promptly(tmp_path):
    running, ws, baseline, executions = await _slow_consumer(tmp_path)
    gauge = running.gateway.metrics.connections
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            session = running.gateway.threads.get(thread_key("slow"))
            if session and session.executions >= executions:
                break
        # All output was produced long ago (>64 MiB): the gateway must have cut the client.
        cut = False
        for _ in range(20):  # 10 s, well under the 20 s + 20 s of websocket keepalive
            if gauge._value.get() == 0 and not session_of(running.gateway, "slow").listeners:
                cut = True
                break
            await asyncio.sleep(0.5)
        assert cut, "the slow consumer is still connected"
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), 30)
        assert closed.value.rcvd is None  # aborted, not closed: no frame queues behind the backlog
    finally:
        abort(ws)
        await stop_gateway(running)


async def test_subscribe_flood_leaves_no_threads_behind(tmp_path):
    running = await start_gateway(test_settings(tmp_path / "squat", pool_size=0))
    try:
        count = 5000
        async with connect(running.url, additional_headers=ALICE) as ws:
            async def read_all():
                for _ in range(count):
                    await recv_json(ws)

            reader = asyncio.create_task(read_all())
            for i in range(count):
                await ws.send(json.dumps({"type": "subscribe", "thread_id": f"squat-{i}"}))
            await asyncio.wait_for(reader, 60)
        for _ in range(20):
            if not running.gateway.threads:
                break
            await asyncio.sleep(0.25)
        assert len(running.gateway.threads) == 0, (
            f"{len(running.gateway.threads)} empty threads outlived their only subscriber")
    finally:
        await stop_gateway(running)


# -- property-based fuzzing of the inbound protocol ------------------------------------------
class FuzzLink:
    """One raw websocket kept across hypothesis examples; everything received is recorded."""

    def __init__(self, running) -> None:
        self.running = running
        self.received: list[dict] = []
        self.arrived = asyncio.Event()
        self.calls = itertools.count()
        self.fresh_calls: list[tuple[str, str]] = []
        self.threads: set[str] = set()  # valid thread ids the fuzz reached: closed at the end

    async def open(self) -> None:
        self.ws = await connect(self.running.url, additional_headers=ALICE, max_size=None)
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            self.received.append(json.loads(message))
            self.arrived.set()

    async def wait_for(self, predicate, start: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        index = start
        while True:
            while index < len(self.received):
                if predicate(self.received[index]):
                    return index
                index += 1
            assert not self.reader.done(), f"connection ended: {self.ws.close_code}"
            self.arrived.clear()
            remaining = deadline - time.monotonic()
            assert remaining > 0, "no answer in time"
            try:
                await asyncio.wait_for(self.arrived.wait(), remaining)
            except TimeoutError:
                pass

    async def close(self) -> None:
        self.reader.cancel()
        await self.ws.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def fuzz_link(running):
    link = FuzzLink(running)
    await link.open()
    yield link
    await link.close()
    await close_threads(running.url, ALICE, sorted(link.threads | set(FUZZ_THREADS)))


FUZZ_THREADS = ["fz-a", "fz-b"]
IDS = ("thread_id", "call_id", "code")  # present more often than the other fields
SENTINEL = "fz-sentinel"
FRESH = object()
_leaf = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats()
         | st.text(max_size=20))
_json = st.recursive(_leaf, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
_code_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                            blacklist_characters="*<@"), max_size=30)


def _mostly(good, bad, odds: int = 4):
    """``good`` about ``odds`` times as often as ``bad``: enough valid requests get through."""
    return st.sampled_from([True] * odds + [False]).flatmap(lambda ok: good if ok else bad)


_types = _mostly(st.sampled_from(["execute"] * 4 + ["code_delta"] * 3 +
                                 ["subscribe", "interrupt", "upload", "restart", "close"]),
                 st.sampled_from(["", "EXECUTE", "execute ", "admin", "ping", "status"]) | _json)
_fields = {
    "thread_id": _mostly(st.sampled_from(FUZZ_THREADS),
                         st.sampled_from(HOSTILE_IDS[:12]) | _json, odds=6),
    "call_id": _mostly(st.sampled_from([FRESH, FRESH, "c1", "c2"]), _json, odds=6),
    "code": _mostly(st.sampled_from(["1 + 1", "print('fuzz')", "x = 1", "1/0", "",
                                     "import time; time.sleep(0.05)", "print('a' * 2000)",
                                     "open('fz.txt', 'w').write('fz')"]) | _code_text, _json),
    "delta": _mostly(_text | st.sampled_from(['{"code": "', "1 + 1", '"}', "\\u00e9"]), _json),
    "format": _mostly(st.sampled_from(["json", "raw"]), _json),
    "timeout": _mostly(st.floats(min_value=1, max_value=30), st.just(0.001) | _json),
    "filename": _mostly(st.sampled_from(["fz.csv", "sub/fz.txt"]),
                        st.sampled_from(HOSTILE_FILENAMES) | _json),
    "base64": _mostly(st.sampled_from(["", "eA==", "ZnV6eg=="]),
                      st.sampled_from(["not base64!", "eA"]) | _json),
}


@st.composite
def _frames(draw):
    """(kind, value): mostly request-shaped objects, some other JSON, raw text and binary."""
    kind = draw(st.sampled_from(["message"] * 8 + ["json", "text", "binary"]))
    if kind == "binary":
        return kind, draw(st.binary(max_size=64))
    if kind == "text":
        return kind, draw(_text)
    if kind == "json":
        return kind, draw(_json)
    message = draw(st.dictionaries(st.text(max_size=8), _json, max_size=2))
    message["type"] = draw(_types)
    for name, strategy in _fields.items():
        if draw(_mostly(st.just(True), st.just(False), odds=2 if name in IDS else 1)):
            message[name] = draw(strategy)
    return kind, message


def _encode(kind: str, value, link: FuzzLink) -> str | bytes:
    if kind in ("binary", "text"):
        return value
    if kind == "message":
        value = dict(value)
        if value.get("call_id") is FRESH:
            value["call_id"] = f"fresh-{next(link.calls)}"
        if value.get("thread_id") == SENTINEL:
            value["thread_id"] = "fz-a"
    return json.dumps(value)


@settings(max_examples=100, deadline=None, derandomize=False,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(frame=_frames())
async def test_protocol_fuzz_over_a_live_websocket(fuzz_link, frame):
    link = fuzz_link
    s = link.running.gateway.settings
    raw = _encode(*frame, link)
    start = len(link.received)
    await link.ws.send(raw)
    await link.ws.send(json.dumps({"type": "subscribe", "thread_id": SENTINEL}))
    ack = await link.wait_for(lambda e: e["chunk"]["type"] == "subscribed"
                              and e["thread_id"] == SENTINEL, start, 60)
    answered = link.received[start:ack]
    for envelope in answered:
        assert "type" not in envelope and envelope["stream_type"] == "code_execution"
        if envelope["chunk"]["type"] == "error":
            content = envelope["chunk"]["content"]
            assert isinstance(content["code"], str) and isinstance(content["message"], str)
            assert content["code"] != "internal_error", content
    if isinstance(raw, bytes):
        expected: ProtocolError | protocol.Request = ProtocolError("binary")
    else:
        try:
            expected = protocol.parse_request(raw, max_timeout=s.max_timeout,
                                              max_upload_bytes=s.max_upload_bytes)
        except ProtocolError as exc:
            expected = exc
    event(f"refused: {expected.code}" if isinstance(expected, ProtocolError)
          else f"valid: {type(expected).__name__}")
    if getattr(expected, "thread_id", None):
        link.threads.add(expected.thread_id)
    if isinstance(expected, ProtocolError):
        codes = [e["chunk"]["content"]["code"] for e in answered if e["chunk"]["type"] == "error"]
        assert expected.code in codes, (raw[:200], codes)
        return
    if isinstance(expected, protocol.Execute):
        key = (expected.thread_id, expected.call_id)
        index = await link.wait_for(lambda e: (e["thread_id"], e["call_id"]) == key
                                    and is_final(e), start, 120)
        final = link.received[index]["chunk"]
        assert final["type"] == "error" or final["content"]["state"] in FINAL_STATES
        event("execute ended: " + (final["content"]["code"] if final["type"] == "error"
                                   else final["content"]["state"]))
        if expected.call_id.startswith("fresh-"):
            link.fresh_calls.append(key)
    if isinstance(expected, protocol.Subscribe):
        assert any(e["chunk"]["type"] == "subscribed" and e["thread_id"] == expected.thread_id
                   for e in answered), answered


async def test_fuzzed_connection_still_executes_and_every_call_ended_once(fuzz_link):
    link = fuzz_link
    assert not link.reader.done(), "the fuzzed connection was closed"
    await link.ws.send(json.dumps({"type": "execute", "thread_id": "fz-a",
                                   "call_id": "after-fuzz", "code": "6 * 7"}))
    start = 0
    index = await link.wait_for(lambda e: e["call_id"] == "after-fuzz" and is_final(e), start,
                                120)
    final = link.received[index]["chunk"]
    assert final["type"] == "status" and final["content"]["state"] == "complete", final
    output = "".join(e["chunk"]["content"] for e in link.received
                     if e["call_id"] == "after-fuzz" and e["chunk"]["type"] == "hot_code_output")
    assert output == "42\n"
    await asyncio.sleep(1)  # a second final for some call would have arrived by now
    for key in link.fresh_calls:
        finals = [e for e in link.received if (e["thread_id"], e["call_id"]) == key
                  and is_final(e)]
        assert len(finals) == 1, (key, finals)
    errors = [e["chunk"]["content"] for e in link.received if e["chunk"]["type"] == "error"]
    assert all(c["code"] != "internal_error" for c in errors)
    assert await healthy(link.running)
