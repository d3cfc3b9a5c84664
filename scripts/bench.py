"""End-to-end benchmark of the gateway against baselines measured in the same run.

Every row compares the gateway with a baseline started by this script on this machine, at the
same time (measurements are interleaved in rounds, so background load hits both alike):

  rtt          warm `1+1` round trip through the gateway vs a bare jupyter_client kernel
  kg           the same round trip vs Jupyter Kernel Gateway 3 over its websocket (+ why KG is slow)
  new_thread   first result on a new thread (pool warm) vs the warm round trip; cold kernel start
  analysis     first pandas+matplotlib cell on a new thread vs the same cell on a long-warm kernel
  stdout       10 MB of prints through the gateway vs the bare client (and the capped default)
  hotcode      1-character code_delta -> hot_code envelope latency (raw and json; burst mode)
  sandbox      cold start and warm round trip with bubblewrap vs --sandbox none
  density      RSS per idle pooled kernel; pool refill rate after a burst of new threads
  concurrency  50 threads x 20 executions from one process: throughput, latency, errors, RSS

Gateways run as subprocesses (`gateway serve`, like production); as root they use cgroups and
tmpfs. Only 127.0.0.1 is used. Prints a table and writes bench-results/bench-<timestamp>.json.

    .venv/bin/python -m scripts.bench [--quick] [--only rtt,kg,...] [--keep]
    .venv/bin/python -m scripts.bench --gateway-src /tmp/copy   # A/B a change in a copy

Full run ~4 minutes, --quick ~2 minutes (2-core machine). Ratios, not absolute numbers, are the
point: on a busy machine the absolute latencies move, the baselines move with them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import asdict
from pathlib import Path

from websockets.asyncio.client import connect

from gateway.client import GatewayClient, Result
from scripts.benchlib import procs
from scripts.benchlib.procs import (
    TOKEN,
    BareKernel,
    GatewayProc,
    KernelGatewayProc,
    MiB,
    cold_start,
    kernel_memory,
    proc_cpu_seconds,
    proc_rss,
)
from scripts.benchlib.stats import (
    Row,
    fmt,
    latency_row,
    machine,
    median,
    ms,
    p99,
    percentiles,
    print_table,
    rounded,
)
from scripts.benchlib.workload import (
    ANALYSIS_CELL,
    STDOUT_BYTES,
    STDOUT_CELL,
    raw_close,
    raw_roundtrip,
    receive_n,
)

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("rtt", "kg", "new_thread", "analysis", "stdout", "hotcode", "sandbox", "density",
            "concurrency")


# -- the benchmark ---------------------------------------------------------------------------
class Bench:
    def __init__(self, opts: argparse.Namespace, tmp: Path) -> None:
        self.opts = opts
        self.quick = opts.quick
        self.tmp = tmp
        self.rows: list[Row] = []
        self.gateways: dict[str, GatewayProc] = {}
        self.bare: dict[str, BareKernel] = {}
        self.gw_rtt_ms: list[float] | None = None
        self.info: dict = {}

    def q(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def add(self, row: Row) -> None:
        self.rows.append(row)
        print(f"  {row.name}: median {fmt(row.median)} {row.unit}"
              + (f", ratio {fmt(row.ratio)}" if row.ratio is not None else "")
              + (f" (goal {row.goal}: {'met' if row.met else 'NOT met'})" if row.goal else ""),
              flush=True)

    # resources, started lazily so --only starts only what it needs ------------------------
    async def gateway(self, name: str) -> GatewayProc:
        if name in self.gateways:
            return self.gateways[name]
        configs = {
            # the main gateway: default settings but an output cap that lets 10 MB through
            "main": ("--pool-size", "2", "--max-output-chars", "20000000"),
            # pool 0: every new thread starts its kernel -> cold start through the gateway
            "bwrap0": ("--pool-size", "0"),
            "none0": ("--pool-size", "0", "--sandbox", "none"),
            "conc": ("--pool-size", "8", "--max-kernels", "56",
                     "--memory-limit", str(512 * MiB)),
        }
        env = {"GATEWAY_KERNEL_START_TIMEOUT": "120"} if name == "conc" else None
        gw = GatewayProc(name, self.tmp, *configs[name], env=env)
        print(f"  starting gateway {name} ({' '.join(configs[name])}) ...", flush=True)
        await gw.start()
        await gw.wait_warm(timeout=180)
        self.gateways[name] = gw
        return gw

    async def stop_gateway(self, name: str) -> None:
        gw = self.gateways.pop(name, None)
        if gw is not None:
            await gw.stop()

    async def bare_kernel(self, name: str) -> BareKernel:
        if name not in self.bare:
            if name == "tcp":
                self.bare[name] = await BareKernel.start("tcp, default kernelspec, history on")
            else:
                self.bare[name] = await BareKernel.start(
                    "ipc, --HistoryManager.enabled=False", ipc_dir=self.tmp / "bare-ipc",
                    extra=["--HistoryManager.enabled=False"])
        return self.bare[name]

    async def close(self) -> None:
        for kernel in self.bare.values():
            await kernel.stop()
        for name in list(self.gateways):
            await self.stop_gateway(name)

    # helpers ------------------------------------------------------------------------------
    @staticmethod
    async def timed_run(thread, code: str, wait: float = 300) -> tuple[float, Result]:
        began = time.perf_counter()
        result = await thread.run(code, wait=wait)
        return time.perf_counter() - began, result

    @staticmethod
    async def close_thread(client: GatewayClient, thread_id: str) -> None:
        await client.thread(thread_id).close()
        with contextlib.suppress(TimeoutError):
            await client.next_envelope(thread_id, None, timeout=60)

    @staticmethod
    def check(result: Result, what: str) -> None:
        if result.state != "complete":
            raise RuntimeError(f"{what}: state {result.state}: {result.status} {result.error}")

    async def ensure_gw_rtt(self) -> list[float]:
        """The gateway's warm 1+1 round trip (measured by `rtt`, or briefly here)."""
        if self.gw_rtt_ms is None:
            gw = await self.gateway("main")
            async with await gw.client() as client:
                thread = client.thread(f"rtt-{uuid.uuid4().hex[:8]}")
                for _ in range(20):
                    await thread.run("1+1")
                await gw.wait_warm(settle=1.0)
                self.gw_rtt_ms = ms([(await self.timed_run(thread, "1+1"))[0]
                                     for _ in range(200)])
                await self.close_thread(client, thread.id)
        return self.gw_rtt_ms

    # 1. warm round trip ---------------------------------------------------------------------
    async def sec_rtt(self) -> None:
        gw = await self.gateway("main")
        tcp = await self.bare_kernel("tcp")
        ipc = await self.bare_kernel("ipc")
        rounds, per = self.q(10, 5), self.q(50, 30)
        gw_ms: list[float] = []
        raw_ms: list[float] = []
        tcp_ms: list[float] = []
        ipc_ms: list[float] = []
        inside_ms: list[float] = []  # the gateway's own duration_ms (job start -> status)
        ping: list[float] = []
        async with await gw.client() as client:
            thread = client.thread(f"rtt-{uuid.uuid4().hex[:8]}")
            raw_thread = f"rtt-raw-{uuid.uuid4().hex[:8]}"
            async with connect(gw.url, additional_headers={"Authorization": f"Bearer {TOKEN}"},
                               max_size=None, compression=None) as ws:
                for _ in range(20):  # warm-up: lease, first cells
                    self.check(await thread.run("1+1"), "rtt warm-up")
                    await raw_roundtrip(ws, raw_thread)
                    await tcp.execute("1+1")
                    await ipc.execute("1+1")
                await gw.wait_warm(settle=1.0)  # the refills the two leases started are done
                gw_cpu = 0.0
                for _ in range(rounds):
                    cpu0 = proc_cpu_seconds(gw.pid)
                    for _ in range(per):
                        seconds, result = await self.timed_run(thread, "1+1")
                        self.check(result, "rtt")
                        gw_ms.append(seconds * 1000)
                        inside_ms.append(result.status.get("duration_ms", math.nan))
                    gw_cpu += proc_cpu_seconds(gw.pid) - cpu0
                    for _ in range(per):
                        raw_ms.append(await raw_roundtrip(ws, raw_thread) * 1000)
                    for _ in range(per):
                        tcp_ms.append((await tcp.execute("1+1"))[0] * 1000)
                    for _ in range(per):
                        ipc_ms.append((await ipc.execute("1+1"))[0] * 1000)
                    for _ in range(per):  # ws ping/pong: the transport alone, same server
                        began = time.perf_counter()
                        await (await ws.ping())
                        ping.append((time.perf_counter() - began) * 1000)
                await raw_close(ws, raw_thread)
            await self.close_thread(client, thread.id)
        self.gw_rtt_ms = gw_ms
        breakdown = {
            "gateway_duration_ms_median": round(median(inside_ms), 3),
            "client_minus_duration_ms": round(median(gw_ms) - median(inside_ms), 3),
            "ws_ping_pong_ms_median": round(median(ping), 3),
            "raw_websocket_client_ms_median": round(median(raw_ms), 3),
            "gateway_cpu_ms_per_exec": round(gw_cpu * 1000 / len(gw_ms), 3),
        }
        self.add(latency_row("rtt_gateway_vs_bare_tcp", gw_ms, goal="<= 1.0",
                             baseline="bare jupyter_client (tcp, history on)", baseline_ms=tcp_ms,
                             **breakdown))
        self.add(latency_row("rtt_gateway_vs_bare_ipc_nohist", gw_ms,
                             baseline="bare jupyter_client (ipc, history off)",
                             baseline_ms=ipc_ms,
                             note="honesty row: the gateway's kernels run ipc + history off"))
        self.add(latency_row("rtt_gateway_raw_ws_vs_bare_tcp", raw_ms,
                             baseline="bare jupyter_client (tcp, history on)", baseline_ms=tcp_ms,
                             note="same round trip with a minimal websockets client instead of "
                                  "gateway.client (no reader task / queue hop)"))

    # 2. Jupyter Kernel Gateway --------------------------------------------------------------
    async def sec_kg(self) -> None:
        gw_ms = await self.ensure_gw_rtt()
        n = self.q(100, 40)
        results: dict[str, list[float]] = {}
        traces: dict[str, list] = {}
        for variant in ("plain", "client_quickack", "server_nodelay"):
            kg = KernelGatewayProc(self.tmp, patched=variant == "server_nodelay")
            try:
                await kg.start()
                results[variant], traces[variant] = await kg.measure(
                    n if variant == "plain" else n // 2, quickack=variant == "client_quickack")
            finally:
                await kg.stop()
        self.add(latency_row(
            "kg_vs_gateway", gw_ms, baseline="Jupyter Kernel Gateway 3 websocket",
            baseline_ms=results["plain"], goal=">= 10", inverse=True,
            kg_median_ms=round(median(results["plain"]), 2),
            kg_p99_ms=round(p99(results["plain"]), 2),
            kg_frame_trace_ms=traces["plain"],
            client_tcp_nodelay="already 1 (asyncio sets TCP_NODELAY on every TCP socket): "
                               "setting it changes nothing; the delayed frame is the server's"))
        self.add(latency_row(
            "kg_client_tcp_quickack", results["client_quickack"], unit="ms",
            baseline="KG plain", baseline_ms=results["plain"], inverse=True,
            note="KG round trip with TCP_QUICKACK re-armed on the client socket before each "
                 "recv: no delayed ACK -> Nagle releases the server's small frames at once",
            frame_trace_ms=traces["client_quickack"]))
        self.add(latency_row(
            "kg_server_set_nodelay", results["server_nodelay"], unit="ms",
            baseline="KG plain", baseline_ms=results["plain"], inverse=True,
            note="KG with tornado WebSocketHandler.set_nodelay(True) patched in at open(): "
                 "Nagle off on the server side",
            frame_trace_ms=traces["server_nodelay"]))

    # 3. new thread with a warm pool; cold start -------------------------------------------
    async def sec_new_thread(self) -> None:
        gw = await self.gateway("main")
        rtt = await self.ensure_gw_rtt()
        n = self.q(12, 4)
        first_ms: list[float] = []
        inside: list[float] = []
        async with await gw.client() as client:
            for i in range(n):
                await gw.wait_warm(settle=0.5)
                thread = client.thread(f"new-{i}-{uuid.uuid4().hex[:8]}")
                seconds, result = await self.timed_run(thread, "1+1")
                self.check(result, "new thread")
                first_ms.append(seconds * 1000)
                inside.append(result.status.get("duration_ms", math.nan))
                await self.close_thread(client, thread.id)
        cold: list[float] = []
        for i in range(self.q(3, 2)):
            cold.append(await cold_start(self.tmp / f"cold-{i}") * 1000)
        self.add(latency_row("new_thread_first_result_vs_warm_rtt", first_ms, goal="<= 1.5",
                             baseline="gateway warm 1+1 round trip", baseline_ms=rtt,
                             gateway_duration_ms_median=round(median(inside), 2)))
        self.add(latency_row("cold_kernel_start_to_first_result", cold, unit="ms",
                             baseline="new thread first result (pool warm)", baseline_ms=first_ms,
                             note="jupyter_client start_new_async_kernel + the gateway's "
                                  "startup imports + 1+1; ratio = how many times faster the "
                                  "warm pool makes the first result"))

    # 4. data-analysis cell -------------------------------------------------------------------
    async def sec_analysis(self) -> None:
        gw = await self.gateway("main")
        n = self.q(8, 3)
        new_ms: list[float] = []
        warm_ms: list[float] = []
        async with await gw.client() as client:
            warm = client.thread(f"analysis-warm-{uuid.uuid4().hex[:8]}")
            for _ in range(3):
                self.check(await warm.run(ANALYSIS_CELL), "analysis warm-up")
            await gw.wait_warm(settle=1.0)
            for i in range(n):
                seconds, result = await self.timed_run(warm, ANALYSIS_CELL)
                self.check(result, "analysis warm")
                assert result.files and result.files[0]["mime_type"] == "image/png"
                warm_ms.append(seconds * 1000)
                await gw.wait_warm(settle=0.5)
                thread = client.thread(f"analysis-new-{i}-{uuid.uuid4().hex[:8]}")
                seconds, result = await self.timed_run(thread, ANALYSIS_CELL)
                self.check(result, "analysis new thread")
                assert result.files and result.files[0]["mime_type"] == "image/png", result.files
                new_ms.append(seconds * 1000)
                await self.close_thread(client, thread.id)
            await self.close_thread(client, warm.id)
        self.add(latency_row("analysis_cell_new_thread_vs_warm_kernel", new_ms, goal="<= 1.2",
                             baseline="same cell on a long-warm kernel", baseline_ms=warm_ms,
                             cell="pandas groupby on 1e6 rows + matplotlib png via plt.show()"))

    # 5. stdout throughput --------------------------------------------------------------------
    async def sec_stdout(self) -> None:
        gw = await self.gateway("main")
        tcp = await self.bare_kernel("tcp")
        n = self.q(5, 3)
        gw_s: list[float] = []
        bare_s: list[float] = []
        gw_cpu = 0.0
        async with await gw.client() as client:
            thread = client.thread(f"stdout-{uuid.uuid4().hex[:8]}")
            self.check(await thread.run("1+1"), "stdout warm-up")
            await gw.wait_warm(settle=1.0)
            for _ in range(n):
                cpu0 = proc_cpu_seconds(gw.pid)
                seconds, result = await self.timed_run(thread, STDOUT_CELL)
                gw_cpu += proc_cpu_seconds(gw.pid) - cpu0
                self.check(result, "stdout")
                if len(result.output) != STDOUT_BYTES:
                    raise RuntimeError(f"stdout: got {len(result.output)} chars")
                gw_s.append(seconds)
                seconds, chars = await tcp.execute(STDOUT_CELL)
                if chars != STDOUT_BYTES:
                    raise RuntimeError(f"bare stdout: got {chars} chars")
                bare_s.append(seconds)
            await self.close_thread(client, thread.id)
        mb = STDOUT_BYTES / 1e6
        gw_rate = [mb / s for s in gw_s]
        bare_rate = [mb / s for s in bare_s]
        row = latency_row("stdout_10mb_throughput_vs_bare", gw_rate, unit="MB/s",
                          baseline="bare jupyter_client (tcp) until idle", baseline_ms=bare_rate,
                          goal=">= 0.8", gateway_seconds_median=round(median(gw_s), 3),
                          bare_seconds_median=round(median(bare_s), 3),
                          gateway_cpu_s_per_run=round(gw_cpu / n, 3),
                          note="gateway started with --max-output-chars 20000000; all 10.2 MB "
                               "verified to arrive; p99 column = worst (lowest) rate")
        row.p99 = min(gw_rate)
        self.add(row)
        # the default cap (1,000,000 chars): the gateway drops the rest, with a note
        capped = await self.gateway("bwrap0")
        cap_s: list[float] = []
        async with await capped.client() as client:
            thread = client.thread(f"stdout-cap-{uuid.uuid4().hex[:8]}")
            self.check(await thread.run("1+1"), "stdout capped warm-up")
            for _ in range(n):
                seconds, result = await self.timed_run(thread, STDOUT_CELL)
                self.check(result, "stdout capped")
                cap_s.append(seconds)
                delivered = len(result.output)
            await self.close_thread(client, thread.id)
        self.add(latency_row("stdout_10mb_default_cap_seconds", ms(cap_s), unit="ms",
                             baseline="bare jupyter_client (tcp) until idle",
                             baseline_ms=ms(bare_s),
                             chars_delivered=delivered,
                             note="default max_output_chars=1,000,000: the rest is dropped with "
                                  "a note; time until the final status"))

    # 6. hot-code latency -------------------------------------------------------------------
    async def sec_hotcode(self) -> None:
        gw = await self.gateway("main")
        n, burst = self.q(500, 200), self.q(2000, 500)
        async with await gw.client() as client:
            ping: list[float] = []
            for _ in range(100):
                began = time.perf_counter()
                await (await client.connection.ping())
                ping.append((time.perf_counter() - began) * 1000)
            for fmt_ in ("raw", "json"):
                thread = client.thread(f"hot-{fmt_}-{uuid.uuid4().hex[:8]}")
                call = f"call-{uuid.uuid4().hex[:8]}"
                prime = ["x"] if fmt_ == "raw" else ['{"code": "', "x"]
                await thread.send_code(call, prime, fmt_)
                for _ in range(2):  # the fence opener and "x"
                    await client.next_envelope(thread.id, call, timeout=10)
                single: list[float] = []
                for _ in range(n):
                    began = time.perf_counter()
                    await thread.send_code(call, ["a"], fmt_)
                    envelope = await client.next_envelope(thread.id, call, timeout=10)
                    single.append((time.perf_counter() - began) * 1000)
                    assert envelope["chunk"] == {"type": "hot_code", "content": "a"}, envelope
                # burst: send everything back to back, match envelopes by order
                sent: list[float] = []
                received: list[float] = []

                receiver = asyncio.create_task(
                    receive_n(client, thread.id, call, burst, received))
                began = time.perf_counter()
                for _ in range(burst):
                    sent.append(time.perf_counter())
                    await client.send({"type": "code_delta", "thread_id": thread.id,
                                       "call_id": call, "delta": "b", "format": fmt_})
                await receiver
                total = time.perf_counter() - began
                burst_ms = [(r - s) * 1000 for s, r in zip(sent, received, strict=True)]
                self.add(latency_row(f"hotcode_{fmt_}_1char_delta", single,
                                     baseline="websocket ping/pong to the same gateway",
                                     baseline_ms=ping,
                                     burst_deltas=burst,
                                     burst_deltas_per_s=round(burst / total),
                                     burst_latency_median_ms=round(median(burst_ms), 3),
                                     burst_latency_p99_ms=round(p99(burst_ms), 3)))
                await self.close_thread(client, thread.id)

    # sandbox overhead -------------------------------------------------------------------
    async def sec_sandbox(self) -> None:
        bwrap = await self.gateway("bwrap0")
        none = await self.gateway("none0")
        n = self.q(5, 2)
        cold = {"bwrap": [], "none": []}
        warm = {"bwrap": [], "none": []}
        stdout = {"bwrap": [], "none": []}
        clients = {"bwrap": await bwrap.client(), "none": await none.client()}
        threads = {}
        try:
            for i in range(n):
                for key in ("bwrap", "none"):
                    client = clients[key]
                    thread = client.thread(f"sb-{key}-{i}-{uuid.uuid4().hex[:8]}")
                    seconds, result = await self.timed_run(thread, "1+1")
                    self.check(result, f"cold start {key}")
                    cold[key].append(seconds * 1000)
                    if key in threads:
                        await self.close_thread(client, threads[key].id)
                    threads[key] = thread
                    await asyncio.sleep(0.3)
            for key in ("bwrap", "none"):
                for _ in range(20):
                    await threads[key].run("1+1")
            for _ in range(self.q(6, 3)):
                for key in ("bwrap", "none"):
                    for _ in range(50):
                        warm[key].append((await self.timed_run(threads[key], "1+1"))[0] * 1000)
            for _ in range(self.q(4, 2)):
                for key in ("bwrap", "none"):
                    seconds, result = await self.timed_run(threads[key], STDOUT_CELL)
                    self.check(result, f"stdout {key}")
                    stdout[key].append(STDOUT_BYTES / 1e6 / seconds)
            for key in ("bwrap", "none"):
                await self.close_thread(clients[key], threads[key].id)
        finally:
            for client in clients.values():
                await client.close()
        self.add(latency_row("sandbox_cold_start_bwrap_vs_none", cold["bwrap"],
                             baseline="--sandbox none (pool 0, first 1+1 on a new thread)",
                             baseline_ms=cold["none"],
                             note="pool size 0: a new thread starts its kernel (workdir tmpfs, "
                                  "cgroups, bwrap, ipykernel, startup imports) then runs 1+1"))
        self.add(latency_row("sandbox_warm_rtt_bwrap_vs_none", warm["bwrap"],
                             baseline="--sandbox none warm 1+1", baseline_ms=warm["none"]))
        row = latency_row("sandbox_stdout_10mb_bwrap_vs_none", stdout["bwrap"], unit="MB/s",
                          baseline="--sandbox none, same cell", baseline_ms=stdout["none"],
                          note="10.2 MB printed, default output cap (the kernel still sends "
                               "all of it); p99 column = worst (lowest) rate")
        row.p99 = min(stdout["bwrap"])
        self.add(row)
        await self.stop_gateway("none0")

    # 8. density and refill ----------------------------------------------------------------
    async def sec_density(self) -> None:
        gw = await self.gateway("conc")
        await gw.wait_warm(settle=1.0)
        kernels = kernel_memory(gw)
        rss = [k["rss"] / MiB for k in kernels]
        pss = [k["pss"] / MiB for k in kernels]
        cg = [k["cgroup"] / MiB for k in kernels if k["cgroup"] is not None]
        cg_rss = [k["cgroup_rss"] / MiB for k in kernels if k["cgroup_rss"] is not None]
        self.add(Row("density_rss_per_idle_kernel", "MiB", median(rss), max(rss) if rss else None,
                     len(rss), notes={
                         "pss_median_mib": round(median(pss), 1),
                         "cgroup_usage_median_mib": round(median(cg), 1) if cg else None,
                         "cgroup_rss_median_mib": round(median(cg_rss), 1) if cg_rss else None,
                         "note": "sum over the kernel's process tree (sh/prlimit exec chain, "
                                 "bwrap, bwrap pid-1, ipykernel); PSS counts shared pages "
                                 "once; cgroup usage includes page cache charged to it",
                         "p99_is": "max"}))
        # refill: a burst of `target` new threads leases every warm kernel at once
        target = (await gw.health())["pool"]["target"]
        async with await gw.client() as client:
            threads = [client.thread(f"burst-{i}-{uuid.uuid4().hex[:6]}") for i in range(target)]
            began = time.monotonic()
            results = await asyncio.gather(*(t.run("1+1") for t in threads))
            burst_first = time.monotonic() - began
            for result in results:
                self.check(result, "burst")
            await gw.wait_warm(timeout=300)
            refill = time.monotonic() - began
            await asyncio.gather(*(self.close_thread(client, t.id) for t in threads))
        self.add(Row("pool_refill_kernels_per_s", "kernels/s", target / refill, None, target,
                     notes={"burst_threads": target, "seconds_to_refill": round(refill, 2),
                            "burst_all_first_results_s": round(burst_first, 3),
                            "per_kernel_start_s_pool_median":
                                (await gw.health())["pool"]["median_start_seconds"]}))

    # 7. concurrency ------------------------------------------------------------------------
    async def sec_concurrency(self) -> None:
        gw = await self.gateway("conc")
        await gw.wait_warm(settle=1.0)
        threads_n, execs = self.q(50, 16), self.q(20, 10)
        rss_before = proc_rss(gw.pid)
        errors: list[str] = []
        lat: list[float] = []
        ramp_lat: list[float] = []
        async with await gw.client() as client:
            threads = [client.thread(f"conc-{i}-{uuid.uuid4().hex[:6]}") for i in range(threads_n)]

            async def first(thread) -> None:
                try:
                    seconds, result = await self.timed_run(thread, "1+1", wait=300)
                    ramp_lat.append(seconds * 1000)
                    if result.state != "complete":
                        errors.append(f"ramp {thread.id}: {result.state} {result.status} "
                                      f"{result.error}")
                except Exception as exc:  # noqa: BLE001
                    errors.append(f"ramp {thread.id}: {exc!r}")

            began = time.monotonic()
            await asyncio.gather(*(first(t) for t in threads))
            ramp = time.monotonic() - began
            ramp_errors = len(errors)
            await asyncio.sleep(1.0)  # let the pool refill settle before the measured phase
            rss_ramped = proc_rss(gw.pid)

            async def worker(thread, k: int) -> None:
                for j in range(execs):
                    try:
                        seconds, result = await self.timed_run(thread, f"x = {k} * {j}\nx + 1",
                                                               wait=300)
                        lat.append(seconds * 1000)
                        if result.state != "complete" or result.output.strip() != str(k * j + 1):
                            errors.append(f"{thread.id}: {result.state} {result.output!r}")
                    except Exception as exc:  # noqa: BLE001
                        errors.append(f"{thread.id}: {exc!r}")

            cpu0 = proc_cpu_seconds(gw.pid)
            began = time.monotonic()
            await asyncio.gather(*(worker(t, k) for k, t in enumerate(threads)))
            wall = time.monotonic() - began
            cpu = proc_cpu_seconds(gw.pid) - cpu0
            rss_after = proc_rss(gw.pid)
            health = await gw.health()
            kernels_alive = health["pool"]["leased"]
            await asyncio.gather(*(self.close_thread(client, t.id) for t in threads))
        total = threads_n * execs
        row = latency_row(f"concurrency_{threads_n}x{execs}", lat, unit="ms")
        row.notes = {
            "threads": threads_n, "executions_per_thread": execs,
            "throughput_exec_per_s": round(len(lat) / wall, 1),
            "wall_s": round(wall, 2), "errors": len(errors), "error_samples": errors[:5],
            "ramp_s": round(ramp, 2), "ramp_errors": ramp_errors,
            "ramp_first_result_ms_min_p10_median_p90_max": [
                round(x) for x in percentiles(ramp_lat, (0, 10, 50, 90, 100))],
            "kernel_start_timeout_s": 120,
            "kernels_leased_at_end": kernels_alive,
            "gateway_rss_mib_before": round(rss_before / MiB, 1),
            "gateway_rss_mib_after_ramp": round(rss_ramped / MiB, 1),
            "gateway_rss_mib_after": round(rss_after / MiB, 1),
            "gateway_cpu_ms_per_exec": round(cpu * 1000 / max(1, len(lat)), 3),
            "gateway_cpu_share": round(cpu / wall, 2),
            "note": f"{threads_n} threads on one websocket; each thread first runs one cell "
                    f"(ramp: {threads_n - 8} kernels start on demand beyond the 8 warm), then "
                    f"all run {execs} cells each concurrently (measured). The gateway runs with "
                    "GATEWAY_KERNEL_START_TIMEOUT=120: with the default 30 s, kernels started "
                    "all at once on a small machine finish together and can time out",
        }
        row.goal = "errors == 0"
        row.met = not errors and len(lat) == total
        self.add(row)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (~3 minutes)")
    parser.add_argument("--only", default="",
                        help=f"comma-separated sections: {', '.join(SECTIONS)}")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    parser.add_argument("--gateway-src", type=Path,
                        help="run the gateway from this source tree (a copy with a change to "
                             "A/B), with this venv")
    opts = parser.parse_args()
    if opts.gateway_src:
        procs.GATEWAY_SRC = opts.gateway_src.resolve()
    only = [s.strip() for s in opts.only.split(",") if s.strip()] or list(SECTIONS)
    unknown = set(only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    if not shutil.which("bwrap"):
        print("warning: bubblewrap not installed; run `make setup` first", file=sys.stderr)

    info = machine()
    print(f"machine: {info['nproc']} cpus, {info['cpu']}, {info['ram']}, Linux {info['kernel']}, "
          f"Python {info['python']}, load {info['loadavg_start'][0]:.2f}")
    tmp = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    bench = Bench(opts, tmp)
    started = time.monotonic()
    failures: dict[str, str] = {}
    timings: dict[str, float] = {}
    try:
        for name in SECTIONS:
            if name not in only:
                continue
            print(f"[{name}]", flush=True)
            began = time.monotonic()
            try:
                await getattr(bench, f"sec_{name}")()
            except Exception as exc:  # noqa: BLE001  one broken section must not lose the rest
                failures[name] = repr(exc)
                print(f"  FAILED: {exc!r}", flush=True)
                for gw in bench.gateways.values():
                    print(f"  --- {gw.name} log tail ---\n{gw.log_tail(10)}")
            timings[name] = round(time.monotonic() - began, 1)
            if name == "hotcode":  # the main gateway is no longer needed
                await bench.stop_gateway("main")
                for kernel in bench.bare.values():
                    await kernel.stop()
                bench.bare.clear()
    finally:
        await bench.close()
        if not opts.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}")
    info["loadavg_end"] = os.getloadavg()
    elapsed = time.monotonic() - started
    print_table(bench.rows)
    met = [r for r in bench.rows if r.met is not None]
    print(f"\n{sum(bool(r.met) for r in met)}/{len(met)} goals met; "
          f"{elapsed:.0f} s total; load average {info['loadavg_end'][0]:.2f} at the end")
    if failures:
        print(f"failed sections: {failures}")
    opts.out.mkdir(parents=True, exist_ok=True)
    path = opts.out / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    report = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "quick": opts.quick,
              "gateway_src": str(procs.GATEWAY_SRC or ROOT),
              "sections": only, "seconds": round(elapsed, 1), "section_seconds": timings,
              "machine": info, "failures": failures,
              "rows": [rounded(asdict(r)) for r in bench.rows]}
    path.write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {path}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
