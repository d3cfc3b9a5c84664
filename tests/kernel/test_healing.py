"""A thread heals when its surroundings are taken away, start failures are reported, and a user
interrupt is re-sent and then enforced (gateway/threads/healing.py, KernelPool.rebuild,
Kernel.run).

The gateway half; the pure half is tests/unit/test_healing_backoff.py."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import urllib.request

import pytest

from support.gateways import session_of
from support.host import needs_linux

pytestmark = [pytest.mark.asyncio(loop_scope="session"), needs_linux]

FIRST_CELL = ("x = 41\nimport os\nos.makedirs('sub', exist_ok=True)\n"
              "open('keep.txt', 'w').write('kept')\nopen('sub/nested.txt', 'w').write('nested')\n"
              "open('gone.txt', 'w').write('deleted later')")


def take_away(workdir, runtime_dir) -> None:
    """What another gateway's clean-up (or an operator) did: unmount, delete."""
    if os.path.ismount(workdir):
        subprocess.run(["umount", "-l", str(workdir)], check=True)
    shutil.rmtree(workdir)
    shutil.rmtree(runtime_dir)


@pytest.mark.parametrize("kernel_killed", [False, True], ids=["kernel_alive", "kernel_killed"])
async def test_thread_heals_after_its_workdir_and_runtime_dir_are_removed(
        running, client, thread_id, kernel_killed):
    thread = client.thread(thread_id)
    first = await thread.run(FIRST_CELL)
    assert first.state == "complete", first.status
    deleted = await thread.run("import os\nos.remove('gone.txt')")
    assert deleted.state == "complete", deleted.status
    session = session_of(running.gateway, thread_id)
    old = session.kernel
    take_away(old.spec.workdir, old.spec.runtime_dir)
    if kernel_killed:  # as the other gateway's cgroup clean-up did
        os.kill(old.pid, signal.SIGKILL)

    healed = await thread.run(
        "import os\nprint(open('keep.txt').read(), open('sub/nested.txt').read(),"
        " os.path.exists('gone.txt'), 'x' in globals())")
    assert healed.state == "complete", healed.status
    # Variables come back from the thread's last snapshot, which lives in the file store.
    assert healed.output == "kept nested False True\n"
    restored = healed.status["restored"]
    assert (restored["names"], restored["skipped"]) == (2, []) and "failed" not in restored
    assert healed.status["kernel_restarted"] is True
    assert "working directory" in healed.status["reason"], healed.status
    assert "2 saved file(s) restored" in healed.status["reason"], healed.status

    new = session.kernel
    assert new is not old and new.spec.workdir != old.spec.workdir
    workdirs = running.gateway.workdirs
    assert workdirs.problem(new.spec.workdir) is None
    owner = workdirs.owner(new.spec.workdir)
    if owner is not None:  # root: the restored files belong to the kernel's own uid
        for name in ("keep.txt", "sub", "sub/nested.txt"):
            assert os.stat(new.spec.workdir / name).st_uid == owner, name
    # The kernel can write its restored files, and the gateway sees what it writes again.
    again = await thread.run("open('keep.txt', 'a').write('!')\nprint(open('keep.txt').read())")
    assert again.state == "complete" and again.output == "kept!\n", again.status
    assert [f["filename"] for f in again.files] == ["keep.txt"]
    assert not again.status.get("kernel_restarted")
    assert running.gateway.pool.snapshot()["heals"] >= 1


