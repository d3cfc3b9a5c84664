"""One thread's namespace snapshots: taken in its kernel, kept in the file store, restored
into its next kernel.

The gateway moves snapshot bytes between the kernel's working directory and the store and
never unpickles them: only the thread's own sandboxed kernel loads one, so a forged snapshot
can hurt only the thread that forged it. Snapshots are files of the thread (name
``SNAPSHOT_NAME``), owned by its identity: a thread id taken over by another identity (after a
gateway restart) never finds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import GatewayError
from ..sandbox.workdirs import (
    UnsafePath,
    give_to_directory_owner,
    open_directory,
    open_regular_file,
    open_regular_for_writing,
)
from ..wire.snapshot_format import RESTORE_MARKER, TAKE_MARKER, empty_snapshot, parse_report
from .cells import INTERNAL_PREFIX

if TYPE_CHECKING:
    from ..config import Settings
    from ..execution.kernel import Kernel
    from ..sandbox.workdir_io import ThreadWorkdirJobs
    from .files import FileStore, StoredFile

log = logging.getLogger(__name__)

SNAPSHOT_NAME = INTERNAL_PREFIX + "snapshot"  # in the store, a file of the thread
KERNEL_FILE = ".gateway-snapshot"  # where the kernel writes one (20-snapshots.py)
RESTORE_FILE = ".gateway-restore"  # where the gateway puts one for the kernel to load
DUE_FILE = ".gateway-snapshot-due"  # a cell changed the namespace: a per-cell snapshot is due
FLUSH_CODE = "__import__('sys').modules['_gateway_snapshots'].flush()"
SIZE_SLACK = 1 << 20  # the index and framing beyond snapshot_limit
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL


def latest_snapshot(store: FileStore, thread_id: str, owner: str) -> StoredFile | None:
    """The thread's newest snapshot that ``owner`` owns (blocking: a worker thread)."""
    found = None
    for stored in store.list(thread_id):  # oldest first
        if stored.name == SNAPSHOT_NAME and stored.owner == owner:
            found = stored
    return found


