"""A thread's variables outlive its kernel: snapshots taken and loaded inside the sandbox,
restored before the next cell of a new kernel (real gateways, real sandboxed kernels)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from gateway.client import GatewayClient
from gateway.net.admin import execute_admin
from gateway.threads.snapshots import KERNEL_FILE, SNAPSHOT_NAME, latest_snapshot
from support.gateways import session_of, start_gateway, stop_gateway, test_settings, thread_key

pytestmark = pytest.mark.kernel

STATE = """
import threading
import numpy as np
import pandas as pd
x = 41
def inc(a):
    return a + 1
class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y
    def norm2(self):
        return self.x ** 2 + self.y ** 2
p = Point(3, 4)
df = pd.DataFrame({"k": np.arange(1_000_000) % 7, "v": np.arange(1_000_000, dtype="float64")})
arr = np.linspace(0, 1, 1000)
gen = (i for i in range(3))
fh = open("notes.txt", "w")
lock = threading.Lock()
print("ready")
"""
CHECK = ("print(inc(x), p.norm2(), len(df), int(df.groupby('k').v.sum().iloc[3]), "
         "round(float(arr.sum()), 3), np.__name__, pd.__name__)")
EXPECTED = "42 25 1000000 71428357143 500.0 numpy pandas\n"
SKIPPED = {"gen": "generator", "fh": "file", "lock": "lock"}


async def wait_released(session, limit: float = 120) -> None:
    for _ in range(int(limit / 0.1)):
        if session.kernel is None:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the idle thread's kernel was not released")


def assert_restored(status: dict) -> None:
    restored = status["restored"]
    reasons = {item["name"]: item["reason"] for item in restored["skipped"]}
    assert set(reasons) == set(SKIPPED), reasons
    for name, word in SKIPPED.items():
        assert word in reasons[name], (name, reasons[name])
    # x, inc, Point, p, df, arr, and the modules threading, np, pd
    assert restored["names"] == 9
    first_line = status["tool_output"].splitlines()[0]
    assert "9 name(s)" in first_line and all(name in first_line for name in SKIPPED)


async def test_variables_survive_the_idle_release(data_root):
    running = await start_gateway(test_settings(data_root / "snap-idle", pool_size=1,
                                                hibernate_after=2.0))
    try:
        async with await running.client() as client:
            thread = client.thread("idle")
            assert (await thread.run(STATE)).output == "ready\n"
            await wait_released(session_of(running.gateway, "idle"))
            after = await thread.run(CHECK)
            assert after.output == EXPECTED, after.status
            assert after.status["kernel_restarted"] is True
            assert_restored(after.status)
            again = await thread.run("print(x)")
            assert "restored" not in again.status, "only the first status after a restore"
            # restart: an explicit clean slate, and it stays clean across the next release
            await thread.restart()
            await client.next_envelope(thread.id, None, timeout=120)  # "restarted"
            clean = await thread.run("print(sorted(n for n in ('x', 'df', 'p') "
                                     "if n in globals()))")
            assert clean.output == "[]\n" and "restored" not in clean.status
            await wait_released(session_of(running.gateway, "idle"))
            later = await thread.run("print('x' in globals())")
            assert later.output == "False\n", later.status
            # The wake-up is reported (the file notes.txt came back), no variable with it.
            assert later.status["restored"]["names"] == 0
            assert later.status["restored"]["hibernated"] == "idle"
    finally:
        await stop_gateway(running)


async def test_graceful_shutdown_snapshots_and_the_next_gateway_restores(data_root):
    settings = test_settings(data_root / "snap-restart", pool_size=1,
                             snapshot_every_cell_below=0)  # only the shutdown's snapshot
    running = await start_gateway(settings)
    try:
        async with await running.client() as client:
            assert (await client.thread("kept").run(STATE)).output == "ready\n"
    finally:
        await stop_gateway(running)
    running = await start_gateway(settings)
    try:
        async with await running.client("tok-bob") as bob:
            # Another identity's thread of the same id is its own: neither the variables nor
            # the cells of alice's.
            taken = await bob.thread("kept").run("print('x' in globals())")
            assert taken.output == "False\n" and "restored" not in taken.status
            status, body = await http_get(running.http, "/threads/kept/notebook", "tok-bob")
            assert status == 200
            sources = ["".join(cell["source"]) for cell in json.loads(body)["cells"]]
            assert sources == ["print('x' in globals())"], "bob's own cell, none of alice's"
        status, _ = await http_get(running.http, "/threads/kept/notebook", "tok-alice")
        assert status == 200, "the owner still has the notebook"
        stored = latest_snapshot(running.gateway.store, thread_key("kept"), "alice")
        assert stored is not None and stored.owner == "alice"
        assert latest_snapshot(running.gateway.store, thread_key("kept"), "bob") is None
    finally:
        await stop_gateway(running)
    running = await start_gateway(settings)
    try:
        async with await running.client() as alice:
            after = await alice.thread("kept").run(CHECK)
            assert after.output == EXPECTED, after.status
            assert_restored(after.status)
    finally:
        await stop_gateway(running)


async def test_sigterm_and_restart_of_the_gateway_process(tmp_path):
    data_dir = tmp_path / "data"

    def serve() -> tuple[subprocess.Popen, str]:
        env = {**os.environ, "GATEWAY_TOKENS": "alice:tok-alice"}
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--port", "0", "--data-dir",
             str(data_dir), "--pool-size", "1", "--set", "memory_limit=536870912",
             "--set", "snapshot_every_cell_below=0"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
        line = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, f"no listening line: {line!r}"
        return process, f"ws://127.0.0.1:{match.group(1)}/ws"

    process, url = serve()
    try:
        async with await GatewayClient.connect(url, "tok-alice") as client:
            assert (await client.thread("proc").run(STATE)).output == "ready\n"
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 120) == 0
    finally:
        if process.poll() is None:
            process.kill()
    process, url = serve()
    try:
        async with await GatewayClient.connect(url, "tok-alice") as client:
            after = await client.thread("proc").run(CHECK)
            assert after.output == EXPECTED, after.status
            assert_restored(after.status)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 120) == 0
    finally:
        if process.poll() is None:
            process.kill()


def test_the_docs_say_a_lost_or_drained_node_brings_back_the_last_snapshot():
    """Both "What survives what" tables of the docs (docs/protocol.md, docs/cluster.md), held
    to what the code does (a new session restores the thread's last stored snapshot wherever it
    runs; test_faults.py and test_cluster.py show it after a SIGKILLed gateway and a SIGKILLed
    node)."""
    docs = Path(__file__).resolve().parents[2] / "docs"
    text = (docs / "protocol.md").read_text() + (docs / "cluster.md").read_text()
    variables = {}  # event -> the variables column (the third, in both tables)
    for line in text.splitlines():
        if line.startswith("| ") and line.count("|") >= 5:
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            variables[cells[0]] = cells[2]
    for event in ("gateway SIGKILL / crash", "the owning node lost (several nodes)",
                  "node SIGKILLed / host lost", "node drained"):
        assert "last" in variables[event] and "snapshot" in variables[event], (
            event, variables[event])


async def http_get(http: str, path: str, token: str) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    def get():
        request = urllib.request.Request(http + path, headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    return await asyncio.to_thread(get)


# -- on the shared gateway ------------------------------------------------------------------
async def test_a_dead_kernel_comes_back_with_the_last_per_cell_snapshot(running, client,
                                                                          thread_id):
    thread = client.thread(thread_id)
    await thread.run("import math\nvalues = [1, 2, 3]\nname = 'kept'")
    await thread.run("values.append(4)")  # a grown list is a change too
    died = await thread.run("import os\nos._exit(1)")
    assert died.state == "killed"
    after = await thread.run("print(values, name, math.pi > 3)")
    assert after.output == "[1, 2, 3, 4] kept True\n", after.status
    # The per-cell snapshot also keeps the execution count: numbering goes on, as in one kernel.
    assert after.status["restored"] == {"names": 3, "skipped": [],
                                        "state": {"execution_count": 3}}
    assert after.status["execution_count"] == 3


async def test_only_the_newest_snapshot_is_kept(running, client, thread_id):
    """Each changed cell stores a snapshot; the older ones are deleted, so a long thread does
    not fill its file quota with namespaces nobody restores."""
    thread = client.thread(thread_id)
    for number in range(4):
        changed = await thread.run(f"data_{number} = bytes(200_000)")
        assert changed.state == "complete", changed.status
    await thread.run("pass")  # the last change's snapshot is stored before this cell runs
    key = thread_key(thread_id)
    kept = [stored for stored in running.gateway.store.list(key) if stored.name == SNAPSHOT_NAME]
    assert len(kept) == 1, kept
    assert kept[0].id == latest_snapshot(running.gateway.store, key, "alice").id
    assert (await thread.run("import os\nos._exit(1)")).state == "killed"
    back = await thread.run("print(len(data_0) + len(data_3))")
    assert back.output == "400000\n", back.status


async def test_the_per_cell_snapshot_is_taken_after_the_cells_status(running, client,
                                                                      thread_id):
    """Pickling ``gate`` waits for a file the test writes only once it has the status: a
    snapshot taken inside the cell would hold the status back until the wait gives up."""
    thread = client.thread(thread_id)
    gated = await asyncio.wait_for(thread.run("""
