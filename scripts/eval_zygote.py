"""Evaluation (not shipped): what a fork-server ("zygote") would give, measured without a sandbox.

A zygote imports what a pooled kernel pre-imports (ipykernel, numpy, pandas, matplotlib with
the inline backend, the first figure drawn), calls ``gc.freeze()`` and forks children. Compared
with the same number of fresh interpreters doing the same imports, in the same run:

  start rate   children ready per second (fork → child signals ready) vs fresh processes
  idle PSS     proportional set size per idle child vs per fresh process

No namespace, uid, seccomp or filesystem view is applied here: this bounds what the fork could
give; README ("Kernel starts") says what isolation it would still need and why it is not shipped.

    .venv/bin/python scripts/eval_zygote.py [--children 8]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import time

PRELOAD = """
import io, ipykernel.kernelapp, numpy, pandas
import matplotlib
matplotlib.use("agg")
import matplotlib.pyplot as plt
f = plt.figure(figsize=(2, 2)); f.gca().plot([0, 1]); f.savefig(io.BytesIO(), format="png")
plt.close(f)
pandas.DataFrame({"k": numpy.arange(100) % 3, "v": numpy.arange(100)}).groupby("k").v.sum()
"""


def pss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        for line in rollup:
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def fresh(count: int) -> tuple[float, list[float]]:
    """``count`` fresh interpreters, started together: seconds until all are ready, PSS each."""
    began = time.monotonic()
    procs = [subprocess.Popen([sys.executable, "-c", PRELOAD + "\nimport sys\nprint(flush=True)"
                               "\nsys.stdin.read()"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE) for _ in range(count)]
    for proc in procs:
        proc.stdout.readline()
    took = time.monotonic() - began
    pss = [pss_mib(proc.pid) for proc in procs]
    for proc in procs:
        proc.stdin.close()
        proc.wait()
    return took, pss


def forked(count: int) -> tuple[float, list[float]]:
    """``count`` children of this (preloaded, frozen) process: seconds until all are ready."""
    children, readers = [], []
    began = time.monotonic()
    for _ in range(count):
        ready_r, ready_w = os.pipe()
        hold_r, hold_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            os.close(hold_w)
            for _, earlier in children:  # else an earlier child never sees its pipe close
                os.close(earlier)
            # What a kernel would touch first: a fresh namespace dict and a few objects.
            namespace = {"x": list(range(1000))}
            os.write(ready_w, b"1")
            os.read(hold_r, 1)
            del namespace
            os._exit(0)
        os.close(ready_w)
        os.close(hold_r)
        children.append((pid, hold_w))
        readers.append(ready_r)
    for reader in readers:
        os.read(reader, 1)
        os.close(reader)
    took = time.monotonic() - began
    pss = [pss_mib(pid) for pid, _ in children]
    for pid, hold in children:
        os.close(hold)
        os.waitpid(pid, 0)
    return took, pss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, default=8)
    opts = parser.parse_args()
    began = time.monotonic()
    exec(PRELOAD, {})
    preload = time.monotonic() - began
    gc.freeze()  # objects of the preload never move to a young generation: no CoW by the GC
    results = {"fresh": [], "forked": []}
    for _ in range(2):  # interleaved
        results["fresh"].append(fresh(opts.children))
        results["forked"].append(forked(opts.children))
    n = opts.children
    rows = {}
    for name, runs in results.items():
        rate = statistics.median(n / took for took, _ in runs)
        pss = statistics.median(p for _, pss in runs for p in pss)
        rows[name] = (rate, pss)
        print(f"{name:<7} start rate {rate:7.1f} per s   idle PSS {pss:6.1f} MiB  ({n} at once)")
    (fork_rate, fork_pss), (fresh_rate, fresh_pss) = rows["forked"], rows["fresh"]
    print(f"zygote preload {preload:.2f} s (once); forked/fresh: start rate "
          f"{fork_rate / fresh_rate:.1f}x, PSS {fork_pss / fresh_pss:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