class ThreadSnapshots:
    """Snapshot bookkeeping of one thread session; ``pending`` means the next kernel is new
    and should get the last snapshot before its first cell."""

    def __init__(self, store: FileStore, thread_id: str, owner: str, settings: Settings,
                 workdir_jobs: ThreadWorkdirJobs):
        self.store = store
        self.workdir_jobs = workdir_jobs  # copies into and out of the kernel's directory
        self.thread_id = thread_id
        self.owner = owner
        self.settings = settings
        # A session that is new to this gateway may continue a thread an earlier gateway
        # (or another node) ran: look for its snapshot before the first cell.
        self.pending = settings.snapshots
        self._stored: tuple[int, int, int] | None = None  # (ino, mtime_ns, size) last stored
        self._bad_snapshot: str | None = None  # a snapshot whose restore killed the kernel

    # -- what the session tells us -----------------------------------------------------------
    def kernel_replaced(self) -> None:
        """A new kernel that is not a clean slate (hibernation, death, healing)."""
        self.pending = self.settings.snapshots

    async def cleared(self) -> None:
        """An explicit restart: no restore, and a later kernel must not bring back what the
        restart threw away, so the thread's latest snapshot becomes an empty one."""
        self.pending = False
        if not self.settings.snapshots:
            return
        try:
            stored = await asyncio.to_thread(self.store.put, self.thread_id, self.owner,
                                             SNAPSHOT_NAME, empty_snapshot(),
                                             "application/octet-stream")
        except GatewayError as exc:
            log.warning("thread %s: the restart's empty snapshot was not stored: %s",
                        self.thread_id, exc)
            return
        await self._forget_older(stored)

    # -- taking ------------------------------------------------------------------------------
    async def take(self, kernel: Kernel, why: str) -> dict:
        """A full snapshot in the kernel now, stored if it changed; the kernel's report."""
        if not self.settings.snapshots:
            return {"error": "snapshots are disabled (snapshots = false)"}
        output: list[str] = []
        errors: list[str] = []
        code = (f"__import__('sys').modules['_gateway_snapshots']"
                f".take({self.settings.snapshot_limit})")
        result = await kernel.run(code, _stdout_into(output, errors),
                                  self.settings.snapshot_timeout, self.settings.interrupt_grace,
                                  store_history=False)
        report = parse_report("".join(output), TAKE_MARKER)
        if result.state != "complete" or report is None:
            detail = "; ".join(filter(None, [result.reason, *errors]))
            report = {"error": f"snapshot cell ended {result.state}"
                      + (f": {detail}" if detail else ""), "names": 0, "skipped": []}
        if "error" not in report:
            stored = await self.collect(kernel.spec.workdir)
            report["stored"] = stored is not None
        log.info("thread %s: snapshot (%s): %s names, %d skipped%s", self.thread_id, why,
                 report.get("names"), len(report.get("skipped", [])),
                 f", failed: {report['error']}" if "error" in report else "")
        return report

    async def after_cell(self, kernel: Kernel) -> None:
        """After a cell's status went out: the per-cell snapshot its kernel found due (taken
        now, as a hidden cell, so it never delays the status), then stored. The thread's next
        cell waits for this (the session holds the kernel lock), so a snapshot taken here is
        always of the namespace the cell left."""
        if not self.settings.snapshots:
            return
        workdir = kernel.spec.workdir
        try:
            # Removed first: a cell that changes the namespace again leaves a new one. Only
            # the link itself goes, whatever the kernel put there.
            os.unlink(workdir / DUE_FILE)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("thread %s: snapshot marker not removed: %s", self.thread_id, exc)
        else:
            result = await kernel.run(FLUSH_CODE, lambda msg: None,
                                      self.settings.snapshot_timeout,
                                      self.settings.interrupt_grace, silent=True)
            if result.state != "complete":
                log.warning("thread %s: per-cell snapshot ended %s: %s", self.thread_id,
                            result.state, result.reason)
                return
        await self.collect(workdir)

    async def collect(self, workdir: Path) -> StoredFile | None:
        """Store the snapshot the kernel last wrote (after a cell, or a ``take``), once."""
        if not self.settings.snapshots:
            return None
        try:
            info = os.stat(workdir / KERNEL_FILE, follow_symlinks=False)
        except OSError:
            return None
        key = (info.st_ino, info.st_mtime_ns, info.st_size)
        if key == self._stored or not stat.S_ISREG(info.st_mode):
            return None
        if info.st_size > self.settings.snapshot_limit + SIZE_SLACK:
            log.warning("thread %s: snapshot of %d bytes over the limit; not stored",
                        self.thread_id, info.st_size)
            return None

        def store() -> StoredFile:
            with open_regular_file(workdir, KERNEL_FILE) as reader:
                return self.store.put_stream(self.thread_id, self.owner, SNAPSHOT_NAME, reader)

        try:
            stored = await self.workdir_jobs.run(store)
        except (GatewayError, OSError) as exc:  # over quota; or swapped for a link meanwhile
            log.warning("thread %s: snapshot not stored: %s", self.thread_id, exc)
            return None
        self._stored = key
        await self._forget_older(stored)
        # Stored: the working directory's copy would only take the thread's disk and show in
        # its listing. Not if the kernel wrote a newer one meanwhile (another inode).
        with contextlib.suppress(OSError):
            if os.stat(workdir / KERNEL_FILE, follow_symlinks=False).st_ino == info.st_ino:
                os.unlink(workdir / KERNEL_FILE)
        return stored

    async def _forget_older(self, newest: StoredFile) -> None:
        """Only the newest snapshot is ever restored: the older ones would only fill the
        thread's quota (each changed cell stores one)."""
        def forget() -> None:
            older = [stored.id for stored in self.store.list(self.thread_id)
                     if stored.name == SNAPSHOT_NAME and stored.owner == self.owner
                     and stored.id != newest.id and stored.created <= newest.created]
            if older:
                self.store.delete(older)

        try:
            await asyncio.to_thread(forget)
        except Exception as exc:  # a registry or bucket error: kept until the next snapshot
            log.warning("thread %s: older snapshots not deleted: %s", self.thread_id, exc)

    # -- restoring ---------------------------------------------------------------------------
    async def restore(self, kernel: Kernel) -> dict | None:
        """Load the thread's last snapshot into ``kernel`` (new, before its first cell).

        None when there is nothing to restore; else ``{"names", "skipped"}`` and
        ``"kernel_died": True`` when loading it killed the kernel (it is not tried again).
        """
        self.pending = False
        stored = await asyncio.to_thread(latest_snapshot, self.store, self.thread_id,
                                         self.owner)
        if stored is None or stored.id == self._bad_snapshot:
            return None
        workdir = kernel.spec.workdir
        try:
            await self.workdir_jobs.run(self._place, stored, workdir)
        except (OSError, UnsafePath) as exc:
            log.warning("thread %s: snapshot %s not placed: %s", self.thread_id, stored.id, exc)
            return {"names": 0, "skipped": [{"name": "*", "reason": f"snapshot could not be "
                                             f"placed in the working directory: {exc}"}]}
        output: list[str] = []
        errors: list[str] = []
        code = f"__import__('sys').modules['_gateway_snapshots'].restore({RESTORE_FILE!r})"
        result = await kernel.run(code, _stdout_into(output, errors),
                                  self.settings.snapshot_timeout, self.settings.interrupt_grace,
                                  store_history=False)
        report = parse_report("".join(output), RESTORE_MARKER)
        if result.state == "killed":
            self._bad_snapshot = stored.id
            return {"names": 0, "kernel_died": True, "skipped": [
                {"name": "*", "reason": f"loading the snapshot killed the kernel "
                                        f"({result.reason})"}]}
        if report is None:
            detail = "; ".join(filter(None, [result.reason, *errors]))
            return {"names": 0, "skipped": [{"name": "*", "reason": "the snapshot did not load "
                                             f"(restore cell ended {result.state}: {detail})"}]}
        report.pop("error", None)
        report.pop("bytes", None)
        if report["names"] == 0 and not report["skipped"] and not report.get("state"):
            return None  # an empty namespace came back: nothing worth a line to the model
        return report

    def _place(self, stored: StoredFile, workdir: Path) -> None:
        """Copy the snapshot into the kernel's working directory, owned by the kernel's uid."""
        root_fd = open_directory(workdir, [])
        try:
            try:
                os.unlink(RESTORE_FILE, dir_fd=root_fd)
            except FileNotFoundError:
                pass
            fd = open_regular_for_writing(root_fd, RESTORE_FILE, _CREATE, 0o600)
            give_to_directory_owner(root_fd, RESTORE_FILE)
            with os.fdopen(fd, "wb") as target, open(self.store.path(stored), "rb") as source:
                while block := source.read(1 << 20):
                    target.write(block)
        finally:
            os.close(root_fd)


def _stdout_into(output: list[str], errors: list[str]):
    def on_message(msg: dict) -> None:
        kind, content = msg["header"]["msg_type"], msg["content"]
        if kind == "stream" and content.get("name") == "stdout":
            output.append(content.get("text", ""))
        elif kind == "error":  # the kernel-side code is missing, or a cell broke it
            errors.append(f"{content.get('ename')}: {content.get('evalue')}"[:200])
    return on_message