import os, time
class Gate:
    def __reduce__(self):
        deadline = time.time() + 60
        while not os.path.exists("go") and time.time() < deadline:
            time.sleep(0.01)
        with open("pickled", "w") as out:
            out.write("after the status" if os.path.exists("go") else "before the status")
        return (Gate, ())
gate = Gate()
"""), 120)
    assert gated.state == "complete", gated.status
    workdir = session_of(running.gateway, thread_id).kernel.spec.workdir
    (workdir / "go").write_text("")
    # The thread's next cell runs once the snapshot is stored.
    after = await asyncio.wait_for(thread.run("print(open('pickled').read())"), 120)
    assert after.output == "after the status\n", after.status
    assert (await thread.run("import os\nos._exit(1)")).state == "killed"
    back = await thread.run("print(type(gate).__name__)")
    assert back.output == "Gate\n", back.status


async def test_restart_is_a_clean_slate_even_after_a_later_death(running, client, thread_id):
    thread = client.thread(thread_id)
    await thread.run("secret_plan = 1")
    await thread.restart()
    await client.next_envelope(thread.id, None, timeout=120)
    await thread.run("other = 2")  # no per-cell snapshot of `secret_plan` can come back
    await thread.run("import os\nos._exit(1)")
    after = await thread.run("print('secret_plan' in globals(), other)")
    assert after.output == "False 2\n", after.status


async def test_snapshot_on_request(running, client, thread_id):
    thread = client.thread(thread_id)
    await thread.run("import threading\nbig = list(range(10))\nlock = threading.Lock()")
    await thread.run("big[0] = 99")  # in place: the per-cell snapshot does not see it
    answer = await execute_admin(running.gateway, {"op": "thread.snapshot",
                                                   "thread_id": thread_id})
    assert answer["names"] == 2 and answer["skipped"][0]["name"] == "lock"
    assert answer["stored"] is True
    again = await execute_admin(running.gateway, {"op": "thread.snapshot",
                                                  "thread_id": thread_id})
    assert again["stored"] is False, "an unchanged snapshot is not stored twice"
    assert (await thread.run("import os\nos._exit(1)")).state == "killed"
    after = await thread.run("print(big[0], threading.__name__)")
    assert after.output == "99 threading\n", after.status


async def test_hibernation_on_request(running, client, thread_id):
    thread = client.thread(thread_id)
    await thread.run("import os\nos.environ['MINE'] = 'set'\nkept = [1, 2]")
    answer = await execute_admin(running.gateway, {"op": "thread.hibernate",
                                                   "thread_id": thread_id})
    assert answer == {"thread_id": thread_id, "owner": "alice", "hibernated": True}
    again = await execute_admin(running.gateway, {"op": "thread.hibernate",
                                                  "thread_id": thread_id})
    assert again["hibernated"] is False and again["reason"] == "already hibernated"
    back = await thread.run("print(kept, os.environ['MINE'])")
    assert back.output == "[1, 2] set\n", back.status
    assert back.status["restored"]["hibernated"] == "requested"
    assert "by an operator" in back.status["reason"]


async def test_a_forged_snapshot_only_hurts_its_own_thread(running, client, thread_id):
    """A cell writes a hostile pickle as its thread's snapshot: it runs in that thread's next
    sandboxed kernel, never in the gateway, never in another thread."""
    gateway = running.gateway
    marker = f"/tmp/forged-{uuid.uuid4().hex}"
    victim = client.thread(thread_id + "-victim")
    await victim.run("mine = 'victim'")
    forger = client.thread(thread_id)
    await forger.run("pass")  # the per-cell hook has seen this namespace: it stays quiet
    forge = f"""exec('''
import json, os, pickle
class Evil:
    def __reduce__(self):
        return (exec, ("open('pwned', 'w').write('x'); open({marker!r}, 'w').write('x')",))
body = pickle.dumps(Evil())
index = json.dumps({{"version": 1, "modules": {{}}, "names": [["evil", 8, len(body)]],
                     "skipped": []}}).encode()
with open({KERNEL_FILE!r}, "wb") as out:
    out.write(b"GWSNAP1\\\\n" + body + index + len(index).to_bytes(8, "big"))
''', {{}})"""
    planted = await forger.run(forge)
    assert planted.state == "complete", planted.status
    stored = latest_snapshot(gateway.store, thread_key(thread_id), "alice")
    assert stored is not None and stored.name == SNAPSHOT_NAME
    assert not Path(marker).exists(), "the gateway never unpickles a snapshot"
    for thread in (forger, victim):  # a kernel death: no fresh snapshot replaces the forged one
        assert (await thread.run("import os\nos._exit(1)")).state == "killed"
    hurt = await forger.run("import os\nprint(os.path.exists('pwned'))")
    assert hurt.output == "True\n", "it ran, in its own sandbox"
    safe = await victim.run("import os\nprint(os.path.exists('pwned'), mine)")
    assert safe.output == "False victim\n", safe.status
    assert not Path(marker).exists(), "the sandbox's /tmp is its own"
