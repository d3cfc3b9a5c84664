"""Hostile code in real sandboxed kernels, through the real server.

Each case ends with a clear final status, leaves its own thread usable (or visibly replaced) and
leaves a bystander thread's variables and files alone. Cases already covered elsewhere (network,
host files, environment variables, pids, memory bomb, fork bomb, disk fill, a loop ignoring
SIGINT, segfault, ``os._exit``, interrupt) are not repeated here.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import hashlib
import json
import os
import random
import re
import time
import unicodedata
from pathlib import Path

import pytest
import pytest_asyncio
from websockets.asyncio.client import connect

from gateway.client import FINAL_STATES
from gateway.net.admin import process_rss
from support.host import host_processes, needs_linux, swap_race_cells
from support.http import download
from support.processes import wait_until

pytestmark = [pytest.mark.asyncio(loop_scope="session"), needs_linux]

# Characters an announced file name must not carry: they hide, spoof or break display
# (the same categories the gateway refuses in uploaded file names).
BAD_NAME_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}


# -- helpers ---------------------------------------------------------------------------------
@pytest_asyncio.fixture(loop_scope="session")
async def threads(client, thread_id):
    """Open threads by suffix; every one of them is closed at the end (kernels go back)."""
    opened = []

    def open_thread(suffix: str = ""):
        thread = client.thread(f"{thread_id}{suffix}")
        opened.append(thread)
        return thread

    yield open_thread
    for thread in opened:
        await thread.close()
    for thread in opened:
        try:
            await client.next_envelope(thread.id, None, timeout=30)
        except Exception:  # already closed, or never created: nothing to wait for
            pass


class Bystander:
    """Another thread of the same user, with state and a file that hostile code must not touch."""

    def __init__(self, thread) -> None:
        self.thread = thread

    async def setup(self) -> Bystander:
        result = await self.thread.run(
            "safe = 'intact'\nopen('mine.txt', 'w').write('bystander file')")
        assert result.state == "complete", result.status
        return self

    async def check(self) -> None:
        result = await self.thread.run("print(safe, open('mine.txt').read())")
        assert result.state == "complete", result.status
        assert result.output == "intact bystander file\n"
        assert not result.status.get("kernel_restarted")


@pytest_asyncio.fixture(loop_scope="session")
async def bystander(threads):
    return await Bystander(threads("-bystander")).setup()


async def run_counting_bytes(running, thread_id: str, code: str, *, timeout: float = 180,
                             token: str = "tok-alice") -> tuple[int, list[dict]]:
    """Execute over a raw websocket; returns (bytes received for the call, its envelopes)."""
    call_id = f"raw-{random.getrandbits(48):x}"
    received = 0
    envelopes: list[dict] = []
    async with connect(running.url, additional_headers={"Authorization": f"Bearer {token}"},
                       max_size=None, compression=None) as ws:
        await ws.send(json.dumps({"type": "execute", "thread_id": thread_id,
                                  "call_id": call_id, "code": code}))
        deadline = time.monotonic() + timeout
        while True:
            message = await asyncio.wait_for(ws.recv(), deadline - time.monotonic())
            received += len(message.encode() if isinstance(message, str) else message)
            envelope = json.loads(message)
            envelopes.append(envelope)
            chunk = envelope["chunk"]
            if envelope["call_id"] == call_id and (
                    chunk["type"] == "error"
                    or chunk["type"] == "status" and chunk["content"]["state"] in FINAL_STATES):
                return received, envelopes


def status_of(envelopes: list[dict]) -> dict:
    return [e["chunk"]["content"] for e in envelopes if e["chunk"]["type"] == "status"][-1]


def output_of(envelopes: list[dict]) -> str:
    return "".join(e["chunk"]["content"] for e in envelopes
                   if e["chunk"]["type"] == "hot_code_output")


# -- resource exhaustion ---------------------------------------------------------------------
async def test_thread_bomb_is_capped_by_the_pids_limit(running, threads, bystander):
    limit = running.gateway.settings.pids_limit
    thread = threads()
    await thread.run("kept = 'yes'")
    code = """
import threading
stop = threading.Event()
started, error = 0, None
try:
    for _ in range(100_000):
        threading.Thread(target=stop.wait, daemon=True).start()
        started += 1
except RuntimeError as exc:
    error = exc
