"""The file store of a cluster: bytes in an S3-compatible bucket, metadata in Redis.

The same public API as ``gateway.files.FileStore`` (callers cannot tell them apart), so every
node can serve ``GET /files/{id}`` and restore a thread's files. Each node keeps a local copy
of the blobs it wrote or read (``path`` must name a local file: downloads use sendfile). A blob
the bucket could not take (the store is down) stays local, is listed as pending in Redis, and is
uploaded again by a background thread until it succeeds.

Plain S3 calls only (put/get/delete object): AWS, MinIO, Ceph or an emulator work the same.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, cast

import boto3
import redis
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ..errors import FileRejected
from ..threads.files import Quotas, StoredFile, StreamingPut, mime_type_of
from .registry import PREFIX

log = logging.getLogger(__name__)

RETRY_INTERVAL = 2.0  # seconds between uploads of blobs the bucket refused
S3_ERRORS = (BotoCoreError, ClientError)
_FIELDS = [f.name for f in fields(StoredFile)]


def parse_store_url(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> (bucket, "prefix/")."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"store_url must look like s3://bucket/prefix, not {url!r}")
    prefix = parts.path.strip("/")
    return parts.netloc, prefix + "/" if prefix else ""


def _stored(record: dict[str, str]) -> StoredFile:
    return StoredFile(record["id"], record["thread_id"], record["owner"], record["name"],
                      record["mime_type"], int(record["size"]), record["sha256"],
                      float(record["created"]))


class ObjectFileStore(StreamingPut):
    """Files shared by every node; ids are 128 random bits, reads are owner-only."""

    def __init__(self, cache: Path, thread_quota: int, total_quota: int, *,
                 identity_quota: int | None = None, registry_url: str,
                 store_url: str, endpoint: str = "", region: str = "us-east-1",
                 key_id: str = "", key: str = "") -> None:
        self.blobs = cache / "blobs"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.quotas = Quotas(thread_quota, total_quota, identity_quota)
        self.bucket, self.prefix = parse_store_url(store_url)
        credentials: dict[str, Any] = (
            {"aws_access_key_id": key_id, "aws_secret_access_key": key} if key_id else {})
        self.s3 = boto3.client(
            "s3", endpoint_url=endpoint or None, region_name=region,
            # Few, quick retries: an outage is handled by the pending list, not by waiting.
            config=Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=3,
                          read_timeout=30),
            **credentials)
        self.redis = redis.Redis.from_url(registry_url, decode_responses=True,
                                          socket_timeout=5.0, socket_connect_timeout=3.0)
        self._closed = threading.Event()
        self._wake = threading.Event()
        self._outage_until = 0.0
        self._retrier = threading.Thread(target=self._retry_pending, daemon=True,
                                         name="store-retry")
        self._retrier.start()

    # -- writing ----------------------------------------------------------------------------
    def put(self, thread_id: str, owner: str, name: str, data: bytes,
            mime_type: str | None = None) -> StoredFile:
        """Store bytes already in memory (plots). Called on the event loop: the upload to the
        bucket is left to the background thread, woken at once."""
        self._check_quota(thread_id, owner, len(data))
        file_id = "file_" + secrets.token_hex(16)
        partial = self.blobs / (file_id + ".part")
        partial.write_bytes(data)
        return self._commit(file_id, partial, thread_id, owner, name, mime_type, len(data),
                            hashlib.sha256(data).hexdigest(), upload_now=False)

    def _check_quota(self, thread_id: str, owner: str, size: int) -> None:
        def used() -> tuple[int, int, int]:
            counters = self.redis.mget(PREFIX + "bytes:thread:" + thread_id,
                                       PREFIX + "bytes:owner:" + owner, PREFIX + "bytes:total")
            thread, by_owner, total = (int(value or 0) for value in counters)
            return thread, by_owner, total

        self.quotas.check(thread_id, owner, size, used)

    def usage_by_owner(self) -> dict[str, int]:
        """Bytes stored per identity, across the cluster."""
        keys = list(self.redis.scan_iter(PREFIX + "bytes:owner:*"))
        values = self.redis.mget(keys) if keys else []
        start = len(PREFIX + "bytes:owner:")
        return {key[start:]: int(value or 0) for key, value in zip(keys, values, strict=True)}

    def _commit(self, file_id: str, partial: Path, thread_id: str, owner: str, name: str,
                mime_type: str | None, size: int, sha256: str,
                upload_now: bool = True) -> StoredFile:
        stored = StoredFile(file_id, thread_id, owner, name, mime_type or mime_type_of(name),
                            size, sha256, time.time())
        local = self.blobs / file_id
        partial.rename(local)
        # Metadata names the file only once its bytes are somewhere: here, and in the bucket
        # or on the pending list.
        uploaded = upload_now and self._upload(local, file_id)
        try:
            self._write_metadata(stored, local, uploaded)
        except redis.RedisError as exc:
            local.unlink(missing_ok=True)
            raise FileRejected(f"the file registry is unreachable ({exc})") from exc
        if not uploaded:
            self._wake.set()
        return stored

    def _write_metadata(self, stored: StoredFile, local: Path, uploaded: bool) -> None:
        file_id, thread_id, size = stored.id, stored.thread_id, stored.size
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(PREFIX + "file:" + file_id, mapping={k: str(v) for k, v in
                                                          asdict(stored).items()})
            pipe.zadd(PREFIX + "files:thread:" + thread_id, {file_id: stored.created})
            pipe.zadd(PREFIX + "files", {file_id: stored.created})
            pipe.incrby(PREFIX + "bytes:thread:" + thread_id, size)
            pipe.incrby(PREFIX + "bytes:owner:" + stored.owner, size)
            pipe.incrby(PREFIX + "bytes:total", size)
            if not uploaded:
                pipe.hset(PREFIX + "pending", file_id, str(local))
            pipe.execute()

    def _upload(self, local: Path, file_id: str) -> bool:
        if time.monotonic() < self._outage_until:  # known down: no cell waits on timeouts
            return False
        try:
            self.s3.upload_file(str(local), self.bucket, self.prefix + file_id)
            return True
        except S3_ERRORS as exc:
            log.warning("file %s not in the object store yet (%s); retrying", file_id, exc)
            self._outage_until = time.monotonic() + RETRY_INTERVAL
            return False

    def not_yet_stored(self, stored: StoredFile) -> str | None:
        """Why the file is not in the shared store yet (None: it is)."""
        if time.monotonic() < self._outage_until and self.redis.hexists(PREFIX + "pending",
                                                                         stored.id):
            return ("not in the shared file store yet (the store is unreachable); it is kept "
                    "on this node and uploaded again every few seconds")
        return None

    def _retry_pending(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(RETRY_INTERVAL)
            self._wake.clear()
            try:
                self._upload_pending()
            except Exception:  # the retrier must outlive any one failure
                log.exception("uploading pending files failed")

    def _upload_pending(self) -> None:
        try:
            # decode_responses=True: str, which redis-py's annotations (bytes | str) cannot say.
            pending = cast("dict[str, str]", self.redis.hgetall(PREFIX + "pending"))
        except redis.RedisError:
            return
        for file_id, local in pending.items():
            # Only the node that holds the bytes can upload them.
            if Path(local).parent == self.blobs and Path(local).exists() \
                    and self._upload(Path(local), file_id):
                self.redis.hdel(PREFIX + "pending", file_id)
                log.info("file %s is in the object store now", file_id)

    # -- reading ----------------------------------------------------------------------------
    def get(self, file_id: str, owner: str) -> StoredFile | None:
        """The file if ``owner`` may read it; None both for unknown ids and other owners."""
        # decode_responses=True: str, which redis-py's annotations (bytes | str) cannot say.
        record = cast("dict[str, str]", self.redis.hgetall(PREFIX + "file:" + file_id))
        if not record or record.get("owner") != owner:
            return None
        return _stored(record)

    def read(self, stored: StoredFile) -> bytes:
        return self.path(stored).read_bytes()

    def path(self, stored: StoredFile) -> Path:
        """A local copy of the blob, fetched from the bucket on first use (blocking)."""
        local = self.blobs / stored.id
        if not local.exists():
            partial = self.blobs / (stored.id + f".{secrets.token_hex(4)}.part")
            try:
                self.s3.download_file(self.bucket, self.prefix + stored.id, str(partial))
            except S3_ERRORS as exc:
                partial.unlink(missing_ok=True)
                raise FileNotFoundError(f"{stored.id} is not in the object store: {exc}") from exc
            partial.rename(local)
        return local

    def list(self, thread_id: str | None = None) -> list[StoredFile]:
        index = PREFIX + ("files:thread:" + thread_id if thread_id else "files")
        # decode_responses=True, no scores: a list of str (redis-py's annotations are wider).
        ids = cast("list[str]", self.redis.zrange(index, 0, -1))
        if not ids:
            return []
        with self.redis.pipeline(transaction=False) as pipe:
            for file_id in ids:
                pipe.hgetall(PREFIX + "file:" + file_id)
            records = pipe.execute()
        return [_stored(record) for record in records if record]

    def collect_garbage(self, older_than: float) -> int:
        """Delete files created more than ``older_than`` seconds ago; returns how many."""
        cutoff = time.time() - older_than
        # decode_responses=True, no scores: str ids (redis-py's annotations are wider).
        return self.delete(cast("list[str]",
                                self.redis.zrangebyscore(PREFIX + "files", 0, cutoff)))

    def delete(self, file_ids: Iterable[str]) -> int:
        """Delete these files from the bucket and the registry (their quota is freed); how
        many were. One the bucket refuses to delete stays registered, for the next try."""
        deleted = 0
        for file_id in file_ids:
            # decode_responses=True: str records (redis-py's annotations are wider).
            record = cast("dict[str, str]", self.redis.hgetall(PREFIX + "file:" + file_id))
            try:
                self.s3.delete_object(Bucket=self.bucket, Key=self.prefix + file_id)
            except S3_ERRORS as exc:
                log.warning("file %s: not deleted from the object store (%s)", file_id, exc)
                continue
            with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete(PREFIX + "file:" + file_id)
                pipe.zrem(PREFIX + "files", file_id)
                pipe.hdel(PREFIX + "pending", file_id)
                if record:
                    pipe.zrem(PREFIX + "files:thread:" + record["thread_id"], file_id)
                    pipe.decrby(PREFIX + "bytes:thread:" + record["thread_id"],
                                int(record["size"]))
                    pipe.decrby(PREFIX + "bytes:owner:" + record["owner"], int(record["size"]))
                    pipe.decrby(PREFIX + "bytes:total", int(record["size"]))
                pipe.execute()
            (self.blobs / file_id).unlink(missing_ok=True)
            deleted += 1
        return deleted

    def ensure_bucket(self) -> None:
        """Create the bucket if it is missing (a demo or test server starts empty)."""
        try:
            self.s3.head_bucket(Bucket=self.bucket)
        except ClientError:
            self.s3.create_bucket(Bucket=self.bucket)

    def close(self) -> None:
        self._closed.set()
        self._wake.set()
        self._retrier.join(timeout=5)
        self.redis.close()
