"""The snapshot file's container, as far as the gateway needs it: it never unpickles.

A snapshot is written and read *inside* the thread's sandboxed kernel
(``kernels/startup/20-snapshots.py``): ``MAGIC``, one pickle per user name, a JSON index, the
index's length in 8 bytes. The gateway only builds the empty snapshot (a ``restart``'s clean
slate) and reads the one-line reports the kernel prints.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import Settings

MAGIC = b"GWSNAP1\n"
TAKE_MARKER = "@gateway-snapshot-report "
RESTORE_MARKER = "@gateway-restore-report "
MAX_SKIPPED_REPORTED = 50  # names listed in a status; the count stays exact
MAX_REASON_CHARS = 200


def empty_snapshot() -> bytes:
    """A snapshot with no names: what a thread restores after an explicit ``restart``."""
    index = json.dumps({"version": 1, "created": time.time(), "modules": {}, "names": [],
                        "skipped": []}).encode()
    return MAGIC + index + len(index).to_bytes(8, "big")


def parse_report(output: str, marker: str) -> dict[str, Any] | None:
    """The kernel's one-line JSON report after ``marker`` in a silent cell's stdout, checked
    for shape (a cell of the thread may have tampered with the kernel-side code)."""
    for line in reversed(output.splitlines()):
        start = line.find(marker)
        if start < 0:
            continue
        try:
            report = json.loads(line[start + len(marker):])
        except ValueError:
            return None
        return _checked(report) if isinstance(report, dict) else None
    return None


def _checked(report: dict[str, Any]) -> dict[str, Any]:
    checked: dict[str, Any] = {}
    if isinstance(report.get("error"), str):
        checked["error"] = report["error"][:MAX_REASON_CHARS]
    names = report.get("names")
    checked["names"] = names if isinstance(names, int) and not isinstance(names, bool) else 0
    if isinstance(report.get("bytes"), int):
        checked["bytes"] = report["bytes"]
    skipped = []
    for item in report.get("skipped") or []:
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            reason = item.get("reason")
            skipped.append({"name": item["name"][:MAX_REASON_CHARS],
                            "reason": str(reason)[:MAX_REASON_CHARS]})
    checked["skipped"] = skipped[:MAX_SKIPPED_REPORTED]
    return checked


def restored_line(restored: dict[str, Any]) -> str:
    """One line for ``tool_output``: the model learns which names are gone and why."""
    line = f"[variables restored from the thread's last snapshot: {restored['names']} name(s)"
    skipped = restored.get("skipped") or []
    if skipped:
        listed = "; ".join(f"{item['name']} ({item['reason']})" for item in skipped[:10])
        more = f"; and {len(skipped) - 10} more" if len(skipped) > 10 else ""
        line += f"; NOT restored, define again if needed: {listed}{more}"
    return line + "]"


def snapshot_environment(settings: Settings) -> dict[str, str]:
    """The snapshot limits the kernel-side code reads at start-up (no secret)."""
    every_cell = settings.snapshot_every_cell_below if settings.snapshots else 0
    # Not GATEWAY_*: that prefix is the gateway's own settings, which never reach a kernel.
    return {"KERNEL_SNAPSHOT_EVERY_CELL_BELOW": str(every_cell),
            "KERNEL_SNAPSHOT_LIMIT": str(settings.snapshot_limit)}
