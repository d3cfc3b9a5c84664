"""The sandbox, for real: bubblewrap, cgroups, rlimits, tmpfs; hostile code in real kernels."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.gateways import session_of
from support.host import needs_linux

pytestmark = [pytest.mark.asyncio(loop_scope="session"), needs_linux]


async def test_no_network_not_even_the_gateway(running, client, thread_id):
    port = running.server.port
    code = f"""
import socket
results = []
for host, port in [("127.0.0.1", {port}), ("1.1.1.1", 53), ("8.8.8.8", 443)]:
    try:
        socket.create_connection((host, port), timeout=2).close()
        results.append("connected")
    except OSError as exc:
        results.append(type(exc).__name__)
print(results)
# The network namespace's interfaces (netlink, which if_nameindex() uses, is refused).
print(sorted(line.split(':')[0].strip() for line in open('/proc/net/dev').readlines()[2:]))
"""
    result = await client.thread(thread_id).run(code)
    lines = result.output.splitlines()
    assert "connected" not in lines[0]
    assert lines[1] == "['lo']"


async def test_host_files_and_other_threads_are_invisible(running, client, thread_id):
    other = client.thread(thread_id + "-other")
    await other.run("open('private.txt', 'w').write('other thread secret')")
    other_dir = session_of(running.gateway, other.id).kernel.spec.workdir
    assert (other_dir / "private.txt").exists()
    data_dir = running.gateway.settings.data_dir
    sentinel = Path("/root/.gateway-test-sentinel")
    sentinel.write_text("host secret")
    try:
        paths = [str(other_dir / "private.txt"), str(data_dir / "files"), str(sentinel),
                 "/etc/shadow", "/etc/passwd", str(Path.cwd() / "pyproject.toml"), "/var/lib"]
        code = f"""
import os
for p in {paths!r}:
    print(os.path.exists(p))
print(os.listdir('/mnt/data'))
"""
        result = await client.thread(thread_id).run(code)
    finally:
        sentinel.unlink()
    *exists, listing = result.output.splitlines()
    assert exists == ["False"] * len(paths), result.output
    assert "private.txt" not in listing


async def test_environment_is_clean(client, thread_id):
    result = await client.thread(thread_id).run(
        "import os\nprint(sorted(k for k in os.environ if 'GATEWAY' in k or 'SECRET' in k))\n"
        "print(os.environ['HOME'], os.getcwd())")
    assert result.output.splitlines() == ["[]", "/mnt/data /mnt/data"]


async def test_only_the_kernels_own_processes_are_visible(client, thread_id):
    result = await client.thread(thread_id).run(
        "import os\npids = [p for p in os.listdir('/proc') if p.isdigit()]\n"
        "cmds = [open(f'/proc/{p}/cmdline','rb').read().replace(b'\\0', b' ') for p in pids]\n"
        "print(len(pids), max(map(int, pids)))\nprint(any(b'pytest' in c for c in cmds))")
    count, highest = map(int, result.output.splitlines()[0].split())
    assert count <= 5 and highest < 100  # a fresh pid namespace: pids start at 1
    assert result.output.splitlines()[1] == "False"


async def test_memory_bomb_is_killed_and_thread_recovers(client, thread_id):
    victim, bystander = client.thread(thread_id), client.thread(thread_id + "-bystander")
    await bystander.run("safe = 'intact'")
    await victim.run("open('kept.txt', 'w').write('survives')")
    result = await victim.run("blocks = []\nwhile True:\n    blocks.append(b'x' * 2**26)")
    assert result.state == "killed", result.status
    assert "memory limit of 512 MiB exceeded" in result.status["reason"]
    assert result.status.get("kernel_restarted") is True
    after = await victim.run("print(open('kept.txt').read())")
    assert after.state == "complete" and after.output == "survives\n"
    check = await bystander.run("safe")
    assert "intact" in check.output


async def test_fork_bomb_is_capped(running, client, thread_id):
    limit = running.gateway.settings.pids_limit
    code = """
import subprocess
children = []
error = None
try:
    for _ in range(1000):
        children.append(subprocess.Popen(['sleep', '60']))
except OSError as exc:
    error = exc
print(len(children), type(error).__name__)
for child in children:
    child.kill()
    child.wait()
"""
    result = await client.thread(thread_id).run(code)
    started, error = result.output.split()
    assert int(started) < limit
    assert error in {"BlockingIOError", "OSError"}
    again = await client.thread(thread_id).run("1 + 1")
    assert again.state == "complete"


async def test_disk_fill_stops_with_a_clear_error(running, client, thread_id):
    code = """
import errno
written = 0
try:
    with open('fill.bin', 'wb') as f:
        while True:
            f.write(b'\\0' * 2**20)
            f.flush()
            written += 1
except OSError as exc:
    print(errno.errorcode[exc.errno], written)
import os
os.remove('fill.bin')
"""
    result = await client.thread(thread_id).run(code)
    name, written = result.output.split()
    assert name in {"ENOSPC", "EFBIG"}
    assert int(written) <= running.gateway.settings.disk_limit // 2**20
    assert (await client.thread(thread_id).run("open('ok.txt','w').write('1')")).state == "complete"


async def test_loop_ignoring_sigint_is_killed_on_timeout(client, thread_id):
    thread = client.thread(thread_id)
    result = await thread.run(
        "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass",
        timeout=1)
    assert result.state == "timeout"
    assert result.status.get("kernel_restarted") is True
    again = await thread.run("'recovered'")
    assert again.state == "complete" and "recovered" in again.output


async def test_crash_and_exit_are_reported_as_killed(client, thread_id):
    thread = client.thread(thread_id)
    crash = await thread.run("import ctypes\nctypes.string_at(0)")
    assert crash.state == "killed"
    assert "segmentation fault" in crash.status["reason"]
    exited = await thread.run("import os\nos._exit(3)")
    assert exited.state == "killed"
    assert "code 3" in exited.status["reason"]
    assert (await thread.run("1")).state == "complete"


async def test_interrupt_reaches_code_inside_the_sandbox(client, thread_id):
    import asyncio

    thread = client.thread(thread_id)
    call = await thread.execute("import time\nprint('started', flush=True)\ntime.sleep(60)")
    first = await client.next_envelope(thread.id, call, timeout=60)
    while first["chunk"]["type"] != "hot_code_output":
        first = await client.next_envelope(thread.id, call, timeout=60)
    await thread.interrupt()
    result = await asyncio.wait_for(thread.collect(call), 30)
    assert result.state == "interrupted"
    assert "KeyboardInterrupt" in result.output


async def test_dead_kernels_leave_no_cgroup_behind(running, client, thread_id):
    import asyncio

    cgroups = running.gateway.host.cgroups
    if cgroups is None or not cgroups.controllers:
        pytest.skip("cgroups are not writable on this host (reported on /healthz)")
    thread = client.thread(thread_id)
    await thread.run(
        "import subprocess\nsubprocess.Popen(['sleep', '600'], start_new_session=True)")
    old = session_of(running.gateway, thread_id).kernel.id
    dead = await thread.run("import os\nos._exit(1)")
    assert dead.state == "killed"
    paths = [cgroups._dir(c, old) for c in cgroups.controllers]
    for _ in range(100):
        if not any(p.exists() for p in paths):
            break
        await asyncio.sleep(0.1)
    assert not any(p.exists() for p in paths), "the dead kernel's cgroups were not removed"
