"""deploy/compose-cluster.yaml: two nodes, Redis, the S3 store and HAProxy from the images
built here. A thread reached through HAProxy survives `docker kill` of the node that owns it,
its variables and its files included. Runs with GATEWAY_DEPLOY_TESTS=1 (make deploy-check)."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess

import pytest

from gateway.client import GatewayClient
from scripts.benchlib.cluster import free_port
from support.containers import (
    COMPOSE_CLUSTER,
    Project,
    http_status,
    require_docker,
    wait_for,
)

pytestmark = pytest.mark.container
GUARD = 240.0  # two nodes filling their pools on two shared cores; a bound, not a target
TOKEN = "tok-" + secrets.token_hex(8)
NODES = ("node1", "node2")


def live_nodes(project: Project, via: str) -> dict[str, dict]:
    """The registry's live nodes, asked from inside ``via`` (gateway node ls)."""
    result = project.compose("exec", "-T", via, "gateway", "node", "ls", "--json", check=False,
                             timeout=60)
    if result.returncode:
        return {}
    return {row["node"]: row for row in json.loads(result.stdout)}


@pytest.fixture(scope="module")
def cluster():
    require_docker()
    port = free_port()
    project = Project(COMPOSE_CLUSTER, {
        "GATEWAY_TOKENS": f"alice:{TOKEN}",
        "GATEWAY_CLUSTER_TOKEN": secrets.token_hex(16),
        "GATEWAY_PUBLISH_PORT": str(port),
        "GATEWAY_NODE_LEASE": "4",  # the thread moves after the lease: keep the test short
    })
    try:
        project.compose("up", "-d")
        project.url = f"ws://127.0.0.1:{port}/ws"
        wait_for(lambda: http_status(f"http://127.0.0.1:{port}/readyz") == 200, GUARD,
                 "HAProxy /readyz")
        wait_for(lambda: set(live_nodes(project, "node1")) == set(NODES), GUARD,
                 "both nodes registered")
    except BaseException:
        print(project.logs())
        project.down()
        raise
    yield project
    print(project.logs())
    project.down()


async def test_a_thread_survives_docker_kill_of_its_node(cluster):
    client = await GatewayClient.connect(cluster.url, TOKEN, reconnect=False)
    try:
        thread = client.thread("deploy-failover")
        first = await asyncio.wait_for(thread.run(
            "answer = 41\n"
            "open('/mnt/data/kept.txt', 'w').write('kept across nodes')\n"
            "print('stored')\n"), GUARD)
        assert first.state == "complete" and "stored" in first.output, first.error
    finally:
        await client.close()

    # Its owner: the node whose heartbeat counts a thread (every third of the lease).
    (owner,) = wait_for(lambda: [name for name, row in live_nodes(cluster, "node1").items()
                                 if row["threads"]], GUARD, "the thread's owner in the registry")
    survivor = next(name for name in NODES if name != owner)
    subprocess.run(["docker", "kill", cluster.container(owner)], check=True, timeout=60,
                   capture_output=True)

    # The next request through HAProxy lands on the survivor, which claims the thread once the
    # dead node's lease has run out: a new kernel, its files and its last snapshot restored.
    client = await GatewayClient.connect(cluster.url, TOKEN, reconnect=False)
    try:
        thread = client.thread("deploy-failover")
        moved = await asyncio.wait_for(thread.run(
            "print(answer + 1, open('/mnt/data/kept.txt').read())\n"), GUARD)
    finally:
        await client.close()
    assert moved.state == "complete", (moved.error, cluster.logs())
    assert moved.output.strip() == "42 kept across nodes"
    assert moved.status.get("kernel_restarted") is True
    assert set(live_nodes(cluster, survivor)) == {survivor}
