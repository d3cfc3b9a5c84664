"""Three real gateway nodes (separate processes, real sandboxed kernels) behind a real HAProxy,
with a real redis-server and moto's S3 server, all on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from gateway.client import GatewayClient
from scripts.benchlib.cluster import ADMIN_TOKEN, CLUSTER_TOKEN, REPO, in_thread
from support.host import needs_linux
from support.http import download

pytestmark = [pytest.mark.kernel, needs_linux]
WAIT = 300  # generous: only to avoid hangs on a loaded machine


def normalized(result) -> list[dict]:
    """A call's envelopes without what differs between any two runs (ids, seq, timing)."""
    out = []
    for envelope in result.envelopes:
        envelope = {k: v for k, v in envelope.items() if k not in ("seq", "call_id")}
        chunk = dict(envelope["chunk"])
        if chunk["type"] == "status":
            chunk["content"] = {k: v for k, v in chunk["content"].items()
                                if k not in ("duration_ms", "execution_count")}
        envelope["chunk"] = chunk
        out.append(envelope)
    return out


async def test_relayed_thread_gives_the_same_envelopes_as_a_direct_connection(clients):
    direct = clients["n2"].thread("relay-same")
    relayed = clients["n1"].thread("relay-same")
    first = await direct.run("where = 'n2'\nprint('set')", wait=WAIT)  # n2 claims it
    assert first.state == "complete", first.envelopes
    code = ("import sys\nprint('out', where)\nprint('err', file=sys.stderr)\n"
            "open('/mnt/data/same.txt', 'w').write('x')\n1 + 1")
    one = await direct.run(code, wait=WAIT)
    two = await relayed.run(code, wait=WAIT)
    assert "out n2" in two.output  # the relayed call ran in n2's kernel
    assert one.state == two.state == "complete"
    # The file chunk names a new file id each time; everything else is equal.
    for result in (one, two):
        for envelope in result.envelopes:
            if envelope["chunk"]["type"] == "code_interpreter_stream":
                envelope["chunk"]["content"]["file_id"] = "file_x"
    assert normalized(one) == normalized(two)


async def test_subscribe_through_another_node_sees_the_live_stream(clients):
    owner = clients["n2"].thread("relay-watch")
    await owner.run("1", wait=WAIT)
    watcher = clients["n3"].thread("relay-watch")
    await watcher.subscribe()
    call_id = await clients["n1"].thread("relay-watch").execute(
        "for i in range(3): print('line', i)")
    seen = await watcher.collect(call_id, WAIT)
    assert seen.state == "complete"
    assert seen.output == "line 0\nline 1\nline 2\n"


async def test_isolation_across_nodes(cluster, clients):
    thread = clients["front"].thread("alice-private")
    result = await thread.run("open('/mnt/data/secret.txt', 'w').write('alice only')",
                              wait=WAIT)
    (stored,) = result.files
    for node in cluster.nodes.values():
        bob = await GatewayClient.connect(node.url, "tok-bob", reconnect=False)
        try:
            # The same id is bob's own thread, on whichever node: nothing of alice's in it.
            await bob.send({"type": "subscribe", "thread_id": "alice-private"})
            answer = await bob.next_envelope("alice-private", None, timeout=WAIT)
            assert answer["chunk"]["type"] == "subscribed", answer
            seen = await bob.thread("alice-private").run(
                "import os\nprint(os.path.exists('/mnt/data/secret.txt'))", wait=WAIT)
            assert seen.output == "False\n", seen.envelopes
            await bob.thread("alice-private").close()
        finally:
            await bob.close()
        status, _, _ = await download(node.http, stored["file_id"], token="tok-bob")
        assert status == 404
        status, body, _ = await download(node.http, stored["file_id"])
        assert (status, body) == (200, b"alice only")


def http_put(base: str, path: str, body: bytes, token: str = "tok-alice",
             headers: dict | None = None, chunked: bool = False) -> tuple[int, dict]:
    """PUT ``body`` (blocking): the status and the parsed JSON answer."""
    address = base.removeprefix("http://")
    connection = http.client.HTTPConnection(address, timeout=WAIT)
    try:
        sent = {"Authorization": f"Bearer {token}", **(headers or {})}
        if not chunked:
            sent["Content-Length"] = str(len(body))
        connection.request("PUT", path, body=iter([body[:1000], body[1000:]]) if chunked
                           else body, headers=sent, encode_chunked=chunked)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


