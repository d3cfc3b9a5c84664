"""The file store: metadata in SQLite, bytes on disk, unguessable ids, owner-only reads."""

from __future__ import annotations

import hashlib
import mimetypes
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from ..errors import FileRejected

EXTRA_TYPES = {
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ".csv": "text/csv",
    ".md": "text/markdown",
    ".json": "application/json",
    ".parquet": "application/vnd.apache.parquet",
    ".svg": "image/svg+xml",
}

COPY_BLOCK = 1 << 20

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY,
    thread_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    mime_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS files_thread ON files(thread_id);
CREATE INDEX IF NOT EXISTS files_owner ON files(owner);
"""


def mime_type_of(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return EXTRA_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


@dataclass(frozen=True)
class StoredFile:
    id: str
    thread_id: str
    owner: str
    name: str
    mime_type: str
    size: int
    sha256: str
    created: float


@dataclass(frozen=True)
class Quotas:
    """Bytes a thread, an identity (all its threads) and the whole store may hold."""

    thread: int
    total: int
    identity: int | None = None  # None: only the total bounds an identity

    def check(self, thread_id: str, owner: str, size: int,
              used: Callable[[], tuple[int, int, int]]) -> None:
        """Refuse ``size`` more bytes, naming whose quota is full; ``used()`` gives the bytes
        the thread, the owner and the store hold now."""
        used_thread, used_owner, used_total = used()
        if used_thread + size > self.thread:
            raise FileRejected(f"thread file quota of {_mib(self.thread)} exceeded")
        if self.identity is not None and used_owner + size > self.identity:
            raise FileRejected(f"identity {owner!r} has used its file quota of "
                               f"{_mib(self.identity)} (identity_file_quota): old files "
                               "expire after file_retention")
        if used_total + size > self.total:
            raise FileRejected(f"the gateway's file storage is full ({_mib(self.total)} for "
                               "all identities)")


def _mib(size: int) -> str:
    return f"{size // 2**20} MiB"


class Usage:
    """Bytes stored per thread, per identity and in all, kept as files come and go: a quota
    check must not sum the whole table (every cell stores a record, so it grows with use)."""

    def __init__(self, rows: Iterable[tuple[str, str, int]] = ()) -> None:
        self.threads: dict[str, int] = {}
        self.owners: dict[str, int] = {}
        self.total = 0
        for thread_id, owner, size in rows:
            self.add(thread_id, owner, size)

    def add(self, thread_id: str, owner: str, size: int) -> None:
        self.threads[thread_id] = self.threads.get(thread_id, 0) + size
        self.owners[owner] = self.owners.get(owner, 0) + size
        self.total += size

    def remove(self, thread_id: str, owner: str, size: int) -> None:
        for counts, key in ((self.threads, thread_id), (self.owners, owner)):
            left = counts.get(key, 0) - size
            if left > 0:
                counts[key] = left
            else:
                counts.pop(key, None)
        self.total = max(0, self.total - size)

    def of(self, thread_id: str, owner: str) -> tuple[int, int, int]:
        return self.threads.get(thread_id, 0), self.owners.get(owner, 0), self.total


class _Store(Protocol):
    """What a class using ``StreamingPut`` supplies (for the type checker only)."""

    blobs: Path

    def _check_quota(self, thread_id: str, owner: str, size: int) -> None: ...

    def _commit(self, file_id: str, partial: Path, thread_id: str, owner: str, name: str,
                mime_type: str | None, size: int, sha256: str) -> StoredFile: ...


class StreamingPut:
    """``put_stream`` for both file stores (this one and ``cluster.objectstore``): the class
    supplies ``blobs`` (a local folder), ``_check_quota`` and ``_commit``."""

    def put_stream(self: _Store, thread_id: str, owner: str, name: str,
                   reader: BinaryIO) -> StoredFile:
        """Store an open file by streaming copy (blocking: call it in a worker thread)."""
        self._check_quota(thread_id, owner, os.fstat(reader.fileno()).st_size)
        file_id = "file_" + secrets.token_hex(16)
        partial = self.blobs / (file_id + ".part")
        sha256, size = copy_hashing(reader, partial)
        return self._commit(file_id, partial, thread_id, owner, name, None, size, sha256)


class FileStore(StreamingPut):
    """Files survive kernel death and gateway restarts; ids are 128 random bits."""

    def __init__(self, root: Path, thread_quota: int, total_quota: int,
                 identity_quota: int | None = None) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.quotas = Quotas(thread_quota, total_quota, identity_quota)
        # Large files are copied in a worker thread; the lock keeps the connection's use serial.
        self.db = sqlite3.connect(root / "files.sqlite3", isolation_level=None,
                                  check_same_thread=False)
        self._lock = threading.Lock()
        self.db.execute("PRAGMA journal_mode=WAL")
        # Durable across a crash of the gateway; a power loss may lose the last commits, as
        # it may the blobs (never fsynced): no sync per stored cell record.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self.usage = Usage(self.db.execute(
            "SELECT thread_id, owner, SUM(size) FROM files GROUP BY thread_id, owner"))

    def put(self, thread_id: str, owner: str, name: str, data: bytes,
            mime_type: str | None = None) -> StoredFile:
        """Store bytes already in memory (plots)."""
        self._check_quota(thread_id, owner, len(data))
        file_id = "file_" + secrets.token_hex(16)
        partial = self.blobs / (file_id + ".part")
        partial.write_bytes(data)
        return self._commit(file_id, partial, thread_id, owner, name, mime_type,
                            len(data), hashlib.sha256(data).hexdigest())

    def _check_quota(self, thread_id: str, owner: str, size: int) -> None:
        def used() -> tuple[int, int, int]:
            with self._lock:
                return self.usage.of(thread_id, owner)

        self.quotas.check(thread_id, owner, size, used)

    def usage_by_owner(self) -> dict[str, int]:
        """Bytes stored per identity."""
        with self._lock:
            return dict(self.usage.owners)

    def _commit(self, file_id: str, partial: Path, thread_id: str, owner: str, name: str,
                mime_type: str | None, size: int, sha256: str) -> StoredFile:
        stored = StoredFile(file_id, thread_id, owner, name, mime_type or mime_type_of(name),
                            size, sha256, time.time())
        partial.rename(self.blobs / stored.id)  # a crash never leaves a half file under an id
        with self._lock:
            self.db.execute(
                "INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (stored.id, stored.thread_id, stored.owner, stored.name, stored.mime_type,
                 stored.size, stored.sha256, stored.created),
            )
            self.usage.add(stored.thread_id, stored.owner, stored.size)
        return stored

    def not_yet_stored(self, stored: StoredFile) -> str | None:
        """Why a stored file is not safe yet (None: it is; always, on local disk)."""
        return None

    def get(self, file_id: str, owner: str) -> StoredFile | None:
        """The file if ``owner`` may read it; None both for unknown ids and other owners."""
        with self._lock:
            row = self.db.execute("SELECT * FROM files WHERE id = ? AND owner = ?",
                                  (file_id, owner))
            found = row.fetchone()
        return StoredFile(*found) if found else None

    def read(self, stored: StoredFile) -> bytes:
        return (self.blobs / stored.id).read_bytes()

    def path(self, stored: StoredFile) -> Path:
        return self.blobs / stored.id

    def list(self, thread_id: str | None = None) -> list[StoredFile]:
        with self._lock:
            if thread_id is None:
                rows = self.db.execute("SELECT * FROM files ORDER BY created").fetchall()
            else:
                rows = self.db.execute("SELECT * FROM files WHERE thread_id = ? ORDER BY created",
                                       (thread_id,)).fetchall()
        return [StoredFile(*row) for row in rows]

    def collect_garbage(self, older_than: float) -> int:
        """Delete files created more than ``older_than`` seconds ago; returns how many."""
        cutoff = time.time() - older_than
        with self._lock:
            ids = [row[0] for row in self.db.execute("SELECT id FROM files WHERE created < ?",
                                                     (cutoff,))]
        return self.delete(ids)

    def delete(self, file_ids: Iterable[str]) -> int:
        """Delete these files (their quota is freed); how many there were."""
        deleted = []
        with self._lock:
            for file_id in file_ids:
                row = self.db.execute("SELECT thread_id, owner, size FROM files WHERE id = ?",
                                      (file_id,)).fetchone()
                if row is None:
                    continue
                self.db.execute("DELETE FROM files WHERE id = ?", (file_id,))
                self.usage.remove(*row)
                deleted.append(file_id)
        for file_id in deleted:
            (self.blobs / file_id).unlink(missing_ok=True)
        return len(deleted)

    def close(self) -> None:
        self.db.close()


def copy_hashing(reader: BinaryIO, path: Path) -> tuple[str, int]:
    """Copy ``reader`` into a new file at ``path`` block by block; its sha256 and size."""
    digest, size = hashlib.sha256(), 0
    with open(path, "wb") as writer:
        while block := reader.read(COPY_BLOCK):
            digest.update(block)
            writer.write(block)
            size += len(block)
    return digest.hexdigest(), size
