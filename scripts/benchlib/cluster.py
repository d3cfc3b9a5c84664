"""Real servers for the cluster tests and for scripts.cluster / scripts.bench_cluster, on free
127.0.0.1 ports, stopped afterwards.

redis-server (Debian), the S3-compatible server of moto (PyPI), HAProxy (Debian) with
deploy/haproxy-cluster.cfg, and gateway nodes as separate processes (so a test can SIGKILL one).
Every process here is started by these fixtures and only those are ever signalled.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from gateway.cluster.frontdoor import haproxy_config

REPO = Path(__file__).resolve().parents[2]
TOKENS_SPEC = "alice:tok-alice,bob:tok-bob"
CLUSTER_TOKEN = "test-cluster-secret"
ADMIN_TOKEN = "test-admin-token"
BUCKET = "gateway-test"
LEASE = 3.0
START_TIMEOUT = 240.0  # three nodes filling pools on a shared two-core machine


def program(name: str) -> str:
    """A Debian package's program, also when /usr/sbin is not on PATH (haproxy lives there)."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin") or name


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def stop_process(process: subprocess.Popen | None, sig: int = signal.SIGTERM) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)


def unmount_under(root: Path) -> None:
    """Lazily unmount every mount point below ``root`` (deepest first): only ours are there."""
    prefix = str(root) + "/"
    with open("/proc/self/mountinfo") as mounts:
        points = [line.split()[4] for line in mounts]
    for point in sorted((p for p in points if p.startswith(prefix)), reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, timeout=60)


class Redis:
    def __init__(self, root: Path) -> None:
        self.dir = root / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        # Append-only file: the registry (file metadata) survives a restart of Redis.
        self.process = subprocess.Popen(
            [program("redis-server"), "--bind", "127.0.0.1", "--port", str(self.port), "--dir",
             str(self.dir), "--appendonly", "yes", "--appendfsync", "always", "--save", "",
             "--protected-mode", "yes"],
            stdout=open(self.dir / "log", "ab"), stderr=subprocess.STDOUT)
        wait_until(self._pong, 30, "redis-server")

    def _pong(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    def stop(self) -> None:
        stop_process(self.process)


class ObjectStore:
    """moto's standalone S3 server (an emulator: the gateway talks plain S3 to it)."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = root / "moto.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
            env={**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"})
        wait_until(lambda: http_status(self.endpoint + "/moto-api/") < 500, 60, "moto_server")

    def create_bucket(self) -> None:
        import boto3

        boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                     aws_access_key_id="test", aws_secret_access_key="test"
                     ).create_bucket(Bucket=BUCKET)

    def stop(self) -> None:
        stop_process(self.process)


class Node:
    def __init__(self, name: str, number: int, root: Path, redis: Redis,
                 store: ObjectStore, lease: float = LEASE, pool_size: int = 1,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.port = free_port()
        self.data_dir = root / name
        self.url = f"ws://127.0.0.1:{self.port}/ws"
        self.http = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "GATEWAY_TOKENS": TOKENS_SPEC,
            "GATEWAY_REGISTRY_URL": redis.url,
            "GATEWAY_STORE_URL": f"s3://{BUCKET}/files",
            "GATEWAY_STORE_ENDPOINT": store.endpoint,
            "GATEWAY_STORE_KEY_ID": "test",
            "GATEWAY_STORE_KEY": "test",
            "GATEWAY_NODE_ID": name,
            "GATEWAY_ADVERTISE_URL": f"ws://127.0.0.1:{self.port}",
            "GATEWAY_CLUSTER_TOKEN": CLUSTER_TOKEN,
            "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
            "GATEWAY_NODE_LEASE": str(lease),
            "GATEWAY_POOL_SIZE": str(pool_size),
            "GATEWAY_POOL_ADAPTIVE": "false",  # three nodes on 2 cores: fixed pools
            "GATEWAY_MAX_KERNELS": "8",
            # The tests are alice's and keep their threads: no per-identity share below the
            # node's kernels (test_identity_limits.py tests the share).
            "GATEWAY_MAX_THREADS_PER_IDENTITY": "8",
            "GATEWAY_MEMORY_LIMIT": str(512 * 2**20),
            "GATEWAY_DISK_LIMIT": str(64 * 2**20),
            "GATEWAY_PIDS_LIMIT": "128",
            "GATEWAY_KERNEL_START_TIMEOUT": "120",
            # Each node on this host gets its own range of kernel uids.
            "GATEWAY_KERNEL_UID_BASE": str(300_000 + 2_000 * number),
            "GATEWAY_KERNEL_UID_COUNT": "2000",
            "GATEWAY_UPLOAD_PORT": "-1",
            **(env or {}),
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--port", str(self.port), "--data-dir",
             str(self.data_dir)],
            env=self.env, stdout=open(self.data_dir.parent / f"{self.name}.log", "ab"),
            stderr=subprocess.STDOUT, cwd=REPO)

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"node {self.name} exited: see {self.name}.log")
            return http_status(self.http + "/readyz") == 200

        wait_until(ready, START_TIMEOUT, f"node {self.name} ready", interval=0.3)

    def health(self) -> dict:
        request = urllib.request.Request(self.http + "/healthz",
                                         headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def kill(self) -> None:
        """SIGKILL: the node vanishes without a word (its kernels die with it)."""
        stop_process(self.process, signal.SIGKILL)

    def stop(self) -> None:
        stop_process(self.process)


class Haproxy:
    def __init__(self, root: Path, nodes: list[Node]) -> None:
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/ws"
        self.http = f"http://127.0.0.1:{self.port}"
        template = (REPO / "deploy" / "haproxy-cluster.cfg").read_text()
        self.config = root / "haproxy.cfg"
        self.config.write_text(haproxy_config(
            template, {n.name: f"127.0.0.1:{n.port}" for n in nodes}))
        self.log = root / "haproxy.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [program("haproxy"), "-db", "-f", str(self.config)],
            env={**os.environ, "GATEWAY_FRONT_ADDR": f"127.0.0.1:{self.port}"},
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        wait_until(lambda: http_status(self.http + "/healthz") == 200, 60, "haproxy")

    def stop(self) -> None:
        stop_process(self.process)


class Cluster:
    def __init__(self, names: list[str], lease: float = LEASE, pool_size: int = 1,
                 env: dict[str, str] | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="gateway-cluster-"))
        self.lease = lease
        self.redis = Redis(self.root)
        self.store = ObjectStore(self.root)
        self.nodes = {name: Node(name, i, self.root, self.redis, self.store, lease, pool_size,
                                  env)
                      for i, name in enumerate(names)}
        self.haproxy = Haproxy(self.root, list(self.nodes.values()))

    def start(self) -> None:
        self.redis.start()
        self.store.start()
        for node in self.nodes.values():
            node.start()
        for node in self.nodes.values():
            node.wait_ready()
        self.haproxy.start()

    def stop(self) -> None:
        self.haproxy.stop()
        for node in self.nodes.values():
            node.stop()
        self.store.stop()
        self.redis.stop()
        unmount_under(self.root)  # what a SIGKILLed node left mounted (its working dirs)
        if not os.environ.get("GATEWAY_KEEP_CLUSTER"):
            shutil.rmtree(self.root, ignore_errors=True)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}"
                         for p in sorted(self.root.glob("*.log")))


async def in_thread(function, *args):
    return await asyncio.to_thread(function, *args)
