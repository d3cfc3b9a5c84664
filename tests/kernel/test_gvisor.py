"""``sandbox = gvisor``, for real: kernels in runsc sandboxes behave as under bubblewrap (cells,
limits, interrupts, restarts, files, snapshots), the escape probes stay out of the host, and a
gateway killed with SIGKILL leaves no sandbox behind the next start. One gVisor gateway for
the module (each kernel costs a sandbox of its own)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest
import pytest_asyncio
from test_escape import probe_code

from support.gateways import (
    close_threads_named,
    session_of,
    start_gateway,
    stop_gateway,
    test_settings,
)
from support.host import needs_linux
from support.processes import GatewayProcess, unmount_leftovers, wait_until

RUNSC = shutil.which("runsc")
pytestmark = [
    pytest.mark.asyncio(loop_scope="session"), needs_linux,
    pytest.mark.skipif(RUNSC is None, reason="runsc is not installed (Debian package 'runsc': "
                                             "scripts/setup-system.sh installs it)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="gVisor sandboxes need a gateway run as root"),
]
GUARD = 180.0  # seconds: a bound that fails instead of hanging, never a speed limit


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gvisor(data_root):
    running = await start_gateway(test_settings(data_root / "gvisor", sandbox="gvisor",
                                                pool_size=1, max_kernels=6))
    yield running
    await stop_gateway(running)


@pytest_asyncio.fixture(loop_scope="session")
async def gclient(gvisor):
    client = await gvisor.client()
    yield client
    await client.close()


@pytest_asyncio.fixture(loop_scope="session")
async def tid(request, gvisor):
    name = "gv-" + request.node.name[5:40].replace("[", "_").replace("]", "_")
    yield name
    await close_threads_named(gvisor.gateway, name)


def sandboxes(state_dir: Path) -> set[str]:
    """The sandboxes runsc knows in a gateway's state directory."""
    out = subprocess.run([RUNSC or "runsc", f"--root={state_dir}", "list", "-quiet"],
                         capture_output=True, text=True, timeout=60).stdout
    return set(out.split())


