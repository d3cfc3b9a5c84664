"""The CLI against a real gateway running as its own process, then its graceful shutdown."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.client import GatewayClient
from gateway.config import Settings
from support.host import host_processes

GATEWAY = str(Path(sys.executable).parent / "gateway")
ADMIN = "admin-secret"


class ServerProcess:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        env = {**os.environ, "GATEWAY_TOKENS": "alice:tok-alice", "GATEWAY_ADMIN_TOKEN": ADMIN}
        self.process = subprocess.Popen(
            [GATEWAY, "serve", "--port", "0", "--data-dir", str(data_dir), "--pool-size", "2",
             "--set", "memory_limit=536870912", "--shutdown-grace", "20"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
        line = self.process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, f"no listening line: {line!r} {self.process.stderr.read()}"
        self.port = int(match.group(1))
        self.url = f"ws://127.0.0.1:{self.port}/ws"
        self.admin_url = f"ws://127.0.0.1:{self.port}/admin"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [GATEWAY, *args, "--url", self.admin_url, "--admin-token", ADMIN],
            capture_output=True, text=True, timeout=120)
        if check:
            assert result.returncode == 0, result.stderr
        return result

    def json(self, *args: str):
        return json.loads(self.cli(*args, "--json").stdout)

    def http(self, path: str) -> str:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}",
                                         headers={"Authorization": "Bearer tok-alice"})
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.read().decode()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = ServerProcess(tmp_path_factory.mktemp("cli") / "data")
    yield server
    if server.process.poll() is None:
        # SIGTERM: the gateway drains and unmounts its workdirs (a SIGKILL left their tmpfs
        # mounts behind under the test's temporary directory).
        server.process.terminate()
        try:
            server.process.wait(timeout=120)  # a guard against a hang, not a timing limit
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


async def run_cells(server: ServerProcess, thread_id: str, cells: list[str]) -> list:
    async with await GatewayClient.connect(server.url, "tok-alice") as client:
        return [await client.thread(thread_id).run(cell) for cell in cells]


@pytest.mark.asyncio(loop_scope="session")
async def test_pool_ls_and_stats(server):
    await run_cells(server, "cli-a", ["x = 1", "open('out.csv', 'w').write('a,b\\n1,2\\n')"])
    rows = server.json("pool", "ls")
    leased = [row for row in rows if row["thread"] == "cli-a"]
    assert len(leased) == 1
    row = leased[0]
    assert row["owner"] == "alice" and row["state"] == "idle" and row["executions"] == 2
    assert row["pid"] > 0 and row["rss_bytes"] > 10 * 2**20
    assert any(r["pooled"] for r in rows), "warm kernels are listed too"
    table = server.cli("pool", "ls").stdout
    assert "cli-a" in table and "alice" in table
    stats = server.json("pool", "stats")
    # max_kernels 0 (the default) is resolved from this host's memory and cores.
    assert stats["leases"] >= 1 and stats["max_kernels"] == Settings().kernel_limit
    capacity = stats["capacity"]
    assert capacity["kernel_limit"] == stats["max_kernels"]
    assert 0 < capacity["memory_floor_bytes"] < capacity["memory_available_bytes"]


@pytest.mark.asyncio(loop_scope="session")
async def test_metrics_count_what_ran(server):
    await run_cells(server, "cli-m", ["1 + 1", "1 / 0", "print('x')"])
    families = {f.name: f for f in text_string_to_metric_families(server.http("/metrics"))}
    executions = {s.labels["state"]: s.value for s in families["gateway_executions"].samples
                  if s.name == "gateway_executions_total"}
    assert executions["error"] >= 1 and executions["complete"] >= 3
    count = [s.value for s in families["gateway_execution_seconds"].samples
             if s.name == "gateway_execution_seconds_count"][0]
    assert count == sum(executions.values())
    kernels = {s.labels["state"]: s.value for s in families["gateway_kernels"].samples}
    assert kernels["leased"] >= 2
    assert "gateway_websocket_connections" in families
    retained = families["gateway_retained_results"].samples[0].value
    assert retained >= 3, families["gateway_retained_results"]  # the three calls above
    assert families["gateway_retained_result_bytes"].samples[0].value > 0


@pytest.mark.asyncio(loop_scope="session")
async def test_thread_restart_and_kill(server):
    await run_cells(server, "cli-r", ["kept = 5"])
    threads = {t["thread_id"]: t for t in server.json("thread", "ls")}
    old_kernel = threads["cli-r"]["kernel"]
    restarted = server.json("thread", "restart", "cli-r")
    assert restarted["kernel"] != old_kernel
    (after,) = await run_cells(server, "cli-r", ["'kept' in globals()"])
    assert after.output == "False\n"
    server.json("thread", "kill", "cli-r")
    assert "cli-r" not in {t["thread_id"] for t in server.json("thread", "ls")}
    missing = server.cli("thread", "kill", "no-such-thread", check=False)
    assert missing.returncode == 1 and "not_found" in missing.stderr


@pytest.mark.asyncio(loop_scope="session")
async def test_files_ls_and_gc(server):
    await run_cells(server, "cli-f", ["open('keep.txt', 'w').write('k')"])
    files = server.json("files", "ls", "--thread", "cli-f")
    assert [f["name"] for f in files] == ["keep.txt"]
    assert server.json("files", "gc")["deleted"] == 0, "nothing is older than the retention"
    assert server.json("files", "gc", "--older-than", "0")["deleted"] >= 1
    assert server.json("files", "ls", "--thread", "cli-f") == []


def test_resize_and_wrong_admin_token(server):
    assert server.json("pool", "resize", "3")["target"] == 3
    bad = subprocess.run([GATEWAY, "pool", "stats", "--url", server.admin_url,
                          "--admin-token", "wrong"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "401" in bad.stderr
    # A clear line, not a traceback: the client token is the usual mistake.
    assert "Traceback" not in bad.stderr and "admin token was refused" in bad.stderr, bad.stderr
    too_big = server.cli("pool", "resize", str(Settings().kernel_limit + 1), check=False)
    assert too_big.returncode == 1 and "max_kernels" in too_big.stderr


def test_config_show_masks_secrets(tmp_path):
    config = tmp_path / "gateway.toml"
    config.write_text('pool_size = 5\nadmin_token = "very-secret"\n')
    env = {**os.environ, "GATEWAY_TOKENS": "alice:tok-secret", "GATEWAY_MAX_KERNELS": "9"}
    result = subprocess.run([GATEWAY, "config", "show", "--config", str(config), "--json"],
                            capture_output=True, text=True, env=env, timeout=60)
    data = json.loads(result.stdout)
    assert data["pool_size"] == 5 and data["max_kernels"] == 9
    assert data["tokens"] == ["alice"] and data["admin_token"] == "***"
    assert "secret" not in result.stdout.replace('"***"', "")


def test_serve_refuses_settings_it_cannot_mean_with_one_message(tmp_path):
    env = {**os.environ, "GATEWAY_TOKENS": "alice:tok-alice", "GATEWAY_SNAPSHOTS": "banana"}
    errors = tmp_path / "stderr"
    with open(errors, "w") as sink:
        process = subprocess.Popen(
            [GATEWAY, "serve", "--port", "0", "--data-dir", str(tmp_path / "data"),
             "--pool-size", "0", "--set", "sandbox=banana", "--hibernate-after", "-5s"],
            stdout=subprocess.PIPE, stderr=sink, env=env, text=True)
    try:
        first = process.stdout.readline()  # the listening line, had it started
        assert first == "", f"the gateway started: {first!r}"
        assert process.wait() == 2
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    message = errors.read_text()
    assert message.startswith("error: invalid settings:\n"), message
    assert ("sandbox: 'banana' is not one of 'bwrap', 'gvisor', 'none' [on the command line]"
            in message)
    assert "hibernate_after: '-5s' is not a duration" in message
    assert "snapshots: 'banana' is not a bool" in message and "GATEWAY_SNAPSHOTS" in message
    assert "Traceback" not in message and message.count("error:") == 1
    assert not (tmp_path / "data").exists(), "nothing was started"


def test_exec_refuses_settings_it_cannot_mean_too():
    env = {**os.environ, "GATEWAY_SANDBOX": "firecracker"}
    result = subprocess.run([GATEWAY, "exec", "print(1)"], capture_output=True, text=True,
                            env=env)
    assert result.returncode == 2
    assert result.stderr == ("error: invalid settings: sandbox: 'firecracker' is not one of "
                             "'bwrap', 'gvisor', 'none' [from GATEWAY_SANDBOX]\n")


def test_exec_runs_once_in_a_fresh_sandbox():
    result = subprocess.run([GATEWAY, "exec", "import os\nprint(os.getcwd())\n6 * 7", "--json"],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    envelopes = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    outputs = "".join(e["chunk"]["content"] for e in envelopes
                      if e["chunk"]["type"] == "hot_code_output")
    assert outputs == "/mnt/data\n42\n"
    assert envelopes[-1]["chunk"]["content"]["state"] == "complete"
    pretty = subprocess.run([GATEWAY, "exec", "print('pretty')"], capture_output=True, text=True,
                            timeout=180)
    assert "pretty" in pretty.stdout and "[complete]" in pretty.stdout


def test_exec_prints_the_output_below_the_closing_fence():
    result = subprocess.run([GATEWAY, "exec", "print(42)"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:4] == ["```python", "print(42)", "```", "42"], (
        result.stdout)


@pytest.mark.asyncio(loop_scope="session")
async def test_sigterm_finishes_running_work_and_leaves_no_process(server):
    assert host_processes(str(server.data_dir).encode()), "kernels run under the data dir"
    async with await GatewayClient.connect(server.url, "tok-alice") as client:
        thread = client.thread("cli-shutdown")
        call = await thread.execute("import time\ntime.sleep(2)\nprint('finished')")
        await client.next_envelope(thread.id, call, timeout=60)  # the hot code: it is running
        server.process.send_signal(signal.SIGTERM)
        result = await thread.collect(call, timeout=60)
    assert result.state == "complete" and result.output == "finished\n"
    assert server.process.wait(timeout=60) == 0
    deadline = time.monotonic() + 10
    while host_processes(str(server.data_dir).encode()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert host_processes(str(server.data_dir).encode()) == []
    assert not any(os.path.ismount(p) for p in (server.data_dir / "workdirs").iterdir())
