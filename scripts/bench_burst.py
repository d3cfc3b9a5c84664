"""A burst of new conversations: this checkout against a base revision, in the same run.

Checks the base revision out into a temporary git worktree and runs the same script against a
`gateway serve` of each (same venv, same settings), one gateway at a time (60 kernels each do
not fit twice on a small host), alternating the order every round:

  idle PSS      PSS of a pooled kernel's process tree, idle in the warm pool
  warm rtt      warm `1+1` round trip on a long-lived thread
  analysis      first pandas+matplotlib cell on a new thread (pool warm)
  burst         N new threads at once over C connections, each `1+1` then more cells:
                p50/p99 time to the first result, kernel start rate during the burst
  at rest       after the burst, N kernels idle: PSS of one kernel's process tree (median)
                and of everything below the gateway (the zygote included) per kernel

    .venv/bin/python -m scripts.bench_burst [--base 7c23192] [--threads 60] [--rounds 1]

Prints a table of this / base ratios and writes bench-results/bench-burst-<time>.json. The
machine may be shared: ratios of interleaved runs are the point, not absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from scripts.benchlib.procs import GatewayProc, MiB, descendants, kernel_memory, proc_pss
from scripts.benchlib.stats import percentiles
from scripts.benchlib.workload import ANALYSIS_CELL

ROOT = Path(__file__).resolve().parent.parent

BASE = "7c23192"  # main before issue 21
# 60 threads at once must all get a kernel; a shared machine can make a start slow; a uid
# range of its own, so 60 kernels never share a uid (and its RLIMIT_NPROC count) with the
# kernels of another gateway on the host.
SETTINGS = ("--set", "max_kernels=64", "--set", "kernel_start_timeout=300",
            "--set", "kernel_uid_base=710000")


async def measure(gw: GatewayProc, opts: argparse.Namespace) -> dict:
    await gw.start()
    await gw.wait_warm(timeout=300, settle=1.0)
    result: dict = {}
    pss = [k["pss"] / MiB for k in kernel_memory(gw)]
    result["idle_pss_mib"] = statistics.median(pss) if pss else None
    async with await gw.client() as client:
        warm = client.thread(f"warm-{uuid.uuid4().hex[:6]}")
        for _ in range(10):
            await warm.run("1+1")
        rtts = []
        for _ in range(opts.rtt):
            began = time.perf_counter()
            done = await warm.run("1+1")
            rtts.append((time.perf_counter() - began) * 1000)
            assert done.output == "2\n", done.status
        result["warm_rtt_ms"] = statistics.median(rtts)
        analysis = []
        for _ in range(opts.analysis):
            await gw.wait_warm(timeout=300, settle=0.5)
            thread = client.thread(f"analysis-{uuid.uuid4().hex[:6]}")
            began = time.perf_counter()
            done = await thread.run(ANALYSIS_CELL, timeout=120)
            analysis.append((time.perf_counter() - began) * 1000)
            assert done.state == "complete" and done.files, done.status
            await thread.close()
        result["analysis_ms"] = statistics.median(analysis)
        await warm.close()
    await gw.wait_warm(timeout=300, settle=1.0)
    result.update(await burst(gw, opts))
    await gw.stop()
    return result


async def burst(gw: GatewayProc, opts: argparse.Namespace) -> dict:
    """N new threads at once over C connections: first-result times and start rate."""
    before = (await gw.health())["pool"]
    clients = [await gw.client() for _ in range(opts.connections)]
    firsts: list[float] = []
    peak = {"target": before["target"], "reason": before.get("target_reason")}
    began = time.monotonic()

    async def conversation(i: int) -> None:
        thread = clients[i % len(clients)].thread(f"burst-{i}-{uuid.uuid4().hex[:6]}")
        first = await thread.run("1+1", timeout=900)
        firsts.append(time.monotonic() - began)
        assert first.output == "2\n", first.status
        for k in range(opts.cells - 1):
            done = await thread.run(f"{k} * 2", timeout=900)
            assert done.output == f"{k * 2}\n", done.status

    async def watch_target() -> None:
        while True:
            pool = (await gw.health())["pool"]
            if pool["target"] > peak["target"]:
                peak.update(target=pool["target"], reason=pool.get("target_reason"))
            await asyncio.sleep(0.5)

    watcher = asyncio.create_task(watch_target())
    try:
        await asyncio.gather(*(conversation(i) for i in range(opts.threads)))
        watcher.cancel()
        density = await asyncio.to_thread(memory_at_rest, gw)
    finally:
        watcher.cancel()
        for client in clients:
            await client.close()
    last_first = max(firsts)
    cold = opts.threads - before["warm"]  # kernels the burst had to start
    p50, p99 = percentiles(firsts, (50, 99))
    return {"burst_p50_s": p50, "burst_p99_s": p99, "burst_last_first_s": last_first,
            "start_rate_per_s": cold / last_first, "warm_at_burst": before["warm"], **density,
            "peak_target": peak["target"], "peak_target_reason": peak["reason"]}


def memory_at_rest(gw: GatewayProc) -> dict:
    """After the burst, every kernel idle: PSS of a kernel's process tree (median), and all
    processes below the gateway (kernels, sandboxes, the zygote if any) per kernel."""
    kernels = kernel_memory(gw)
    below = sum(proc_pss(pid) for pid in descendants(gw.pid))
    return {"kernels_at_rest": len(kernels),
            "busy_pss_mib": statistics.median(k["pss"] for k in kernels) / MiB,
            "pss_per_kernel_all_mib": below / len(kernels) / MiB}


ROWS = (  # key, unit, what the ratio says
    ("burst_p50_s", "s", "this / base"),
    ("burst_p99_s", "s", "this / base"),
    ("start_rate_per_s", "kernels/s", "this / base"),
    ("idle_pss_mib", "MiB", "this / base"),
    ("busy_pss_mib", "MiB", "this / base"),
    ("pss_per_kernel_all_mib", "MiB", "this / base"),
    ("warm_rtt_ms", "ms", "this / base"),
    ("analysis_ms", "ms", "this / base"),
)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=BASE, help="the revision to compare against")
    parser.add_argument("--threads", type=int, default=60)
    parser.add_argument("--connections", type=int, default=6)
    parser.add_argument("--cells", type=int, default=3, help="cells per burst thread")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--rtt", type=int, default=50)
    parser.add_argument("--analysis", type=int, default=2)
    opts = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-burst-"))
    worktree = tmp / "base"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree),
                    opts.base], check=True, capture_output=True)
    sources = {"this": ROOT, "base": worktree}
    runs: dict[str, list[dict]] = {name: [] for name in sources}
    order = ["base", "this"]
    try:
        for round_number in range(opts.rounds):
            for name in order:
                gw = GatewayProc(f"{name}-{round_number}", tmp, *SETTINGS, src=sources[name])
                try:
                    runs[name].append(await measure(gw, opts))
                finally:
                    await gw.stop()
                print(name, json.dumps(runs[name][-1]), flush=True)
            order.reverse()
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                        str(worktree)], capture_output=True)
    report: dict = {"base": opts.base, "threads": opts.threads, "rounds": opts.rounds,
                    "runs": runs, "rows": {}}
    print(f"\n{'metric':<20} {'base':>10} {'this':>10} {'ratio':>7}  (medians of "
          f"{opts.rounds} round(s); shared machine)")
    for key, unit, what in ROWS:
        base = statistics.median(r[key] for r in runs["base"])
        this = statistics.median(r[key] for r in runs["this"])
        ratio = this / base if base else None
        report["rows"][key] = {"unit": unit, "base": base, "this": this, "ratio": ratio,
                               "ratio_is": what}
        print(f"{key:<20} {base:10.3f} {this:10.3f} {ratio:7.3f}  {unit}")
    print("peak warm target (this):", [r["peak_target"] for r in runs["this"]],
          [r["peak_target_reason"] for r in runs["this"]])
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    (out / f"bench-burst-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(
        json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
