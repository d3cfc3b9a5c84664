"""A demo cluster on 127.0.0.1: N gateway nodes, redis-server, moto's S3 server and HAProxy.

    python -m scripts.cluster --nodes 3

prints where everything listens (connect clients to the HAProxy URL) and runs until Ctrl-C,
then stops every process it started. The same launcher the cluster tests use
(scripts/benchlib/cluster.py); moto is an S3 emulator that keeps its data in memory.
"""

from __future__ import annotations

import argparse
import signal
import threading

from scripts.benchlib.cluster import Cluster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--lease", type=float, default=5.0, help="node_lease in seconds")
    parser.add_argument("--pool-size", type=int, default=2)
    args = parser.parse_args()
    cluster = Cluster([f"n{i + 1}" for i in range(args.nodes)], args.lease, args.pool_size)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        cluster.start()
        print(f"HAProxy (clients connect here): {cluster.haproxy.url}  tokens: "
              "alice:tok-alice, bob:tok-bob")
        for node in cluster.nodes.values():
            print(f"node {node.name}: {node.url}  (log {cluster.root / (node.name + '.log')})")
        print(f"registry: {cluster.redis.url}    object store: {cluster.store.endpoint}")
        print(f"try: GATEWAY_REGISTRY_URL={cluster.redis.url} gateway node ls")
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
