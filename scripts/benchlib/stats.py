"""Statistics, result rows and their table: what every benchmark reports."""

from __future__ import annotations

import contextlib
import math
import os
import platform
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path


# -- statistics and rows ---------------------------------------------------------------------
def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else math.nan


def p99(xs: list[float]) -> float:
    """Nearest-rank 99th percentile (the maximum for fewer than 100 samples)."""
    if not xs:
        return math.nan
    s = sorted(xs)
    return s[min(len(s) - 1, math.ceil(0.99 * len(s)) - 1)]


def percentiles(xs: list[float], ps: tuple[int, ...]) -> list[float]:
    """Nearest-rank percentiles (0 = minimum, 100 = maximum)."""
    if not xs:
        return [math.nan for _ in ps]
    s = sorted(xs)
    return [s[min(len(s) - 1, max(0, math.ceil(p / 100 * len(s)) - 1))] for p in ps]


@dataclass
class Row:
    name: str
    unit: str
    median: float | None
    p99: float | None
    n: int
    baseline: str | None = None
    baseline_median: float | None = None
    ratio: float | None = None
    ratio_def: str | None = None  # how ratio is computed
    goal: str | None = None  # e.g. "<= 1.0" (applies to ratio); None = reported only
    met: bool | None = None
    notes: dict = field(default_factory=dict)


def judge(ratio: float | None, goal: str | None) -> bool | None:
    if ratio is None or goal is None or math.isnan(ratio):
        return None
    op, value = goal.split()
    return ratio <= float(value) if op == "<=" else ratio >= float(value)


def ms(seconds: list[float]) -> list[float]:
    return [s * 1000 for s in seconds]


def latency_row(name: str, values_ms: list[float], *, baseline: str | None = None,
                baseline_ms: list[float] | None = None, goal: str | None = None,
                inverse: bool = False, unit: str = "ms", **notes) -> Row:
    """Ratio = median / baseline median (or baseline / median with ``inverse``)."""
    m = median(values_ms)
    b = median(baseline_ms) if baseline_ms else None
    ratio = None
    if b:
        ratio = (b / m) if inverse else (m / b)
    ratio_def = None
    if baseline:
        ratio_def = f"{baseline} / this" if inverse else f"this / {baseline}"
    return Row(name, unit, m, p99(values_ms), len(values_ms), baseline, b, ratio, ratio_def,
               goal, judge(ratio, goal), notes)


# -- machine and output ----------------------------------------------------------------------
def machine() -> dict:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError):
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        mem = f"{kb / 2**20:.1f} GiB"
    return {"nproc": os.cpu_count(), "cpu": cpu, "ram": mem, "kernel": platform.release(),
            "python": platform.python_version(), "loadavg_start": os.getloadavg()}


def fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def print_table(rows: list[Row]) -> None:
    header = ["name", "unit", "median", "p99", "n", "baseline med", "ratio", "goal", "met"]
    lines = [[r.name, r.unit, fmt(r.median), fmt(r.p99), str(r.n), fmt(r.baseline_median),
              fmt(r.ratio), r.goal or "-",
              {True: "yes", False: "NO", None: "-"}[r.met]] for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h)
              for i, h in enumerate(header)]
    print()
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for line in lines:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)))


def rounded(value):
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 4)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value

