"""Sizes and durations as people write them: ``512MiB``, ``10MB``, ``90s``, ``15m``, ``2h``.

No I/O. Sizes are whole numbers of a unit (``1.5GiB`` is refused: say ``1536MiB``), with SI
(kB = 1000 bytes) and IEC (KiB = 1024 bytes) units kept apart. Durations may be fractional.
Neither may be negative. Units are matched without regard to case.
"""

from __future__ import annotations

import re

SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
              "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
DURATION_UNITS = {"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

_DIGITS = r"[0-9]+(?:_[0-9]+)*"  # 1_000_000 as in Python and TOML
_SIZE = re.compile(rf"({_DIGITS})\s*([a-z]*)", re.IGNORECASE)
_DURATION = re.compile(rf"({_DIGITS}(?:\.[0-9]+)?)\s*([a-z]*)", re.IGNORECASE)

SIZE_HELP = "bytes, or a whole number with B, kB, MB, GB, TB, KiB, MiB, GiB or TiB (e.g. 512MiB)"
DURATION_HELP = "seconds, or a number with ms, s, m, h or d (e.g. 90s, 15m, 2h)"


def parse_size(text: str) -> int:
    """``"512MiB"`` -> 536870912; ``"10MB"`` -> 10000000; ``"4096"`` -> 4096."""
    match = _SIZE.fullmatch(text.strip())
    if match is None or match[2].lower() not in SIZE_UNITS:
        raise ValueError(f"{text!r} is not a size: {SIZE_HELP}")
    return int(match[1]) * SIZE_UNITS[match[2].lower()]


def parse_duration(text: str) -> float:
    """``"15m"`` -> 900.0; ``"1.5h"`` -> 5400.0; ``"90"`` -> 90.0 (seconds)."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or match[2].lower() not in DURATION_UNITS:
        raise ValueError(f"{text!r} is not a duration: {DURATION_HELP}")
    return float(match[1]) * DURATION_UNITS[match[2].lower()]


def describe_size(size: int) -> str:
    """``1073741824`` -> ``"1 GiB"``: the largest IEC unit that divides it, else bytes."""
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        if size and size % SIZE_UNITS[unit.lower()] == 0:
            return f"{size // SIZE_UNITS[unit.lower()]} {unit}"
    return f"{size} bytes"
