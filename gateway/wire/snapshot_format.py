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
    state = report.get("state")
    if isinstance(state, dict):  # what a restore brought back besides names
        back: dict[str, Any] = {}
        if isinstance(state.get("cwd"), str):
            back["cwd"] = state["cwd"][:MAX_REASON_CHARS]
        if isinstance(state.get("environment"), list):
            back["environment"] = [str(name)[:MAX_REASON_CHARS]
                                   for name in state["environment"][:MAX_SKIPPED_REPORTED]]
        count = state.get("execution_count")
        if isinstance(count, int) and not isinstance(count, bool):
            back["execution_count"] = count
        checked["state"] = back
    return checked


def restored_line(restored: dict[str, Any]) -> str:
    """One line for ``tool_output``: the model learns which names are gone and why."""
    if restored.get("failed"):
        return (f"[the thread's variables could NOT be restored ({restored['failed']}); this "
                "kernel starts clean: define them again]")
    line = f"[variables restored from the thread's last snapshot: {restored['names']} name(s)"
    if restored.get("files"):
        line += f"; {restored['files']} file(s) back in /mnt/data"
    state = restored.get("state") or {}
    if "cwd" in state:
        line += f"; working directory {state['cwd']}"
    if state.get("environment"):
        line += f"; environment variable(s) {', '.join(state['environment'][:10])}"
    missing = restored.get("files_missing") or []
    if missing:
        line += f"; files NOT restored: {', '.join(missing[:10])}"
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
