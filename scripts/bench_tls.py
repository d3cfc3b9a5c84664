"""What TLS costs: warm `1+1` round trip over wss:// against ws://, measured in the same run.

Two `gateway serve` subprocesses on 127.0.0.1, one plain and one with a certificate from a
throwaway CA (trustme, from the `test` extra), same settings otherwise. Rounds are interleaved
(plain then TLS, then TLS then plain, ...) so background load hits both alike. Also times the
connection set-up (TCP + TLS + websocket handshake), which TLS makes dearer.

    .venv/bin/python -m scripts.bench_tls [--rounds 300] [--connects 30]

Prints medians, p99 and the TLS/plain ratios, the gateway process's CPU per round trip (where
the TLS cost lands on the server side), and writes bench-results/bench-tls-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trustme

from gateway.client import GatewayClient, client_context

ROOT = Path(__file__).resolve().parent.parent

BIN = Path(sys.executable).parent
TOKEN = secrets.token_urlsafe(32)


def p99(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, math.ceil(0.99 * len(s)) - 1)]


class Served:
    """One `gateway serve` subprocess; its URL comes from the line it prints."""

    def __init__(self, name: str, tmp: Path, *args: str) -> None:
        self.name = name
        self.log = tmp / f"{name}.log"
        self.proc = subprocess.Popen(
            [str(BIN / "gateway"), "serve", "--port", "0", "--data-dir", str(tmp / name),
             "--pool-size", "1", *args],
            env={"PATH": "/usr/bin:/bin", "GATEWAY_TOKENS": f"bench:{TOKEN}"},
            stdout=subprocess.PIPE, stderr=self.log.open("w"), text=True,
            start_new_session=True)
        line = self.proc.stdout.readline()
        match = re.search(r"websocket (wss?://[^)]+)\)", line)
        if match is None:
            raise RuntimeError(f"{name} did not start: {line!r}\n{self.log.read_text()[-2000:]}")
        self.url = match.group(1).replace("0.0.0.0", "127.0.0.1")

    def cpu_ms(self) -> float:
        """CPU time (user + system) the gateway process has used so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def round_trip(thread) -> float:
    began = time.perf_counter()
    result = await thread.run("1+1")
    elapsed = (time.perf_counter() - began) * 1000
    if result.output != "2\n":
        raise RuntimeError(f"unexpected result: {result.envelopes}")
    return elapsed


async def connect_time(url: str, context) -> float:
    began = time.perf_counter()
    client = await GatewayClient.connect(url, TOKEN, ssl=context)
    elapsed = (time.perf_counter() - began) * 1000
    await client.close()
    return elapsed


async def measure(plain: Served, secure: Served, context, rounds: int, connects: int) -> dict:
    a = await GatewayClient.connect(plain.url, TOKEN)
    b = await GatewayClient.connect(secure.url, TOKEN, ssl=context)
    threads = {"plain": a.thread("bench-plain"), "tls": b.thread("bench-tls")}
    for thread in threads.values():  # warm: lease the kernel, run its first cells
        for _ in range(20):
            await round_trip(thread)
    samples: dict[str, list[float]] = {"plain": [], "tls": []}
    servers = {"plain": plain, "tls": secure}
    cpu = {"plain": 0.0, "tls": 0.0}
    for i in range(rounds):
        order = ("plain", "tls") if i % 2 == 0 else ("tls", "plain")
        for name in order:
            before = servers[name].cpu_ms()
            samples[name].append(await round_trip(threads[name]))
            cpu[name] += servers[name].cpu_ms() - before
    handshakes: dict[str, list[float]] = {"plain": [], "tls": []}
    for i in range(connects):
        order = ("plain", "tls") if i % 2 == 0 else ("tls", "plain")
        for name in order:
            url, ctx = (plain.url, None) if name == "plain" else (secure.url, context)
            handshakes[name].append(await connect_time(url, ctx))
    await a.close()
    await b.close()
    return {"rtt_ms": samples, "connect_ms": handshakes,
            "gateway_cpu_ms_per_rtt": {name: total / rounds for name, total in cpu.items()}}


def summary(data: dict) -> dict:
    out = {}
    for kind, samples in data.items():
        if kind == "gateway_cpu_ms_per_rtt":
            out[kind] = samples
            continue
        row = {name: {"median": statistics.median(xs), "p99": p99(xs), "n": len(xs)}
               for name, xs in samples.items()}
        row["ratio_median"] = row["tls"]["median"] / row["plain"]["median"]
        out[kind] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--connects", type=int, default=30)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-tls-"))
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file, ca_file = tmp / "cert.pem", tmp / "key.pem", tmp / "ca.pem"
    cert_file.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    servers = []
    try:
        servers.append(Served("plain", tmp))
        servers.append(Served("tls", tmp, "--tls-cert", str(cert_file),
                              "--tls-key", str(key_file)))
        data = asyncio.run(measure(*servers, client_context(str(ca_file)), args.rounds,
                                   args.connects))
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    result = summary(data)
    for kind, row in result.items():
        if kind == "gateway_cpu_ms_per_rtt":
            print(f"gateway CPU per round trip: plain {row['plain']:.2f} ms, tls "
                  f"{row['tls']:.2f} ms (clock ticks of 10 ms, averaged)")
            continue
        print(f"{kind:11} plain median {row['plain']['median']:7.2f} ms  p99 "
              f"{row['plain']['p99']:7.2f} | tls median {row['tls']['median']:7.2f} ms  p99 "
              f"{row['tls']['p99']:7.2f} | ratio {row['ratio_median']:.3f}  "
              f"(n={row['tls']['n']} each)")
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    path = out / time.strftime("bench-tls-%Y%m%d-%H%M%S.json")
    path.write_text(json.dumps({"summary": result, "raw": data}, indent=1))
    print(f"raw samples: {path}")


if __name__ == "__main__":
    main()
