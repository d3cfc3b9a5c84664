"""Kernels forked from the zygote: isolated from each other like exec'd ones, memory shared
only until written, and a dead zygote replaced. (The escape, sandbox, hostile-code and limits
suites run against forked kernels too: the suite's gateways fork Python kernels when root.)

The gateway half; the pure half is tests/unit/test_zygote_paths.py."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.gateways import session_of, start_gateway, stop_gateway, test_settings
from support.host import needs_linux

pytestmark = needs_linux
on_loop = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
def forking(running):
    if os.geteuid() != 0:
        pytest.skip("forked kernels need a gateway started as root")
    assert running.gateway.pool.start_method == "fork", running.gateway.pool.start_method_reason
    return running


def parent_pid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


@on_loop
async def test_python_kernels_are_forks_of_the_pools_zygote(forking, client, thread_id):
    thread = client.thread(thread_id)
    assert (await thread.run("1")).state == "complete"
    kernel = session_of(forking.gateway, thread_id).kernel
    zygote = forking.gateway.pool.zygote
    assert zygote is not None and zygote.pid is not None
    assert zygote.threads == 1  # forks of a multi-threaded process can inherit a held lock
    assert parent_pid(kernel.pid) == zygote.pid
    stats = forking.gateway.pool.snapshot()
    assert stats["start_method"] == "fork"
    metrics = {f.name: f for f in text_string_to_metric_families(
        forking.gateway.metrics.render().decode())}
    methods = {s.labels["method"]: s.value for s in metrics["gateway_kernel_start_method"].samples}
    assert methods == {"fork": 1.0, "exec": 0.0}


@on_loop
async def test_two_forked_kernels_share_no_writable_memory(forking, client, thread_id):
    """Both start from the zygote's pages (the same objects at the same addresses); a write in
    one, to a module object and to raw memory of an object made in the zygote, stays there."""
    first, second = client.thread(thread_id), client.thread(thread_id + "-other")
    where = ("import ctypes, numpy, sys\n"
             "target = sys.modules['numpy'].__dict__\n"
             "print(id(numpy), id(numpy.__version__))")
    a = await first.run(where)
    b = await second.run(where)
    assert a.state == b.state == "complete"
    assert a.output == b.output, "not forked from one image: the check below would prove less"
    version_address = int(a.output.split()[1])
    write = (f"numpy.__dict__['written_by'] = 'first'\n"
             # Overwrite the first byte of the zygote-made version string, in place.
             f"data = {version_address} + sys.getsizeof('') - 1\n"
             f"ctypes.memset(data, ord('X'), 1)\n"
             f"print(numpy.__version__[0])")
    assert (await first.run(write)).output == "X\n"
    seen = await second.run("print(numpy.__dict__.get('written_by'), numpy.__version__[0])")
    assert seen.state == "complete", seen.output
    assert seen.output.split()[0] == "None"
    assert seen.output.split()[1] != "X"


@on_loop
async def test_forked_kernels_see_none_of_each_others_files_processes_or_sockets(
        forking, client, thread_id):
    first, second = client.thread(thread_id), client.thread(thread_id + "-peer")
    setup = await first.run("""
import os, socket, subprocess
open('/mnt/data/mine.txt', 'w').write('first')
open('/tmp/mine.txt', 'w').write('first')
listener = socket.socket(); listener.bind(('127.0.0.1', 0)); listener.listen()
abstract = socket.socket(socket.AF_UNIX); abstract.bind('\\0gateway-probe'); abstract.listen()
sleeper = subprocess.Popen(['sleep', '600'])
print(listener.getsockname()[1], sleeper.pid, open('/proc/self/stat').read().split()[0])
""")
    assert setup.state == "complete", setup.output
    port, sleeper, own_pid = (int(v) for v in setup.output.split())
    probe = await second.run(f"""
import json, os, socket
report = {{}}
report['files'] = sorted(os.listdir('/mnt/data')) + sorted(os.listdir('/tmp'))
try:
    socket.create_connection(('127.0.0.1', {port}), timeout=2).close(); report['tcp'] = 'open'
except OSError as exc:
    report['tcp'] = type(exc).__name__
try:
    s = socket.socket(socket.AF_UNIX); s.connect('\\0gateway-probe'); report['abstract'] = 'open'
except OSError as exc:
    report['abstract'] = type(exc).__name__
report['environ'] = len(open('/proc/self/environ').read()) > 0  # its own /proc: readable
try:
    report['init_fds'] = os.listdir('/proc/1/fd')  # the namespace's init: not its to read
