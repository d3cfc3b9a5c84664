"""The cluster tests' fixtures: three gateway nodes behind HAProxy with redis-server and moto's S3
server (scripts/benchlib/cluster.py, shared with python -m scripts.cluster), and a client of
alice's on each node and on the front."""

from __future__ import annotations

import pytest
import pytest_asyncio

from gateway.client import GatewayClient
from scripts.benchlib.cluster import Cluster


@pytest.fixture(scope="module")
def cluster():
    cluster = Cluster(["n1", "n2", "n3"])
    try:
        cluster.start()
    except BaseException:
        print(cluster.logs())
        cluster.stop()
        raise
    yield cluster
    cluster.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def clients(cluster):
    """A connection of alice's to each node and to HAProxy; closed afterwards."""
    opened: dict[str, GatewayClient] = {}
    for name, node in cluster.nodes.items():
        opened[name] = await GatewayClient.connect(node.url, "tok-alice", reconnect=False)
    opened["front"] = await GatewayClient.connect(cluster.haproxy.url, "tok-alice",
                                                  reconnect=False)
    yield opened
    for client in opened.values():
        await client.close()
