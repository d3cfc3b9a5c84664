"""A/B a change on the warm `1+1` round trip: this checkout against another revision, one run.

Checks the other revision out into a temporary git worktree, starts a `gateway serve` from
each (same venv, same settings, pool of 1), and interleaves rounds of warm `1+1` round trips
(A then B, then B then A, ...) so background load hits both alike.

    .venv/bin/python -m scripts.bench_ab --base 2d2c8f8^ [--rounds 12] [--per-round 50]

Prints medians, p99 and the ratio (this checkout / base) and writes
bench-results/bench-ab-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scripts.benchlib.procs import GatewayProc

ROOT = Path(__file__).resolve().parent.parent


def p99(xs: list[float]) -> float:
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the revision to compare against")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--per-round", type=int, default=50)
    opts = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-ab-"))
    worktree = tmp / "base"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree),
                    opts.base], check=True, capture_output=True)
    gateways = {"this": GatewayProc("this", tmp, "--pool-size", "1", src=ROOT),
                "base": GatewayProc("base", tmp, "--pool-size", "1", src=worktree)}
    samples: dict[str, list[float]] = {name: [] for name in gateways}
    try:
        for gateway in gateways.values():
            await gateway.start()
            await gateway.wait_warm()
        clients = {name: await gateway.client() for name, gateway in gateways.items()}
        threads = {name: client.thread(f"ab-{name}") for name, client in clients.items()}
        for thread in threads.values():
            for _ in range(20):  # warm both kernels and connections
                await thread.run("1+1")
        order = list(gateways)
        for _ in range(opts.rounds):
            for name in order:
                for _ in range(opts.per_round):
                    began = time.perf_counter()
                    result = await threads[name].run("1+1")
                    samples[name].append((time.perf_counter() - began) * 1000)
                    if result.state != "complete":
                        raise RuntimeError(f"{name}: {result.status}")
            order.reverse()
        for client in clients.values():
            await client.close()
    finally:
        for gateway in gateways.values():
            await gateway.stop()
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                        str(worktree)], capture_output=True)
    report = {name: {"median_ms": round(statistics.median(xs), 3), "p99_ms": round(p99(xs), 3),
                     "n": len(xs)} for name, xs in samples.items()}
    report["ratio_this_over_base"] = round(
        report["this"]["median_ms"] / report["base"]["median_ms"], 4)
    report["base"]["revision"] = opts.base
    print(json.dumps(report, indent=2))
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    (out / f"bench-ab-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