async def test_http_upload_works_on_every_node(cluster, clients):
    """The thread is n2's: a PUT to any node (or HAProxy) lands in n2's /mnt/data, with the
    owner's answer; another identity is refused everywhere, also posing as a node."""
    owner = clients["n2"].thread("http-everywhere")
    await owner.run("where = 'n2'", wait=WAIT)
    entries = [(name, node.http) for name, node in cluster.nodes.items()]
    entries.append(("front", cluster.haproxy.http))
    for number, (name, base) in enumerate(entries):
        # n1 gets a body of several of the owner's 8 MiB parts, streamed through the relay.
        data = os.urandom(9 * 2**20 + 7) if name == "n1" else f"via {name}".encode()
        status, answer = await asyncio.to_thread(
            http_put, base, f"/threads/http-everywhere/files/up-{number}.bin", data,
            chunked=name == "n3")
        assert status == 201, answer
        assert answer["filename"] == f"up-{number}.bin" and answer["size"] == len(data)
        assert answer["path"] == f"/mnt/data/up-{number}.bin"
        assert answer["sha256"] == hashlib.sha256(data).hexdigest()
        assert answer["file_id"].startswith("file_")
        assert CLUSTER_TOKEN not in json.dumps(answer)
        seen = await clients[name].thread("http-everywhere").run(
            "import hashlib\n"
            f"print(where, hashlib.sha256(open('/mnt/data/up-{number}.bin', 'rb').read())"
            ".hexdigest())", wait=WAIT)
        assert seen.output == f"n2 {answer['sha256']}\n", seen.envelopes  # n2's kernel
        status, body, _ = await download(cluster.nodes["n3"].http, answer["file_id"])
        assert (status, body) == (200, data)

    for name, base in entries:
        # Another identity's PUT to the same id lands in a thread of its own.
        status, answer = await asyncio.to_thread(
            http_put, base, "/threads/http-everywhere/files/bob.txt", b"bob was here",
            token="tok-bob")
        assert status == 201 and "sha256" in answer, (name, answer)
        # A client cannot pose as a node relaying for alice without the cluster token.
        status, answer = await asyncio.to_thread(
            http_put, base, "/threads/http-everywhere/files/bob.txt", b"bob was here",
            token="tok-bob",
            headers={"X-Gateway-Cluster-Secret": "guess", "X-Gateway-Identity": "alice"})
        assert status == 401, (name, answer)
    check = await owner.run("import os\nprint(os.path.exists('/mnt/data/bob.txt'))", wait=WAIT)
    assert check.output == "False\n"

    # A thread nobody holds is claimed by the node the upload reached, as execute does.
    status, answer = await in_thread(lambda: http_put(
        cluster.nodes["n3"].http, "/threads/http-unowned/files/first.txt", b"first"))
    assert status == 201, answer
    first = await clients["n1"].thread("http-unowned").run(
        "print(open('/mnt/data/first.txt').read())", wait=WAIT)
    assert first.output == "first\n"
    claim = await in_thread(lambda: redis_get(cluster.redis.url, "gw:claim:alice/http-unowned"))
    assert claim.startswith("n3 "), claim


def call_status(base: str, thread_id: str, call_id: str, token: str) -> tuple[int, dict]:
    """GET /threads/{thread}/calls/{call} (blocking): the status and the parsed JSON."""
    request = urllib.request.Request(f"{base}/threads/{thread_id}/calls/{call_id}",
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=WAIT) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def redis_get(url: str, key: str) -> str | None:
    import redis

    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return client.get(key)
    finally:
        client.close()


