"""Host uids for kernels: each working directory (and so each running kernel) gets its own.

A uid of its own keeps a kernel out of host-global sysctls (the kernel asks only whether the
caller is host uid 0), away from other kernels' files and processes, and makes RLIMIT_NPROC
count exactly its tasks.
"""

from __future__ import annotations

from .errors import UidsExhausted


class UidRange:
    """Hands out the lowest free uid of ``[base, base + count)``; a uid doubles as the gid."""

    def __init__(self, base: int, count: int) -> None:
        if base < 1000 or count < 1 or base + count > 2**32 - 2:
            raise ValueError(f"kernel uids {base}..{base + count - 1}: the range must lie "
                             "above the system's users (>= 1000) and below 2**32 - 2")
        self.base = base
        self.count = count
        self._used: set[int] = set()

    def allocate(self) -> int:
        for uid in range(self.base, self.base + self.count):
            if uid not in self._used:
                self._used.add(uid)
                return uid
        raise UidsExhausted(f"all {self.count} kernel uids from {self.base} are in use")

    def release(self, uid: int) -> None:
        self._used.discard(uid)

    @property
    def in_use(self) -> int:
        return len(self._used)