stop.set()
print(started, type(error).__name__)
"""
    result = await thread.run(code)
    assert result.state == "complete", result.status
    started, error = result.output.split()
    assert int(started) < limit
    assert error == "RuntimeError"  # "can't start new thread"
    # The threads ended; the kernel and its state are still there.
    after = await thread.run("import threading, time\n"
                             "for _ in range(50):\n"
                             "    if threading.active_count() < 20: break\n"
                             "    time.sleep(0.1)\n"
                             "print(kept, threading.active_count() < 20)")
    assert after.state == "complete" and after.output == "yes True\n"
    assert not after.status.get("kernel_restarted")
    await bystander.check()


# -- exits -----------------------------------------------------------------------------------
async def test_sys_exit_is_caught_and_the_kernel_keeps_its_state(threads, bystander):
    thread = threads()
    await thread.run("x = 41")
    for code, evalue in (("import sys\nsys.exit(3)", "3"), ("raise SystemExit", ""),
                         ("raise SystemExit('bye')", "bye")):
        result = await thread.run(code)
        assert result.state == "error", result.status
        error = result.status["error"]
        assert (error["ename"], error["evalue"]) == ("SystemExit", evalue), error
        assert not result.status.get("kernel_restarted")
    after = await thread.run("x + 1")
    assert after.state == "complete" and after.output == "42\n"
    assert not after.status.get("kernel_restarted")
    await bystander.check()


async def test_exit_call_is_reported_on_itself_not_on_a_later_cell(threads, bystander):
    thread = threads()
    await thread.run("x = 1")
    exited = await thread.run("exit()")
    assert exited.state in {"complete", "error", "killed"}, exited.status
    # Whatever exit() does (nothing, or replacing the kernel), it is settled on the exit() call:
    # the cells after it run normally for the next seconds.
    for i in range(4):
        later = await thread.run(f"import time\ntime.sleep(1)\nprint('later', {i})")
        assert later.state == "complete", (i, later.status)
        assert later.output == f"later {i}\n"
        assert not later.status.get("kernel_restarted"), (i, later.status)
    await bystander.check()


# -- output floods ---------------------------------------------------------------------------
async def test_single_huge_print_is_capped_and_bounded_on_the_wire(running, threads, bystander):
    cap = running.gateway.settings.max_output_chars
    thread = threads()
    received, envelopes = await run_counting_bytes(running, thread.id,
                                                   "print('x' * 100_000_000)")
    status = status_of(envelopes)
    assert status["state"] == "complete", status
    output = output_of(envelopes)
    assert output.count("x") == cap
    assert re.search(r"\[output truncated: 99,000,001 characters \(1 line\) dropped, "
                     r"limit 1,000,000\]\n$", output), output[-300:]
    assert received < cap + 64 * 1024, received  # what the client got: about the cap
    again = await thread.run("'usable'")
    assert again.state == "complete" and "usable" in again.output
    await bystander.check()


async def test_huge_output_is_freed_at_once_not_left_for_the_garbage_collector(threads):
    # The gateway runs in this process. A 100 MB message kept alive by a reference cycle (an
    # exception's traceback holding the receiving frame did that once) would stay until the
    # next full collection: with the collector off, memory must come back by itself.
    thread = threads()
    assert (await thread.run("1")).state == "complete"
    gc.collect()
    gc.disable()
    try:
        before = process_rss("self")
        result = await thread.run("print('x' * 100_000_000)")
        grown = (process_rss("self") - before) / 2**20
    finally:
        gc.enable()
    assert result.state == "complete"
    assert grown < 40, f"gateway process kept {grown:.0f} MiB after a 100 MB print"


async def test_flood_of_small_lines_is_capped_and_bounded_on_the_wire(running, threads,
                                                                      bystander):
    cap = running.gateway.settings.max_output_chars
    thread = threads()
    received, envelopes = await run_counting_bytes(
        running, thread.id, "for i in range(400_000):\n    print(i)")
    status = status_of(envelopes)
    assert status["state"] == "complete", status
    output = output_of(envelopes)
    body, _, note = output.rpartition("\n[output truncated: ")
    assert len(body) <= cap
    assert re.fullmatch(r"[\d,]+ characters \([\d,]+ lines\) dropped, limit 1,000,000\]\n", note)
    assert body.startswith("0\n1\n2\n")
    # JSON escapes "\n" as two bytes: the bound is at most twice the cap plus envelopes.
    assert received < 2 * cap + 64 * 1024, received
    await bystander.check()


async def test_repeated_tracebacks_cannot_bypass_the_output_cap(running, threads):
    cap = running.gateway.settings.max_output_chars
    thread = threads()
    code = ("ip = get_ipython()\n"
            "for i in range(300):\n"
            "    ip._showtraceback(ValueError, ValueError('x'), ['y' * 19_000])\n"
            "print('done')")
    received, envelopes = await run_counting_bytes(running, thread.id, code)
    assert status_of(envelopes)["state"] in {"complete", "error"}
    assert received < 2 * cap + 64 * 1024, f"{received:,} bytes for a cap of {cap:,} characters"


# -- recursion -------------------------------------------------------------------------------
async def test_deep_recursion_is_a_recursion_error_and_state_survives(threads, bystander):
    thread = threads()
    await thread.run("kept = 'yes'")
    result = await thread.run("def f(n):\n    return f(n + 1)\nf(0)")
    assert result.state == "error", result.status
    assert result.status["error"]["ename"] == "RecursionError"
    assert "RecursionError" in result.output
    assert len(result.output) < 25_000  # the traceback of thousands of frames is shortened
    after = await thread.run("kept")
    assert after.state == "complete" and "yes" in after.output
    assert not after.status.get("kernel_restarted")
    await bystander.check()


async def test_recursion_with_a_raised_limit_kills_only_this_kernel(threads, bystander):
    thread = threads()
    await thread.run("open('kept.txt', 'w').write('file survives')")
    result = await thread.run(
        "import sys\nsys.setrecursionlimit(10**7)\ndef f(n):\n    return f(n + 1)\nf(0)")
    # Either the frames exhaust the memory limit or the C stack overflows: the kernel dies.
    assert result.state == "killed", result.status
    assert result.status.get("kernel_restarted") is True
    assert result.status["reason"]
    after = await thread.run("print(open('kept.txt').read())")
    assert after.state == "complete" and after.output == "file survives\n"
    await bystander.check()


# -- big and odd files -----------------------------------------------------------------------
async def test_huge_displayed_image_is_stored_and_announced_without_inline_bytes(
        running, threads, bystander):
    limit = running.gateway.settings.inline_file_limit
    thread = threads()
    code = """
