#!/usr/bin/env python3
"""Soak test: a bounded mix of normal and hostile executions against a real gateway.

By default it starts ``gateway serve`` itself as a subprocess on 127.0.0.1 (a fresh data
directory, removed afterwards); with ``--url``/``--token`` it drives a gateway that is already
running (``--pid`` then lets it read that gateway's memory).

Several worker threads (chat threads, each with its own kernel) spread over several websocket
connections pick jobs from a weighted mix: plain cells, pandas, plots, files, exceptions,
interrupts, timeouts, loops that ignore SIGINT, memory bombs, segfaults, ``os._exit``, output
floods, thread and process swarms, deep recursion, ``sys.exit``, restarts. Each job knows which
final states are acceptable. A side task keeps opening and closing connections and sends junk.

"Nothing lost": every execute must get exactly one final status (or error chunk); a missing one is
counted as lost, a second one as a duplicate.

    .venv/bin/python -m scripts.soak --minutes 10
    .venv/bin/python -m scripts.soak --minutes 2 --max-executions 500 --json soak.json
    .venv/bin/python -m scripts.soak --url ws://127.0.0.1:8765/ws --token T --pid 1234
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from gateway.client import GatewayClient, is_final
from gateway.net.admin import process_rss


# -- the job mix -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    name: str
    kind: str  # "normal" or "hostile"
    weight: int
    expect: frozenset[str]  # acceptable final states
    code: str = ""
    timeout: float | None = None  # the execute request's timeout
    action: str = "execute"  # execute | interrupt | restart
    files: int | None = None  # how many files a complete run must announce


def job(name, kind, weight, expect, code="", **kw) -> Job:
    return Job(name, kind, weight, frozenset(expect.split()), code, **kw)


JOBS = [
    job("counter", "normal", 14, "complete",
        "n = globals().get('n', 0) + 1\nprint('turn', n)"),
    job("pandas", "normal", 8, "complete",
        "import pandas as pd, numpy as np\n"
        "df = pd.DataFrame({'g': np.arange(1000) % 7, 'v': np.random.rand(1000)})\n"
        "print(df.groupby('g').v.mean().round(3).to_dict())"),
    job("plot", "normal", 5, "complete",
        "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()", files=1),
    job("csv_file", "normal", 5, "complete",
        "import pandas as pd\npd.DataFrame({'a': range(100)}).to_csv('soak.csv', index=False)",
        files=1),
    job("exception", "normal", 5, "error", "def f():\n    return 1 / 0\nf()"),
    job("short_sleep", "normal", 4, "complete", "import time\ntime.sleep(0.5)\nprint('ok')"),
    job("interrupt", "hostile", 3, "interrupted",
        "import time\nprint('sleeping', flush=True)\ntime.sleep(60)", action="interrupt"),
    # The first KeyboardInterrupt is swallowed: only the gateway's re-send stops the cell.
    job("interrupt_swallowed", "hostile", 1, "interrupted",
        "import time\nprint('sleeping', flush=True)\ntry:\n    time.sleep(60)\n"
        "except KeyboardInterrupt:\n    pass\ntime.sleep(60)", action="interrupt"),
    job("timeout_loop", "hostile", 2, "timeout", "while True:\n    pass", timeout=1),
    job("sigint_ignored", "hostile", 1, "timeout",
        "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass",
        timeout=1),
    job("memory_bomb", "hostile", 1, "killed",
        "blocks = []\nwhile True:\n    blocks.append(b'x' * 2**26)"),
    job("segfault", "hostile", 1, "killed", "import ctypes\nctypes.string_at(0)"),
    job("os_exit", "hostile", 1, "killed", "import os\nos._exit(7)"),
    job("output_flood", "hostile", 2, "complete", "print('x' * 5_000_000)"),
    job("line_flood", "hostile", 1, "complete", "for i in range(200_000):\n    print(i)"),
    job("thread_swarm", "hostile", 1, "complete",
        "import threading\nstop = threading.Event()\nn = 0\ntry:\n"
        "    for _ in range(10_000):\n"
        "        threading.Thread(target=stop.wait, daemon=True).start()\n        n += 1\n"
        "except RuntimeError:\n    pass\nstop.set()\nprint(n)"),
    job("process_swarm", "hostile", 1, "complete",
        "import subprocess\nkids = []\ntry:\n    for _ in range(1000):\n"
        "        kids.append(subprocess.Popen(['sleep', '30']))\nexcept OSError:\n    pass\n"
        "for k in kids:\n    k.kill()\n    k.wait()\nprint(len(kids))"),
    job("recursion", "hostile", 1, "error", "def r(n):\n    return r(n + 1)\nr(0)"),
    job("sys_exit", "hostile", 1, "error", "import sys\nsys.exit(2)"),
    job("background_daemon", "hostile", 1, "complete",
        "import subprocess\nsubprocess.Popen(['sleep', '31337'], start_new_session=True)"),
    job("restart", "hostile", 1, "restarted", action="restart"),
]


# -- bookkeeping -----------------------------------------------------------------------------
@dataclass
class Stats:
    started: float = field(default_factory=time.monotonic)
    executions: int = 0
    outcomes: Counter = field(default_factory=Counter)  # (job, state) -> n
    unexpected: list = field(default_factory=list)
    lost: list = field(default_factory=list)
    duplicates: list = field(default_factory=list)
    kernels_replaced: int = 0
    protocol_errors: Counter = field(default_factory=Counter)
    client_errors: Counter = field(default_factory=Counter)
    durations: dict = field(default_factory=lambda: defaultdict(list))
    churn_connections: int = 0
    churn_failures: int = 0
    rss_samples: list = field(default_factory=list)
    result_samples: list = field(default_factory=list)  # (seconds, retained result bytes)
    interrupts: int = 0
    lost_interrupts: list = field(default_factory=list)  # the cell did not end "interrupted"
    interrupts_with_restart: int = 0  # stopped only by the restart after interrupt_grace


def processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
            except OSError:
                pass
    return found


def http_get(url: str, token: str, timeout: float = 10) -> bytes:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


def retained_result_bytes(http: str, token: str) -> float | None:
    """What the finished calls' statuses kept for reconnecting clients hold: part of the RSS
    that grows with the number of calls until ``result_retention_bytes``."""
    try:
        text = http_get(http + "/metrics", token).decode()
    except OSError:
        return None
    found = re.search(r"^gateway_retained_result_bytes (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


def kernel_events(http: str, token: str) -> dict[str, float]:
    try:
        text = http_get(http + "/metrics", token).decode()
    except OSError:
        return {}
    return {m.group(1): float(m.group(2)) for m in re.finditer(
        r'^gateway_kernel_events(?:_total)?\{event="(\w+)"\} (\S+)$', text, re.MULTILINE)}


# -- the gateway under test ------------------------------------------------------------------
class OwnGateway:
    """``gateway serve`` as a subprocess with a fresh data directory."""

    def __init__(self, threads: int, memory_limit: int, extra_env: dict[str, str]) -> None:
        self.extra_env = extra_env
        self.data_dir = Path(tempfile.mkdtemp(prefix="gateway-soak-"))
        self.token = secrets.token_urlsafe(16)
        self.threads = threads
        self.memory_limit = memory_limit
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 180) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env["GATEWAY_TOKENS"] = f"soak:{self.token}"
        env.update(self.extra_env)
        self.log = open(self.data_dir / "gateway.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("gateway")), "serve", "--port", str(self.port),
             "--data-dir", str(self.data_dir / "data"), "--pool-size", "2",
             "--max-kernels", str(self.threads + 4), "--memory-limit", str(self.memory_limit)],
            stdout=subprocess.PIPE, stderr=self.log, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise SystemExit(f"gateway exited early; see {self.data_dir / 'gateway.log'}")
            if b"listening" in line:
                return
        raise SystemExit("gateway did not start in time")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self, keep: bool) -> dict:
        result: dict = {}
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                result["exit_code"] = self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                result["exit_code"] = self.proc.wait()
                result["killed"] = True
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and processes_with(str(self.data_dir)):
            time.sleep(0.2)
        result["leftover_processes"] = len(processes_with(str(self.data_dir)))
        result["leftover_sleep_31337"] = len(processes_with("sleep\0" + "31337"))
        self.log.close()
        if keep:
            result["data_dir"] = str(self.data_dir)
        else:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        return result


# -- load ------------------------------------------------------------------------------------
class Soak:
    def __init__(self, args, url: str, token: str, pid: int | None) -> None:
        self.args = args
        self.url = url
        self.http = url.replace("ws://", "http://").replace("wss://", "https://").rsplit("/", 1)[0]
        self.token = token
        self.pid = pid
        self.stats = Stats()
        self.rng = random.Random(args.seed)
        self.deadline = time.monotonic() + args.minutes * 60
        self.budget = args.max_executions or float("inf")
        self.clients: list[GatewayClient] = []
        self.run_id = secrets.token_hex(3)

    def _take(self) -> bool:
        if time.monotonic() >= self.deadline or self.stats.executions >= self.budget:
            return False
        self.stats.executions += 1
        return True

    def pick(self) -> Job:
        return self.rng.choices(JOBS, weights=[j.weight for j in JOBS])[0]

    async def run(self) -> None:
        self.clients = [await GatewayClient.connect(self.url, self.token)
                        for _ in range(self.args.connections)]
        rss_start = process_rss(self.pid)
        self.stats.rss_samples.append((0.0, rss_start))
        self.events_start = kernel_events(self.http, self.token)
        workers = [asyncio.create_task(self.worker(i)) for i in range(self.args.threads)]
        side = [asyncio.create_task(self.churn()), asyncio.create_task(self.sample())]
        await asyncio.gather(*workers)
        for task in side:
            task.cancel()
        await asyncio.sleep(1.0)  # a duplicate final would have arrived by now
        self.find_duplicates()
        await self.close_threads()
        self.events_end = kernel_events(self.http, self.token)
        self.rss_end = process_rss(self.pid)
        for client in self.clients:
            with contextlib.suppress(Exception):
                await client.close()

    async def worker(self, index: int) -> None:
        client = self.clients[index % len(self.clients)]
        thread = client.thread(f"soak-{self.run_id}-{index}")
        while self._take():
            chosen = self.pick()
            began = time.monotonic()
            try:
                state = await self.perform(client, thread, chosen)
            except Exception as exc:  # a client-side failure is reported, never fatal
                self.stats.client_errors[f"{chosen.name}: {type(exc).__name__}"] += 1
                state = f"client_error:{type(exc).__name__}"
            self.stats.durations[chosen.name].append(time.monotonic() - began)
            self.stats.outcomes[(chosen.name, state)] += 1
            if state not in chosen.expect:
                self.stats.unexpected.append({"job": chosen.name, "state": state,
                                              "thread": thread.id})

    async def perform(self, client: GatewayClient, thread, chosen: Job) -> str:
        if chosen.action == "restart":
            await thread.restart()
            envelope = await client.next_envelope(thread.id, None, timeout=120)
            chunk = envelope["chunk"]
            if chunk["type"] == "status" and chunk["content"].get("state") == "restarted":
                self.stats.kernels_replaced += 1
                return "restarted"
            return f"unexpected:{chunk['type']}"
        call = await thread.execute(chosen.code, timeout=chosen.timeout)
        wait = (chosen.timeout or 60) + 120
        envelopes = []
        deadline = time.monotonic() + wait
        interrupted = False
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stats.lost.append({"job": chosen.name, "thread": thread.id, "call": call})
                return "lost"
            try:
                envelope = await client.next_envelope(thread.id, call, timeout=remaining)
            except TimeoutError:
                continue
            envelopes.append(envelope)
            chunk = envelope["chunk"]
            if (chosen.action == "interrupt" and not interrupted
                    and chunk["type"] == "hot_code_output"):
                interrupted = True
                await thread.interrupt()
            if is_final(envelope):
                break
        chunk = envelopes[-1]["chunk"]
        if chunk["type"] == "error":
            self.stats.protocol_errors[chunk["content"]["code"]] += 1
            return f"error_chunk:{chunk['content']['code']}"
        status = chunk["content"]
        if status.get("kernel_restarted"):
            self.stats.kernels_replaced += 1
        state = status["state"]
        if chosen.action == "interrupt":
            self.stats.interrupts += 1
            if state != "interrupted":
                self.stats.lost_interrupts.append({"job": chosen.name, "state": state,
                                                   "thread": thread.id, "call": call})
            elif status.get("kernel_restarted"):
                self.stats.interrupts_with_restart += 1
        if state == "complete" and chosen.files is not None:
            announced = [e for e in envelopes
                         if e["chunk"]["type"] == "code_interpreter_stream"]
            if len(announced) != chosen.files:
                return f"complete_with_{len(announced)}_files"
        return state

    def find_duplicates(self) -> None:
        """Finals left unread after a call's own final: a second final for the same call."""
        lost = {(item["thread"], item["call"]) for item in self.stats.lost}
        for client in self.clients:
            for (thread_id, call_id), queue in client._calls.items():
                if call_id is None:
                    continue
                for envelope in list(queue._queue):
                    if is_final(envelope):
                        kind = "late" if (thread_id, call_id) in lost else "duplicate"
                        self.stats.duplicates.append({"thread": thread_id, "call": call_id,
                                                      "kind": kind})

    async def close_threads(self) -> None:
        for index in range(self.args.threads):
            client = self.clients[index % len(self.clients)]
            thread = client.thread(f"soak-{self.run_id}-{index}")
            with contextlib.suppress(Exception):
                await thread.close()
                await client.next_envelope(thread.id, None, timeout=60)

    async def churn(self) -> None:
        """Connections come and go; each sends junk and expects an error chunk back."""
        from websockets.asyncio.client import connect

        while True:
            await asyncio.sleep(self.rng.uniform(0.2, 1.0))
            try:
                async with connect(self.url, additional_headers={
                        "Authorization": f"Bearer {self.token}"}) as ws:
                    await ws.send(self.rng.choice(
                        ["{not json", "[]", '{"type": "bogus"}', '{"type": "execute"}']))
                    reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
                    if reply["chunk"]["type"] != "error":
                        self.stats.churn_failures += 1
                self.stats.churn_connections += 1
            except Exception:
                self.stats.churn_failures += 1

    async def sample(self) -> None:
        while True:
            await asyncio.sleep(5)
            at = round(time.monotonic() - self.stats.started, 1)
            self.stats.rss_samples.append((at, process_rss(self.pid)))
            held = await asyncio.to_thread(retained_result_bytes, self.http, self.token)
            if held is not None:
                self.stats.result_samples.append((at, held))


