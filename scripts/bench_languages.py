"""Languages and rich results: what a bash thread and a display chunk cost, against Python and
plain text measured in the same run.

One in-process gateway on 127.0.0.1 (sandbox on, one warm kernel per language). Rounds are
interleaved (python then bash, then bash then python, ...) so background load hits both alike:

- warm round trip: `1+1` (python) / `echo 2` (bash) on a thread that already ran;
- first result on a new thread, the pool warm (each round waits for both pools to refill);
- a 20x6 DataFrame as a rich result (display chunk with its HTML table, plus the text/plain
  fallback) against `print(df.to_string())` (text only) on the same warm Python thread.

    .venv/bin/python -m scripts.bench_languages [--rounds 100] [--new-threads 6]

Prints medians, p90 and the ratios, and writes bench-results/bench-languages-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

from gateway.app import Gateway
from gateway.client import GatewayClient
from gateway.config import Settings
from gateway.embed import start_embedded

ROOT = Path(__file__).resolve().parent.parent

WARM_CELL = {"python": "1+1", "bash": "echo 2"}
FRAME = ("import pandas as pd, numpy as np\n"
         "df = pd.DataFrame(np.arange(120).reshape(20, 6), columns=list('abcdef'))")


def p90(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, math.ceil(0.9 * len(s)) - 1)]


def summary(xs: list[float]) -> dict:
    return {"median_ms": round(statistics.median(xs), 2), "p90_ms": round(p90(xs), 2),
            "n": len(xs)}


async def timed(thread, code: str) -> float:
    began = time.perf_counter()
    result = await thread.run(code)
    elapsed = (time.perf_counter() - began) * 1000
    if result.state != "complete":
        raise RuntimeError(f"{code!r} ended {result.state}: {result.status}")
    return elapsed


async def pools_warm(gateway: Gateway) -> None:
    while any(len(pool._warm) < pool.target for pool in gateway.pools.values()):
        await asyncio.sleep(0.05)


async def main(rounds: int, new_threads: int) -> dict:
    data = Path(tempfile.mkdtemp(prefix="bench-languages-"))
    settings = Settings(host="127.0.0.1", port=0, data_dir=data, tokens={"bench": "bench"},
                        pool_size=1, bash_pool_size=1, max_kernels=8,
                        kernels_dir=ROOT / "kernels")  # this checkout's kernelspecs
    embedded = await start_embedded(settings)
    gateway = embedded.gateway
    results: dict = {"rounds": rounds, "load_start": os.getloadavg()[0]}
    try:
        async with await GatewayClient.connect(embedded.url,
                                               "bench") as client:
            threads = {name: client.thread(f"warm-{name}", language=name)
                       for name in WARM_CELL}
            for name, thread in threads.items():  # lease, then past the first cells
                for _ in range(3):
                    await timed(thread, WARM_CELL[name])
            warm: dict[str, list[float]] = {name: [] for name in WARM_CELL}
            for i in range(rounds):
                order = list(WARM_CELL) if i % 2 == 0 else list(reversed(WARM_CELL))
                for name in order:
                    warm[name].append(await timed(threads[name], WARM_CELL[name]))
            first: dict[str, list[float]] = {name: [] for name in WARM_CELL}
            for i in range(new_threads):
                order = list(WARM_CELL) if i % 2 == 0 else list(reversed(WARM_CELL))
                for name in order:
                    await pools_warm(gateway)
                    thread = client.thread(f"new-{name}-{i}", language=name)
                    first[name].append(await timed(thread, WARM_CELL[name]))
                    await thread.close()
            python = threads["python"]
            await timed(python, FRAME)
            rich, text = [], []
            for i in range(rounds):
                pair = [("rich", "df"), ("text", "print(df.to_string())")]
                for kind, code in pair if i % 2 == 0 else reversed(pair):
                    (rich if kind == "rich" else text).append(await timed(python, code))
    finally:
        await embedded.close()
    results["warm_round_trip"] = {name: summary(xs) for name, xs in warm.items()}
    results["new_thread_first_result"] = {name: summary(xs) for name, xs in first.items()}
    results["dataframe"] = {"display": summary(rich), "text_only": summary(text)}
    results["load_end"] = os.getloadavg()[0]
    return results


def report(results: dict) -> None:
    warm, first = results["warm_round_trip"], results["new_thread_first_result"]
    print(f"{'row':58} {'median':>9} {'p90':>9} {'n':>4} {'ratio':>7}")
    for name in WARM_CELL:
        ratio = warm[name]["median_ms"] / warm["python"]["median_ms"]
        print(f"{'warm round trip, ' + name + ' (ratio: / python)':58} "
              f"{warm[name]['median_ms']:8.2f}m {warm[name]['p90_ms']:8.2f}m "
              f"{warm[name]['n']:4} {ratio:7.2f}")
    for name in WARM_CELL:
        ratio = first[name]["median_ms"] / warm[name]["median_ms"]
        print(f"{'new thread first result, ' + name + ' (ratio: / its warm)':58} "
              f"{first[name]['median_ms']:8.2f}m {first[name]['p90_ms']:8.2f}m "
              f"{first[name]['n']:4} {ratio:7.2f}")
    frame = results["dataframe"]
    ratio = frame["display"]["median_ms"] / frame["text_only"]["median_ms"]
    print(f"{'20x6 DataFrame as display + text (ratio: / text only)':58} "
          f"{frame['display']['median_ms']:8.2f}m {frame['display']['p90_ms']:8.2f}m "
          f"{frame['display']['n']:4} {ratio:7.2f}")
    print(f"{'... text only, print(df.to_string())':58} "
          f"{frame['text_only']['median_ms']:8.2f}m {frame['text_only']['p90_ms']:8.2f}m "
          f"{frame['text_only']['n']:4}")
    print(f"load average {results['load_start']:.1f} at the start, {results['load_end']:.1f} "
          "at the end")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--new-threads", type=int, default=6)
    args = parser.parse_args()
    measured = asyncio.run(main(args.rounds, args.new_threads))
    report(measured)
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    path = out / f"bench-languages-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(measured, indent=2))
    print(f"wrote {path}")