import hashlib, os
from IPython.display import Image, display
small = b'\\x89PNG\\r\\n\\x1a\\n' + os.urandom(100_000)
huge = b'\\x89PNG\\r\\n\\x1a\\n' + os.urandom(30 * 2**20)
display(Image(data=small, format='png'))
display(Image(data=huge, format='png'))
print(hashlib.sha256(small).hexdigest(), hashlib.sha256(huge).hexdigest())
"""
    received, envelopes = await run_counting_bytes(running, thread.id, code)
    status = status_of(envelopes)
    assert status["state"] == "complete", status
    small_sha, huge_sha = output_of(envelopes).split()
    files = [e["chunk"]["content"] for e in envelopes
             if e["chunk"]["type"] == "code_interpreter_stream"]
    assert [f["filename"] for f in files] == ["plot_1.png", "plot_2.png"]
    small, huge = files
    assert hashlib.sha256(base64.b64decode(small["base64"])).hexdigest() == small_sha
    assert huge["base64"] == "" and huge["mime_type"] == "image/png"
    assert 30 * 2**20 > limit
    assert received < 2 * 2**20, "the 30 MiB image must not travel over the websocket"
    code_, body, headers = await download(running.http, huge["file_id"])
    assert code_ == 200 and hashlib.sha256(body).hexdigest() == huge_sha
    assert headers["X-File-Sha256"] == huge_sha
    again = await thread.run("1 + 1")
    assert again.state == "complete"
    await bystander.check()


ODD_NAMES = [  # printable but awkward; control characters have their own test below
    "ünï©ødé-日本語.csv",
    "-rf",
    "--help.txt",
    "x" * 251 + ".txt",  # 255 bytes: the longest name a Linux file system allows
    "sp ace \"quo'te\".txt",
    "semi;colon&amp|pipe$(x).txt",
]


async def test_odd_file_names_are_announced_and_downloadable(running, threads, bystander):
    thread = threads()
    code = (f"names = {ODD_NAMES!r}\n"
            "for i, name in enumerate(names):\n"
            "    open(name, 'w').write(f'content {i}')\n")
    result = await thread.run(code)
    assert result.state == "complete", result.status
    assert len(result.files) == len(ODD_NAMES)
    seen = set()
    for announced in result.files:
        body = base64.b64decode(announced["base64"])
        index = int(body.decode().removeprefix("content "))
        seen.add(index)
        assert announced["filename"] == ODD_NAMES[index]
        status, downloaded, headers = await download(running.http, announced["file_id"])
        assert status == 200 and downloaded == body
        disposition = headers["Content-Disposition"]
        assert "\n" not in disposition and "\r" not in disposition
        assert disposition.isascii()
    assert seen == set(range(len(ODD_NAMES)))
    await bystander.check()


async def test_announced_file_names_carry_no_control_or_invisible_characters(running, threads):
    names = ["esc\x1b[31mred.txt", "tab\tname.txt", "line\nbreak.txt",
             "invoice\u202efdp.exe", "zero\u200bwidth.txt", "bell\x07.txt"]
    thread = threads()
    code = (f"names = {names!r}\n"
            "for i, name in enumerate(names):\n"
            "    open(name, 'w').write(f'content {i}')\n")
    result = await thread.run(code)
    assert result.state == "complete", result.status
    assert len(result.files) == len(names)
    for announced in result.files:
        bad = [f"U+{ord(c):04X}" for c in announced["filename"]
               if unicodedata.category(c) in BAD_NAME_CATEGORIES]
        assert not bad, (announced["filename"], bad)
        status, _, _ = await download(running.http, announced["file_id"])
        assert status == 200


async def test_file_name_that_is_not_utf8_does_not_break_the_execution(running, threads,
                                                                       bystander):
    thread = threads()
    result = await thread.run("open(b'bad\\xff\\xfename.txt', 'wb').write(b'odd bytes')\n"
                              "open('zz-normal.txt', 'w').write('normal')\n"
                              "print('ran')")
    assert result.state == "complete", result.status
    assert result.output == "ran\n"
    assert len(result.files) == 2, result.files
    contents = set()
    for announced in result.files:
        announced["filename"].encode("utf-8")  # valid text on the wire
        status, body, _ = await download(running.http, announced["file_id"])
        assert status == 200
        contents.add(body)
    assert contents == {b"odd bytes", b"normal"}
    await bystander.check()


async def test_symlinks_in_the_workdir_never_expose_host_files(running, threads):
    sentinel = Path("/root") / f".gateway-hostile-sentinel-{random.getrandbits(32):x}"
    sentinel.write_text("HOST SECRET")
    data_dir = running.gateway.settings.data_dir
    try:
        thread = threads()
        code = (f"import os\n"
                f"os.symlink({str(sentinel)!r}, 'secret.txt')\n"
                f"os.symlink('/root', 'rootdir')\n"
                f"os.symlink({str(data_dir)!r}, 'datadir')\n"
                f"os.symlink('/etc/passwd', 'passwd.csv')\n"
                f"os.mkfifo('pipe.csv')\n"
                f"open('real.txt', 'w').write('real')\n")
        result = await thread.run(code)
        assert result.state == "complete", result.status
        assert [f["filename"] for f in result.files] == ["real.txt"]
        touched = await thread.run("import os\n"
                                   "for n in ['secret.txt', 'passwd.csv']:\n"
                                   "    os.utime(n, follow_symlinks=False)\n")
        assert touched.files == []
    finally:
        sentinel.unlink()


async def test_swapping_a_file_for_a_symlink_cannot_make_the_gateway_read_host_files(
        running, threads):
    sentinel = Path("/root") / f".gateway-race-sentinel-{random.getrandbits(32):x}"
    sentinel.write_text("HOST-SECRET-" + "s" * 20)
    try:
        thread = threads()
        setup, touch = swap_race_cells("s", f"os.symlink({str(sentinel)!r}, other)",
                                       "regular-" + "r" * 24, ", follow_symlinks=False")
        assert (await thread.run(setup)).state == "complete"
        leaked = []
        deadline = time.monotonic() + 40
        executions = 0
        while time.monotonic() < deadline and not leaked and executions < 400:
            executions += 1
            result = await thread.run(touch)
            for announced in result.files:
                data = base64.b64decode(announced["base64"] or "")
                if b"HOST-SECRET" in data:
                    leaked.append((executions, announced["filename"]))
        assert not leaked, f"host file read through a swapped symlink: {leaked}"
    finally:
        sentinel.unlink()


async def test_many_small_files_do_not_freeze_the_gateway(running, threads):
    thread = threads()
    await thread.run("1")
    lag = 0.0
    stop = False

    async def measure_loop_lag() -> None:
        nonlocal lag
        while not stop:
            began = time.monotonic()
            await asyncio.sleep(0.05)
            lag = max(lag, time.monotonic() - began - 0.05)

    watcher = asyncio.create_task(measure_loop_lag())
    try:
        result = await thread.run("import os\nos.makedirs('many', exist_ok=True)\n"
                                  "for i in range(5000):\n"
                                  "    open(f'many/{i}.txt', 'w').write('x')\n", wait=300)
    finally:
        stop = True
        await watcher
    assert result.state == "complete", result.status
    assert len(result.files) == 5000
    assert lag < 1.0, f"the gateway's event loop stalled for {lag:.1f} s"


# -- secrets and leftovers -------------------------------------------------------------------
async def test_proc_of_pid_1_and_every_visible_process_hold_no_secrets(threads):
    secret = os.environ["GATEWAY_TEST_SECRET"]
    code = """