# -- report ----------------------------------------------------------------------------------
def mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:.1f} MiB"


def build_report(soak: Soak, gateway_result: dict) -> dict:
    s = soak.stats
    by_job: dict[str, dict] = {}
    for (name, state), count in sorted(s.outcomes.items()):
        by_job.setdefault(name, {"outcomes": {}, "expected": 0, "unexpected": 0})
        entry = by_job[name]
        entry["outcomes"][state] = count
        chosen = next(j for j in JOBS if j.name == name)
        entry["kind"] = chosen.kind
        entry["expect"] = sorted(chosen.expect)
        entry["expected" if state in chosen.expect else "unexpected"] += count
    for name, entry in by_job.items():
        durations = sorted(s.durations[name])
        entry["p50_s"] = round(statistics.median(durations), 3)
        entry["p95_s"] = round(durations[int(0.95 * (len(durations) - 1))], 3)
    rss = [v for _, v in s.rss_samples if v is not None]
    events = {k: soak.events_end.get(k, 0) - soak.events_start.get(k, 0)
              for k in soak.events_end}
    expected = sum(e["expected"] for e in by_job.values())
    unexpected = sum(e["unexpected"] for e in by_job.values())
    return {
        "elapsed_s": round(time.monotonic() - s.started, 1),
        "executions": s.executions,
        "expected": expected,
        "unexpected": unexpected,
        "lost": len(s.lost),
        "duplicates": len(s.duplicates),
        "kernels_replaced": s.kernels_replaced,
        "gateway_kernel_events": events,
        "protocol_error_chunks": dict(s.protocol_errors),
        "client_errors": dict(s.client_errors),
        "churn_connections": s.churn_connections,
        "churn_failures": s.churn_failures,
        "rss_start": rss[0] if rss else None,
        "rss_end": soak.rss_end,
        "rss_peak": max(rss) if rss else None,
        "rss_timeline_mib": [(t, round(v / 2**20, 1)) for t, v in s.rss_samples if v],
        "rss_at_minutes_mib": rss_at_minutes(s.rss_samples, soak.args.minutes),
        "retained_results_at_minutes_mib": rss_at_minutes(s.result_samples, soak.args.minutes),
        "interrupts": s.interrupts,
        "lost_interrupts": len(s.lost_interrupts),
        "interrupts_with_restart": s.interrupts_with_restart,
        "lost_interrupt_details": s.lost_interrupts[:50],
        "by_job": by_job,
        "unexpected_details": s.unexpected[:50],
        "lost_details": s.lost[:50],
        "duplicate_details": s.duplicates[:50],
        "gateway": gateway_result,
        "settings": {"minutes": soak.args.minutes, "max_executions": soak.args.max_executions,
                     "threads": soak.args.threads, "connections": soak.args.connections,
                     "seed": soak.args.seed},
        "ok": (unexpected == 0 and not s.lost and not s.duplicates and not s.client_errors
               and not s.lost_interrupts),
    }


