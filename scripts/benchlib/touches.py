"""Threads that must keep their own variables: the cells that build and check them, what a
check's answer means, and how a run's times are summed up (pure: no I/O).

Every thread holds a DataFrame whose contents depend on the thread's number, a tag naming the
thread and a counter of the checks it ran, so a check run in the wrong namespace (another
thread's, an old snapshot's, an empty kernel's) says so in its one line of output."""

from __future__ import annotations

import math
from dataclasses import dataclass

from scripts.benchlib.stats import percentiles

ROWS = 327_680  # two 8-byte columns: 5 MiB of DataFrame per thread

# The outcomes of a check, as the report counts them.
OK = "ok"
MISMATCH = "mismatch"  # another thread's tag or data: namespaces mixed up
LOST = "lost"  # the variables are gone (NameError, or the restore skipped them)
STALE = "stale"  # its own data, but the counter is behind: an older snapshot came back
ERROR = "error"  # the cell did not run (refused, timed out, kernel trouble)
OUTCOMES = (OK, MISMATCH, LOST, STALE, ERROR)


def tag(number: int) -> str:
    return f"t{number}"


def checksum(number: int) -> int:
    """``df["i"].sum()`` of thread ``number``'s DataFrame."""
    return ROWS * (ROWS - 1) // 2 + ROWS * number


def build_cell(number: int) -> str:
    return (
        "import numpy as np, pandas as pd\n"
        f"bench_tag = {tag(number)!r}\n"
        f'df = pd.DataFrame({{"i": np.arange({ROWS}, dtype="int64") + {number},\n'
        f'                   "v": np.random.default_rng({number}).random({ROWS})}})\n'
        "bench_n = 0\n"
        'print(bench_tag, int(df["i"].sum()), bench_n)\n'
    )


CHECK_CELL = 'bench_n += 1\nprint(bench_tag, int(df["i"].sum()), bench_n)\n'


@dataclass
class Expected:
    """What thread ``number`` must answer: its tag and checksum, and a counter between
    ``done + 1`` (one more than its last answer) and ``sent`` (cells sent after the build,
    this one included: a cell the client gave up waiting for may still have run). The
    build cell answers 0."""

    number: int
    built: bool = False  # the build cell answered: from here on a NameError is a loss
    done: int = -1
    sent: int = -1

    def answered(self, outcome: str, output: str) -> None:
        """Record a cell's answer (after ``classify``)."""
        if outcome in (OK, STALE):
            self.built = True
            self.done = int(output.split()[2])


def classify(expected: Expected, state: str | None, output: str,
             error_name: str | None = None, skipped: list | None = None) -> str:
    """The outcome of one check of ``expected``'s thread."""
    if state != "complete":
        return LOST if error_name == "NameError" and expected.built else ERROR
    fields = output.split()
    if len(fields) != 3:
        return MISMATCH
    name, total, counter = fields
    if name != tag(expected.number) or total != str(checksum(expected.number)):
        return MISMATCH
    if skipped:
        return LOST
    try:
        n = int(counter)
    except ValueError:
        return MISMATCH
    if n > expected.sent:  # more checks than were ever sent: not this thread's counter
        return MISMATCH
    return OK if n >= expected.done + 1 else STALE


def restored_of(statuses: list[dict]) -> dict | None:
    """What a call's statuses say was restored into a new kernel (None: nothing was):
    ``{"names": ..., "skipped": [...]}``, read defensively (the details may grow)."""
    for status in reversed(statuses):
        restored = status.get("restored")
        if restored:
            return restored if isinstance(restored, dict) else {"names": restored, "skipped": []}
    return None


def summary(values: list[float]) -> dict:
    """n, p50, p99 and max (nearest rank; NaN when there is nothing)."""
    p50, p99 = percentiles(values, (50, 99))
    return {"n": len(values), "p50": p50, "p99": p99,
            "max": max(values) if values else math.nan}
