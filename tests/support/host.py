"""The host as tests see it: its processes, its platform, and kernel code racing the gateway."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest


def host_processes(marker: bytes) -> list[int]:
    """Host pids (not this one) whose command line (NUL-separated argv) contains ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if marker in cmdline:
            found.append(int(entry))
    return found


needs_linux = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                 reason="bubblewrap and cgroups exist only on Linux")


SWAP_RACE_CELL = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
RENAME_EXCHANGE, AT_FDCWD = 2, -100
os.makedirs('/mnt/data/x', exist_ok=True)
pairs = []
for i in range(20):
    regular, other = f'/mnt/data/x/f{{i}}.txt', f'/mnt/data/x/.{prefix}{{i}}'
    open(regular, 'w').write({content!r})
    {make_other}
    pairs.append((regular.encode(), other.encode()))
if os.fork() == 0:  # a separate process swaps at full speed (no GIL to share)
    try:
        while True:
            for a, b in pairs:
                libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE)
    finally:
        os._exit(0)
"""


def swap_race_cells(prefix: str, make_other: str, content: str,
                    utime_args: str = "") -> tuple[str, str]:
    """Kernel code racing the gateway's directory scan: 20 regular files in ``x/``, each paired
    with a hidden ``.<prefix>N`` made by ``make_other`` (a statement on ``other``), swapped back
    and forth by a forked process; and a cell that touches them all so every scan finds work."""
    setup = SWAP_RACE_CELL.format(prefix=prefix, content=content, make_other=make_other)
    touch = ("import os\n"
             "for i in range(20):\n"
             f"    for n in (f'x/f{{i}}.txt', f'x/.{prefix}{{i}}'):\n"
             f"        try: os.utime(n{utime_args})\n"
             "        except OSError: pass\n")
    return setup, touch