def rss_at_minutes(samples: list, minutes: float) -> dict[str, float]:
    """The gateway's RSS (or another byte count), in MiB, at the start and every 10 minutes
    (the sample nearest each mark), and at the end: whether it levels off."""
    samples = [(t, v) for t, v in samples if v]
    if not samples:
        return {}
    marks = [m for m in range(0, int(minutes) + 1, 10)]
    found = {}
    for mark in marks:
        t, v = min(samples, key=lambda sample: abs(sample[0] - mark * 60))
        if abs(t - mark * 60) <= 30:
            found[f"{mark} min"] = round(v / 2**20, 1)
    found["end"] = round(samples[-1][1] / 2**20, 1)
    return found


def print_table(report: dict) -> None:
    print()
    print(f"{'job':18} {'kind':8} {'runs':>5} {'expected':>9} {'unexpected':>10} "
          f"{'p50 s':>7} {'p95 s':>7}  outcomes")
    print("-" * 100)
    for name, entry in sorted(report["by_job"].items(),
                              key=lambda item: (item[1]["kind"], item[0])):
        runs = entry["expected"] + entry["unexpected"]
        outcomes = ", ".join(f"{k}={v}" for k, v in entry["outcomes"].items())
        print(f"{name:18} {entry['kind']:8} {runs:5} {entry['expected']:9} "
              f"{entry['unexpected']:10} {entry['p50_s']:7.2f} {entry['p95_s']:7.2f}  {outcomes}")
    print("-" * 100)
    print(f"executions {report['executions']} in {report['elapsed_s']} s: "
          f"expected {report['expected']}, unexpected {report['unexpected']}, "
          f"lost {report['lost']}, duplicate finals {report['duplicates']}")
    print(f"kernels replaced (statuses) {report['kernels_replaced']}; "
          f"gateway kernel events {report['gateway_kernel_events']}")
    print(f"protocol error chunks {report['protocol_error_chunks']}; "
          f"client errors {report['client_errors']}")
    print(f"churn connections {report['churn_connections']} "
          f"(failures {report['churn_failures']})")
    print(f"gateway RSS start {mib(report['rss_start'])}, end {mib(report['rss_end'])}, "
          f"peak {mib(report['rss_peak'])}; by minute {report['rss_at_minutes_mib']}")
    print(f"of which finished calls' statuses kept for reconnecting clients (bounded by "
          f"result_retention_bytes), MiB: {report['retained_results_at_minutes_mib']}")
    print(f"user interrupts {report['interrupts']}: lost {report['lost_interrupts']}, "
          f"stopped only by a restart {report['interrupts_with_restart']}")
    if report["gateway"]:
        print(f"gateway shutdown {report['gateway']}")
    print("RESULT:", "OK" if report["ok"] else "PROBLEMS (see unexpected/lost/duplicates)")


