"""The gateway's side of the snapshot format: pure, no kernel."""

from __future__ import annotations

import json
import re
from pathlib import Path

from gateway.wire.snapshot_format import (
    MAGIC,
    RESTORE_MARKER,
    TAKE_MARKER,
    empty_snapshot,
    parse_report,
    restored_line,
)


def test_empty_snapshot_has_the_kernel_side_layout():
    data = empty_snapshot()
    assert data.startswith(MAGIC)
    length = int.from_bytes(data[-8:], "big")
    index = json.loads(data[-8 - length:-8])
    assert index["names"] == [] and index["modules"] == {} and index["skipped"] == []
    assert len(MAGIC) + length + 8 == len(data)


def test_markers_match_the_kernel_side_code():
    source = (Path(__file__).parents[2] / "kernels/startup/20-snapshots.py").read_text()
    assert f'print("{TAKE_MARKER}"' in source and f'print("{RESTORE_MARKER}"' in source
    assert 'magic = b"' + MAGIC.decode().replace("\n", "\\n") + '"' in source


def test_report_is_found_after_other_output_and_checked():
    output = ("hello from a __reduce__\n" + RESTORE_MARKER
              + json.dumps({"names": 3, "skipped": [{"name": "g", "reason": "generator"},
                                                     "junk", {"name": 5}]}) + "\n")
    assert parse_report(output, RESTORE_MARKER) == {
        "names": 3, "skipped": [{"name": "g", "reason": "generator"}]}
    assert parse_report(output, TAKE_MARKER) is None
    assert parse_report(RESTORE_MARKER + "{not json", RESTORE_MARKER) is None
    forged = parse_report(RESTORE_MARKER + json.dumps({"names": True, "skipped": "x" * 9}),
                          RESTORE_MARKER)
    assert forged == {"names": 0, "skipped": []}


def test_report_bounds_what_a_tampered_kernel_can_make_the_status_carry():
    many = [{"name": "n" * 10_000, "reason": "r" * 10_000}] * 1000
    report = parse_report(RESTORE_MARKER + json.dumps({"names": 1, "skipped": many}),
                          RESTORE_MARKER)
    assert len(report["skipped"]) == 50
    assert all(len(i["name"]) <= 200 and len(i["reason"]) <= 200 for i in report["skipped"])


def test_restored_line_names_what_is_gone_in_one_line():
    line = restored_line({"names": 4, "skipped": [{"name": "g", "reason": "TypeError: no"}]})
    assert "\n" not in line
    assert "4 name(s)" in line and "g (TypeError: no)" in line
    assert "NOT restored" not in restored_line({"names": 2, "skipped": []})
    many = restored_line({"names": 0, "skipped": [{"name": f"v{i}", "reason": "x"}
                                                  for i in range(15)]})
    assert re.search(r"and 5 more", many) and "v10" not in many


def test_the_gateway_process_never_loads_a_pickle():
    """Only kernels unpickle snapshots; nothing in the gateway package may (the kernel-side
    code lives in kernels/, outside it)."""
    package = Path(__file__).parents[2] / "gateway"
    offenders = [str(path) for path in package.rglob("*.py")
                 if re.search(r"\b(import (cloud)?pickle|from (cloud)?pickle|"
                              r"import dill|marshal\.loads?)\b", path.read_text())]
    assert offenders == []


def test_the_state_a_restore_brought_back_is_checked_and_bounded():
    report = parse_report(RESTORE_MARKER + json.dumps({
        "names": 2, "skipped": [],
        "state": {"cwd": "/mnt/data/" + "d" * 500, "environment": ["A", 7] + ["B"] * 100,
                  "execution_count": 12, "extra": "dropped"}}), RESTORE_MARKER)
    state = report["state"]
    assert set(state) == {"cwd", "environment", "execution_count"}
    assert len(state["cwd"]) == 200 and state["environment"][:2] == ["A", "7"]
    assert len(state["environment"]) == 50 and state["execution_count"] == 12
    forged = parse_report(RESTORE_MARKER + json.dumps({
        "names": 1, "skipped": [], "state": {"cwd": 5, "execution_count": True}}),
        RESTORE_MARKER)
    assert forged["state"] == {}


def test_restored_line_says_what_came_back_besides_names():
    line = restored_line({"names": 3, "skipped": [], "files": 2, "files_missing": ["big.bin"],
                          "state": {"cwd": "/mnt/data/sub", "environment": ["MY_VAR"]}})
    assert "\n" not in line
    assert "2 file(s) back in /mnt/data" in line and "working directory /mnt/data/sub" in line
    assert "MY_VAR" in line and "files NOT restored: big.bin" in line


def test_a_failed_restore_says_the_kernel_is_clean():
    line = restored_line({"names": 0, "failed": "snapshot unreadable: ValueError: not a "
                                                "snapshot file",
                          "skipped": [{"name": "*", "reason": "snapshot unreadable"}]})
    assert line.startswith("[the thread's variables could NOT be restored (snapshot unreadable")
    assert "starts clean" in line and "\n" not in line
