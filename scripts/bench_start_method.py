"""Warm `1+1` round trip on forked kernels against exec'd ones, same code, same run.

One gateway at a time (`kernel_start = fork`, then `exec`, the order alternating every round),
a fixed pool, 20 warm-up cells, then N round trips on one thread; prints the medians and the
ratio. The machine may be shared: the interleaved ratio is the point.

    .venv/bin/python -m scripts.bench_start_method [--rounds 3] [--n 300]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from scripts.bench_burst import SETTINGS
from scripts.benchlib.procs import GatewayProc


async def warm_rtt(method: str, tmp: Path, n: int) -> float:
    gw = GatewayProc(f"{method}-{uuid.uuid4().hex[:4]}", tmp, *SETTINGS,
                     "--set", f"kernel_start={method}", "--set", "pool_adaptive=false")
    try:
        await gw.start()
        await gw.wait_warm(timeout=300, settle=1.0)
        async with await gw.client() as client:
            thread = client.thread("warm")
            for _ in range(20):
                await thread.run("1+1")
            times = []
            for _ in range(n):
                began = time.perf_counter()
                done = await thread.run("1+1")
                times.append((time.perf_counter() - began) * 1000)
                assert done.output == "2\n", done.status
        return statistics.median(times)
    finally:
        await gw.stop()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=300)
    opts = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-start-method-"))
    results: dict[str, list[float]] = {"fork": [], "exec": []}
    for round_number in range(opts.rounds):
        order = ("fork", "exec") if round_number % 2 == 0 else ("exec", "fork")
        for method in order:
            results[method].append(await warm_rtt(method, tmp, opts.n))
            print(f"round {round_number} {method}: {results[method][-1]:.2f} ms", flush=True)
    fork, exec_ = (statistics.median(results[m]) for m in ("fork", "exec"))
    print(f"warm 1+1 median: fork {fork:.2f} ms, exec {exec_:.2f} ms, fork / exec "
          f"{fork / exec_:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
