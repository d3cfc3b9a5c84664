"""A thread heals: its files come back from the file store into a fresh working directory,
and repeated kernel start failures are spaced out instead of retried on every cell.

Whatever takes a thread's working directory mount, runtime directory or cgroup away (an
operator, a crash, a bug) used to leave the thread failing every cell for good. The session
notices (``KernelPool.problem``, a failed start), asks the pool for a kernel on a fresh
directory, and fills it here from the store before the kernel starts.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import KernelStartError
from ..sandbox.workdirs import give_to_directory_owner, open_directory, open_regular_for_writing
from .cells import INTERNAL_PREFIX

if TYPE_CHECKING:
    from .files import FileStore, StoredFile

log = logging.getLogger(__name__)

FIRST_RETRY_DELAY = 1.0  # seconds before a thread tries again after a failed repair
LONGEST_RETRY_DELAY = 60.0
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL


def restore_files(store: FileStore, files: list[StoredFile], workdir: Path) -> list[str]:
    """Copy stored files (the latest version of each path) into ``workdir``, owned by its owner.

    Returns the paths that could not be restored (no blob, over the disk cap, a bad name).
    Blocking: call it in a worker thread, before the kernel starts on the directory.
    """
    failed = []
    root_fd = open_directory(workdir, [])
    try:
        for stored in files:
            try:
                _restore_one(store, stored, root_fd)
            except (OSError, ValueError) as exc:
                log.warning("file %s of thread %s not restored: %s", stored.id,
                            stored.thread_id, exc)
                failed.append(stored.name)
    finally:
        os.close(root_fd)
    return failed


def _restore_one(store: FileStore, stored: StoredFile, root_fd: int) -> None:
    *parents, name = stored.name.split("/")
    if any(part in ("", ".", "..") for part in [*parents, name]):
        raise ValueError(f"unusable path {stored.name!r}")
    parent_fd = open_directory(root_fd, parents, create=True)
    try:
        with open(store.path(stored), "rb") as source:
            fd = open_regular_for_writing(parent_fd, name, _CREATE)
            give_to_directory_owner(parent_fd, name)
            with os.fdopen(fd, "wb") as target:
                shutil.copyfileobj(source, target)
    finally:
        os.close(parent_fd)


def latest_versions(store: FileStore, thread_id: str, names: set[str] | None) -> list[StoredFile]:
    """The newest stored version of each of the thread's paths (only ``names``, when given;
    never the gateway's own files of the thread, snapshots and cell records)."""
    latest: dict[str, StoredFile] = {}
    for stored in store.list(thread_id):  # oldest first: later versions win
        if stored.name.startswith(INTERNAL_PREFIX):
            continue
        if names is None or stored.name in names:
            latest[stored.name] = stored
    return list(latest.values())


class StartBackoff:
    """One thread's consecutive failed kernel starts: after each, wait longer (1 s, 2 s, 4 s,
    ... up to a minute) before the next, so a repair that cannot work does not run per cell."""

    def __init__(self, first: float = FIRST_RETRY_DELAY,
                 longest: float = LONGEST_RETRY_DELAY) -> None:
        self.first = first
        self.longest = longest
        self.failures = 0
        self.last_error: str | None = None
        self.next_attempt = 0.0

    def check(self) -> None:
        """Raise ``KernelStartError`` while the thread must still wait."""
        wait = self.next_attempt - time.monotonic()
        if wait > 0:
            raise KernelStartError(
                f"no kernel for this thread: {self.failures} start(s) failed in a row, the "
                f"last with: {self.last_error}; the next attempt in {wait:.0f} s")

    def failed(self, error: str) -> None:
        self.failures += 1
        self.last_error = error
        delay = min(self.longest, self.first * 2 ** (self.failures - 1))
        self.next_attempt = time.monotonic() + delay

    def succeeded(self) -> None:
        self.failures = 0
        self.last_error = None
        self.next_attempt = 0.0
