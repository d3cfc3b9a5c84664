"""Round trip of a warm `1+1` cell through the TypeScript client (clients/js, under Node)
against the Python client (gateway/client.py), on one gateway, measured in one run.

Rounds alternate the clients (the order flips every round) so the load of a shared machine
hits both alike; each client has its own thread. Needs `npm ci && npm run build` in
clients/js. Prints medians and p90 and writes bench-results/bench-clients-<time>.json.

    .venv/bin/python -m scripts.bench_clients [--cells 200] [--rounds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import tempfile
import time
from pathlib import Path

from gateway.client import GatewayClient
from scripts.benchlib.procs import TOKEN, GatewayProc
from scripts.benchlib.stats import machine, median, percentiles

ROOT = Path(__file__).resolve().parent.parent
JS = ROOT / "clients" / "js"


async def python_round(url: str, cells: int) -> list[float]:
    async with await GatewayClient.connect(url, TOKEN) as client:
        thread = client.thread("bench-py")
        await thread.run("1+1")
        times = []
        for _ in range(cells):
            began = time.perf_counter()
            result = await thread.run("1+1")
            times.append((time.perf_counter() - began) * 1000)
            assert result.output == "2\n", result.output
        return times


async def ts_round(url: str, cells: int) -> list[float]:
    process = await asyncio.create_subprocess_exec(
        "node", "--experimental-websocket", "scripts/bench.mjs", url, TOKEN, "bench-ts",
        str(cells), cwd=JS, stdout=subprocess.PIPE)
    out, _ = await process.communicate()
    if process.returncode:
        raise RuntimeError(f"the TypeScript bench failed ({process.returncode})")
    return json.loads(out)


def summary(values: list[float]) -> dict:
    p50, p90 = percentiles(values, (50, 90))
    return {"median_ms": round(median(values), 3), "p50_ms": round(p50, 3),
            "p90_ms": round(p90, 3), "n": len(values)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=200, help="round trips per round")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    if not (JS / "dist" / "index.js").exists():
        raise SystemExit("build the client first: cd clients/js && npm ci && npm run build")
    with tempfile.TemporaryDirectory() as tmp:
        gateway = GatewayProc("clients", Path(tmp), "--pool-size", "2")
        await gateway.start()
        try:
            times: dict[str, list[float]] = {"typescript": [], "python": []}
            for number in range(args.rounds):
                order = ["typescript", "python"] if number % 2 == 0 else ["python", "typescript"]
                for name in order:
                    run = ts_round if name == "typescript" else python_round
                    times[name] += await run(gateway.url, args.cells)
        finally:
            await gateway.stop()
    results = {name: summary(values) for name, values in times.items()}
    results["ratio_ts_over_python"] = round(
        results["typescript"]["median_ms"] / results["python"]["median_ms"], 3)
    for name in ("typescript", "python"):
        r = results[name]
        print(f"{name:10} median {r['median_ms']:.2f} ms  p90 {r['p90_ms']:.2f} ms  n={r['n']}")
    print(f"TypeScript / Python (median): {results['ratio_ts_over_python']}")
    out = ROOT / "bench-results" / f"bench-clients-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "cells": args.cells,
                               "rounds": args.rounds, "results": results}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    asyncio.run(main())