async def main_async(args) -> int:
    own = None
    if args.url:
        url, token, pid = args.url, args.token, args.pid
        if not token:
            raise SystemExit("--token is required with --url")
    else:
        extra_env = dict(item.split("=", 1) for item in args.gateway_env)
        own = OwnGateway(args.threads, args.memory_limit, extra_env)
        print(f"starting gateway in {own.data_dir} ...", flush=True)
        await asyncio.to_thread(own.start)
        url, token, pid = f"ws://127.0.0.1:{own.port}/ws", own.token, own.pid
        print(f"gateway pid {pid} on {url}", flush=True)
    soak = Soak(args, url, token, pid)
    gateway_result: dict = {}
    try:
        await soak.run()
    finally:
        if own is not None:
            gateway_result = await asyncio.to_thread(own.stop, args.keep)
    report = build_report(soak, gateway_result)
    if own is not None and (gateway_result.get("leftover_processes")
                            or gateway_result.get("leftover_sleep_31337")):
        report["ok"] = False
    print_table(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
        print(f"JSON report: {args.json}")
    else:
        print(json.dumps({k: v for k, v in report.items()
                          if k not in ("by_job", "unexpected_details", "lost_details",
                                       "duplicate_details", "rss_timeline_mib",
                                       "lost_interrupt_details")}, default=str))
    return 0 if report["ok"] else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="stop starting jobs after")
    parser.add_argument("--max-executions", type=int, default=0, help="0: no limit")
    parser.add_argument("--threads", type=int, default=6, help="chat threads (kernels)")
    parser.add_argument("--connections", type=int, default=3, help="websocket connections")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--url", help="ws://HOST:PORT/ws of a running gateway")
    parser.add_argument("--token", help="its token (with --url)")
    parser.add_argument("--pid", type=int, help="its pid, to read its RSS (with --url)")
    parser.add_argument("--memory-limit", type=int, default=512 * 2**20,
                        help="per-kernel memory for the gateway this script starts")
    parser.add_argument("--gateway-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the gateway this script starts "
                             "(e.g. MALLOC_ARENA_MAX=2, GATEWAY_LOG_LEVEL=DEBUG)")
    parser.add_argument("--json", help="write the full report here")
    parser.add_argument("--keep", action="store_true", help="keep the data dir and log")
    args = parser.parse_args()
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
