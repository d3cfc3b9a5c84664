"""What namespace snapshots cost: snapshot and restore of ~100 MB of DataFrames and arrays,
and per-cell snapshots on the warm `1+1` round trip, against baselines from the same run.

Two in-process gateways on 127.0.0.1 (real sandboxed kernels), identical except that one has
snapshots off. Their `1+1` rounds are interleaved so background load hits both alike.

    .venv/bin/python -m scripts.bench_snapshots [--rounds 200] [--repeats 3] [--mib 100]

Reports:
- snapshot: a full snapshot of the 100 MB namespace (pickled in the kernel, stored in the file
  store), and restore: loading it into a new kernel (placed in its working directory, then
  unpickled there); baseline: the first cell of a thread that was hibernated, with
  snapshots off (lease a warm kernel + run `1+1`), so "restore / baseline" is what a restore
  adds to that first cell.
- per-cell: warm `1+1` with snapshots on / off, nothing changed (the goal: <= 5 % more), and
  a cell that changes a small namespace each time (a real per-cell snapshot).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from gateway.config import MiB
from gateway.threads import snapshots
from scripts.benchlib.embedded import local_settings, session_of, start_local

BUILD = """
import numpy as np, pandas as pd
rows = {mib} * 2**20 // 48  # 2 frames x 4 columns + 4 arrays, each rows // 2 float64s
frames = [pd.DataFrame({{c: np.random.default_rng(i).random(rows // 2) for c in "abcd"}})
          for i in range(2)]
arrays = [np.random.default_rng(7 + i).random(rows // 2) for i in range(4)]
total = sum(f.memory_usage().sum() for f in frames) + sum(a.nbytes for a in arrays)
print(round(total / 2**20, 1), "MiB")
"""

# The per-cell hook's own cost when nothing changed, timed inside the kernel (load on the
# machine moves round trips by more than this).
HOOK_COST = """
import time as _time, types as _types
_result = _types.SimpleNamespace(info=_types.SimpleNamespace(store_history=True))
_hook = [c for c in get_ipython().events.callbacks["post_run_cell"]
         if c.__name__ == "after_cell"][0]
_began = _time.perf_counter()
for _n in range(1000):
    _hook(_result)
print(round((_time.perf_counter() - _began) / 1000 * 1e6, 1))
"""


async def timed(coro) -> tuple[float, object]:
    began = time.perf_counter()
    result = await coro
    return time.perf_counter() - began, result


async def released(session, gateway) -> None:
    """Release the thread's kernel, then wait for a warm one: the next cell leases at once
    (kernel start times are not what is measured)."""
    await session.hibernate("requested", wait=True)
    assert session.kernel is None
    while gateway.pool.snapshot()["warm"] < 1:
        await asyncio.sleep(0.1)


async def big_namespace(run_on, mib: int, repeats: int) -> dict:
    """Snapshot and restore times of ``mib`` MiB, and the released-thread baseline."""
    on, off = run_on
    restores: list[float] = []
    original = snapshots.ThreadSnapshots.restore

    async def timed_restore(self, kernel):
        spent, result = await timed(original(self, kernel))
        if result is not None:
            restores.append(spent)
        return result

    snapshots.ThreadSnapshots.restore = timed_restore
    takes, baseline, names = [], [], None
    try:
        async with await on.client() as client, await off.client() as plain:
            thread, cold = client.thread("big"), plain.thread("cold")
            built = await thread.run(BUILD.format(mib=mib), wait=600)
            print("namespace:", built.output.strip())
            await cold.run("x = 1")
            session, cold_session = session_of(on.gateway, "big"), session_of(off.gateway, "cold")
            for round_number in range(repeats):
                # A changed value each round, so every snapshot is written and stored anew.
                await thread.run(f"arrays[0][0] = {round_number}")
                spent, report = await timed(session.snapshot("benchmark"))
                assert report.get("stored"), report
                takes.append(spent)
                await released(session, on.gateway)
                after = await thread.run("print(len(frames), len(arrays))", wait=600)
                assert after.output == "2 4\n", after.status
                names = after.status["restored"]
                await released(cold_session, off.gateway)
                spent, _ = await timed(cold.run("1+1"))
                baseline.append(spent)
    finally:
        snapshots.ThreadSnapshots.restore = original
    stored = snapshots.latest_snapshot(on.gateway.store, "big", "alice")
    return {"snapshot_s": takes, "restore_s": restores, "baseline_first_cell_s": baseline,
            "snapshot_bytes": stored.size if stored else None, "restored": names}


async def warm_rounds(run_on, rounds: int) -> dict:
    """Interleaved warm round trips: nothing changed, and a small namespace changed."""
    on, off = run_on
    times: dict[str, list[float]] = {"on": [], "off": [], "on_changed": [], "off_changed": []}
    async with await on.client() as a, await off.client() as b:
        threads = {"on": a.thread("warm"), "off": b.thread("warm")}
        for thread in threads.values():
            await thread.run("small = {i: str(i) for i in range(1000)}\ncounter = 0")
            await thread.run("1+1")
        # Apart: the store write of a changed cell's snapshot delays the cell after it.
        for suffix, code in (("", "1+1"), ("_changed", "counter += 1")):
            for number in range(rounds):
                for name in ("on", "off") if number % 2 else ("off", "on"):
                    spent, result = await timed(threads[name].run(code))
                    assert result.state == "complete"
                    times[name + suffix].append(spent)
    async with await on.client() as a:
        times["hook_us"] = float((await a.thread("warm").run(HOOK_COST)).output)
    return times


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.2f} ms"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mib", type=int, default=100)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-snapshots-"))
    common = dict(pool_size=1, memory_limit=2048 * MiB, disk_limit=1024 * MiB)
    on = await start_local(local_settings(root / "on", **common))
    off = await start_local(local_settings(root / "off", snapshots=False, **common))
    try:
        # The warm rounds first: a leased 100 MB kernel must not weigh on them.
        warm = await warm_rounds((on, off), args.rounds)
        big = await big_namespace((on, off), args.mib, args.repeats)
    finally:
        await on.close()
        await off.close()
        shutil.rmtree(root, ignore_errors=True)  # several 100 MiB snapshots
    snap, restore = statistics.median(big["snapshot_s"]), statistics.median(big["restore_s"])
    base = statistics.median(big["baseline_first_cell_s"])
    print(f"snapshot of {args.mib} MiB: {ms(big['snapshot_s'])} (median of {args.repeats}), "
          f"{big['snapshot_bytes'] / 2**20:.1f} MiB stored")
    print(f"restore into a new kernel: {ms(big['restore_s'])}; first cell of a released "
          f"thread without snapshots (baseline): {ms(big['baseline_first_cell_s'])}; "
          f"restore / baseline = {restore / base:.2f}; snapshot / baseline = {snap / base:.2f}")
    print(f"restored: {big['restored']}")
    ratio = statistics.median(warm["on"]) / statistics.median(warm["off"])
    changed = statistics.median(warm["on_changed"]) / statistics.median(warm["off_changed"])
    print(f"warm 1+1, nothing changed: on {ms(warm['on'])}, off {ms(warm['off'])}, "
          f"on/off = {ratio:.3f}")
    print(f"per-cell hook in the kernel, nothing changed: {warm['hook_us']} us per cell")
    print(f"warm `counter += 1` (1000-entry dict in the namespace, snapshot after every cell): "
          f"on {ms(warm['on_changed'])}, off {ms(warm['off_changed'])}, on/off = {changed:.3f}")


if __name__ == "__main__":
    asyncio.run(main())
