"""Identities do not crowd each other out: scoped thread ids, a share of threads, a file quota."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import MiB, Settings
from gateway.errors import FileRejected
from gateway.net.admin import execute_admin
from gateway.threads.files import FileStore
from gateway.wire.protocol import client_thread_id, scoped_thread_id
from support.gateways import start_gateway, stop_gateway, test_settings

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
    assert same_identity_twice.identity_thread_limit == same_identity_twice.max_kernels
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


# -- a real gateway -----------------------------------------------------------------------------


@pytest.mark.asyncio(loop_scope="session")
async def test_one_identity_cannot_take_every_kernel_or_the_whole_store(data_root):
    settings = test_settings(data_root / "identity-limits", pool_size=1, max_kernels=6,
                             max_threads_per_identity=2, identity_file_quota=2 * MiB,
                             thread_file_quota=2 * MiB)
    running = await start_gateway(settings)
    try:
        async with await running.client() as alice, await running.client("tok-bob") as bob:
            for name in ("a1", "a2"):
                assert (await alice.thread(name).run("x = 1")).state == "complete"
            refused = await alice.thread("a3").run("print('never')")
            assert refused.state == "protocol_error", refused.envelopes
            assert refused.error["code"] == "identity_limit"
            assert "max_threads_per_identity" in refused.error["message"]
            # Bob is not crowded out by alice's threads, nor by her files.
            big = "open('big.bin', 'wb').write(b'x' * (1536 * 1024))"
            first = await alice.thread("a1").run(big)
            assert [f["filename"] for f in first.files] == ["big.bin"], first.envelopes
            second = await alice.thread("a2").run(big)
            assert second.files == [] and "identity 'alice'" in second.output, second.output
            mine = await bob.thread("b1").run(big)
            assert [f["filename"] for f in mine.files] == ["big.bin"], mine.envelopes

            families = {f.name: f for f in text_string_to_metric_families(
                running.gateway.metrics.render().decode())}
            live = {s.labels["identity"]: s.value
                    for s in families["gateway_identity_live_threads"].samples}
            assert live == {"alice": 2, "bob": 1}
            stored = {s.labels["identity"]: s.value
                      for s in families["gateway_identity_file_bytes"].samples}
            assert stored["alice"] >= 1536 * 1024 and stored["bob"] >= 1536 * 1024
            refusals = {s.labels["limit"]: s.value
                        for s in families["gateway_identity_limit_refusals"].samples
                        if s.name.endswith("_total")}
            assert refusals == {"threads": 1}

            usage = {row["identity"]: row for row in
                     await execute_admin(running.gateway, {"op": "files.usage"})}
            assert usage["alice"]["live_threads"] == 2 and usage["alice"]["max_threads"] == 2
            assert usage["alice"]["file_quota"] == 2 * MiB
            assert usage["bob"]["file_bytes"] >= 1536 * 1024

            # A thread alice closes gives her share back.
            await alice.thread("a2").close()
            for _ in range(100):
                if running.gateway.live_threads_by_identity().get("alice") == 1:
                    break
                await alice.thread("a1").run("1")
            assert (await alice.thread("a3").run("print('now')")).output == "now\n"
    finally:
        await stop_gateway(running)