import os
seen = {}
for pid in [p for p in os.listdir('/proc') if p.isdigit()]:
    for name in ('environ', 'cmdline'):
        try:
            seen[f'{pid}/{name}'] = open(f'/proc/{pid}/{name}', 'rb').read().decode('latin-1')
        except OSError as exc:
            seen[f'{pid}/{name}'] = type(exc).__name__
print(repr(seen))
"""
    result = await threads().run(code)
    assert result.state == "complete", result.status
    assert "'1/environ'" in result.output
    for needle in (secret, "GATEWAY_TEST_SECRET", "GATEWAY_TOKENS", "tok-alice", "tok-bob"):
        assert needle not in result.output, needle


async def test_background_processes_die_when_the_thread_is_closed(client, threads):
    base = random.randint(40_000, 49_000)
    markers = {name: str(base + i) for i, name in enumerate(
        ("popen", "daemon", "ignores_term", "python_session"))}
    code = f"""
import os, subprocess, sys
subprocess.Popen(['sleep', '{markers["popen"]}'])
pid = os.fork()
if pid == 0:  # a classic daemon: new session, double fork, exec
    os.setsid()
    if os.fork() == 0:
        os.execvp('sleep', ['sleep', '{markers["daemon"]}'])
    os._exit(0)
os.waitpid(pid, 0)
subprocess.Popen(['sh', '-c', 'trap "" TERM HUP INT; exec sleep {markers["ignores_term"]}'])
subprocess.Popen([sys.executable, '-c', 'import time; time.sleep({markers["python_session"]})'],
                 start_new_session=True, stdin=subprocess.DEVNULL,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print('spawned')
"""
    thread = threads()
    result = await thread.run(code)
    assert result.state == "complete" and result.output == "spawned\n", result.status
    needles = {name: (b"sleep\x00" if name != "python_session" else b"time.sleep(")
               + value.encode() for name, value in markers.items()}
    # They outlive the execution (the scan sees them from the host)...
    assert await wait_until(lambda: all(host_processes(n) for n in needles.values()), 10), {
        name: host_processes(n) for name, n in needles.items()}
    await thread.close()
    closed = await client.next_envelope(thread.id, None, timeout=60)
    assert closed["chunk"]["content"]["state"] == "closed"
    # ...but not the thread.
    assert await wait_until(lambda: not any(host_processes(n) for n in needles.values()), 10), {
        name: host_processes(n) for name, n in needles.items()}
    # The same thread id starts afresh.
    again = await thread.run("print('fresh')")
    assert again.state == "complete" and again.output == "fresh\n"


async def test_background_processes_die_when_the_kernel_is_restarted(client, threads):
    marker = str(random.randint(50_000, 59_000))
    thread = threads()
    result = await thread.run(
        f"import subprocess\nsubprocess.Popen(['sh', '-c', 'trap \"\" TERM; exec sleep {marker}'],"
        f" start_new_session=True)")
    assert result.state == "complete", result.status
    needle = b"sleep\x00" + marker.encode()
    assert await wait_until(lambda: host_processes(needle), 10)
    await thread.restart()
    restarted = await client.next_envelope(thread.id, None, timeout=60)
    assert restarted["chunk"]["content"]["state"] == "restarted"
    assert await wait_until(lambda: not host_processes(needle), 10), host_processes(needle)
    assert (await thread.run("1 + 1")).state == "complete"