async def test_failing_starts_show_on_readyz_healthz_and_metrics(running):
    stats = running.gateway.pool.stats
    saved = stats.failing_starts, stats.last_start_error

    def get(path: str):
        request = urllib.request.Request(running.http + path,
                                         headers={"Authorization": "Bearer tok-alice"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    try:
        stats.failing_starts, stats.last_start_error = 3, "kernel k1 failed to start: boom"
        status, body = await asyncio.to_thread(get, "/readyz")
        assert status == 503
        assert "kernel starts keep failing: 3 in a row" in json.loads(body)["reason"]
        assert "boom" in json.loads(body)["reason"]
        status, body = await asyncio.to_thread(get, "/healthz")
        assert status == 200 and json.loads(body)["status"] == "degraded"
        _, body = await asyncio.to_thread(get, "/metrics")
        assert "gateway_kernel_failing_starts 3.0" in body.decode()
    finally:
        stats.failing_starts, stats.last_start_error = saved
    status, body = await asyncio.to_thread(get, "/healthz")
    assert json.loads(body)["status"] == "ok"


async def first_output(client, thread_id: str, call_id: str) -> None:
    while True:
        envelope = await client.next_envelope(thread_id, call_id, timeout=120)
        if envelope["chunk"]["type"] == "hot_code_output":
            return


async def test_an_interrupt_swallowed_once_is_sent_again(client, thread_id):
    thread = client.thread(thread_id)
    assert (await thread.run("y = 5")).state == "complete"
    # The print is inside the try: the first interrupt may land while it is still flushing.
    call = await thread.execute(
        "import time\ntry:\n    print('sleeping', flush=True)\n    time.sleep(600)\n"
        "except KeyboardInterrupt:\n    print('swallowed', flush=True)\ntime.sleep(600)")
    await first_output(client, thread.id, call)
    await thread.interrupt()
    result = await thread.collect(call, timeout=300)
    assert result.state == "interrupted", result.status
    assert "swallowed" in result.output
    assert result.status["error"]["ename"] == "KeyboardInterrupt"
    assert not result.status.get("kernel_restarted"), result.status  # the re-send did it
    after = await thread.run("print(y)")
    assert after.output == "5\n"


async def test_a_cell_that_swallows_every_interrupt_is_stopped_by_a_restart(client, thread_id):
    thread = client.thread(thread_id)
    call = await thread.execute(
        "import time\nprint('sleeping', flush=True)\nwhile True:\n    try:\n"
        "        time.sleep(600)\n    except KeyboardInterrupt:\n"
        "        print('not stopping', flush=True)")
    await first_output(client, thread.id, call)
    await thread.interrupt()
    result = await thread.collect(call, timeout=300)
    assert result.state == "interrupted", result.status
    assert result.status["kernel_restarted"] is True
    assert "did not stop after the interrupt" in result.status["reason"]
    assert result.output.count("not stopping") >= 2  # the first interrupt and the re-send
    after = await thread.run("print('fresh')")
    assert after.state == "complete" and after.output == "fresh\n"


async def test_a_second_interrupt_right_behind_the_first_still_reports_it(client, thread_id):
    # A double click, or the re-send crossing a slow first interrupt: the second SIGINT used to
    # land in IPython's traceback formatting, which swallowed it and the error with it, so the
    # cell ended "complete". Spacings around the traceback's formatting time.
    thread = client.thread(thread_id)
    outcomes = []
    for spacing in (0, 0.005, 0.01, 0.02, 0.04, 0.08):
        call = await thread.execute("import time\nprint('sleeping', flush=True)\ntime.sleep(600)")
        await first_output(client, thread.id, call)
        await thread.interrupt()
        await asyncio.sleep(spacing)
        await thread.interrupt()
        result = await thread.collect(call, timeout=300)
        outcomes.append((spacing, result.state, (result.status.get("error") or {}).get("ename"),
                         bool(result.status.get("kernel_restarted"))))
    # A kernel too slow (a loaded host) to report the interrupt within interrupt_grace is
    # restarted instead: still "interrupted", never "complete".
    assert all(state == "interrupted" and (ename == "KeyboardInterrupt" or restarted)
               for _, state, ename, restarted in outcomes), outcomes
    assert any(ename == "KeyboardInterrupt" for _, _, ename, _ in outcomes), outcomes
    assert (await thread.run("print('still here')")).output == "still here\n"
