"""The cluster's costs, in one run on 127.0.0.1 (2 nodes + redis-server + moto + HAProxy):

1. a warm ``1+1`` round trip relayed through another node vs. sent to the owning node directly
   (the baseline, measured in the same run, interleaved): ratio and median delta;
2. failover: SIGKILL the owning node, time until an execute sent at once through the other node
   returns its result there (goal: at most the lease + 2 s); the node is then started again;
3. THREADS threads x EXECUTIONS executions through HAProxy across both nodes: errors, wall time.

    python -m scripts.bench_cluster [--round-trips 200] [--threads 50] [--executions 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from gateway.client import GatewayClient
from scripts.benchlib.cluster import Cluster

WAIT = 600
HAPROXY_NOTICES = 3.0  # deploy/haproxy-cluster.cfg checks every second, up after one success


async def round_trips(cluster: Cluster, count: int) -> dict:
    owner, other = cluster.nodes["n2"], cluster.nodes["n1"]
    direct = await GatewayClient.connect(owner.url, "tok-alice", reconnect=False)
    relayed = await GatewayClient.connect(other.url, "tok-alice", reconnect=False)
    try:
        for client in (direct, relayed):  # claim on n2, open the relay, warm up
            for _ in range(5):
                assert (await client.thread("bench-rt").run("1+1", wait=WAIT)).state == \
                    "complete"
        times: dict[str, list[float]] = {"direct": [], "relayed": []}
        for _ in range(count):  # interleaved: load drifts hit both alike
            for name, client in (("direct", direct), ("relayed", relayed)):
                began = time.perf_counter()
                result = await client.thread("bench-rt").run("1+1", wait=WAIT)
                times[name].append(time.perf_counter() - began)
                assert result.output == "2\n", result.envelopes
    finally:
        await direct.close()
        await relayed.close()
    direct_ms = statistics.median(times["direct"]) * 1000
    relayed_ms = statistics.median(times["relayed"]) * 1000
    return {"direct_median_ms": round(direct_ms, 2), "relayed_median_ms": round(relayed_ms, 2),
            "ratio": round(relayed_ms / direct_ms, 2),
            "delta_ms": round(relayed_ms - direct_ms, 2), "samples": count}


async def load(cluster: Cluster, threads: int, executions: int) -> dict:
    errors: list[str] = []
    clients = [await GatewayClient.connect(cluster.haproxy.url, "tok-alice", reconnect=False)
               for _ in range(min(threads, 10))]

    async def drive(number: int) -> None:
        thread = clients[number % len(clients)].thread(f"bench-load-{number}")
        for step in range(executions):
            result = await thread.run(f"n = {step}\nn * 2", wait=WAIT)
            if result.state != "complete" or result.output != f"{step * 2}\n":
                errors.append(f"thread {number} step {step}: {result.state} "
                              f"{result.status.get('reason')}")

    began = time.perf_counter()
    try:
        await asyncio.gather(*(drive(n) for n in range(threads)))
    finally:
        for client in clients:
            await client.close()
    # Threads each node holds (n1 also holds the two threads of the earlier phases).
    served = {name: node.health()["threads"] for name, node in cluster.nodes.items()}
    return {"threads": threads, "executions": threads * executions, "errors": len(errors),
            "first_errors": errors[:3], "seconds": round(time.perf_counter() - began, 1),
            "threads_per_node": served}


async def failover(cluster: Cluster) -> dict:
    owner, other = cluster.nodes["n2"], cluster.nodes["n1"]
    direct = await GatewayClient.connect(owner.url, "tok-alice", reconnect=False)
    via = await GatewayClient.connect(other.url, "tok-alice", reconnect=False)
    try:
        await direct.thread("bench-failover").run("x = 1", wait=WAIT)
        await via.thread("bench-failover").run("x", wait=WAIT)  # the relay is open
        killed = time.perf_counter()
        await asyncio.to_thread(owner.kill)
        result = await via.thread("bench-failover").run("1+1", wait=WAIT)
        seconds = time.perf_counter() - killed
    finally:
        await via.close()
        await direct.close()
    return {"failover_seconds": round(seconds, 2), "lease_seconds": cluster.lease,
            "goal_seconds": cluster.lease + 2, "state": result.state,
            "kernel_restarted": result.status.get("kernel_restarted")}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--round-trips", type=int, default=200)
    parser.add_argument("--threads", type=int, default=50)
    parser.add_argument("--executions", type=int, default=20)
    parser.add_argument("--lease", type=float, default=3.0)
    args = parser.parse_args()
    per_node = str(args.threads + 8)
    cluster = Cluster(["n1", "n2"], lease=args.lease, pool_size=4,
                      env={"GATEWAY_MAX_KERNELS": per_node, "GATEWAY_LEASE_WAIT": "600"})
    await asyncio.to_thread(cluster.start)
    try:
        print("relayed vs direct:", await round_trips(cluster, args.round_trips), flush=True)
        print("failover:", await failover(cluster), flush=True)
        await asyncio.to_thread(cluster.nodes["n2"].start)
        await asyncio.to_thread(cluster.nodes["n2"].wait_ready)
        await asyncio.sleep(HAPROXY_NOTICES)  # its health check marks n2 up again
        print("load through HAProxy:", await load(cluster, args.threads, args.executions),
              flush=True)
    finally:
        await asyncio.to_thread(cluster.stop)


if __name__ == "__main__":
    asyncio.run(main())