except OSError as exc:
    report['init_fds'] = type(exc).__name__
report['processes'] = sorted(
    open(f'/proc/{{p}}/cmdline').read().replace('\\0', ' ')[:60]
    for p in os.listdir('/proc') if p.isdigit())
print(json.dumps(report))
""")
    assert probe.state == "complete", probe.output
    report = json.loads(probe.output.strip().splitlines()[-1])
    assert "mine.txt" not in report["files"]
    assert report["environ"] is True and report["init_fds"] == "PermissionError"
    assert report["tcp"] == "ConnectionRefusedError"
    assert report["abstract"] == "ConnectionRefusedError"
    assert not any("sleep" in p for p in report["processes"]), report["processes"]
    # Only its own kernel (and its pid 1): the first kernel has the same in-namespace pid.
    assert own_pid == 2 and len(report["processes"]) <= 3, report["processes"]
    # Its pid 1 takes no signal from it (a handled SIGINT would end the whole namespace).
    poke = await second.run("import signal, time\nos.kill(1, signal.SIGINT)\ntime.sleep(1)")
    assert poke.state == "complete", poke.status
    assert (await second.run("print('report' in globals())")).output == "True\n"


@on_loop
async def test_a_dead_zygote_takes_its_kernels_and_the_next_start_forks_a_new_one(data_root):
    if os.geteuid() != 0:
        pytest.skip("forked kernels need a gateway started as root")
    running = await start_gateway(test_settings(data_root / "zygote-death", pool_size=1))
    try:
        pool = running.gateway.pool
        async with await running.client() as client:
            thread = client.thread("zygote-death")
            assert (await thread.run("x = 1")).state == "complete"
            old = pool.zygote.pid
            os.kill(old, signal.SIGKILL)  # the zygote this test's gateway started
            # The kernel died with its zygote: found dead at the next cell (or before it), and
            # the thread gets a kernel forked from a new zygote, with its variables restored.
            first = await thread.run("1")
            if first.state != "complete":
                assert first.state == "killed" and first.status["kernel_restarted"], first.status
            result = await thread.run("print('x' in globals())")
            assert result.state == "complete" and result.output == "True\n", result.status
            for _ in range(100):
                if pool.zygote.pid not in (None, old):
                    break
                await asyncio.sleep(0.1)
            assert pool.zygote.pid not in (None, old)
            assert pool.zygote.starts == 2
    finally:
        await stop_gateway(running)


@on_loop
async def test_a_zygote_that_cannot_start_leaves_kernels_to_the_exec_launch_and_says_so(
        data_root, tmp_path, monkeypatch, caplog):
    """Every Python kernel exec'd works, but costs memory and burst speed: a WARNING at
    start-up says so and /healthz is degraded with the cause (/readyz stays ready: new
    threads still get kernels). Both warm starts waited for the same zygote: neither fails."""
    if os.geteuid() != 0:
        pytest.skip("forked kernels need a gateway started as root")
    from gateway.sandbox import forkserver as zygote_module

    broken = tmp_path / "zygote.py"
    broken.write_text("import sys\nprint('cannot preload', file=sys.stderr)\nsys.exit(3)\n")
    monkeypatch.setattr(zygote_module, "PROGRAM", broken)
    running = await start_gateway(test_settings(data_root / "zygote-broken", pool_size=2))
    try:
        pool = running.gateway.pool
        async with await running.client() as client:
            result = await client.thread("zygote-broken").run("print(6 * 7)")
        assert result.state == "complete" and result.output == "42\n", result.status
        assert pool.start_method == "exec"
        assert "zygote did not start" in pool.start_method_reason
        assert pool.stats.start_failures == 0, pool.stats.last_start_error

        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
                    and r.name == "gateway.execution.pool.kernel_pool"]
        assert len(warnings) == 1, warnings
        assert "not forked" in warnings[0] and "zygote did not start" in warnings[0]
        assert "3x the memory per kernel" in warnings[0] and "10x slower" in warnings[0]

        health = await asyncio.to_thread(http_json, running.http + "/healthz")
        assert health["status"] == "degraded", health
        assert "not forked" in health["reason"] and "3x the memory" in health["reason"]
        assert "zygote did not start" in health["reason"]
        assert (await asyncio.to_thread(http_json, running.http + "/readyz"))["ready"] is True
    finally:
        await stop_gateway(running)


def http_json(url: str, token: str = "tok-alice") -> dict:
    """A GET with a client token (health details are for callers with one)."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request) as response:
        return json.load(response)