async def test_a_cell_runs_in_gvisor_and_health_says_so(gvisor, gclient, tid):
    result = await gclient.thread(tid).run(
        "import numpy as np, platform\nprint(int(np.arange(10).sum()))\n"
        "print(open('/proc/version').read().strip())")
    assert result.state == "complete", result.output
    total, version = result.output.strip().splitlines()
    assert total == "45"
    # gVisor's own kernel answers, not the host's.
    assert version != Path("/proc/version").read_text().strip()

    def get():
        request = urllib.request.Request(gvisor.http + "/healthz",
                                         headers={"Authorization": "Bearer tok-alice"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)

    health = await asyncio.to_thread(get)
    assert health["sandbox"] == "gvisor (ptrace)"
    enforced = health["limits"]["enforced"]
    assert enforced["isolation"].startswith("gVisor")
    for layer in ("memory", "processes", "network", "unprivileged_uid"):
        assert layer in enforced, health["limits"]
    assert gvisor.gateway.pool.snapshot()["start_method"] == "exec"
    kernel = session_of(gvisor.gateway, tid).kernel
    assert kernel.id in sandboxes(gvisor.gateway.host.state_dir)


async def test_the_escape_probes_are_answered_by_gvisors_kernel(gclient, tid):
    """test_escape.py's probes. Every one is answered by gVisor's kernel (the sentry), none by
    the host's: the answers differ from bubblewrap's filter, and what gVisor grants acts inside
    its own kernel only."""
    code, denied = probe_code()
    # gVisor's /proc/self/status has no NoNewPrivs nor CapAmb line. A raw clone that gVisor
    # grants (it has user namespaces of its own) would fork the kernel mid-cell: not probed.
    code = code.replace("status[k].split()[0] for k", "status.get(k, '-').split()[0] for k")
    code = code.replace('attempt("clone", CLONE_NEWUSER, 0, 0, 0, 0)', '"not probed"')
    result = await gclient.thread(tid).run(code)
    assert result.state == "complete", result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    for path in ("/proc/sys/kernel/core_pattern", "/proc/sys/kernel/hostname",
                 "/proc/sys/vm/overcommit_memory"):
        # gVisor's /proc/sys: no core_pattern at all, the rest not the kernel uid's to write.
        assert report[path] in {"ENOENT", "EROFS", "EACCES", "EPERM"}, (path, report[path])
    status = report["status"]
    assert status["Uid"] != "0"
    for capabilities in ("CapEff", "CapPrm", "CapBnd", "CapInh"):
        assert int(status[capabilities], 16) == 0, status
    # With these all-zero arguments ptrace is PTRACE_TRACEME and unshare a no-op, which gVisor's
    # kernel grants (bubblewrap's filter refuses the calls whatever their arguments); every
    # other call is refused or unknown to it.
    granted = {name for name in denied if report["syscalls"][name] == "ok"}
    assert granted <= {"ptrace", "unshare"}, report["syscalls"]
    assert report["tiocsti"] != "ok" and report["getpid"] == "ok"
    assert report["unshare_newuser"] != "ok"
    weakening = [value for value, answer in report["personality"].items()
                 if value in ("0x400000", "0x100000", "0x500000", "0x40000")]
    assert all(report["personality"][value] != "ok" for value in weakening)
    assert "ok" not in report["newer"].values(), report["newer"]
    sockets = report["sockets"]
    for family in ("AF_PACKET", "AF_VSOCK", "AF_ALG", "AF_BLUETOOTH"):
        assert sockets[family] != "ok", (family, sockets)
    assert sockets["AF_UNIX"] == "ok" and sockets["AF_INET"] == "ok"


async def test_host_sockets_are_unreachable(gvisor, gclient, tid):
    thread = gclient.thread(tid)
    await thread.run("1")
    kernel = session_of(gvisor.gateway, tid).kernel
    # A socket of the host's inside the one directory the kernel shares with it.
    path = kernel.spec.runtime_dir / "host.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen()
    try:
        code = f"""
import socket
for family, address in ((socket.AF_UNIX, {str(path)!r}),
                        (socket.AF_INET, ("127.0.0.1", {gvisor.server.port}))):
    s = socket.socket(family)
    s.settimeout(5)
    try:
        s.connect(address)
        print("connected")
    except OSError as exc:
        print(type(exc).__name__)
    finally:
        s.close()
"""
        result = await thread.run(code)
    finally:
        listener.close()
        path.unlink()
    unix, tcp = result.output.split()
    assert unix != "connected" and tcp != "connected", result.output


async def test_memory_bomb_is_killed_and_the_thread_restarts(gclient, tid):
    thread = gclient.thread(tid)
    await thread.run("open('kept.txt', 'w').write('survives')\nsafe = 1")
    result = await thread.run("blocks = []\nwhile True:\n    blocks.append(b'x' * 2**26)")
    assert result.state == "killed", result.status
    assert "memory limit of 512 MiB exceeded" in result.status["reason"], result.status
    assert result.status.get("kernel_restarted") is True
    after = await thread.run("print(open('kept.txt').read())")
    assert after.state == "complete" and after.output == "survives\n"


async def test_processes_and_disk_are_capped(gvisor, gclient, tid):
    settings = gvisor.gateway.settings
    thread = gclient.thread(tid)
    forks = await thread.run("""
import subprocess
children, error = [], None
try:
    for _ in range(400):
        children.append(subprocess.Popen(['sleep', '60']))
except OSError as exc:
    error = exc
print(len(children), type(error).__name__)
for child in children:
    child.kill()
    child.wait()
""", timeout=600)  # a guard: hundreds of forks under gVisor's ptrace platform are slow
    assert forks.state == "complete", forks.status
    started, error = forks.output.split()
    assert int(started) < settings.pids_limit and error in {"BlockingIOError", "OSError"}
    fill = await thread.run("""
import errno, os
written = 0
try:
    with open('fill.bin', 'wb') as f:
        while True:
            f.write(b'\\0' * 2**20)
            f.flush()
            written += 1
except OSError as exc:
    print(errno.errorcode[exc.errno], written)
os.remove('fill.bin')
""")
    name, written = fill.output.split()
    assert name in {"ENOSPC", "EFBIG"} and int(written) <= settings.disk_limit // 2**20
    assert (await thread.run("1 + 1")).state == "complete"


async def test_interrupt_and_restart(gvisor, gclient, tid):
    thread = gclient.thread(tid)
    call = await thread.execute("import time\nprint('started', flush=True)\ntime.sleep(60)")
    first = await gclient.next_envelope(thread.id, call, timeout=GUARD)
    while first["chunk"]["type"] != "hot_code_output":
        first = await gclient.next_envelope(thread.id, call, timeout=GUARD)
    await thread.interrupt()
    result = await asyncio.wait_for(thread.collect(call), GUARD)
    assert result.state == "interrupted" and "KeyboardInterrupt" in result.output
    await thread.run("x = 41")
    old = session_of(gvisor.gateway, tid).kernel.id
    await thread.restart()
    restarted = await gclient.next_envelope(thread.id, None, timeout=GUARD)
    assert restarted["chunk"]["content"]["state"] == "restarted"
    assert (await thread.run("print('x' in globals())")).output == "False\n"
    state_dir = gvisor.gateway.host.state_dir
    assert await wait_until(lambda: old not in sandboxes(state_dir), GUARD)


async def test_files_belong_to_the_kernels_uid(gvisor, gclient, tid):
    thread = gclient.thread(tid)
    await thread.upload("in/data.csv", b"a,b\n1,2\n")
    result = await thread.run(
        "open('in/data.csv', 'a').write('3,4\\n')\nopen('mine.txt', 'w').write('x')\n"
        "print(open('in/data.csv').read().count(','))")
    assert result.state == "complete" and result.output.strip() == "3", result.output
    kernel = session_of(gvisor.gateway, tid).kernel
    assert kernel.spec.uid not in (None, 0)
    assert (kernel.spec.workdir / "mine.txt").stat().st_uid == kernel.spec.uid
    assert "mine.txt" in result.status["files"]


async def test_snapshots_restore_variables_into_a_new_sandbox(gvisor, gclient, tid):
    thread = gclient.thread(tid)
    await thread.run("import pandas as pd\nframe = pd.DataFrame({'v': [1, 2, 3]})\nword = 'kept'")
    session = session_of(gvisor.gateway, tid)
    old = session.kernel.id
    assert await session.hibernate("idle", "test", wait=True)
    after = await thread.run("print(word, int(frame.v.sum()))")
    assert after.output == "kept 6\n", after.status
    assert after.status["kernel_restarted"] is True
    assert after.status["restored"]["names"] >= 2
    assert session_of(gvisor.gateway, tid).kernel.id != old


async def test_a_killed_gateway_leaves_no_sandbox_after_the_next_start(data_root):
    data_dir = data_root / "gvisor-killed"
    state_dir = data_dir / "gvisor"
    first = await GatewayProcess(data_dir, "--sandbox", "gvisor").start(timeout=GUARD)
    second = None
    try:
        left = sandboxes(state_dir)
        assert left, "the first gateway's warm kernel should run in a sandbox"
        first.kill()
        await first.proc.wait()
        # SIGKILL runs no clean-up: the sandboxes outlive the gateway...
        assert left <= sandboxes(state_dir)
        second = await GatewayProcess(data_dir, "--sandbox", "gvisor").start(timeout=GUARD)
        # ... until the next start deletes them before it starts its own.
        assert not left & sandboxes(state_dir)
        assert not [pid for pid in _runsc_processes() if any(
            kernel.encode() in _cmdline(pid) for kernel in left)]
        await second.stop()
        assert sandboxes(state_dir) == set()
    finally:
        first.kill()
        if second is not None:
            await second.stop()
        for kernel in sandboxes(state_dir):  # only if an assertion failed above
            subprocess.run([RUNSC or "runsc", f"--root={state_dir}", "delete", "-force",
                            kernel], capture_output=True, timeout=60)
        unmount_leftovers(data_dir)


def _runsc_processes() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and b"runsc" in _cmdline(int(p))]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