async def test_node_killed_mid_cell(cluster, clients):
    n2 = cluster.nodes["n2"]
    owner = clients["n2"].thread("failover")
    uploaded = await owner.upload("up.txt", b"uploaded bytes")
    assert uploaded["type"] == "file_uploaded", uploaded
    made = await owner.run("open('/mnt/data/gen.csv', 'w').write('a,b\\n1,2\\n')\nkeep = 41",
                           wait=WAIT)
    assert made.state == "complete"
    watched = clients["n1"].thread("failover")
    call_id = await watched.execute("import time\nprint('started', flush=True)\ntime.sleep(120)")
    first = await clients["n1"].next_envelope("failover", call_id, timeout=WAIT)
    while first["chunk"]["type"] != "hot_code_output":
        first = await clients["n1"].next_envelope("failover", call_id, timeout=WAIT)
    await in_thread(n2.kill)

    lost = await watched.collect(call_id, WAIT)
    assert lost.state == "killed"
    assert "n2 was lost" in lost.status["reason"]

    # The next request waits out n2's lease and runs on another node, files restored.
    after = await watched.run("import hashlib\n"
                              "print(open('/mnt/data/up.txt').read())\n"
                              "print(open('/mnt/data/gen.csv').read())\n"
                              "print('keep', keep)\n"
                              "marker = 'new owner'", wait=WAIT)
    assert after.state == "complete", after.envelopes
    assert after.status["kernel_restarted"] is True
    assert "restored" in after.status["reason"] and "snapshot" in after.status["reason"]
    assert "uploaded bytes" in after.output and "a,b" in after.output
    # The variables came back too: the thread's last snapshot is in the shared store.
    assert "keep 41" in after.output and after.status["restored"]["names"] >= 1, after.status
    # Exactly one final status for the killed call: nothing else arrived for it.
    assert clients["n1"]._calls[("failover", call_id)].empty()

    # The calls' final statuses outlive n2 (shared in Redis): on every node that is up, a
    # `result` request and GET /threads/{t}/calls/{c} give the killed call's one `killed`
    # status and the status of the call that completed on n2; a retried execute of the
    # killed call gives its status again and runs nothing; bob gets nothing of it anywhere.
    for name in ("n1", "n3"):
        node, client = cluster.nodes[name], clients[name]
        await client.send({"type": "result", "thread_id": "failover", "call_id": call_id})
        answer = await client.next_envelope("failover", call_id, timeout=WAIT)
        assert answer["chunk"]["content"] == lost.status, answer
        assert answer["replayed"] is True
        retried = await client.thread("failover").collect(
            await client.thread("failover").execute("print('ran twice')", call_id=call_id),
            WAIT)
        assert [e["chunk"]["content"] for e in retried.envelopes] == [lost.status]
        status, body = await in_thread(call_status, node.http, "failover", call_id,
                                       "tok-alice")
        assert (status, body["status"]) == (200, lost.status), body
        status, body = await in_thread(call_status, node.http, "failover", made.call_id,
                                       "tok-alice")
        assert status == 200 and body["status"]["state"] == "complete", body
        assert [f["file_id"] for f in body["files"]] == [f["file_id"] for f in made.files]
        for call in (call_id, made.call_id):
            status, _ = await in_thread(call_status, node.http, "failover", call, "tok-bob")
            assert status == 404

    # Both files download, with the same sha256, from every node that is up.
    (generated,) = made.files
    expected = {generated["file_id"]: b"a,b\n1,2\n",
                uploaded["content"]["file_id"]: b"uploaded bytes"}
    assert uploaded["content"]["sha256"] == hashlib.sha256(b"uploaded bytes").hexdigest()
    for node in (cluster.nodes["n1"], cluster.nodes["n3"]):
        for file_id, data in expected.items():
            status, body, headers = await download(node.http, file_id)
            assert status == 200
            assert headers["X-File-Sha256"] == hashlib.sha256(data).hexdigest()
            assert body == data

    # n2 comes back with its old data directory: it runs nothing for the thread it lost.
    await in_thread(n2.start)
    await in_thread(n2.wait_ready)
    back = await GatewayClient.connect(n2.url, "tok-alice", reconnect=False)
    try:
        again = await back.thread("failover").run("print(marker)", wait=WAIT)
    finally:
        await back.close()
    assert again.output == "new owner\n"  # the new owner's kernel, relayed
    assert (await in_thread(n2.health))["threads"] == 0
    status, body, headers = await download(n2.http, generated["file_id"])
    assert (status, body) == (200, b"a,b\n1,2\n")
    clients["n2"] = await GatewayClient.connect(n2.url, "tok-alice", reconnect=False)


async def test_a_stale_node_never_runs_a_cell_of_a_thread_it_lost(cluster, clients):
    """A node frozen past its lease (a partition) finds another node holds the thread when
    it wakes: its stale claim runs nothing."""
    n3 = cluster.nodes["n3"]
    thread = clients["n3"].thread("stale")
    await thread.run("where = 'n3'", wait=WAIT)
    n3.process.send_signal(signal.SIGSTOP)
    try:
        taken = await clients["n1"].thread("stale").run("where = 'elsewhere'", wait=WAIT)
    finally:
        n3.process.send_signal(signal.SIGCONT)
    assert taken.state == "complete" and taken.status["kernel_restarted"] is True
    woke = await thread.run("print(where)", wait=WAIT)
    assert woke.output == "elsewhere\n"


def gateway_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True,
                          text=True, timeout=WAIT, cwd=REPO)


async def every_node_registered_again(cluster) -> list[str]:
    """After Redis came back: the nodes re-register on their next heartbeat, which a loaded
    host may delay; the tests after this one need all of them."""
    live: list[str] = []
    for _ in range(60):
        listed = await in_thread(gateway_cli, "node", "ls", "--registry", cluster.redis.url,
                                 "--json")
        if listed.returncode == 0:
            live = sorted(row["node"] for row in json.loads(listed.stdout))
            if live == sorted(cluster.nodes):
                break
        await asyncio.sleep(0.5)
    return live


