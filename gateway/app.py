"""The gateway as a library: threads, their owners, the pool and the file store.

The websocket server and the CLI are thin shells over ``Gateway``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from pathlib import Path

from . import auth, host_memory
from .config import Settings
from .errors import (
    IdentityLimit,
    KernelUnavailable,
    LanguageUnavailable,
    NotAllowed,
    PoolExhausted,
    ProtocolError,
)
from .execution import languages
from .execution.pool import KernelPool
from .execution.readiness import (
    LastStartFailure,
    check_kernel_setup,
    degraded_reason,
    fill_pool_or_give_up,
    not_ready_reason,
)
from .ops.datadir import DataDirLock
from .ops.metrics import Metrics
from .sandbox.egress_proxy import EgressProxy
from .sandbox.launch import HostSandbox
from .sandbox.uids import CLAIMS_DIR, UidRange
from .sandbox.workdir_io import WorkdirExecutor
from .sandbox.workdirs import (
    UnsafePath,
    Workdirs,
    give_to_directory_owner,
    open_directory,
    open_regular_file,
    open_regular_for_writing,
)
from .threads.export import notebook_bytes
from .threads.files import FileStore, StoredFile
from .threads.hibernation import (
    CAPACITY,
    DESCRIPTIONS,
    HEADROOM,
    IDLE,
    PRESSURE,
    SHUTDOWN,
    can_hibernate,
    least_recent_idle,
)
from .threads.session import Listener, ThreadSession
from .wire import envelopes
from .wire.protocol import Upload, scoped_thread_id
from .wire.replay import CallResults, FinishedCall

log = logging.getLogger(__name__)

CULL_INTERVAL = 5.0
PRESSURE_INTERVAL = 2.0  # seconds between two looks at the host's memory
# Consecutive failed kernel starts (the pool's or a healing thread's) after which the gateway
# says so on /readyz and /healthz: the pool backs off, and a warm kernel may be the last one.
FAILING_STARTS_REPORTED = 3


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        host_memory.use_all_open_files()
        self.host = _host_sandbox(settings)
        self.host.check()
        uids = (UidRange(settings.kernel_uid_base, settings.kernel_uid_count, CLAIMS_DIR)
                if self.host.drop_uid else None)
        self.workdirs = Workdirs(settings.workdirs, settings.disk_limit,
                                 use_tmpfs=self.host.enabled, uids=uids)
        if self.host.enabled:
            if self.workdirs.use_tmpfs:
                self.host.report.enforced["disk"] = "tmpfs per thread"
            else:
                self.host.report.missing["disk"] = "no tmpfs mounts (not root); per-file cap only"
        self.metrics = Metrics()
        self.pool = KernelPool(settings, self.host, self.workdirs)  # Python's (the default)
        # One pool per language, sharing max_kernels; a language's runtime is probed at start.
        self.pools: dict[str, KernelPool] = {languages.DEFAULT: self.pool}
        for language in languages.LANGUAGES.values():
            if language.name not in self.pools:
                self.pools[language.name] = KernelPool(
                    settings, self.host, self.workdirs, language,
                    settings.language_pool_size(language.name), group=self.pool.group)
        self.unavailable_languages: dict[str, str] = {}  # name -> why
        for pool in self.pools.values():  # at capacity, an idle thread makes room
            pool.make_room = self.hibernate_least_recent
        self.metrics.watch_pool(self.pool)
        self.metrics.watch_capacity(self.capacity)
        # Off unless the operator allows some egress (docs/egress.md).
        self.egress = EgressProxy(settings, self.metrics) if settings.egress else None
        self.store = _file_store(settings)
        self.cluster = None
        if settings.clustered:
            from .cluster.node import ClusterNode

            self.cluster = ClusterNode(settings, self)
        self._adoptions: dict[str, str] = {}  # thread -> why it comes here from another node
        self.threads: dict[str, ThreadSession] = {}
        self.workdir_io = WorkdirExecutor()  # file work in kernel-owned dirs (workdir_io.py)
        self.results = CallResults(settings.result_retention,
                                   max_bytes=settings.result_retention_bytes)
        if self.cluster is not None:  # finished calls outlive the node that ran them
            from .cluster.results import SharedResults

            self.results = SharedResults(settings.result_retention, settings.registry_url,
                                         self.cluster.placement, self.cluster.holder,
                                         max_bytes=settings.result_retention_bytes)
        self.metrics.watch_results(self.results)
        self.metrics.watch_identities(self.live_threads_by_identity, self.store.usage_by_owner)
        self.metrics.watch_hibernation(self.hibernated_count)
        self.started = time.time()
        self.draining = False
        self.data_lock = DataDirLock(settings.data_dir)
        self._culler: asyncio.Task | None = None
        self._memory_watch: asyncio.Task | None = None
        # The pool logs each failed kernel start; the last one is the reason we report.
        self._start_failures = LastStartFailure()
        self._pool_log = logging.getLogger(KernelPool.__module__)

    async def start(self) -> None:
        """Check that kernels can start, fill the pool; ``KernelUnavailable`` says what to fix."""
        await asyncio.to_thread(check_kernel_setup, self.settings.kernels_dir,
                                self.settings.kernel_python)
        if not self.host.enabled:
            log.warning("SANDBOX DISABLED (--sandbox none): kernels run unisolated with the "
                        "gateway's privileges. Never expose this to untrusted code.")
            if self.egress is not None:
                log.warning("egress is configured but without the sandbox kernels have the "
                            "host's network: the egress policy binds only clients that use "
                            "the proxy")
        for name, how in self.host.report.enforced.items():
            log.info("sandbox enforces %s: %s", name, how)
        for name, why in self.host.report.missing.items():
            log.warning("limit not enforced: %s (%s)", name, why)
        # Before any clean-up: what lies in a data dir we hold is a dead owner's, never a
        # live gateway's (datadir.py). DataDirInUse stops a second gateway here.
        dead_owner = self.data_lock.acquire(self.settings.port or None)
        if dead_owner is not None:
            log.warning("data directory %s: its last owner (%s) did not exit cleanly; "
                        "cleaning up what it left", self.settings.data_dir,
                        dead_owner.describe())
        await asyncio.to_thread(self._clean_leftovers)
        self._pool_log.addHandler(self._start_failures)
        try:
            await fill_pool_or_give_up(self.pool, self._start_failures)
        except KernelUnavailable:
            await self.pool.close()
            self._pool_log.removeHandler(self._start_failures)
            self.data_lock.release()
            raise
        await self._start_other_languages()
        if self.cluster is not None:
            await asyncio.to_thread(self.store.ensure_bucket)
            await self.cluster.start()
        self._culler = asyncio.create_task(self._cull_idle())
        self._memory_watch = asyncio.create_task(self._watch_memory())
        log.info("gateway ready: %d warm kernels, sandbox %s", len(self.pool._warm),
                 self.host.describe() if self.host.enabled else "OFF")

    async def _start_other_languages(self) -> None:
        """Probe each other language's runtime; fill the pools of those that can run. A missing
        runtime is not fatal: Python threads work, that language is refused with the reason."""
        others = [pool for name, pool in self.pools.items() if name != languages.DEFAULT]
        reasons = await asyncio.gather(*(asyncio.to_thread(
            languages.unavailable_reason, pool.language, self.settings.kernels_dir,
            self.settings.kernel_python) for pool in others))
        for pool, reason in zip(others, reasons, strict=True):
            if reason is not None:
                self.unavailable_languages[pool.language.name] = reason
                pool.target = 0
                # Not a warning: nobody asked for it yet. A request for it gets the reason.
                log.debug("language %s unavailable: %s", pool.language.name, reason)
        await asyncio.gather(*(pool.start() for pool in others
                               if pool.language.name not in self.unavailable_languages))

    def pool_for(self, language: str) -> KernelPool:
        """The pool of a known language; ``LanguageUnavailable`` when its runtime is missing."""
        reason = self.unavailable_languages.get(language)
        if reason is not None:
            raise LanguageUnavailable(f"language {language!r} is not available on this "
                                      f"gateway: {reason}")
        return self.pools[language]

    def _clean_leftovers(self) -> None:
        """After a crash: unmount old workdirs and drop stale runtime dirs and cgroups.

        Only ever called with ``data_lock`` held: no live gateway uses any of them."""
        assert self.data_lock.held
        self.host.clean_leftovers()  # gVisor sandboxes outlive a killed gateway
        self.workdirs.remove_all()
        runtime = self.settings.runtime_dir
        if runtime.exists():
            for stale in runtime.iterdir():
                if self.host.cgroups:
                    self.host.cgroups.kill_all(stale.name)
                    self.host.cgroups.remove(stale.name)
                _remove_tree(stale)

    async def close(self) -> None:
        if self.cluster is not None:
            await self.cluster.close()
            await self.results.close()
        self._pool_log.removeHandler(self._start_failures)
        if self._culler:
            self._culler.cancel()
        if self._memory_watch:
            self._memory_watch.cancel()
        for pool in self.pools.values():  # no kernel starts for the places hibernation frees
            pool.draining = True
        await self.snapshot_threads("shutdown")
        await asyncio.gather(*(t.close() for t in self.threads.values()), return_exceptions=True)
        self.threads.clear()
        self.workdir_io.shutdown()
        await asyncio.gather(*(pool.close() for pool in self.pools.values()))
        # A kernel whose shutdown was cut short: bubblewrap's die with the gateway, gVisor's not.
        await asyncio.to_thread(self.host.clean_leftovers)
        await asyncio.to_thread(self.workdirs.remove_all)
        self.store.close()
        self.data_lock.release()

    async def drain(self, timeout: float) -> dict:
        """No new threads; let queued and running executions finish (bounded); then stop kernels."""
        self.draining = True
        for pool in self.pools.values():
            pool.draining = True
        deadline = time.monotonic() + timeout
        def pending() -> bool:
            return any(s.busy or s.queued for s in self.threads.values())

        while time.monotonic() < deadline and pending():
            await asyncio.sleep(0.05)
        unfinished = sum(s.busy + s.queued for s in self.threads.values())
        await self.snapshot_threads("shutdown")
        await asyncio.gather(*(s.close() for s in self.threads.values()), return_exceptions=True)
        self.threads.clear()
        await asyncio.gather(*(pool.close() for pool in self.pools.values()))
        return {"drained": True, "unfinished_executions": unfinished}

    def access_for(self, token: str | None) -> auth.Access | None:
        """Who a client or signed token speaks for, and which threads it may touch."""
        return auth.access_for(self.settings.tokens, token, self.signing_key)

    def signing_key(self) -> bytes:
        """The key of signed tokens in force (setting, or the data dir's file)."""
        from .signed_tokens import signing_key

        return signing_key(self.settings.token_signing_key, self.settings.data_dir)

    def identity_for(self, token: str | None) -> str | None:
        """The identity behind a client token, or None (tokens are stored hashed: auth.py)."""
        return auth.identity_for(self.settings.tokens, token)

    # -- threads ----------------------------------------------------------------------------
    def thread(self, thread_id: str, identity: str, *, create: bool) -> ThreadSession:
        """``identity``'s thread ``thread_id`` (the client's id; threads are scoped per identity,
        so another identity's id is simply a thread of its own)."""
        key = scoped_thread_id(identity, thread_id)
        session = self.threads.get(key)
        if session is None:
            if not create:
                raise NotAllowed(f"unknown thread {thread_id!r}")
            if self.draining:
                raise PoolExhausted("the gateway is draining: no new threads")
            # Refused only when the share is taken by threads that cannot give their kernel up
            # (a cell runs or waits): idle ones are hibernated when this one takes a kernel.
            self._check_thread_limit(identity, self._working_threads_of(identity))
            session = ThreadSession(key, identity, self.settings, self.pool_for,
                                    self.store, self.metrics, self.results,
                                    workdir_io=self.workdir_io)
            session.admit = lambda: self._admit(identity)
            if self.egress is not None:
                session.egress = self.egress.for_thread(key, identity)
            if self.cluster is not None:
                session.fence = self.cluster.fence
                if (reason := self._adoptions.pop(key, None)) is not None:
                    session.adopt(reason)
            self.threads[key] = session
        return session

    def kernel_count(self) -> int:
        """Python kernels leased or warm (what a cluster node reports of its load)."""
        pool = self.pool.snapshot()
        return pool.get("leased", 0) + pool.get("warm", 0)

    def live_threads_by_identity(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for session in self.threads.values():
            if session.live:
                counts[session.owner] = counts.get(session.owner, 0) + 1
        return counts

    def _working_threads_of(self, identity: str) -> int:
        """``identity``'s live threads that may not be hibernated now (a cell runs or waits,
        or their kernel is being set up)."""
        return sum(1 for s in self.threads.values()
                   if s.owner == identity and s.live and not can_hibernate(s.state()))

    async def _admit(self, identity: str) -> None:
        """A thread of ``identity`` takes a kernel. Within the share it may; at the share, the
        identity's own least recently used idle thread is hibernated for it (an identity's
        threads may far outnumber its kernels, as all threads may); when every one of its
        threads is working, it is refused."""
        limit = self.settings.identity_thread_limit
        if limit >= self.pool.capacity.limit:
            return  # no stricter than the kernel limit: the pool makes room (or refuses) itself
        live = self.live_threads_by_identity().get(identity, 0) - 1  # besides the one asking
        while live >= limit and await self.hibernate_idle(1, CAPACITY, owner=identity) == 1:
            live -= 1
        self._check_thread_limit(identity, live)

    def _check_thread_limit(self, identity: str, live: int) -> None:
        """One identity may hold at most ``max_threads_per_identity`` live threads (threads
        with a kernel or work queued), so it cannot take every kernel from the others;
        ``live``: its live threads besides the one asking."""
        limit = self.settings.identity_thread_limit
        if live >= limit:
            self.metrics.identity_limit_refusals.labels("threads").inc()
            raise IdentityLimit(f"identity {identity!r} already has {live} live threads "
                                f"(max_threads_per_identity = {limit}), each running or "
                                "waiting for a cell: wait until one is done, or close one")

    def adopt(self, thread_id: str, reason: str) -> None:
        """Cluster: this node just claimed a thread that ran elsewhere before."""
        self._adoptions[thread_id] = reason
        if (session := self.threads.get(thread_id)) is not None:
            session.adopt(reason)

    def attach(self, thread_id: str, identity: str, listener: Listener,
               since_seq: int | None = None) -> ThreadSession:
        """The thread, with ``listener`` receiving its envelopes from now on; with
        ``since_seq``, first what it missed after that seq."""
        session = self.thread(thread_id, identity, create=True)
        if since_seq is None:
            session.listeners.add(listener)
        else:
            session.resume(listener, since_seq)
        return session

    def result(self, thread_id: str, call_id: str, identity: str) -> dict | None:
        """A finished call's final status envelope (None: unknown, expired or not yours)."""
        return self.results.get(scoped_thread_id(identity, thread_id), call_id, identity)

    async def finished_call(self, thread_id: str, call_id: str,
                            identity: str) -> FinishedCall | None:
        """A finished call (None: unknown, running, expired or not yours); in a cluster also
        one that ran on another node, or on a node that is gone (then ``killed``)."""
        return await self.results.lookup(scoped_thread_id(identity, thread_id), call_id,
                                         identity)

    async def begin_call(self, session: ThreadSession, call_id: str) -> dict | None:
        """Before an execute is queued: in a cluster the call is marked running on this node
        (so its end is known if the node is lost); the final status instead if the call id ran
        before (on a node that is gone, say) and must not run again."""
        earlier = await self.results.begin(session.thread_id, call_id, session.owner)
        return earlier.status if earlier is not None else None

    def call_refused(self, session: ThreadSession, call_id: str) -> None:
        """The execute ``begin_call`` let through was refused before it was queued."""
        self.results.refused(session.thread_id, call_id, session.owner)

    def detach(self, listener: Listener) -> None:
        """A connection went away. Threads it only watched and never used are forgotten, so
        subscribing to made-up ids cannot pile up sessions."""
        for thread_id, session in list(self.threads.items()):
            session.listeners.discard(listener)
            if not session.listeners and session.unused:
                del self.threads[thread_id]
                if self.cluster is not None:
                    self.cluster.released(thread_id)

    async def close_thread(self, thread_id: str, identity: str) -> None:
        session = self.thread(thread_id, identity, create=False)
        del self.threads[session.thread_id]
        await session.close()
        await session.snapshots.cleared()  # a closed thread's id, used again, starts clean
        session.emit(envelopes.status("closed"), None)
        if self.cluster is not None:
            self.cluster.released(session.thread_id)

    async def upload(self, session: ThreadSession, request: Upload) -> dict:
        """Place a user file (or one part of it) in the thread's working directory."""
        root = await session.workdir()
        result = await session.workdir_jobs.run(self._write_upload, root, request)
        if self.cluster is not None and result.get("path"):
            # Several nodes: the thread may move; its uploads must be in the shared store.
            stored = await self._persist_upload(session, root, request.filename)
            result.update(file_id=stored.id, sha256=stored.sha256)
        return result

    async def _persist_upload(self, session: ThreadSession, root: Path,
                              name: str) -> StoredFile:
        def store() -> StoredFile:
            try:
                reader = open_regular_file(root, name)
            except UnsafePath as exc:  # the kernel swapped the file for a link or a FIFO
                raise ProtocolError(f"upload refused: {exc.strerror or exc}",
                                    code="bad_filename") from exc
            with reader:
                return self.store.put_stream(session.thread_id, session.owner, name, reader)

        stored = await session.workdir_jobs.run(store)
        session.note_saved(name)
        return stored

    def _write_upload(self, root: Path, request: Upload) -> dict:
        # Parts collect in a hidden file at the top: never announced as generated, never over
        # NAME_MAX. Every path is opened from directory descriptors without following links
        # (workdirs.open_directory): the kernel may race symlinks into the directory.
        partial = f".upload-{request.call_id or secrets.token_hex(8)}"
        root_fd = open_directory(root, [])
        try:
            return self._write_upload_at(root_fd, partial, request)
        except ProtocolError:
            _unlink_at(partial, root_fd)
            raise
        except UnsafePath as exc:
            _unlink_at(partial, root_fd)
            raise ProtocolError(f"upload refused: {exc.strerror or exc}",
                                code="bad_filename") from exc
        except OSError as exc:  # the thread's disk cap (ENOSPC), for one
            _unlink_at(partial, root_fd)
            raise ProtocolError(f"upload failed: {exc.strerror}", code="upload_failed") from exc
        finally:
            os.close(root_fd)

    def _write_upload_at(self, root_fd: int, partial: str, request: Upload) -> dict:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        if request.offset == 0:
            _unlink_at(partial, root_fd)
        # The kernel may have made the partial file a FIFO or a link since the last part.
        fd = open_regular_for_writing(root_fd, partial, flags)
        give_to_directory_owner(root_fd, partial)
        with os.fdopen(fd, "ab") as handle:
            size = os.fstat(fd).st_size
            if request.offset != size:
                raise ProtocolError(f"upload part at offset {request.offset}, expected {size}; "
                                    "start again at offset 0", code="bad_offset")
            if size + len(request.data) > self.settings.max_upload_total:
                raise ProtocolError(f"upload larger than {self.settings.max_upload_total} "
                                    "bytes", code="too_large")
            handle.write(request.data)
            total = size + len(request.data)
        if not request.final:
            return {"filename": request.filename, "received": total, "final": False}
        *parents, name = request.filename.split("/")
        parent_fd = open_directory(root_fd, parents, create=True)
        try:
            os.rename(partial, name, src_dir_fd=root_fd, dst_dir_fd=parent_fd)
        finally:
            os.close(parent_fd)
        return {"filename": request.filename, "size": total,
                "path": f"/mnt/data/{request.filename}"}

    async def snapshot_threads(self, why: str) -> None:
        """Hibernate every idle thread that has a kernel, at once (bounded by
        snapshot_timeout): the next gateway on this data directory restores them."""
        sessions = [s for s in self.threads.values()
                    if s.kernel is not None and not s.closed and not s.busy]
        if not sessions or not self.settings.snapshots:
            return
        try:
            await asyncio.wait_for(
                asyncio.gather(*(s.hibernate(SHUTDOWN, DESCRIPTIONS[SHUTDOWN])
                                 for s in sessions), return_exceptions=True),
                self.settings.snapshot_timeout)
        except TimeoutError:
            log.warning("%s: snapshots not finished after %.0f s; going on without them", why,
                        self.settings.snapshot_timeout)

    async def notebook(self, thread_id: str, identity: str) -> bytes | None:
        """The thread as an ``.ipynb`` for its owner; None for unknown, empty or not yours."""
        key = scoped_thread_id(identity, thread_id)
        if (session := self.threads.get(key)) is not None:
            await session.cells_stored()
        return await asyncio.to_thread(notebook_bytes, self.store, key, identity)

    async def _cull_idle(self) -> None:
        while True:
            await asyncio.sleep(min(CULL_INTERVAL, self.settings.hibernate_after))
            try:
                await self.hibernate_idle(len(self.threads), IDLE, idle_since=time.monotonic()
                                          - self.settings.hibernate_after)
            except Exception:  # one thread's failure must not end hibernation for all
                log.exception("hibernating idle threads failed")

    # -- hibernation ------------------------------------------------------------------------
    async def hibernate_idle(self, count: int, reason: str, idle_since: float | None = None,
                             owner: str | None = None) -> int:
        """Hibernate up to ``count`` idle threads, least recently used first (with
        ``idle_since``: only those not active since that monotonic time; with ``owner``: only
        that identity's); how many were. Never a thread with a running, queued or restoring
        cell. For the idle culler, for a lease at capacity, for an identity at its share, and
        for the memory watch (reason "pressure")."""
        done = 0
        for _ in range(count + len(self.threads)):  # a thread that got busy meanwhile is passed
            if done >= count:
                break
            chosen = least_recent_idle((s.state() for s in self.threads.values()
                                        if owner is None or s.owner == owner), 1, idle_since)
            if not chosen:
                break
            session = self.threads[chosen[0]]
            idle = time.monotonic() - session.last_active
            # Chosen and locked with no await in between: two callers never pick the same one.
            if await session.hibernate(reason, DESCRIPTIONS.get(reason, reason).format(
                    idle=idle)):
                done += 1
        return done

    async def hibernate_least_recent(self, min_idle: float = 0.0) -> bool:
        """The pool is at max_kernels and a thread needs a kernel (``min_idle`` 0), or the pool
        keeps a warm kernel for the next one (threads idle ``min_idle`` seconds and more): the
        least recently used idle thread gives up its own (the pool's ``make_room``)."""
        if min_idle <= 0:
            return await self.hibernate_idle(1, CAPACITY) == 1
        return await self.hibernate_idle(1, HEADROOM,
                                         idle_since=time.monotonic() - min_idle) == 1

    def hibernated_count(self) -> int:
        return sum(1 for s in self.threads.values() if s.hibernated is not None)

    def hibernation_stats(self) -> dict:
        return self.metrics.hibernation.snapshot(self.hibernated_count())

    async def _watch_memory(self) -> None:
        """Under host memory pressure, the least recently used idle threads are hibernated
        (their kernels stop) before the OOM killer picks a kernel."""
        pressed = False
        while True:
            await asyncio.sleep(PRESSURE_INTERVAL)
            memory = await asyncio.to_thread(host_memory.read_memory)
            floor = self.pool.capacity.floor
            reason = host_memory.under_pressure(memory, floor)
            if reason is not None and not pressed:
                log.warning("%s", reason)
            pressed = reason is not None
            if reason is not None:
                try:
                    await self.hibernate_idle(host_memory.kernels_to_free(memory, floor), PRESSURE)
                except Exception:  # the next look tries again; the watch must go on
                    log.exception("hibernating idle threads under memory pressure failed")
            else:
                for pool in self.pools.values():
                    pool.refill()

    # -- introspection ----------------------------------------------------------------------
    def capacity(self) -> dict:
        """The kernel limit and memory floor in force, and the host's memory now."""
        ids = [kernel.id for pool in self.pools.values() for kernel, _ in pool.kernels()]
        return self.pool.capacity.snapshot(ids)

    def readiness(self) -> dict:
        """For /readyz: ready when a new thread gets a warm kernel at once; else the reason."""
        snapshot = self.pool.snapshot()
        reason = not_ready_reason(snapshot, self._start_failures.message)
        if reason is not None and (refusal := self.pool.admission()) is not None:
            reason = f"{reason}; no kernel may start: {refusal}"
        if self.cluster is not None and self.cluster.draining:
            reason = f"node {self.cluster.node_id} is draining: it takes no new threads"
        if snapshot["failing_starts"] >= FAILING_STARTS_REPORTED:
            failing = (f"kernel starts keep failing: {snapshot['failing_starts']} in a row, "
                       f"the last with: {snapshot['last_start_error']}")
            reason = failing if reason is None else f"{reason}; {failing}"
        return {"ready": reason is None, "reason": reason, "pool": snapshot}

    def health(self) -> dict:
        pool = self.pool.snapshot()
        # Alive, but not hiding kernel starts that keep failing nor a fallback from forking.
        degraded = degraded_reason(pool, FAILING_STARTS_REPORTED)
        return {
            "status": "degraded" if degraded else "ok",
            "reason": degraded,
            "sandbox": self.host.describe(),
            "limits": {"enforced": self.host.report.enforced,
                       "not_enforced": self.host.report.missing},
            "pool": pool,
            "capacity": self.capacity(),
            "languages": self.languages(),
            "threads": len(self.threads),
            "uptime_seconds": round(time.time() - self.started, 1),
        }


    def languages(self) -> dict:
        """Each language: can it run here (else why), and its pool."""
        return {name: {"available": name not in self.unavailable_languages,
                       "reason": self.unavailable_languages.get(name),
                       "pool": {key: pool.snapshot()[key] for key in
                                ("target", "warm", "starting", "leased")}}
                for name, pool in self.pools.items()}


def _host_sandbox(settings: Settings) -> HostSandbox:
    """One sandbox for the whole gateway: a tenant picks the language of each thread, so a
    weaker pool beside a gVisor one would be the way around it."""
    if settings.sandbox == "gvisor":
        from .sandbox.gvisor import GvisorHost

        return GvisorHost(settings.gvisor_platform, settings.data_dir / "gvisor",
                          drop_uid=settings.kernel_uid_base > 0)
    return HostSandbox(enabled=settings.sandbox != "none", drop_uid=settings.kernel_uid_base > 0)


def _file_store(settings: Settings):
    """SQLite and local disk; with a registry and a store URL, the cluster's shared store."""
    if not settings.clustered:
        return FileStore(settings.data_dir / "files", settings.thread_file_quota,
                         settings.total_file_quota, settings.identity_file_limit)
    if not settings.store_url:
        raise ValueError("registry_url needs store_url too: the nodes must share files")
    from .cluster.objectstore import ObjectFileStore

    return ObjectFileStore(settings.data_dir / "files", settings.thread_file_quota,
                           settings.total_file_quota,
                           identity_quota=settings.identity_file_limit,
                           registry_url=settings.registry_url,
                           store_url=settings.store_url, endpoint=settings.store_endpoint,
                           region=settings.store_region, key_id=settings.store_key_id,
                           key=settings.store_key)


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _unlink_at(name: str, dir_fd: int) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
