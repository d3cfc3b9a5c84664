"""Threads far outnumber kernels (issue 31): a burst, a thousand threads, idle density.

Each scenario starts its own `gateway serve` (a subprocess, a temporary data directory) with
the default settings; only what cannot matter is set: port, data directory, one token, and a
uid range of its own (kernels of another gateway on the host never share a uid's process
count). `--set KEY=VALUE` overrides any setting, for every gateway the run starts.

  burst    N new threads at once (default 40), `1+1` each: time to the first result p50, p99
           and max, errors; once with the default `max_kernels` and once with 16 (the old
           default), one gateway after the other, in the same run: the ratio default / 16.
  many     N threads (default 1000) build a 5 MiB DataFrame each, then all are touched
           round-robin 3 times by a cell that checks the thread's own variables (tag,
           checksum, a counter), C cells in flight (--rate R: touches start R per second):
           time to the first result of each round, restores (from the statuses), errors
           and mismatches; host MemAvailable (minimum, vs a memory floor if the gateway has
           one), gateway RSS, OOM kills.
  density  K threads (default 300) run one trivial cell and stay idle (hibernation, if the
           gateway has it, set off): how many hold a live kernel, PSS per kernel (the kernels'
           process trees, and everything below the gateway), host memory used.

Every scenario stops by itself (`--budget` seconds, per scenario) and reports what it measured
by then. Prints the settings, the machine's load at the start and the end, a table (or JSON
with --json) and writes bench-results/bench-density-<time>.json.

    .venv/bin/python -m scripts.bench_density [burst] [many] [density] [--threads N] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from gateway import config
from gateway.client import GatewayClient
from gateway.constraints import DURATION, constraint_of
from scripts.benchlib import touches
from scripts.benchlib.host import Sampler, load, meminfo, memory_used, oom_kills
from scripts.benchlib.procs import (
    IDENTITY,
    TOKEN,
    GatewayProc,
    MiB,
    descendants,
    kernel_memory,
    proc_pss,
)
from scripts.benchlib.stats import machine, rounded
from scripts.benchlib.timed import Timed, timed_run

ROOT = Path(__file__).resolve().parent.parent
UID_BASE = "730000"  # bench_burst uses 710000
OLD_MAX_KERNELS = "16"
NO_RELEASE = str(10 * 365 * 86400)  # seconds: "never" for a duration setting
SCENARIOS = ("burst", "many", "density")
DEFAULT_THREADS = {"burst": 40, "many": 1000, "density": 300}
DEFAULT_BUDGET = {"burst": 300.0, "many": 1800.0, "density": 900.0}
# Settings worth printing with the results, besides those given and any that name
# hibernation, a memory floor or headroom (whatever the gateway of the day has).
SHOWN = ("max_kernels", "pool_size", "pool_adaptive", "max_threads_per_identity", "lease_wait",
         "idle_timeout", "memory_limit", "kernel_start", "snapshots",
         "snapshot_every_cell_below", "sandbox")
FLOOR_NAME = re.compile(r"(memory|mem|ram).*(floor|reserve|min)|(floor|reserve|min).*"
                        r"(memory|mem|ram)|min_(available|free)")
CAPACITY_WORDS = re.compile(r"hibernat|floor|headroom|reserve|pressure|admission|overcommit")


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


# -- settings ----------------------------------------------------------------------------------
def effective(overrides: dict[str, str], tokens: str = f"{IDENTITY}:{TOKEN}") -> dict:
    """The settings a `gateway serve` given ``overrides`` runs with (its environment is ours)."""
    environ = {**os.environ, "GATEWAY_TOKENS": tokens}
    return config.from_environment(environ=environ, texts=overrides).masked()


def shown(settings: dict, overrides: dict[str, str]) -> dict:
    names = [*SHOWN, *overrides, *(n for n in settings if CAPACITY_WORDS.search(n))]
    return {name: settings[name] for name in dict.fromkeys(names) if name in settings}


def no_release_overrides() -> dict[str, str]:
    """Durations after which an idle thread gives up its kernel, set to "never": hibernation
    (if this gateway has it) and the idle timeout."""
    names = [f.name for f in dataclasses.fields(config.Settings)
             if constraint_of(f).unit == DURATION
             and ("hibernat" in f.name or f.name == "idle_timeout")]
    return {name: NO_RELEASE for name in names}


def memory_floor(settings: dict) -> int | None:
    """The host-memory floor in bytes, if the gateway has such a setting (a size, or a
    fraction of the host's memory)."""
    for name, value in settings.items():
        if (FLOOR_NAME.search(name) and isinstance(value, int | float)
                and not isinstance(value, bool) and value > 0):
            return int(value * meminfo()["MemTotal"]) if value < 1 else int(value)
    return None


class Gateways:
    """The gateways of one run: each with the run's settings and its own data directory."""

    def __init__(self, opts: argparse.Namespace) -> None:
        self.opts = opts
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-density-"))
        self.base = {"kernel_uid_base": UID_BASE, **opts.set}
        self.count = 0
        # Threads spread over identities: one (an application in front of the gateway) by
        # default; several share max_kernels (max_threads_per_identity's 0).
        self.tokens = [TOKEN, *(f"bench{k}-{secrets.token_hex(8)}"
                                for k in range(1, opts.identities))]
        self.tokens_spec = ",".join(
            f"{IDENTITY if k == 0 else f'bench{k}'}:{token}"
            for k, token in enumerate(self.tokens))

    def settings(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {**self.base, **(extra or {})}

    async def start(self, name: str, overrides: dict[str, str]) -> GatewayProc:
        self.count += 1
        args = [arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")]
        gw = GatewayProc(f"{name}-{self.count}", self.tmp, *args,
                         env={"GATEWAY_TOKENS": self.tokens_spec},
                         src=self.opts.gateway_src.resolve() if self.opts.gateway_src else None)
        await gw.start()
        try:
            await gw.wait_warm(timeout=300, settle=1.0)
        except BaseException:
            await gw.stop()
            raise
        return gw


async def pool_of(gw: GatewayProc) -> dict:
    with contextlib.suppress(Exception):
        return (await gw.health()).get("pool", {})
    return {}


def capacity_stats(pool: dict) -> dict:
    """What the pool says of live, warm, hibernated threads and restores (today's keys and
    whatever the gateway of the day adds)."""
    keys = ("max_kernels", "warm", "leased", "starting", "waiting", "deaths", "starts")
    return {k: v for k, v in pool.items()
            if k in keys or re.search(r"hibernat|restor|live|evict", k)}


async def connections(gws: Gateways, gw: GatewayProc, count: int) -> list[GatewayClient]:
    """At least ``count`` connections, and one per identity: thread i uses connection i % n."""
    tokens = gws.tokens
    return [await GatewayClient.connect(gw.url, tokens[c % len(tokens)])
            for c in range(max(count, len(tokens)))]


async def close_all(clients: list[GatewayClient]) -> None:
    for client in clients:
        with contextlib.suppress(Exception):
            await client.close()


# -- burst -------------------------------------------------------------------------------------
async def burst_once(gws: Gateways, label: str, extra: dict[str, str],
                     opts: argparse.Namespace, budget: float) -> dict:
    settings = gws.settings(extra)
    gw = await gws.start(f"burst-{label}", settings)
    try:
        before = await pool_of(gw)
        clients = await connections(gws, gw, min(opts.connections, opts.threads))
        began = time.monotonic()
        deadline = began + budget

        async def conversation(i: int) -> Timed:
            thread = clients[i % len(clients)].thread(f"burst-{i}")
            return await timed_run(thread, "1+1", min(opts.cell_wait, deadline - time.monotonic()))

        runs = await asyncio.gather(*(conversation(i) for i in range(opts.threads)))
        elapsed = time.monotonic() - began
        after = await pool_of(gw)
        await close_all(clients)
    finally:
        await gw.stop()
    firsts = [r.first for r in runs if r.first is not None and r.state == "complete"]
    wrong = sum(1 for r in runs if r.state == "complete" and r.result.output != "2\n")
    failures = Counter(r.failure for r in runs if r.failure)
    # How long a refused thread waited to learn it (lease_wait, a start that failed).
    failed_after = [r.total for r in runs if r.failure and r.total is not None]
    return {"label": label, "max_kernels": before.get("max_kernels"),
            "warm_at_start": before.get("warm"), "settings": settings,
            "first_result_s": touches.summary(firsts), "errors": sum(failures.values()) + wrong,
            "failures": dict(failures), "wrong_output": wrong,
            "failed_after_s": touches.summary(failed_after),
            "seconds": round(elapsed, 2), "pool_after": capacity_stats(after)}


async def burst(gws: Gateways, opts: argparse.Namespace, budget: float) -> dict:
    """The burst with the default max_kernels and with the old default, alternating which
    goes first each round."""
    deadline = time.monotonic() + budget
    order = [("default", {}), ("max_kernels=16", {"max_kernels": OLD_MAX_KERNELS})]
    if "max_kernels" in opts.set:  # the default is what --set says: no second gateway needed
        order = order[:1]
    rounds: dict[str, list[dict]] = {label: [] for label, _ in order}
    for _ in range(opts.rounds):
        for label, extra in order:
            remaining = deadline - time.monotonic()
            if remaining <= 5:
                break
            result = await burst_once(gws, label, extra, opts, remaining)
            rounds[label].append(result)
            log(f"burst {label}: {json.dumps(rounded(result['first_result_s']))} "
                f"errors {result['errors']}")
        order.reverse()
    report: dict = {"threads": opts.threads, "rounds": rounds}
    mine, old = rounds.get("default", []), rounds.get("max_kernels=16", [])
    if mine and old:
        p99 = [statistics_median([r["first_result_s"]["p99"] for r in runs])
               for runs in (mine, old)]
        p50 = [statistics_median([r["first_result_s"]["p50"] for r in runs])
               for runs in (mine, old)]
        report["ratio_p99_default_vs_16"] = ratio(*p99)
        report["ratio_p50_default_vs_16"] = ratio(*p50)
    return report


def statistics_median(values: list[float]) -> float:
    values = sorted(v for v in values if not math.isnan(v))
    if not values:
        return math.nan
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def ratio(this: float, base: float) -> float | None:
    return this / base if base and not math.isnan(this) and not math.isnan(base) else None


# -- many --------------------------------------------------------------------------------------
async def many(gws: Gateways, opts: argparse.Namespace, budget: float) -> dict:
    settings = gws.settings()
    floor = memory_floor(effective(settings, gws.tokens_spec))
    oom_before = oom_kills()
    gw = await gws.start("many", settings)
    sampler = Sampler(gw.pid).start()
    began = time.monotonic()
    deadline = began + budget
    n = opts.threads
    expected = [touches.Expected(i) for i in range(n)]
    phases = ["build", *(f"touch {r + 1}" for r in range(opts.touches))]
    records: dict[str, list[dict]] = {phase: [] for phase in phases}
    jobs: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
    clients = await connections(gws, gw, opts.concurrency)
    limit_kills = 0
    next_start = time.monotonic()

    async def pace(phase: str) -> None:
        """--rate: touches start 1/rate seconds apart (open loop, up to --concurrency in
        flight), so restores are measured at a rate the host sustains, not only flat out."""
        nonlocal next_start
        if not opts.rate or phase == "build":
            return
        now = time.monotonic()
        next_start = max(now, next_start) + 1 / opts.rate
        await asyncio.sleep(next_start - 1 / opts.rate - now)

    async def work() -> None:
        nonlocal limit_kills
        while time.monotonic() < deadline:
            try:
                phase, i = jobs.get_nowait()
            except asyncio.QueueEmpty:
                return
            await pace(phase)
            wait = min(opts.cell_wait, deadline - time.monotonic())
            if wait <= 0:
                return
            thread = clients[i % len(clients)].thread(f"many-{i}")
            code = touches.build_cell(i) if phase == "build" else touches.CHECK_CELL
            expected[i].sent += 1
            timed = await timed_run(thread, code, wait)
            status = timed.result.status
            error = status.get("error")
            error = error if isinstance(error, dict) else {}
            restored = touches.restored_of(timed.statuses)
            outcome = touches.classify(expected[i], timed.state, timed.result.output,
                                       error.get("ename"),
                                       (restored or {}).get("skipped"))
            expected[i].answered(outcome, timed.result.output)
            if "memory limit" in str(status.get("reason", "")):
                limit_kills += 1
            records[phase].append({"thread": i, "first": timed.first, "outcome": outcome,
                                   "failure": timed.failure, "restored": restored is not None})

    async def progress() -> None:
        while True:
            await asyncio.sleep(30)
            done = sum(len(r) for r in records.values())
            pool = await pool_of(gw)
            log(f"many: {done}/{n * len(phases)} cells, {time.monotonic() - began:.0f} s, "
                f"MemAvailable {sampler.available[-1] / 2**30:.1f} GiB, "
                f"gateway RSS {(sampler.rss or [0])[-1] / MiB:.0f} MiB, "
                f"pool {json.dumps(capacity_stats(pool))}")

    reporter = asyncio.create_task(progress())
    try:
        # Round by round: every thread is touched once before any is touched again.
        for number, phase in enumerate(phases):
            if number and opts.pause:
                await asyncio.sleep(min(opts.pause, max(0.0, deadline - time.monotonic())))
            for i in range(n):
                jobs.put_nowait((phase, i))
            await asyncio.gather(*(work() for _ in range(opts.concurrency)))
            if not jobs.empty():
                break
    finally:
        elapsed = time.monotonic() - began
        reporter.cancel()
        pool = await pool_of(gw)
        await close_all(clients)
        memory = await sampler.stop()
        await gw.stop()
    oom_after = oom_kills()
    report: dict = {"threads": n, "concurrency": opts.concurrency, "rate": opts.rate,
                    "seconds": round(elapsed, 1),
                    "stopped_by_budget": sum(len(r) for r in records.values()) < n * len(phases),
                    "cells_planned": n * len(phases),
                    "cells_done": sum(len(r) for r in records.values()), "phases": {}}
    for phase, recs in records.items():
        report["phases"][phase] = phase_summary(recs)
    touched = [r for phase in phases[1:] for r in records[phase]]
    report["touches"] = phase_summary(touched)
    report["mismatches"] = sum(1 for r in [*records["build"], *touched]
                               if r["outcome"] in (touches.MISMATCH, touches.LOST,
                                                   touches.STALE))
    report["memory"] = {**memory, "floor": floor,
                        "below_floor": (memory["mem_available_min"] < floor) if floor else None}
    report["oom_kills_host"] = (oom_after - oom_before
                                if oom_after is not None and oom_before is not None else None)
    report["oom_kills_over_own_limit"] = limit_kills
    report["pool_end"] = capacity_stats(pool)
    return report


def phase_summary(records: list[dict]) -> dict:
    ok_firsts = [r["first"] for r in records if r["outcome"] == touches.OK and r["first"]]
    restored = [r["first"] for r in records
                if r["restored"] and r["outcome"] == touches.OK and r["first"]]
    kept = [r["first"] for r in records
            if not r["restored"] and r["outcome"] == touches.OK and r["first"]]
    return {"cells": len(records),
            "outcomes": dict(Counter(r["outcome"] for r in records)),
            "failures": dict(Counter(r["failure"] for r in records if r["failure"])),
            "first_result_s": touches.summary(ok_firsts),
            "restores": sum(1 for r in records if r["restored"]),
            "restored_first_result_s": touches.summary(restored),
            "live_first_result_s": touches.summary(kept)}


# -- density -----------------------------------------------------------------------------------
async def density(gws: Gateways, opts: argparse.Namespace, budget: float) -> dict:
    extra = no_release_overrides()
    try:
        effective(gws.settings(extra), gws.tokens_spec)
    except config.SettingsError as exc:  # a gateway whose rules refuse "never"
        log(f"density: keeping the release settings as they are ({exc})")
        extra = {}
    settings = gws.settings(extra)
    log(f"density: idle threads keep their kernels: {json.dumps(extra)}")
    used_before = memory_used()
    gw = await gws.start("density", settings)
    began = time.monotonic()
    deadline = began + budget
    try:
        used_warm = memory_used()
        clients = await connections(gws, gw, opts.concurrency)
        gate = asyncio.Semaphore(opts.concurrency)

        async def open_thread(i: int) -> Timed | None:
            async with gate:
                wait = min(opts.cell_wait, deadline - time.monotonic())
                if wait <= 0:
                    return None
                return await timed_run(clients[i % len(clients)].thread(f"idle-{i}"), "1+1", wait)

        runs = await asyncio.gather(*(open_thread(i) for i in range(opts.threads)))
        elapsed = time.monotonic() - began
        await asyncio.sleep(2.0)  # the last kernels' refills and snapshots settle
        pool = await pool_of(gw)
        kernels = await asyncio.to_thread(kernel_memory, gw)
        below = await asyncio.to_thread(
            lambda: sum(proc_pss(pid) for pid in descendants(gw.pid)))
        used_idle = memory_used()
        await close_all(clients)
    finally:
        await gw.stop()
    done = [r for r in runs if r is not None]
    failures = Counter(r.failure for r in done if r.failure)
    pss = sum(k["pss"] for k in kernels)
    live = pool.get("leased")
    return {
        "threads": opts.threads, "settings_for_no_release": extra,
        "seconds": round(elapsed, 1),
        "threads_opened": len(done), "cells_complete": sum(1 for r in done
                                                           if r.state == "complete"),
        "failures": dict(failures),
        "live_kernels": live, "kernels_found": len(kernels), "pool_end": capacity_stats(pool),
        "first_result_s": touches.summary([r.first for r in done
                                           if r.first is not None and r.state == "complete"]),
        "pss_per_kernel_mib": pss / len(kernels) / MiB if kernels else None,
        "pss_below_gateway_per_kernel_mib": below / len(kernels) / MiB if kernels else None,
        "host_used_before_gib": used_before / 2**30,
        "host_used_warm_gib": used_warm / 2**30,
        "host_used_idle_gib": used_idle / 2**30,
        "host_used_per_kernel_mib": ((used_idle - used_warm) / MiB / live) if live else None,
    }


# -- the report --------------------------------------------------------------------------------
def gib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**30:.2f} GiB"


def s(summary: dict) -> str:
    if not summary.get("n"):
        return "-"
    return (f"p50 {summary['p50']:.3f} s  p99 {summary['p99']:.3f} s  "
            f"max {summary['max']:.3f} s  (n {summary['n']})")


def met(ok: bool | None) -> str:
    return {True: "yes", False: "NO", None: "-"}[ok]


def le(value: float | None, goal: float) -> bool | None:
    return None if value is None or math.isnan(value) else value <= goal


def rows(report: dict) -> list[tuple[str, str, str, str]]:
    """(metric, value, goal, met) for the table."""
    out: list[tuple[str, str, str, str]] = []
    if b := report.get("burst"):
        for label, runs in b["rounds"].items():
            for run in runs:
                first = run["first_result_s"]
                # A thread that got no result has waited forever: the p99 of those that did
                # meets the goal only if every thread did.
                out.append((f"burst {b['threads']}, {label} (max_kernels "
                            f"{run['max_kernels']}): first result", s(first),
                            "p99 <= 3 s, all threads",
                            met(bool(le(first["p99"], 3.0)) and run["errors"] == 0)))
                out.append((f"burst {label}: errors", f"{run['errors']} {run['failures']}",
                            "0", met(run["errors"] == 0)))
                if run["failed_after_s"]["n"]:
                    out.append((f"burst {label}: errors, time to the error",
                                s(run["failed_after_s"]), "-", "-"))
        if (r := b.get("ratio_p99_default_vs_16")) is not None:
            out.append(("burst p99 default / max_kernels=16 (same run)", f"{r:.3f}", "-", "-"))
            out.append(("burst p50 default / max_kernels=16 (same run)",
                        f"{b['ratio_p50_default_vs_16']:.3f}", "-", "-"))
    if m := report.get("many"):
        head = f"many {m['threads']}"
        out.append((f"{head}: cells done / planned",
                    f"{m['cells_done']} / {m['cells_planned']} in {m['seconds']} s"
                    + (" (budget ran out)" if m["stopped_by_budget"] else ""), "all", "-"))
        for phase, p in m["phases"].items():
            out.append((f"{head} {phase}: first result", s(p["first_result_s"]), "-", "-"))
            out.append((f"{head} {phase}: outcomes", f"{p['outcomes']} restores {p['restores']}",
                        "-", "-"))
            if p["failures"]:
                out.append((f"{head} {phase}: failures", str(p["failures"]), "-", "-"))
        t = m["touches"]
        out.append((f"{head}: touches restored, to first result", s(t["restored_first_result_s"]),
                    "p50 <= 0.3 s, p99 <= 2 s",
                    met(None if not t["restored_first_result_s"]["n"] else
                        bool(le(t["restored_first_result_s"]["p50"], 0.3)
                             and le(t["restored_first_result_s"]["p99"], 2.0)))))
        out.append((f"{head}: touches on a live kernel", s(t["live_first_result_s"]), "-", "-"))
        errors = t["outcomes"].get(touches.ERROR, 0) + m["phases"]["build"]["outcomes"].get(
            touches.ERROR, 0)
        out.append((f"{head}: errors (cells that did not run)", str(errors), "0",
                    met(errors == 0)))
        out.append((f"{head}: mismatches (wrong, lost or stale variables)",
                    str(m["mismatches"]), "0", met(m["mismatches"] == 0)))
        mem = m["memory"]
        out.append((f"{head}: host MemAvailable min (floor)",
                    f"{gib(mem['mem_available_min'])} ({gib(mem['floor'])})", ">= floor",
                    met(None if mem["below_floor"] is None else not mem["below_floor"])))
        out.append((f"{head}: gateway RSS start / max / end",
                    " / ".join(f"{(mem[k] or 0) / MiB:.0f}" for k in
                               ("gateway_rss_start", "gateway_rss_max", "gateway_rss_end"))
                    + " MiB", "bounded", "-"))
        out.append((f"{head}: OOM kills on the host (of kernels over their own limit)",
                    f"{m['oom_kills_host']} ({m['oom_kills_over_own_limit']})",
                    "none not over its limit",
                    met(None if m["oom_kills_host"] is None else
                        m["oom_kills_host"] <= m["oom_kills_over_own_limit"])))
        out.append((f"{head}: pool at the end", json.dumps(m["pool_end"]), "-", "-"))
    if d := report.get("density"):
        head = f"density {d['threads']}"
        out.append((f"{head}: live kernels (leased) / kernel trees found",
                    f"{d['live_kernels']} / {d['kernels_found']}", ">= 300",
                    met(None if d["live_kernels"] is None else d["live_kernels"] >= 300)))
        out.append((f"{head}: cells complete / threads opened",
                    f"{d['cells_complete']} / {d['threads_opened']} {d['failures'] or ''}",
                    "-", "-"))
        out.append((f"{head}: first result", s(d["first_result_s"]), "-", "-"))
        out.append((f"{head}: PSS per kernel tree / all below gateway per kernel",
                    f"{fmt(d['pss_per_kernel_mib'])} / "
                    f"{fmt(d['pss_below_gateway_per_kernel_mib'])} MiB", "-", "-"))
        out.append((f"{head}: host memory used before / warm / idle threads",
                    f"{d['host_used_before_gib']:.2f} / {d['host_used_warm_gib']:.2f} / "
                    f"{d['host_used_idle_gib']:.2f} GiB "
                    f"({fmt(d['host_used_per_kernel_mib'])} MiB per live kernel)", "-", "-"))
    return out


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def print_table(report: dict) -> None:
    table = rows(report)
    widths = [max(len(r[i]) for r in [("metric", "value", "goal", "met"), *table])
              for i in range(4)]
    print()
    for line in [("metric", "value", "goal", "met"), tuple("-" * w for w in widths), *table]:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def parse_set(assignment: str) -> tuple[str, str]:
    key, sep, value = assignment.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"--set {assignment!r}: expected KEY=VALUE")
    return key.strip(), value


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                        help=f"{', '.join(SCENARIOS)} (default: all three)")
    parser.add_argument("--threads", type=int,
                        help="threads per scenario (default: burst 40, many 1000, density 300)")
    parser.add_argument("--budget", type=float, help="seconds per scenario before it stops "
                        "and reports (default: burst 300, many 1800, density 900)")
    parser.add_argument("--concurrency", type=int, default=16,
                        help="many, density: cells in flight (and connections)")
    parser.add_argument("--connections", type=int, default=8, help="burst: connections")
    parser.add_argument("--identities", type=int, default=1,
                        help="identities (tokens) the threads are spread over")
    parser.add_argument("--touches", type=int, default=3, help="many: rounds of touches")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="many: touches started per second (default 0: as fast as "
                             "--concurrency allows)")
    parser.add_argument("--pause", type=float, default=0.0,
                        help="many: seconds between rounds (idle time for the threads)")
    parser.add_argument("--rounds", type=int, default=1, help="burst: rounds of each gateway")
    parser.add_argument("--cell-wait", type=float, default=300.0,
                        help="seconds one cell may take before the client gives up on it")
    parser.add_argument("--set", type=parse_set, action="append", default=[],
                        metavar="KEY=VALUE", help="a setting for every gateway (repeatable)")
    parser.add_argument("--gateway-src", type=Path, help="run another checkout's gateway/ "
                        "(same venv): an A/B against this one in separate runs")
    parser.add_argument("--keep", action="store_true",
                        help="keep the gateways' logs and data directories")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    opts = parser.parse_args()
    opts.set = dict(opts.set)
    if unknown := set(opts.scenarios) - set(SCENARIOS):
        parser.error(f"unknown scenario(s) {sorted(unknown)}: choose from {SCENARIOS}")
    scenarios = opts.scenarios or list(SCENARIOS)
    gws = Gateways(opts)
    try:
        settings = effective(gws.settings(), gws.tokens_spec)
    except config.SettingsError as exc:
        shutil.rmtree(gws.tmp, ignore_errors=True)
        parser.error(str(exc))
    report: dict = {"machine": machine(), "load_start": load(),
                    "settings": shown(settings, gws.base),
                    "overrides": {"port": "free", "data_dir": str(gws.tmp),
                                  "tokens": f"{opts.identities} identities", **gws.base},
                    "all_settings": settings}
    if leaked := sorted(k for k in os.environ if k.startswith("GATEWAY_")):
        report["environment_settings"] = leaked
    log("settings:", json.dumps(report["settings"]))
    log("load at start:", report["load_start"])
    runners = {"burst": burst, "many": many, "density": density}
    for name in scenarios:
        local = argparse.Namespace(**vars(opts))
        local.threads = opts.threads or DEFAULT_THREADS[name]
        budget = opts.budget or DEFAULT_BUDGET[name]
        log(f"{name}: {local.threads} threads, budget {budget:.0f} s")
        try:
            report[name] = await runners[name](gws, local, budget)
        except Exception as exc:  # a scenario that broke: the others still run and report
            log(f"{name} failed: {exc!r}")
            report[name + "_error"] = repr(exc)
    report["load_end"] = load()
    if any(key.endswith("_error") for key in report) or opts.keep:
        log(f"gateway logs and data directories kept in {gws.tmp}")
    else:  # the kernels' working directories and caches: hundreds of MiB per gateway
        shutil.rmtree(gws.tmp, ignore_errors=True)
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    path = out / f"bench-density-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(rounded(report), indent=2, default=str))
    if opts.json:
        print(json.dumps(rounded(report), indent=2, default=str))
    else:
        print("settings:", json.dumps(report["settings"]))
        print_table(report)
        for key in (key for key in report if key.endswith("_error")):
            print(f"{key.removesuffix('_error')}: did not finish: {report[key]}")
        print(f"\nload average: {report['load_start']} at the start, {report['load_end']} "
              f"at the end; machine: {report['machine']['nproc']} cores, "
              f"{report['machine']['ram']}; raw results: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