async def test_redis_restart_loses_no_file_and_threads_go_on(cluster, clients):
    thread = clients["front"].thread("through-redis-restart")
    made = await thread.run("open('/mnt/data/kept.txt', 'w').write('kept')\nx = 41",
                            wait=WAIT)
    (kept,) = made.files
    await in_thread(cluster.redis.stop)
    await in_thread(cluster.redis.start)
    after = await thread.run("x + 1", wait=WAIT)
    assert after.state == "complete" and after.output == "42\n"  # same kernel, same claim
    for node in cluster.nodes.values():
        status, body, _ = await download(node.http, kept["file_id"])
        assert (status, body) == (200, b"kept")
    assert await every_node_registered_again(cluster) == ["n1", "n2", "n3"]


async def test_a_node_cut_off_from_the_registry_stops_its_cells(cluster, clients):
    """Past its lease without a renewal another node may own the thread: the cell stops
    (one final status) and the thread goes on, files restored, once Redis is back."""
    thread = clients["n1"].thread("cut-off")
    made = await thread.run("open('/mnt/data/before.txt', 'w').write('before')", wait=WAIT)
    assert made.state == "complete"
    call_id = await thread.execute("import time\nprint('running', flush=True)\n"
                                   "time.sleep(120)")
    envelope = await clients["n1"].next_envelope("cut-off", call_id, timeout=WAIT)
    while envelope["chunk"]["type"] != "hot_code_output":
        envelope = await clients["n1"].next_envelope("cut-off", call_id, timeout=WAIT)
    await in_thread(cluster.redis.stop)
    try:
        stopped = await thread.collect(call_id, WAIT)
    finally:
        await in_thread(cluster.redis.start)
    assert stopped.state == "killed"
    assert "lost contact with the registry" in stopped.status["reason"]
    again = await thread.run("print(open('/mnt/data/before.txt').read())", wait=WAIT)
    assert again.state == "complete", (again.output, again.status)
    assert again.output == "before\n" and again.status["kernel_restarted"] is True
    assert await every_node_registered_again(cluster) == ["n1", "n2", "n3"]


async def test_pool_commands_reach_a_node_by_its_id(cluster):
    for name in cluster.nodes:
        stats = gateway_cli("pool", "stats", "--node", name, "--registry", cluster.redis.url,
                            "--admin-token", ADMIN_TOKEN, "--json")
        assert stats.returncode == 0, stats.stderr
        assert json.loads(stats.stdout)["max_kernels"] == 8
    unknown = gateway_cli("pool", "stats", "--node", "nowhere", "--registry",
                          cluster.redis.url, "--admin-token", ADMIN_TOKEN)
    assert unknown.returncode == 1 and "no live node 'nowhere'" in unknown.stderr


async def test_drain_moves_every_thread_off_a_node(cluster, clients):
    on_n3 = []
    for number in range(3):
        thread = clients["n3"].thread(f"drained-{number}")
        await thread.upload(f"in-{number}.txt", f"upload {number}".encode())
        made = await thread.run(f"open('/mnt/data/out-{number}.txt', 'w').write('out')",
                                wait=WAIT)
        assert made.state == "complete"
        on_n3.append(thread)
    drained = gateway_cli("node", "drain", "n3", "--registry", cluster.redis.url, "--json")
    assert drained.returncode == 0, drained.stderr
    assert json.loads(drained.stdout)["drained"] is True
    for number, thread in enumerate(on_n3):
        moved = await thread.run(f"print(open('/mnt/data/in-{number}.txt').read(), "
                                 f"open('/mnt/data/out-{number}.txt').read())", wait=WAIT)
        assert moved.state == "complete", moved.envelopes
        assert moved.output == f"upload {number} out\n"
        assert moved.status["kernel_restarted"] is True
    rows = {row["node"]: row for row in json.loads(gateway_cli(
        "node", "ls", "--registry", cluster.redis.url, "--json").stdout)}
    assert rows["n3"]["draining"] is True and rows["n3"]["threads"] == 0
    assert (await in_thread(cluster.nodes["n3"].health))["threads"] == 0


async def test_object_store_outage(cluster, clients):
    """Cells complete while the store is down; the output names the file not stored yet; it
    is uploaded once the store is back (moto keeps no data over a restart: a new, empty
    bucket stands for the store coming back)."""
    thread = clients["n1"].thread("store-outage")
    await thread.run("1", wait=WAIT)
    await in_thread(cluster.store.stop)
    try:
        made = await thread.run("open('/mnt/data/late.txt', 'w').write('late')", wait=WAIT)
    finally:
        await in_thread(cluster.store.start)
    assert made.state == "complete"
    assert "late.txt: not in the shared file store yet" in made.output
    (late,) = made.files
    await in_thread(cluster.store.create_bucket)

    # Another node has no local copy: it serves the file once the retry has uploaded it.
    async def served() -> bool:
        status, body, _ = await download(cluster.nodes["n2"].http, late["file_id"])
        return (status, body) == (200, b"late")

    for _ in range(WAIT * 2):
        if await served():
            break
        await asyncio.sleep(0.5)
    assert await served()
