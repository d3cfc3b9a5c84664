"""What the gVisor tier costs: bubblewrap (forked and exec'd kernels) against gVisor, one run.

One in-process gateway per sandbox, one after the other, same machine, same minute:

  start        a kernel launched to its kernel_info reply (and one empty cell), median of N
  1+1          warm round trip through the gateway's websocket, median of 50
  numpy        first cell of a fresh thread: import numpy, 500x500 matmul (then the same again;
               the kernels' startup imports numpy, pandas and matplotlib: "start" pays for it)
  small files  2,000 files of 1 KiB written, read back and removed, timed inside the cell
  PSS          the kernel's host processes (its cgroup) after the numpy cell, MiB; and the
               cgroup's memory use (for gVisor: the sentry, gofer and the kernel's memory)

Needs root; without runsc the gvisor row is skipped (said so). Writes docs/bench-gvisor-*.json.

    .venv/bin/python -m scripts.bench_gvisor [--starts 3] [--out docs/bench-gvisor-X.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from gateway.execution.kernel import Kernel
from scripts.benchlib.embedded import local_settings, start_local
from scripts.benchlib.procs import proc_pss

MiB = 2**20
SANDBOXES = {"bwrap (fork)": {"sandbox": "bwrap", "kernel_start": "fork"},
             "bwrap (exec)": {"sandbox": "bwrap", "kernel_start": "exec"},
             "gvisor (ptrace)": {"sandbox": "gvisor", "gvisor_platform": "ptrace"}}
NUMPY_CELL = ("import time\nbegan = time.perf_counter()\nimport numpy as np\n"
              "a = np.random.default_rng(0).random((500, 500))\n"
              "print(round(float((a @ a).sum())))\nprint((time.perf_counter() - began) * 1000)")
FILES_CELL = """
import os, time
began = time.perf_counter()
os.makedirs('small', exist_ok=True)
for i in range(2000):
    with open(f'small/{i}.txt', 'wb') as f:
        f.write(b'x' * 1024)
total = 0
for i in range(2000):
    with open(f'small/{i}.txt', 'rb') as f:
        total += len(f.read())
for i in range(2000):
    os.remove(f'small/{i}.txt')
os.rmdir('small')
print(total, (time.perf_counter() - began) * 1000)
"""


async def start_times(gateway, n: int) -> list[float]:
    """Kernel launch to kernel_info (plus one empty cell: Kernel.start ends with it)."""
    pool = gateway.pool
    times = []
    for _ in range(n):
        workdir = await pool._new_workdir()
        kernel = Kernel(pool._spec(workdir), pool.host, gateway.settings.kernels_dir,
                        gateway.settings.kernel_python, warm_up="pass", zygote=pool.zygote)
        began = time.perf_counter()
        try:
            await kernel.start(gateway.settings.kernel_start_timeout)
            times.append(time.perf_counter() - began)
        finally:
            await kernel.shutdown()
            await asyncio.to_thread(pool.workdirs.remove, workdir)
    return times


def kernel_pss(gateway, kernel_id: str) -> tuple[float | None, float | None]:
    cgroups = gateway.host.cgroups
    if cgroups is None:
        return None, None
    pss = sum(proc_pss(pid) for pid in cgroups.processes(kernel_id)) / MiB
    usage = cgroups.memory_usage(kernel_id)
    return round(pss, 1), round(usage / MiB, 1) if usage is not None else None


async def settled(gateway, guard: float = 300.0) -> None:
    """Until a warm kernel waits in the pool again: no start competes with the measurement."""
    deadline = time.monotonic() + guard
    while not gateway.readiness()["ready"] or gateway.pool.snapshot()["starting"]:
        if time.monotonic() > deadline:
            raise TimeoutError(gateway.readiness()["reason"])
        await asyncio.sleep(0.2)


async def measure(name: str, overrides: dict, root: Path, starts: int) -> dict:
    slug = "".join(c if c.isalnum() else "-" for c in name).strip("-")
    settings = local_settings(root / slug, pool_size=1, **overrides)
    local = await start_local(settings)
    # The machine may be shared: its load beside each row says how far to trust it.
    row: dict = {"sandbox": name, "load_before": round(os.getloadavg()[0], 1)}
    try:
        row["start_s"] = round(statistics.median(await start_times(local.gateway, starts)), 3)
        async with await local.client() as client:
            warm = client.thread("warm")
            await warm.run("1+1")
            await settled(local.gateway)
            for _ in range(10):
                await warm.run("1+1")
            trips = []
            for _ in range(50):
                began = time.perf_counter()
                done = await warm.run("1+1")
                trips.append((time.perf_counter() - began) * 1000)
                assert done.output == "2\n", done.status
            row["rtt_1plus1_ms"] = round(statistics.median(trips), 2)
            await settled(local.gateway)
            fresh = client.thread("numpy")
            first = await fresh.run(NUMPY_CELL)
            again = await fresh.run(NUMPY_CELL)
            assert first.state == again.state == "complete", first.output
            row["numpy_first_ms"] = round(float(first.output.split()[-1]), 1)
            row["numpy_again_ms"] = round(float(again.output.split()[-1]), 1)
            files = await fresh.run(FILES_CELL)
            assert files.state == "complete", files.output
            row["small_files_ms"] = round(float(files.output.split()[-1]), 1)
            kernel = next(s.kernel for s in local.gateway.threads.values()
                          if s.client_thread_id == "numpy")
            row["pss_mib"], row["cgroup_mib"] = kernel_pss(local.gateway, kernel.id)
            row["load_after"] = round(os.getloadavg()[0], 1)
    finally:
        await local.close()
    return row


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=3)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    parser.add_argument("--out", type=Path, default=Path("docs") / f"bench-gvisor-{stamp}.json")
    opts = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-gvisor-"))
    rows = []
    try:
        for name, overrides in SANDBOXES.items():
            if overrides["sandbox"] == "gvisor" and not shutil.which("runsc"):
                print(f"{name}: skipped, runsc is not installed (Debian package 'runsc')")
                continue
            rows.append(await measure(name, overrides, root, opts.starts))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"\n{'sandbox':<17}{'start s':>9}{'1+1 ms':>9}{'numpy ms':>10}{'again':>8}"
          f"{'files ms':>10}{'PSS MiB':>9}{'cgroup':>8}")
    for row in rows:
        print(f"{row['sandbox']:<17}{row['start_s']:>9}{row['rtt_1plus1_ms']:>9}"
              f"{row['numpy_first_ms']:>10}{row['numpy_again_ms']:>8}{row['small_files_ms']:>10}"
              f"{row['pss_mib']!s:>9}{row['cgroup_mib']!s:>8}")
    opts.out.write_text(json.dumps({"when": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                    "rows": rows}, indent=1) + "\n")
    print(f"written: {opts.out}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
