"""Per-cell overhead: the gateway against bare jupyter_client kernels, measured in one run.

Two workloads, each interleaved in rounds (gateway, then the baselines; the order flips every
round) so the load of a shared machine hits every side alike:

  rtt       warm `1+1` round trips: the gateway (a `gateway serve`, default settings, pool of
            1) vs a bare jupyter_client on a default ipc kernel (history on), and on an ipc
            kernel with history off (what the gateway's kernels run)
  notebook  a short data-analysis notebook (pandas, matplotlib, seaborn, scikit-learn,
            statsmodels; scripts/benchlib/workload.py) cell after cell, on one gateway
            thread vs one bare ipc kernel; per cell and the whole notebook's wall time.
            The gateway snapshots the namespace after cells that change it (default
            settings): part of what is measured

Prints medians, p90 and the ratios (gateway / baseline; <= 1.0 means the gateway is as fast)
and writes bench-results/bench-cells-<time>.json. Stops by itself (``--deadline``).

    .venv/bin/python -m scripts.bench_cells [--cells 300] [--chunk 10] [--notebooks 4]
    .venv/bin/python -m scripts.bench_cells --only notebook --think 0   # back to back
    .venv/bin/python -m scripts.bench_cells --set snapshot_every_cell_below=0   # A/B a setting
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

from scripts.benchlib import procs
from scripts.benchlib.procs import BareKernel, GatewayProc, proc_cpu_seconds
from scripts.benchlib.stats import machine, median, percentiles, rounded
from scripts.benchlib.workload import NOTEBOOK_CELLS, NOTEBOOK_SETUP

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("rtt", "notebook")


def summary(values_ms: list[float]) -> dict:
    p50, p90 = percentiles(values_ms, (50, 90)) if values_ms else (None, None)
    return {"median_ms": median(values_ms), "p50_ms": p50, "p90_ms": p90, "n": len(values_ms)}


def ratio(a: list[float], b: list[float]) -> float:
    return median(a) / median(b)


async def bare_run(kernel: BareKernel, code: str) -> float:
    """Seconds until iopub idle; raises if the cell raised (the comparison needs both sides
    to run the same cells to the end)."""
    kc = kernel.kc
    began = time.perf_counter()
    msg_id = kc.execute(code)
    error = None
    while True:
        msg = await kc.get_iopub_msg(timeout=300)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "error":
            error = f"{msg['content']['ename']}: {msg['content']['evalue']}"
        elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            elapsed = time.perf_counter() - began
            break
    while True:  # keep the shell socket drained, like the bench's BareKernel
        try:
            await kc.get_shell_msg(timeout=0)
        except Exception:  # noqa: BLE001  queue.Empty: nothing left
            break
    if error:
        raise RuntimeError(f"bare kernel ({kernel.label}): {error}\n{code}")
    return elapsed


async def gateway_run(thread, code: str) -> tuple[float, dict]:
    began = time.perf_counter()
    result = await thread.run(code, wait=300)
    elapsed = time.perf_counter() - began
    if result.state != "complete":
        raise RuntimeError(f"gateway: {result.state} {result.status} {result.error}\n{code}")
    return elapsed, result.status


class CellBench:
    def __init__(self, opts: argparse.Namespace, tmp: Path) -> None:
        self.opts = opts
        self.tmp = tmp
        self.results: dict = {}
        env = {f"GATEWAY_{key.upper()}": value for key, value in opts.set}
        self.gateways = {"gateway": GatewayProc("cells", tmp, "--pool-size", "1", env=env)}
        if opts.base_src:  # the same gateway from another tree: an A/B in the same rounds
            self.gateways["base"] = GatewayProc("base", tmp, "--pool-size", "1", env=env,
                                                src=opts.base_src.resolve())
        self.clients: dict = {}
        self.bare: dict[str, BareKernel] = {}

    async def start(self) -> None:
        for gateway in self.gateways.values():
            await gateway.start()
            await gateway.wait_warm(timeout=180)
            self.clients[gateway.name] = await gateway.client()
        self.bare["ipc"] = await BareKernel.start(
            "ipc, default kernel (history on)", ipc_dir=self.tmp / "bare-ipc")
        self.bare["ipc_nohist"] = await BareKernel.start(
            "ipc, --HistoryManager.enabled=False", ipc_dir=self.tmp / "bare-ipc-nohist",
            extra=["--HistoryManager.enabled=False"])

    async def close(self) -> None:
        for client in self.clients.values():
            await client.close()
        for kernel in self.bare.values():
            await kernel.stop()
        for gateway in self.gateways.values():
            await gateway.stop()

    def runners(self, prefix: str, bare: tuple[str, ...]) -> dict:
        """side -> an async ``run(code) -> seconds`` on a new thread (gateways) or kernel."""
        sides = {}
        for name, gateway in self.gateways.items():
            thread = self.clients[gateway.name].thread(f"{prefix}-{uuid.uuid4().hex[:8]}")

            async def run(code: str, thread=thread) -> float:
                return (await gateway_run(thread, code))[0]

            sides[name] = run
        for name in bare:
            sides[name] = lambda code, kernel=self.bare[name]: bare_run(kernel, code)
        return sides

    async def rtt(self) -> None:
        per = max(1, self.opts.chunk)
        rounds = max(1, -(-self.opts.cells // per))
        sides = self.runners("rtt", ("ipc", "ipc_nohist"))
        samples: dict[str, list[float]] = {side: [] for side in sides}
        for _ in range(30):  # warm-up: the lease, the first cells, both baselines
            for run in sides.values():
                await run("1+1")
        for gateway in self.gateways.values():
            await gateway.wait_warm(settle=1.0)  # the lease's refill is done
        cpu = dict.fromkeys(self.gateways, 0.0)
        order = list(sides)
        for _ in range(rounds):
            for side in order:
                cpu0 = proc_cpu_seconds(self.gateways[side].pid) if side in cpu else 0.0
                for _ in range(per):
                    samples[side].append(await sides[side]("1+1") * 1000)
                if side in cpu:
                    cpu[side] += proc_cpu_seconds(self.gateways[side].pid) - cpu0
            order.reverse()
        self.results["rtt"] = {
            "sides": {side: summary(values) for side, values in samples.items()},
            "ratios": {f"{gw}/{bare}": ratio(samples[gw], samples[bare])
                       for gw in self.gateways for bare in ("ipc", "ipc_nohist")},
            "gateway_cpu_ms_per_cell": {gw: cpu[gw] * 1000 / max(1, len(samples[gw]))
                                        for gw in self.gateways},
            "rounds": rounds, "cells_per_round": per,
        }

    async def notebook(self) -> None:
        sides = self.runners("nb", ("ipc",))
        walls: dict[str, list[float]] = {side: [] for side in sides}
        per_cell: dict[str, list[list[float]]] = {side: [] for side in sides}
        for run in sides.values():
            await run(NOTEBOOK_SETUP)
            for cell in NOTEBOOK_CELLS:  # first runs: imports inside the libraries, caches
                await run(cell)
        order = list(sides)
        for _ in range(max(1, self.opts.notebooks)):
            times: dict[str, list[float]] = {side: [] for side in sides}
            for cell in NOTEBOOK_CELLS:  # cell by cell, every side in turn
                for side in order:
                    times[side].append(await sides[side](cell) * 1000)
                    await asyncio.sleep(self.opts.think)
                order.reverse()
            for side in sides:
                per_cell[side].append(times[side])
                walls[side].append(sum(times[side]))
        cells = {}
        for index in range(len(NOTEBOOK_CELLS)):
            column = {side: [times[index] for times in per_cell[side]] for side in sides}
            cells[f"cell_{index + 1}"] = {f"{side}_median_ms": median(values)
                                          for side, values in column.items()}
        self.results["notebook"] = {
            "sides": {side: summary(values) for side, values in walls.items()},
            "ratios": {f"{gw}/ipc": ratio(walls[gw], walls["ipc"]) for gw in self.gateways},
            "cells": cells,
            "think_s": self.opts.think, "notebooks_per_side": self.opts.notebooks,
            "note": "wall = the sum of the notebook's cell times (each cell sent when the "
                    "previous one's result came; the sides take turns cell by cell, with "
                    "--think seconds after each cell, not counted); baseline: a bare "
                    "jupyter_client on a default ipc kernel",
        }


def report(results: dict) -> None:
    if "rtt" in results:
        rtt = results["rtt"]
        print("\nwarm 1+1 round trip (ms)        median     p90      n")
        for side, row in rtt["sides"].items():
            label = {"ipc": "bare ipc (default)", "ipc_nohist": "bare ipc (history off)"}.get(
                side, side)
            print(f"  {label:<28} {row['median_ms']:7.3f} {row['p90_ms']:7.3f} {row['n']:6d}")
        for name, value in rtt["ratios"].items():
            print(f"  ratio {name:<24} {value:.3f}" + ("  (goal <= 1.0)"
                                                       if name == "gateway/ipc" else ""))
        for name, value in rtt["gateway_cpu_ms_per_cell"].items():
            print(f"  {name} cpu per cell: {value:.2f} ms")
    if "notebook" in results:
        nb = results["notebook"]
        print(f"\nnotebook wall (ms), {nb['think_s']} s between cells"
              "\n                                median     p90      n")
        for side, row in nb["sides"].items():
            print(f"  {side:<28} {row['median_ms']:7.1f} {row['p90_ms']:7.1f} {row['n']:6d}")
        for name, value in nb["ratios"].items():
            print(f"  ratio {name:<24} {value:.3f}" + ("  (goal <= 1.05)"
                                                       if name == "gateway/ipc" else ""))
        for name, cell in nb["cells"].items():
            print(f"    {name}: " + "  ".join(f"{key.removesuffix('_median_ms')} {value:6.1f}"
                                              for key, value in cell.items()))


async def run(opts: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-cells-"))
    bench = CellBench(opts, tmp)
    try:
        await bench.start()
        for name in opts.only:
            print(f"[{name}]", flush=True)
            await getattr(bench, name)()
    finally:
        await bench.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return bench.results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=300, help="1+1 cells per side")
    parser.add_argument("--chunk", type=int, default=10,
                        help="1+1 cells in a row per side before the next side's turn")
    parser.add_argument("--notebooks", type=int, default=4, help="notebook runs per side")
    parser.add_argument("--think", type=float, default=0.5,
                        help="seconds between notebook cells, an agent's turn (not counted); "
                             "0: back to back, the per-cell snapshot then delays the next cell")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated: {', '.join(SECTIONS)}")
    parser.add_argument("--set", action="append", default=[], type=lambda s: s.split("=", 1),
                        metavar="KEY=VALUE", help="a gateway setting (as GATEWAY_KEY)")
    parser.add_argument("--deadline", type=float, default=900,
                        help="give up after this many seconds")
    parser.add_argument("--gateway-src", type=Path,
                        help="run the gateway from this source tree")
    parser.add_argument("--base-src", type=Path,
                        help="also run a gateway from this source tree (same venv) in the "
                             "same rounds: an A/B of a change")
    opts = parser.parse_args()
    opts.only = [s.strip() for s in opts.only.split(",") if s.strip()]
    if unknown := set(opts.only) - set(SECTIONS):
        parser.error(f"unknown section(s) {sorted(unknown)}")
    if opts.gateway_src:
        procs.GATEWAY_SRC = opts.gateway_src.resolve()
    info = machine()
    print(f"machine: {info['nproc']} cpus, {info['ram']}, load {info['loadavg_start'][0]:.2f}")
    began = time.monotonic()
    results = asyncio.run(asyncio.wait_for(run(opts), opts.deadline))
    report(results)
    info["loadavg_end"] = list(__import__("os").getloadavg())
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    path = out / f"bench-cells-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(rounded({
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": time.monotonic() - began,
        "settings": dict(opts.set), "machine": info, **results}), indent=2, default=str))
    print(f"wrote {path} ({time.monotonic() - began:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
