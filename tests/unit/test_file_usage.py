"""The file store's usage counts: what the quota checks read instead of summing the table."""

from __future__ import annotations

import os
import time

import pytest

from gateway.errors import FileRejected
from gateway.threads.files import FileStore, Usage

KiB = 1024


def test_usage_adds_and_removes_per_thread_identity_and_in_all():
    usage = Usage([("alice/t1", "alice", 10), ("alice/t2", "alice", 5), ("bob/t1", "bob", 7)])
    assert usage.of("alice/t1", "alice") == (10, 15, 22)
    usage.remove("alice/t1", "alice", 10)
    assert usage.of("alice/t1", "alice") == (0, 5, 12)
    assert "alice/t1" not in usage.threads  # a thread with nothing left is forgotten
    usage.add("bob/t2", "bob", 3)
    assert usage.owners == {"alice": 5, "bob": 10}


def test_a_reopened_store_counts_what_it_holds(tmp_path):
    store = FileStore(tmp_path, thread_quota=100 * KiB, total_quota=1000 * KiB)
    store.put("alice/t1", "alice", "a.bin", b"a" * 60 * KiB)
    store.put("alice/t1", "alice", "b.bin", b"b" * 30 * KiB)
    store.close()
    reopened = FileStore(tmp_path, thread_quota=100 * KiB, total_quota=1000 * KiB)
    try:
        assert reopened.usage_by_owner() == {"alice": 90 * KiB}
        with pytest.raises(FileRejected):
            reopened.put("alice/t1", "alice", "c.bin", b"c" * 20 * KiB)
    finally:
        reopened.close()


def test_collected_files_give_their_room_back(tmp_path):
    store = FileStore(tmp_path, thread_quota=100 * KiB, total_quota=1000 * KiB)
    try:
        store.put("alice/t1", "alice", "a.bin", b"a" * 90 * KiB)
        with pytest.raises(FileRejected):
            store.put("alice/t1", "alice", "b.bin", b"b" * 20 * KiB)
        # A retention of zero seconds: everything created before now goes.
        time.sleep(0.01)
        assert store.collect_garbage(0) == 1
        assert store.usage_by_owner() == {}
        stored = store.put("alice/t1", "alice", "b.bin", b"b" * 20 * KiB)
        assert os.path.exists(store.path(stored))
        assert store.usage_by_owner() == {"alice": 20 * KiB}
    finally:
        store.close()


def test_deleted_files_give_their_room_back_and_unknown_ids_are_ignored(tmp_path):
    store = FileStore(tmp_path, thread_quota=100 * KiB, total_quota=1000 * KiB)
    try:
        old = store.put("alice/t1", "alice", "a.bin", b"a" * 60 * KiB)
        kept = store.put("alice/t1", "alice", "b.bin", b"b" * 30 * KiB)
        assert store.delete([old.id, "file_unknown"]) == 1
        assert not os.path.exists(store.path(old)) and os.path.exists(store.path(kept))
        assert [stored.id for stored in store.list("alice/t1")] == [kept.id]
        assert store.usage_by_owner() == {"alice": 30 * KiB}
        store.put("alice/t1", "alice", "c.bin", b"c" * 60 * KiB)  # the room is back
    finally:
        store.close()
