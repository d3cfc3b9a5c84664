"""The gateway in its container against the gateway on the host, in one run: container start
to /readyz, and the round trip of a warm `1+1` cell (execute sent -> final status received)
through each one's port with the repository's Python client, the two alternating so drift hits
both alike.

    make image && python -m scripts.bench_container --cells 200

The container runs with deploy/compose.yaml's privileges (docker run, published on
127.0.0.1); the host gateway is `python -m gateway serve` from this checkout. Both keep one
warm Python kernel. Needs root and docker (sh scripts/setup-deploy.sh).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gateway.client import GatewayClient
from scripts.benchlib.cluster import free_port, http_status, wait_until
from scripts.benchlib.deploy import COMPOSE, compose_service, docker_run_flags

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"
SETTINGS = {"GATEWAY_TOKENS": f"alice:{TOKEN}", "GATEWAY_POOL_SIZE": "1",
            "GATEWAY_POOL_ADAPTIVE": "false"}


def start_container(image: str, port: int) -> tuple[str, float]:
    env = [f"--env={key}={value}" for key, value in SETTINGS.items()]
    flags = docker_run_flags(compose_service(COMPOSE, "gateway"))
    started = time.monotonic()
    name = subprocess.run(
        ["docker", "run", "-d", "--rm", f"--publish=127.0.0.1:{port}:8765",
         "--env=GATEWAY_INSECURE_HTTP=true", *env, *flags, image],
        capture_output=True, text=True, check=True, timeout=120).stdout.strip()
    wait_until(lambda: http_status(f"http://127.0.0.1:{port}/readyz") == 200, 300,
               "container /readyz", interval=0.05)
    return name, time.monotonic() - started


def start_host(port: int, data: Path) -> tuple[subprocess.Popen, float]:
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--port", str(port), "--data-dir", str(data)],
        env={**os.environ, **SETTINGS}, cwd=ROOT, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    wait_until(lambda: http_status(f"http://127.0.0.1:{port}/readyz") == 200, 300,
               "host /readyz", interval=0.05)
    return process, time.monotonic() - started


async def round_trips(ports: dict[str, int], cells: int) -> dict[str, list[float]]:
    clients = {name: await GatewayClient.connect(f"ws://127.0.0.1:{port}/ws", TOKEN)
               for name, port in ports.items()}
    threads = {name: client.thread(f"bench-{name}") for name, client in clients.items()}
    for thread in threads.values():  # the first cell leases and warms the kernel
        for _ in range(5):
            assert (await thread.run("1+1")).state == "complete"
    times: dict[str, list[float]] = {name: [] for name in ports}
    for _ in range(cells):
        for name, thread in threads.items():
            started = time.perf_counter()
            result = await thread.run("1+1")
            times[name].append(time.perf_counter() - started)
            assert result.state == "complete", result.error
    for client in clients.values():
        await client.close()
    return times


def summary(values: list[float]) -> dict:
    ordered = sorted(values)
    return {"median_ms": round(statistics.median(ordered) * 1000, 2),
            "p90_ms": round(ordered[int(len(ordered) * 0.9)] * 1000, 2),
            "cells": len(ordered)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default="code-interpreter-gateway:latest")
    parser.add_argument("--cells", type=int, default=200)
    parser.add_argument("--out", help="write the results as JSON here too")
    args = parser.parse_args()
    ports = {"container": free_port(), "host": free_port()}
    container, container_ready = start_container(args.image, ports["container"])
    with tempfile.TemporaryDirectory(prefix="bench-container-") as data:
        host, host_ready = start_host(ports["host"], Path(data))
        try:
            times = asyncio.run(round_trips(ports, args.cells))
        finally:
            host.terminate()
            host.wait(timeout=120)
            subprocess.run(["docker", "stop", "-t", "60", container], capture_output=True,
                           timeout=120)
    size = subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", args.image],
                          capture_output=True, text=True, check=True).stdout.strip()
    results = {
        "image": args.image, "image_bytes": int(size),
        "start_to_readyz_s": {"container": round(container_ready, 2),
                              "host": round(host_ready, 2)},
        "one_plus_one": {name: summary(values) for name, values in times.items()},
    }
    print(json.dumps(results, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
