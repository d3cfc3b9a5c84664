"""A pre-warmed pool of sandboxed kernels; a new thread leases a warm one at once.

Kernels are started ahead of time with a fresh working directory each; leasing hands both to
the thread. The pool refills in the background; a kernel starts only when ``Capacity``
(capacity.py) admits it: fewer than ``max_kernels`` in total and room in the host's memory as
kernels really use it. How many it keeps warm follows demand (``WarmTarget`` in demand.py
decides, this shell feeds it leases and the clock).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from ...config import Settings
from ...errors import KernelStartError, PoolExhausted, ZygoteUnavailable
from ...sandbox.egress_proxy import egress_environment
from ...sandbox.forkserver import EXEC_COST, Zygote
from ...sandbox.launch import HostSandbox, SandboxSpec, prepare_matplotlib_cache
from ...sandbox.limits import LimitValues
from ...sandbox.workdirs import Workdirs
from ...wire.snapshot_format import snapshot_environment
from ..kernel import Kernel
from ..languages import PYTHON, Language
from .capacity import Capacity
from .demand import Decision, WarmTarget

log = logging.getLogger(__name__)

REFILL_DELAY = 0.25  # seconds between a lease and the start of its replacement
# After failed starts the pool waits 1, 2, 4, ... up to this many seconds before the next one.
LONGEST_REFILL_BACKOFF = 30.0
CLOSE_MARGIN = 10.0  # seconds past kernel_start_timeout that close() waits for starts to end
FORK_STARTS_PER_CORE = 4  # concurrent kernel starts per core when kernels are forked
# How often the adaptive target is recomputed without a lease (so it falls back when idle).
RETARGET_INTERVAL = 5.0
# A thread idle this long may be hibernated so that the pool, at its kernel limit, keeps its warm
# kernels: the next new or waking thread then leases one at once instead of waiting for a
# hibernation and a start. Shorter idles are left alone (a conversation between turns).
HEADROOM_IDLE = 30.0
# A lease that may not start a kernel looks again this often: memory is freed without telling
# the pool, and a thread whose cell ends frees nothing by itself but becomes one to hibernate.
RECHECK = 1.0


@dataclass
class PoolStats:
    warm: int = 0
    starting: int = 0
    leased: int = 0
    leases: int = 0
    warm_hits: int = 0
    waits: int = 0
    starts: int = 0
    start_failures: int = 0
    restarts: int = 0
    deaths: int = 0
    heals: int = 0  # kernels started on a fresh working directory with restored files
    failing_starts: int = 0  # consecutive failed starts (0 after any success)
    last_start_error: str | None = None
    start_seconds: list[float] = field(default_factory=list)


class KernelPool:
    """The kernels of one language. Pools of several languages form a ``group`` that shares
    ``max_kernels`` and the host's memory (one ``Capacity``, and one condition, so a kernel
    freed in one wakes a lease in another)."""

    def __init__(self, settings: Settings, host: HostSandbox, workdirs: Workdirs,
                 language: Language = PYTHON, size: int | None = None,
                 group: list[KernelPool] | None = None) -> None:
        self.settings = settings
        self.host = host
        self.workdirs = workdirs
        self.language = language
        floor = settings.pool_size if size is None else size
        self.stats = PoolStats()
        self.group = group if group is not None else []
        self.group.append(self)
        self.capacity: Capacity = (self.group[0].capacity if len(self.group) > 1
                                   else Capacity(settings, host.cgroups))
        self.demand = WarmTarget(
            floor, self.capacity.limit, rate_window=settings.pool_rate_window,
            burst_window=settings.pool_burst_window, horizon=settings.pool_horizon)
        self.decision: Decision = self.demand.decide(time.monotonic())
        self.target = floor
        self._waiting = 0  # new threads waiting in lease() for a kernel
        # Set by the gateway: hibernate the least recently used idle thread (of any language),
        # True when one was. The pool knows kernels, not threads.
        # ``make_room(min_idle)``: only a thread idle for at least ``min_idle`` seconds.
        self.make_room: Callable[[float], Awaitable[bool]] | None = None
        self._making_headroom = False  # a _headroom() task runs (one per pool)
        self.headroom_idle = HEADROOM_IDLE
        # Places make_room is freeing or freed for a lease of this pool, not yet taken: no
        # refill and no other lease may take them.
        self._reserved = 0
        self._warming = 0  # of _starting: kernels on their way to the warm list
        self.draining = False
        self._warm: list[Kernel] = []
        self._leased: set[Kernel] = set()
        self._starting = 0
        self._changed: asyncio.Condition = (
            self.group[0]._changed if len(self.group) > 1 else asyncio.Condition())
        self._tasks: set[asyncio.Task] = set()
        self._python_roots = tuple(sorted({Path(sys.prefix), Path(sys.base_prefix)}))
        self._mpl_cache: Path | None = None
        # Python kernels are forked from it (gateway/sandbox/forkserver.py).
        self.zygote: Zygote | None = None
        self.start_method = "exec"
        self.start_method_reason = "not a Python pool"
        # Why Python kernels are exec'd though the zygote was to fork them (None: they are not).
        self.start_method_fallback: str | None = None
        # Kernel starts are CPU-bound (fork, bwrap, imports): at most one per core at a time, so
        # a burst makes kernels ready one after another instead of all at the very end.
        self._start_slots = asyncio.Semaphore(max(1, os.cpu_count() or 1))

    @property
    def total(self) -> int:
        return len(self._warm) + len(self._leased) + self._starting

    @property
    def group_total(self) -> int:
        """Kernels of every language: what ``max_kernels`` bounds."""
        return sum(pool.total for pool in self.group)

    def admission(self) -> str | None:
        """May one more kernel (of any language) start now? None: yes; else why not. A place
        reserved for a lease that hibernated a thread for it counts as taken."""
        return self.capacity.admits(self._places_taken(),
                                    sum(pool._starting for pool in self.group))

    def _places_taken(self) -> int:
        """Kernels of every language, and places reserved for leases that hibernated for them."""
        return self.group_total + sum(pool._reserved for pool in self.group)

    async def start(self) -> None:
        """Prepare shared caches and fill the pool; returns when the first kernels are warm."""
        self._mpl_cache = await asyncio.to_thread(
            prepare_matplotlib_cache, self.settings.kernel_python,
            self.settings.data_dir / "matplotlib")
        self._choose_start_method()
        self._refill()
        if self.settings.pool_adaptive:
            self._spawn(self._retarget_periodically())
        async with self._changed:
            await self._changed.wait_for(
                lambda: len(self._warm) >= min(self.target, self.capacity.limit)
                or self._starting == 0)

    def _choose_start_method(self) -> None:
        s = self.settings
        if self.language.name != PYTHON.name:
            return
        problem = (self.host.fork_problem() if s.kernel_start == "fork"
                   else "kernel_start = exec")
        if problem is not None:
            self.start_method_reason = problem
            if s.kernel_start == "fork" and self.host.forks_kernels:
                log.warning("Python kernels start as fresh interpreters, not forked (%s): %s",
                            EXEC_COST, problem)
            return
        self.zygote = Zygote(self.host, s.kernel_python, s.kernels_dir / "startup",
                             self._mpl_cache, s.runtime_dir, self._python_roots,
                             tuple(snapshot_environment(s).items()))
        self.start_method = "fork"
        self.start_method_reason = "forked from the zygote, confined before any user code"
        # A forked start is mostly waiting (handshakes, the kernel's own short set-up), not
        # one core's worth of imports: more of them overlap.
        self._start_slots = asyncio.Semaphore(FORK_STARTS_PER_CORE * (os.cpu_count() or 1))

    def _fall_back_to_exec(self, cause: str) -> None:
        log.warning("Python kernels start as fresh interpreters from now on, not forked (%s): "
                    "%s", EXEC_COST, cause)
        self.zygote, self.start_method = None, "exec"
        self.start_method_reason = self.start_method_fallback = cause
        self._start_slots = asyncio.Semaphore(max(1, os.cpu_count() or 1))

    def _retarget(self) -> None:
        """Ask the policy for the warm target now; trim warm kernels above it, start up to it."""
        if self.settings.pool_adaptive:
            self.decision = self.demand.decide(time.monotonic(), leased=len(self._leased),
                                               waiting=self._waiting)
            self.target = self.decision.target
        else:
            self.target = self.demand.floor
        self._trim()
        self._refill()

    async def _retarget_periodically(self) -> None:
        while not self.draining:
            await asyncio.sleep(RETARGET_INTERVAL)
            self._retarget()

    def _trim(self) -> None:
        extra = self._warm[self.target:]
        del self._warm[self.target:]
        for kernel in extra:
            self._spawn(self._discard(kernel))

    def _spec(self, workdir: Path) -> SandboxSpec:
        s = self.settings
        kernel_id = "k" + secrets.token_hex(6)
        runtime = s.runtime_dir / kernel_id
        runtime.mkdir(parents=True, mode=0o700)
        return SandboxSpec(
            kernel_id=kernel_id,
            workdir=workdir,
            runtime_dir=runtime,
            startup_dir=s.kernels_dir / "startup",
            python_roots=self._python_roots,
            limits=LimitValues(s.memory_limit, s.pids_limit, s.cpu_limit,
                               s.file_size_limit, s.open_files_limit),
            mpl_cache=self._mpl_cache,
            enabled=self.host.enabled,
            uid=self.workdirs.owner(workdir),
            environment=tuple({**snapshot_environment(s),
                               **egress_environment(s, runtime)}.items()),
        )

    async def _start_kernel(self, workdir: Path) -> Kernel:
        kernel = Kernel(self._spec(workdir), self.host, self.settings.kernels_dir,
                        self.settings.kernel_python, self.language.kernel_name,
                        self.language.warm_up, self.language.tcp_bridge,
                        self.language.late_output_grace,
                        self.language.program if self.language.interrupt_by_signal else None,
                        self.zygote)
        began = time.monotonic()
        self.stats.starts += 1
        try:
            async with self._start_slots:
                began = time.monotonic()
                await kernel.start(self.settings.kernel_start_timeout)
        except KernelStartError as exc:
            if isinstance(exc.__cause__, ZygoteUnavailable):
                # A kernel image the zygote cannot preload still starts the slow way. Starts
                # that waited for the same zygote learn it too: the first one switches the pool.
                if self.zygote is not None:
                    self._fall_back_to_exec(str(exc.__cause__))
                return await self._start_kernel(workdir)
            self.stats.start_failures += 1
            self.stats.failing_starts += 1
            self.stats.last_start_error = str(exc)
            raise
        self.stats.failing_starts = 0
        self.stats.start_seconds = [*self.stats.start_seconds[-99:], time.monotonic() - began]
        log.info("kernel %s started in %.2f s", kernel.id, time.monotonic() - began)
        return kernel

    def _refill(self) -> None:
        while self._short_of_warm() and self.admission() is None:
            self._start_warm()
        if (self._short_of_headroom() and self._at_kernel_limit() and self.make_room is not None
                and not self._making_headroom):
            self._making_headroom = True
            self._spawn(self._headroom())

    def _start_warm(self) -> None:
        self._starting += 1
        self._warming += 1
        self._spawn(self._warm_one())

    def _short_of_warm(self) -> bool:
        return not self.draining and len(self._warm) + self._starting < self.target

    def _short_of_headroom(self) -> bool:
        """Fewer warm kernels than the floor (``pool_size``): only that many are kept by
        hibernating threads. A burst's higher target would have idle threads hibernated for
        kernels that may never be asked for."""
        return (not self.draining
                and len(self._warm) + self._starting < min(self.target, self.demand.floor))

    def _at_kernel_limit(self) -> bool:
        """Every place under ``max_kernels`` taken (reserved ones included). Only then does a
        hibernation buy a warm kernel: a refusal for memory is the memory watch's to answer."""
        return self._places_taken() >= self.capacity.limit

    async def _headroom(self) -> None:
        """At the kernel limit with fewer warm kernels than the floor (``pool_size``):
        hibernate threads idle for ``headroom_idle`` seconds, least recently used first, one
        warm kernel each, so a lease finds one ready. Stops when no such thread is left."""
        assert self.make_room is not None  # _refill() checked
        try:
            while self._short_of_headroom() and self._at_kernel_limit():
                self._reserved += 1  # the victim's release must not start someone else's
                try:
                    freed = await self.make_room(self.headroom_idle)
                except Exception:  # the next retarget tries again
                    log.exception("hibernating an idle thread for a warm kernel failed")
                    freed = False
                self._reserved -= 1
                if not freed or not self._short_of_headroom():
                    return
                self._start_warm()
        finally:
            self._making_headroom = False

    def refill(self) -> None:
        """Start warm kernels up to the target as far as capacity admits: memory comes back
        without a lease or a release to say so."""
        self._refill()

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _warm_one(self) -> None:
        kernel = None
        try:
            workdir = await self._new_workdir()
            try:
                kernel = await self._start_kernel(workdir)
            except KernelStartError as exc:
                log.error("%s", exc)
                await asyncio.to_thread(self.workdirs.remove, workdir)
                # Do not spin on a broken kernel image: back off while starts keep failing.
                await asyncio.sleep(min(LONGEST_REFILL_BACKOFF,
                                        2.0 ** max(0, self.stats.failing_starts - 1)))
        except BaseException:
            self._starting -= 1
            self._warming -= 1
            raise
        async with self._changed:
            self._starting -= 1
            self._warming -= 1
            if kernel is not None:
                if self.draining:
                    self._spawn(self._discard(kernel))
                else:
                    self._warm.append(kernel)
            self._changed.notify_all()
        self._refill()

    async def lease(self) -> Kernel:
        """A warm kernel (with its fresh working directory) for a new thread.

        When none is warm and the pool is at its maximum, the least recently used idle thread
        is hibernated for it (``make_room``); when every thread is busy, wait up to
        ``lease_wait`` seconds for capacity, then raise ``PoolExhausted``.
        """
        if self.draining:
            raise PoolExhausted("the gateway is draining: no new threads")
        self.stats.leases += 1
        self.demand.leased(time.monotonic())
        if not self._warm:
            self.stats.waits += 1
        else:
            self.stats.warm_hits += 1
        deadline = time.monotonic() + self.settings.lease_wait
        while True:
            while self._warm:
                kernel = self._warm.pop(0)
                if await kernel.is_alive():
                    self._leased.add(kernel)
                    # Start the replacement a moment later: its launch (fork, bwrap, imports)
                    # would otherwise compete with this thread's first cell for the CPU.
                    asyncio.get_running_loop().call_later(REFILL_DELAY, self._retarget)
                    return kernel
                self.stats.deaths += 1
                self._spawn(self._discard(kernel))
            if self.admission() is not None:
                self._retire_warm_elsewhere()
            refusal = self.admission()
            if refusal is None:
                return await self._start_leased()
            # A warm kernel on its way that no other waiter claims is this lease's: no thread
            # is hibernated for a place that is about to be free anyway.
            if self._warming <= self._waiting and await self._make_room():
                return await self._start_leased(reserved=True)
            remaining = deadline - time.monotonic()
            if self._starting:
                # A kernel on its way is worth waiting for even past ``lease_wait``.
                remaining = max(remaining, self.settings.kernel_start_timeout)
            if remaining <= 0:
                raise PoolExhausted(f"no kernel for a new thread: {refusal}; try again later")
            self._waiting += 1
            try:
                async with self._changed:
                    try:
                        await asyncio.wait_for(self._changed.wait(), min(remaining, RECHECK))
                    except TimeoutError:
                        pass
            finally:
                self._waiting -= 1
            self._refill()

    async def _make_room(self) -> bool:
        """Hibernate an idle thread for this lease; its place stays reserved for it (True)."""
        if self.make_room is None:
            return False
        self._reserved += 1  # before the victim's release, which refills every pool
        try:
            freed = await self.make_room(0.0)
        except Exception:  # a failed hibernation must not fail the lease: it waits instead
            log.exception("hibernating an idle thread for a new one failed")
            freed = False
        if not freed:
            self._reserved -= 1
        return freed

    def _retire_warm_elsewhere(self) -> None:
        """No more kernels may start (``max_kernels`` or memory) and this language needs one:
        an idle warm kernel of another language (kept for threads that may never come) gives
        up its place to a thread that is here now."""
        for pool in self.group:
            if pool is not self and pool._warm:
                kernel = pool._warm.pop()
                log.info("kernel %s (%s, warm) shut down: a %s thread needs its place",
                         kernel.id, pool.language.name, self.language.name)
                pool._spawn(pool._discard(kernel))
                return

    async def _start_leased(self, reserved: bool = False) -> Kernel:
        # Counted from here to the end, whatever happens: a lease cancelled on the way (its
        # thread closed, its client gone) must not leave a start counted that never ends.
        self._starting += 1
        if reserved:  # the place make_room freed becomes this start's, with no gap between
            self._reserved -= 1
        try:
            self._retarget()  # a burst: warm kernels for the threads after this one
            workdir = await self._new_workdir()
            try:
                kernel = await self._start_kernel(workdir)
            except BaseException:
                await asyncio.shield(asyncio.to_thread(self.workdirs.remove, workdir))
                raise
        finally:
            self._starting -= 1
        self._leased.add(kernel)
        return kernel

    async def _new_workdir(self) -> Path:
        """A fresh working directory. One whose caller is cancelled while it is being made
        is removed once it exists: its mount and uid are not left behind."""
        making = asyncio.ensure_future(asyncio.to_thread(self.workdirs.create))
        try:
            return await asyncio.shield(making)
        except asyncio.CancelledError:
            def remove(made: asyncio.Future[Path]) -> None:
                if not made.cancelled() and made.exception() is None:
                    self._spawn(asyncio.to_thread(self.workdirs.remove, made.result()))

            making.add_done_callback(remove)
            raise

    async def replace(self, old: Kernel, *, died: bool) -> Kernel:
        """A fresh kernel on the same working directory (after death, timeout or restart)."""
        workdir = old.spec.workdir
        await self._release(old, keep_workdir=True)
        if died:
            self.stats.deaths += 1
        else:
            self.stats.restarts += 1
        self._starting += 1
        try:
            kernel = await self._start_kernel(workdir)
        finally:
            self._starting -= 1
        self._leased.add(kernel)
        return kernel

    def problem(self, kernel: Kernel) -> str | None:
        """Why a leased kernel's surroundings are broken beyond a plain restart (None: fine)."""
        problem = self.workdirs.problem(kernel.spec.workdir)
        if problem is None and not kernel.spec.runtime_dir.is_dir():
            problem = "its runtime directory was removed"
        return problem

    async def rebuild(self, old: Kernel, prepare: Callable[[Path], object]) -> Kernel:
        """A fresh kernel on a fresh working directory (and so a new uid, runtime dir and
        cgroup), for a thread whose surroundings were taken away; ``prepare(workdir)`` fills
        the directory (blocking, in a worker thread) before the kernel starts on it."""
        await self._release(old, keep_workdir=False)
        self._starting += 1
        try:
            workdir = await self._new_workdir()
            try:
                await asyncio.to_thread(prepare, workdir)
                kernel = await self._start_kernel(workdir)
            except BaseException:
                await asyncio.to_thread(self.workdirs.remove, workdir)
                raise
        finally:
            self._starting -= 1
        self.stats.heals += 1
        self._leased.add(kernel)
        return kernel

    async def release(self, kernel: Kernel, *, keep_workdir: bool = False) -> None:
        """The thread is done with this kernel: shut it down, free its place."""
        await self._release(kernel, keep_workdir=keep_workdir)
        for pool in self.group:  # the place it freed may be another language's to fill
            pool._refill()

    async def _release(self, kernel: Kernel, *, keep_workdir: bool) -> None:
        self._leased.discard(kernel)
        await kernel.shutdown()
        if not keep_workdir:
            await asyncio.to_thread(self.workdirs.remove, kernel.spec.workdir)
        async with self._changed:
            self._changed.notify_all()

    async def _discard(self, kernel: Kernel) -> None:
        await kernel.shutdown()
        await asyncio.to_thread(self.workdirs.remove, kernel.spec.workdir)

    def resize(self, size: int) -> None:
        """Keep ``size`` kernels warm now, and at least that many later (the adaptive
        target's floor; demand seen before is forgotten)."""
        self.demand.resize(size)
        self._retarget()

    def kernels(self) -> list[tuple[Kernel, str]]:
        return [(k, "idle") for k in self._warm] + [(k, "leased") for k in self._leased]

    def snapshot(self) -> dict:
        self.stats.warm = len(self._warm)
        self.stats.starting = self._starting
        self.stats.leased = len(self._leased)
        starts = sorted(self.stats.start_seconds)
        decision = self.decision
        return {
            "language": self.language.name,
            "target": self.target,
            "target_reason": decision.reason if self.settings.pool_adaptive
            else "pool_size (adaptive target off)",
            "target_driver": decision.driver if self.settings.pool_adaptive else "floor",
            "floor": self.demand.floor,
            "ceiling": self.demand.ceiling,
            "new_threads_per_minute": round(decision.rate_per_minute, 2),
            "recent_new_threads": decision.recent_leases,
            "waiting": self._waiting,
            "reserved": sum(pool._reserved for pool in self.group),
            "max_kernels": self.capacity.limit,  # in force: 0 in the settings is resolved
            "warm": len(self._warm),
            "starting": self._starting,
            "leased": len(self._leased),
            "leases": self.stats.leases,
            "warm_hits": self.stats.warm_hits,
            "waits": self.stats.waits,
            "starts": self.stats.starts,
            "start_failures": self.stats.start_failures,
            "restarts": self.stats.restarts,
            "deaths": self.stats.deaths,
            "heals": self.stats.heals,
            "failing_starts": self.stats.failing_starts,
            "last_start_error": self.stats.last_start_error,
            "median_start_seconds": starts[len(starts) // 2] if starts else None,
            "start_method": self.start_method,
            "start_method_reason": self.start_method_reason,
            "start_method_fallback": self.start_method_fallback,
            "draining": self.draining,
        }

    async def close(self) -> None:
        """Shut down every kernel, warm or leased, and wait for kernels still starting."""
        self.draining = True
        # Bounded: a start takes at most kernel_start_timeout; should the count ever be wrong,
        # the gateway still stops (and says so) instead of waiting for a start that never ends.
        deadline = time.monotonic() + self.settings.kernel_start_timeout + CLOSE_MARGIN
        while self._starting and time.monotonic() < deadline:
            async with self._changed:
                try:
                    await asyncio.wait_for(self._changed.wait(), 1.0)
                except TimeoutError:
                    pass
        if self._starting:
            log.warning("%s pool: %d kernel start(s) still counted at close; not waiting longer",
                        self.language.name, self._starting)
        kernels = self._warm + list(self._leased)
        self._warm.clear()
        self._leased.clear()
        await asyncio.gather(*(self._discard(k) for k in kernels))
        if self.zygote is not None:
            await self.zygote.close()
        for task in list(self._tasks):
            task.cancel()
