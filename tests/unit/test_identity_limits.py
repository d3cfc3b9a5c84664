"""Identities do not crowd each other out: scoped thread ids, a share of threads, a file quota.

The pure half; the gateway half is tests/kernel/test_identity_limits_gateway.py."""

from __future__ import annotations

import pytest

from gateway.config import MiB, Settings
from gateway.errors import FileRejected
from gateway.threads.files import FileStore
from gateway.wire.protocol import client_thread_id, scoped_thread_id

KiB = 1024


# -- pure --------------------------------------------------------------------------------------
@pytest.mark.parametrize("identity", ["alice", "org/alice", "a b", "ünïcode"])
@pytest.mark.parametrize("thread_id", ["t1", "a:b@c.d-e_f", "x" * 128])
def test_a_scoped_id_names_one_identitys_thread_and_gives_the_clients_id_back(identity,
                                                                             thread_id):
    scoped = scoped_thread_id(identity, thread_id)
    assert client_thread_id(scoped) == thread_id
    assert scoped != scoped_thread_id(identity + "x", thread_id)
    assert scoped != thread_id  # never a client id: '/' is not allowed in one


def test_the_per_identity_defaults_follow_the_identities():
    alone = Settings(tokens={"tok-a": "alice"}, max_kernels=16,
                     total_file_quota=20 * 1024 * MiB)
    assert alone.identity_thread_limit == 16  # nobody else to crowd out
    assert alone.identity_file_limit == 20 * 1024 * MiB
    shared = Settings(tokens={"tok-a": "alice", "tok-b": "bob"}, max_kernels=16,
                      total_file_quota=20 * 1024 * MiB)
    assert shared.identity_thread_limit == 8
    assert shared.identity_file_limit == 5 * 1024 * MiB
    same_identity_twice = Settings(tokens={"tok-a": "alice", "tok-a2": "alice"})
    assert same_identity_twice.identity_thread_limit == same_identity_twice.kernel_limit
    chosen = Settings(tokens={"tok-a": "alice", "tok-b": "bob"}, max_threads_per_identity=3,
                      identity_file_quota=7 * MiB, thread_file_quota=7 * MiB)
    assert (chosen.identity_thread_limit, chosen.identity_file_limit) == (3, 7 * MiB)


def test_an_identity_over_its_file_quota_is_refused_and_others_are_not(tmp_path):
    store = FileStore(tmp_path, thread_quota=100 * KiB, total_quota=1000 * KiB,
                      identity_quota=250 * KiB)
    try:
        store.put("alice/t1", "alice", "a.bin", b"a" * 100 * KiB)
        store.put("alice/t2", "alice", "b.bin", b"b" * 100 * KiB)
        with pytest.raises(FileRejected) as refused:
            store.put("alice/t3", "alice", "c.bin", b"c" * 60 * KiB)
        assert "identity 'alice'" in str(refused.value)
        assert "identity_file_quota" in str(refused.value)
        store.put("bob/t1", "bob", "d.bin", b"d" * 100 * KiB)  # bob's share is his own
        assert store.usage_by_owner() == {"alice": 200 * KiB, "bob": 100 * KiB}
        with pytest.raises(FileRejected) as over_thread:
            store.put("bob/t1", "bob", "e.bin", b"e")
        assert "thread file quota" in str(over_thread.value)
    finally:
        store.close()


def test_a_full_store_says_it_is_full_for_everyone(tmp_path):
    store = FileStore(tmp_path, thread_quota=100 * KiB, total_quota=150 * KiB,
                      identity_quota=100 * KiB)
    try:
        store.put("alice/t1", "alice", "a.bin", b"a" * 100 * KiB)
        with pytest.raises(FileRejected) as refused:
            store.put("bob/t1", "bob", "b.bin", b"b" * 60 * KiB)
        assert "storage is full" in str(refused.value) and "all identities" in str(refused.value)
    finally:
        store.close()


