"""Host uids for kernels: each working directory (and so each running kernel) gets its own.

A uid of its own keeps a kernel out of host-global sysctls (the kernel asks only whether the
caller is host uid 0), away from other kernels' files and processes, and makes RLIMIT_NPROC
count exactly its tasks. "Its own" holds across gateways on one host too: RLIMIT_NPROC counts
a uid's tasks host-wide, so two gateways handing out the same uid would let a fork bomb in one
gateway's kernel stop kernels of the other from starting. Each uid in use is claimed with an
``flock`` on a file in ``claims_dir`` (the kernel drops the lock when its holder dies), so
gateways with the default range skip each other's uids.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

from ..errors import UidsExhausted

log = logging.getLogger(__name__)

# Root-only and on tmpfs: claims die with the host, never with a data directory.
CLAIMS_DIR = Path("/run/code-interpreter-gateway/uids")


class UidRange:
    """Hands out the lowest uid of ``[base, base + count)`` that no kernel on this host uses;
    a uid doubles as the gid. ``claims_dir=None`` keeps the claims within this process."""

    def __init__(self, base: int, count: int, claims_dir: Path | None = None) -> None:
        if base < 1000 or count < 1 or base + count > 2**32 - 2:
            raise ValueError(f"kernel uids {base}..{base + count - 1}: the range must lie "
                             "above the system's users (>= 1000) and below 2**32 - 2")
        self.base = base
        self.count = count
        self.claims_dir = claims_dir
        if claims_dir is not None:
            claims_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._used: dict[int, int | None] = {}  # uid -> the fd holding its host-wide claim

    def allocate(self) -> int:
        for uid in range(self.base, self.base + self.count):
            if uid in self._used:
                continue
            claim = self._claim(uid)
            if claim is False:
                continue  # another gateway's kernel has it
            self._used[uid] = claim
            return uid
        raise UidsExhausted(f"all {self.count} kernel uids from {self.base} are in use "
                            "(by this gateway or others on the host)")

    def release(self, uid: int) -> None:
        fd = self._used.pop(uid, None)
        if fd is not None:
            os.close(fd)  # closing drops the flock

    def _claim(self, uid: int) -> int | None | bool:
        """An fd holding the host-wide lock on ``uid``; False if another process holds it;
        None when there is no claims directory."""
        if self.claims_dir is None:
            return None
        fd = os.open(self.claims_dir / str(uid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        return fd
