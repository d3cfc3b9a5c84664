"""The image run by deploy/compose.yaml, with exactly its privileges: ready, every sandbox
layer in force, a pandas + matplotlib cell through the published port with the repository's
Python client, the preStop drain hook, and SIGTERM letting a running cell finish before the
container exits 0. Runs with GATEWAY_DEPLOY_TESTS=1 (make deploy-check)."""

from __future__ import annotations

import asyncio
import secrets
import subprocess

import pytest
import pytest_asyncio

from gateway.client import GatewayClient
from scripts.benchlib.cluster import free_port
from support.containers import (
    COMPOSE,
    DRAIN_HOOK,
    IMAGE,
    Project,
    http_json,
    http_status,
    require_docker,
    wait_for,
)

pytestmark = pytest.mark.container
GUARD = 180.0  # a generous bound on each wait: a failure, never a hang
TOKEN = "tok-" + secrets.token_hex(8)
ADMIN = "adm-" + secrets.token_hex(8)
# The layers /healthz lists as enforced when nothing is missing (gateway/sandbox/launch.py).
LAYERS = {"isolation", "memory", "processes", "cpu", "file size, open files",
          "proc_sys_read_only", "userns_disabled", "seccomp", "unprivileged_uid"}


@pytest.fixture(scope="module")
def node():
    require_docker()
    port = free_port()
    project = Project(COMPOSE, {"GATEWAY_TOKENS": f"alice:{TOKEN}", "GATEWAY_ADMIN_TOKEN": ADMIN,
                                "GATEWAY_PUBLISH_PORT": str(port)})
    try:
        project.compose("up", "-d")
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: http_status(base + "/readyz") == 200, GUARD, "container /readyz")
    except BaseException:
        print(project.logs())
        project.down()
        raise
    project.base = base
    project.port = port
    yield project
    print(project.logs())
    project.down()


@pytest_asyncio.fixture(loop_scope="session")
async def alice(node):
    client = await GatewayClient.connect(f"ws://127.0.0.1:{node.port}/ws", TOKEN,
                                         reconnect=False)
    yield client
    await client.close()


def test_ready_with_every_sandbox_layer(node):
    health = http_json(node.base + "/healthz", ADMIN)
    assert health["status"] == "ok", health
    assert health["sandbox"] == "bubblewrap"
    assert health["limits"]["not_enforced"] == {}
    assert LAYERS <= set(health["limits"]["enforced"]), health["limits"]
    for limit in ("memory", "processes", "cpu"):
        assert health["limits"]["enforced"][limit].startswith("cgroup v")
    assert health["pool"]["start_method"] == "fork"  # the zygote works in the container
    assert http_json(node.base + "/readyz", ADMIN)["ready"] is True


async def test_a_pandas_plot_cell_through_the_published_port(alice):
    """An upload read by pandas, an inline plot and a saved one downloaded: the gateway's file
    work in a kernel-owned working directory, with the capabilities the container has."""
    thread = alice.thread("deploy-pandas")
    csv = b"x,y\n" + b"".join(b"%d,%d\n" % (v, v * v) for v in range(5))
    upload = await asyncio.to_thread(alice.upload_http, thread.id, "squares.csv", csv)
    assert upload["size"] == len(csv)
    result = await asyncio.wait_for(thread.run(
        "import os, pandas as pd, matplotlib.pyplot as plt\n"
        "df = pd.read_csv('/mnt/data/squares.csv')\n"
        "df.plot(x='x', y='y'); plt.savefig('/mnt/data/squares.png'); plt.show()\n"
        "print('sum', int(df.y.sum()), 'uid', os.getuid())\n"), GUARD)
    assert result.state == "complete", result.error
    words = result.output.split()
    assert words[:2] == ["sum", "30"]
    assert int(words[3]) >= 100_000  # the kernel's own unprivileged uid, not the gateway's root
    # The shown figure comes back as a file too, beside the saved one.
    assert sum(f["mime_type"] == "image/png" for f in result.files) == 2, result.files
    (saved,) = [f for f in result.files if f["filename"] == "squares.png"]
    png = await asyncio.to_thread(alice.download, saved["file_id"])
    assert png.startswith(b"\x89PNG")


async def test_prestop_drain_then_sigterm_exit_0(node, alice):
    """Kubernetes' stop: the preStop hook drains while a cell runs (the cell finishes, the
    node stops being ready), then SIGTERM, and the container exits 0."""
    thread = alice.thread("deploy-stop")
    call = await thread.execute("import time\nprint('started', flush=True)\ntime.sleep(3)\n"
                                "print('finished')\n")
    seen = ""
    async for envelope in thread.stream(call):
        if envelope["chunk"]["type"] == "hot_code_output":
            seen += envelope["chunk"]["content"]
            if "started" in seen:
                break
    hook = await asyncio.to_thread(
        subprocess.run, ["docker", "exec", node.container("gateway"), DRAIN_HOOK],
        capture_output=True, text=True, timeout=GUARD)
    assert hook.returncode == 0, hook.stderr
    result = await asyncio.wait_for(thread.collect(call), GUARD)
    assert result.state == "complete" and "finished" in result.output, result.envelopes[-1]
    assert http_status(node.base + "/readyz") == 503
    assert http_status(node.base + "/healthz") == 200
    node.compose("kill", "-s", "SIGTERM", "gateway")
    state = wait_for(lambda: (s := node.inspect("gateway")["State"])["Status"] == "exited" and s,
                     GUARD, "the container exiting on SIGTERM")
    assert state["ExitCode"] == 0, node.logs()
    assert not state["OOMKilled"]


def test_the_entrypoints_cgroup_v2_path_on_a_real_cgroup2_mount():
    """This host is cgroup v1 (its controllers are bound there), but a cgroup2 hierarchy can be
    mounted in the container's own cgroup namespace: the entrypoint's v2 path moves the
    container's processes into the leaf `init` for real, and names the controllers the host
    did not delegate (none are, here)."""
    require_docker()
    script = ("mkdir /tmp/cg && mount -t cgroup2 none /tmp/cg && "
              "GATEWAY_CGROUP_ROOT=/tmp/cg /usr/local/bin/gateway-entrypoint "
              "sh -c 'grep ^0:: /proc/self/cgroup; cat /tmp/cg/cgroup.procs | wc -l'")
    done = subprocess.run(
        ["docker", "run", "--rm", "--cgroupns=private", "--cap-drop=ALL", "--cap-add=SYS_ADMIN",
         "--security-opt=seccomp=unconfined", "--entrypoint=sh", IMAGE, "-c", script],
        capture_output=True, text=True, timeout=GUARD)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0::/init", "0"]  # this shell in the leaf, none at the root
    for name in ("memory", "pids", "cpu"):
        assert f"the {name} controller is not delegated" in done.stderr
