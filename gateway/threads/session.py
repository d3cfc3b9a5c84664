"""One chat thread: its kernel, its ordered execution queue, its listeners and its files."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from ..egress_policy import Rule
from ..errors import GatewayError, KernelStartError, LanguageMismatch, ProtocolError, QueueFull
from ..execution import languages
from ..sandbox.workdirs import changed_files, display_name, open_regular_file, snapshot
from ..wire import envelopes
from ..wire.hotcode import HotCodeStream
from ..wire.jupyter import CellEnd
from ..wire.protocol import client_thread_id
from ..wire.replay import CallResults, ReplayBuffer, final_state, seq_origin
from ..wire.snapshot_format import restored_line
from ..wire.tool_output import tool_output
from ..wire.translate import Display, DisplayedFile, OutputTranslator
from .cells import CELL_NAME, CellRecord
from .healing import StartBackoff, latest_versions, restore_files
from .hibernation import ThreadState, can_hibernate
from .snapshots import ThreadSnapshots

if TYPE_CHECKING:
    from ..config import Settings
    from ..execution.kernel import Kernel, RunResult
    from ..execution.pool import KernelPool
    from ..ops.metrics import Metrics
    from ..sandbox.egress_proxy import ThreadEgress
    from ..sandbox.workdir_io import ThreadWorkdirJobs, WorkdirExecutor
    from .files import FileStore, StoredFile

log = logging.getLogger(__name__)

REMEMBERED_CALLS = 1024  # executed call ids kept to refuse late deltas
INLINE_SNAPSHOT_FILES = 64  # a workdir this small is scanned inline (~20 us), not in a thread


class Listener(Protocol):
    """A connection that receives a thread's envelopes (its creator and its subscribers)."""

    def send(self, message: dict) -> None: ...


@dataclass
class JupyterCell:
    """A Jupyter client's execute_request queued as one of the thread's cells: sent to the
    kernel as it is; ``done`` is told how it ended, exactly once, however it ends."""

    request: dict = field(repr=False)  # header, metadata, content
    on_stdin: Callable[[dict], None]
    done: Callable[[CellEnd], None]
    # Awaited once the kernel is there, before the cell is sent: the client's own sockets on
    # a kernel that just came (woken, replaced) must deliver iopub first, or the cell's
    # output would go past them.
    before_run: Callable[[], Awaitable[None]] | None = None


@dataclass
class Job:
    call_id: str
    code: str
    timeout: float
    env: dict[str, str] | None = field(default=None, repr=False)  # this cell's alone
    egress: tuple[Rule, ...] | None = None  # this cell's narrowing of the thread's egress
    jupyter: JupyterCell | None = None

    def refused(self, reason: str) -> None:
        """The cell never reached the kernel."""
        if self.jupyter is not None:
            self.jupyter.done(CellEnd("refused", reason=reason, idle_sent=False))


class ThreadSession:
    # Class-level too: the kernel setter reads both, even on a session built without __init__.
    egress: ThreadEgress | None = None
    _kernel: Kernel | None = None

    def __init__(self, thread_id: str, owner: str, settings: Settings,
                 pool_for: Callable[[str], KernelPool], store: FileStore, metrics: Metrics,
                 results: CallResults | None = None, *,
                 workdir_io: WorkdirExecutor) -> None:
        self.thread_id = thread_id  # scoped per identity (protocol.scoped_thread_id)
        self.owner = owner
        self.settings = settings
        self._pool_for = pool_for  # a language's pool (LanguageUnavailable if it cannot run)
        self.language: str | None = None  # fixed by the first request naming one, or the lease
        self.store = store
        self.metrics = metrics
        self.results = results
        self.replay = ReplayBuffer(settings.replay_buffer_bytes, settings.replay_buffer_seconds,
                                   start_after=seq_origin())
        self._call_files: dict[str, list[dict]] = {}  # files announced by calls still running
        # The thread's egress (sandbox/egress_proxy.py), served on whichever kernel it holds;
        # set by the gateway before the first kernel when egress is configured.
        self.egress: ThreadEgress | None = None
        self._kernel: Kernel | None = None
        # Told each time the thread's kernel changes (leased, replaced, released): Jupyter's
        # channels follow it with sockets of their own.
        self.kernel_watchers: set[Callable[[], None]] = set()
        self.keep = False  # started by a Jupyter client: kept even before its first cell
        self.listeners: set[Listener] = set()
        self.created = time.monotonic()
        self.last_active = time.monotonic()
        self.executions = 0
        self.current: Job | None = None
        self.closed = False
        self._calls: dict[str, HotCodeStream] = {}
        self._executed: OrderedDict[str, None] = OrderedDict()
        self._queue: asyncio.Queue[Job] = asyncio.Queue(settings.max_queued_executions)
        self._worker: asyncio.Task | None = None
        self._plot_number = 1
        self._stop_reason: str | None = None  # set when restart/close kills a running cell
        self._user_interrupted = False
        self._kernel_lock = asyncio.Lock()
        self._lost_kernel_reason: str | None = None
        self._unreported_restart: str | None = None  # a heal the next status must mention
        self._start_backoff = StartBackoff()
        # Paths of the working directory the store holds a copy of, as of the last cell: what
        # a healed thread gets back (not displayed plots, not files the code deleted).
        self._saved_paths: set[str] = set()
        # File work in the working directory the kernel owns: off the default executor, and
        # at most a few jobs of this thread at a time (workdir_io.py).
        self.workdir_jobs = workdir_io.for_thread()
        self.snapshots = ThreadSnapshots(store, thread_id, owner, settings, self.workdir_jobs)
        self._cell_write: asyncio.Task | None = None  # the last cell's record being stored
        # Cluster mode: asked before each cell whether this node still holds the thread (a
        # reason when not: the cell must not run here), and whether its files come back first.
        self.fence: Callable[[str], Awaitable[str | None]] | None = None
        self._adopted = False
        # Asked before the thread takes a kernel (its first, or again after hibernation): at
        # its identity's share, one of the identity's idle threads is hibernated for it; when
        # all of them are working, it raises.
        self.admit: Callable[[], Awaitable[None]] | None = None
        self.hibernated: str | None = None  # why, while the thread is hibernated
        self._workdir_seen: dict[str, tuple[int, int]] = {}  # the scan after the last cell
        # After a wake-up, until the first cell's status reports it: why it slept, which files
        # came back, when the wake-up began.
        self._woke: dict | None = None

    @property
    def kernel(self) -> Kernel | None:
        return self._kernel

    @kernel.setter
    def kernel(self, kernel: Kernel | None) -> None:
        """Every change of kernel (lease, replacement, healing, release) moves the egress
        socket with it (a kernel serves only the thread that holds it) and tells the watchers
        (Jupyter's channels)."""
        changed = kernel is not self._kernel
        if changed and self.egress is not None:
            if kernel is None:
                self.egress.detach()
            else:
                self.egress.attach(kernel.spec.runtime_dir, kernel.spec.uid)
        self._kernel = kernel
        if changed:
            for watcher in list(self.kernel_watchers):
                watcher()

    @property
    def client_thread_id(self) -> str:
        """The id the owner's client knows: what the thread's envelopes carry."""
        return client_thread_id(self.thread_id)

    @property
    def pool(self) -> KernelPool:
        return self._pool_for(self.language or languages.DEFAULT)

    def choose_language(self, name: str | None) -> None:
        """An execute or code delta named ``name`` (None: it named none). The thread's first
        one fixes its language (none named: Python); a thread whose kernel already runs (an
        upload came first: Python) cannot switch. Later requests may leave it out."""
        current = self.language or (languages.DEFAULT if self.kernel is not None else None)
        if name is None:
            self.language = current or languages.DEFAULT
            return
        wanted = languages.find(name).name
        if current is None:
            self._pool_for(wanted)  # LanguageUnavailable now, not at the first lease
            self.language = wanted
        elif current != wanted:
            raise LanguageMismatch(f"thread {self.client_thread_id!r} runs {current}, not "
                                   f"{wanted}; a thread's language is fixed by its first request")

    @property
    def fence_open(self) -> str:
        return languages.LANGUAGES[self.language or languages.DEFAULT].fence_open

    def adopt(self, reason: str) -> None:
        """The thread ran on another node before: its first kernel here gets the thread's
        stored files, and the first cell's status says why the kernel is new."""
        self._adopted = True
        self._lost_kernel_reason = reason

    def note_saved(self, path: str) -> None:
        """A file of the working directory (an upload) now has a copy in the store."""
        self._saved_paths.add(path)

    # -- outbound ---------------------------------------------------------------------------
    def emit(self, chunk: envelopes.Chunk, call_id: str | None) -> None:
        chunks = [chunk]
        if self.settings.projectdavid_compat:
            chunks = envelopes.projectdavid_compatible(chunk, self.settings.public_url)
        for each in chunks:
            message = self.replay.stamp(envelopes.envelope(each, self.client_thread_id, call_id))
            if call_id is not None and self.results is not None:
                if each["type"] == "code_interpreter_stream":
                    content = each["content"]
                    self._call_files.setdefault(call_id, []).append(
                        {key: content.get(key) for key in ("filename", "file_id", "mime_type")})
                elif final_state(message):
                    self.results.record(self.thread_id, call_id, self.owner, message,
                                        self._call_files.pop(call_id, None))
            for listener in list(self.listeners):
                listener.send(message)

    def resume(self, listener: Listener, seen: int) -> None:
        """Send ``listener`` what it missed after seq ``seen`` (a gap chunk and the final
        statuses of calls that ended in it where the buffer no longer reaches), then live."""
        replay = self.replay.since(seen)
        if replay.gap is not None:
            first, last = replay.gap
            listener.send(envelopes.envelope(
                {"type": "gap", "content": {"first_seq": first, "last_seq": last}},
                self.client_thread_id, None))
            for message in replay.ended_in_gap:
                listener.send(message)
        for message in replay.missed:
            listener.send(message)
        self.listeners.add(listener)

    # -- hot code ---------------------------------------------------------------------------
    def code_delta(self, call_id: str, delta: str, fmt: Literal["json", "raw"]) -> None:
        self.last_active = time.monotonic()
        if call_id in self._executed:
            raise ProtocolError(f"call {call_id!r} was already executed", code="call_executed")
        stream = self._calls.get(call_id)
        if stream is None:
            if len(self._calls) >= REMEMBERED_CALLS:
                raise ProtocolError("too many open calls on this thread", code="too_many_calls")
            stream = self._calls[call_id] = HotCodeStream(fmt, self.fence_open)
        elif stream.extractor.format != fmt:
            raise ProtocolError(f"call {call_id!r} switched format mid-stream")
        for chunk in stream.feed(delta):
            self.emit(chunk, call_id)

    # -- execution --------------------------------------------------------------------------
    def submit(self, call_id: str, code: str | None, timeout: float | None,
               env: dict[str, str] | None = None,
               egress: tuple[Rule, ...] | None = None,
               jupyter: JupyterCell | None = None) -> None:
        """Queue an execution; the code comes from the request or from the streamed deltas."""
        if self.closed:
            raise ProtocolError("thread is closed", code="thread_closed")
        if call_id in self._executed:
            raise ProtocolError(f"call {call_id!r} was already executed", code="call_executed")
        if self._queue.full():
            raise QueueFull(
                f"thread already has {self.settings.max_queued_executions} executions queued")
        stream = self._calls.pop(call_id, None)
        if stream is not None:  # hot code already went out: run exactly that, nothing else
            try:
                streamed, closing = stream.close()
            except ProtocolError:
                self._remember(call_id)
                raise
            if code is not None and code != streamed:
                self._remember(call_id)
                for chunk in closing:  # the fence the frontend opened still closes
                    self.emit(chunk, call_id)
                raise ProtocolError(f"execute of call {call_id!r}: 'code' differs from the code "
                                    "streamed as deltas", code="code_mismatch")
            code = streamed
        elif code is None:
            raise ProtocolError(f"execute of call {call_id!r} has no code and no streamed deltas",
                                code="unknown_call")
        else:
            closing = [envelopes.hot_code(self.fence_open), envelopes.hot_code(code),
                       envelopes.hot_code(envelopes.FENCE_CLOSE)] if code else []
        self._remember(call_id)
        for chunk in closing:
            self.emit(chunk, call_id)
        self._queue.put_nowait(Job(call_id, code, timeout or self.settings.execution_timeout,
                                   env, egress, jupyter))
        self.last_active = time.monotonic()
        if self._worker is None:
            self._worker = asyncio.create_task(self._work(), name=f"thread-{self.thread_id}")

    def in_flight(self, call_id: str) -> bool:
        """Is this call queued or running (so a retried execute only needs to listen)?"""
        if self.current is not None and self.current.call_id == call_id:
            return True
        return any(job.call_id == call_id for job in self._queue._queue)  # type: ignore[attr-defined]

    def _remember(self, call_id: str) -> None:
        self._executed[call_id] = None
        while len(self._executed) > REMEMBERED_CALLS:
            self._executed.popitem(last=False)

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    @property
    def unused(self) -> bool:
        """Never executed, streamed or uploaded anything: nothing to keep."""
        return (self.kernel is None and self.current is None and self._worker is None
                and not self._calls and not self._executed and not self.keep)

    @property
    def busy(self) -> bool:
        return self.current is not None

    def state(self) -> ThreadState:
        """What the choice of threads to hibernate looks at (hibernation.py)."""
        return ThreadState(self.thread_id, self.last_active, self.kernel is not None and
                           not self.closed, self.busy, self.queued, self._kernel_lock.locked())

    @property
    def live(self) -> bool:
        """Holds (or is getting) a kernel, or has work: counts against its identity's share."""
        return (self.kernel is not None or self.busy or self.queued > 0
                or self._kernel_lock.locked())

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            self._user_interrupted = False  # an interrupt from here on is this job's
            self.current = job
            try:
                await self._execute(job)
            except Exception as exc:  # one broken execution must not kill the thread
                log.exception("thread %s call %s failed", self.thread_id, job.call_id)
                self.emit(envelopes.status("error", reason=f"gateway error: {exc!r}"), job.call_id)
                job.refused(f"gateway error: {exc!r}")
            finally:
                self.current = None
                self.last_active = time.monotonic()

    async def _ensure_kernel(self) -> str | None:
        """Lease, replace or heal the kernel; returns why a new kernel was needed, if one was."""
        if self.kernel is None:
            if self.admit is not None:
                await self.admit()
            began = time.monotonic()
            self.language = self.language or languages.DEFAULT
            self.kernel = await self.pool.lease()
            self.metrics.pool_wait.observe(time.monotonic() - began)
            reason, self._lost_kernel_reason = self._lost_kernel_reason, None
            if self._adopted:  # every stored file comes back, the hibernated ones among them
                self._adopted = False
                self.hibernated = None
                reason = await self._restore_adopted(reason or "thread moved")
            elif self.hibernated is not None:
                await self._wake(began)
            return reason
        self._start_backoff.check()
        try:
            reason = await self._keep_kernel_working()
        except KernelStartError as exc:
            self._start_backoff.failed(str(exc))
            raise
        self._start_backoff.succeeded()
        if reason:
            self.snapshots.kernel_replaced()
        return reason

    async def _keep_kernel_working(self) -> str | None:
        """Restart a dead kernel; heal a thread whose working directory or runtime directory
        was taken away (a plain restart would fail, or write where nobody looks)."""
        kernel = self.kernel
        assert kernel is not None  # _ensure_kernel() calls this only then
        problem = self.pool.problem(kernel)
        if problem and self.pool.workdirs.problem(kernel.spec.workdir) is None:
            # Only the runtime dir is gone: every start makes a new one, the files are intact.
            self.kernel = await self.pool.replace(kernel, died=True)
            return (f"{problem}; a new kernel was started (files were kept; variables come "
                    "back from the thread's last snapshot where they could be saved)")
        if problem:
            return await self._heal(problem)
        if await kernel.is_alive():
            return None
        reason = await kernel.death_reason()
        try:
            self.kernel = await self.pool.replace(kernel, died=True)
        except KernelStartError as exc:
            # Something around the old directory stops every start (uid, mount, permissions):
            # a fresh one leaves it behind.
            log.warning("thread %s: restart failed (%s); healing", self.thread_id, exc)
            return await self._heal(f"kernel had died ({reason}) and a restart failed")
        return f"kernel had died ({reason}); a new kernel was started"

    async def _heal(self, problem: str) -> str:
        """A new kernel on a new working directory holding the thread's files from the store."""
        wanted = latest_versions(self.store, self.thread_id, self._saved_paths)
        failed: list[str] = []

        def prepare(workdir: Path) -> None:
            failed[:] = restore_files(self.store, wanted, workdir)

        log.warning("thread %s: %s; starting a new kernel on a fresh working directory",
                    self.thread_id, problem)
        assert self.kernel is not None  # the kernel being healed
        self.kernel = await self.pool.rebuild(self.kernel, prepare)
        restored = len(wanted) - len(failed)
        note = f"{problem}; a new kernel was started on a fresh working directory with the " \
               f"thread's {restored} saved file(s) restored (variables come back from the " \
               "thread's last snapshot where they could be saved)"
        if failed:
            note += f"; not restored: {', '.join(sorted(failed)[:10])}"
        return note

    async def _wake(self, began: float) -> None:
        """A hibernated thread got a kernel: its files go back into the new working directory
        now; its namespace, cwd and environment before the first cell (``_restore_snapshot``)."""
        assert self.kernel is not None  # just leased
        wanted = await asyncio.to_thread(latest_versions, self.store, self.thread_id,
                                         self._saved_paths)
        failed = await self.workdir_jobs.run(restore_files, self.store, wanted,
                                             self.kernel.spec.workdir)
        self._saved_paths = {f.name for f in wanted} - set(failed)
        # Restore time: the lease and the files now, the namespace when the first cell comes.
        self._woke = {"hibernated": self.hibernated, "seconds": time.monotonic() - began,
                      "files": len(wanted) - len(failed), "files_missing": sorted(failed)}
        self.hibernated = None
        log.info("thread %s restored from hibernation: %d file(s)%s", self.thread_id,
                 len(wanted) - len(failed), f", {len(failed)} not restored" if failed else "")

    async def _restore_adopted(self, reason: str) -> str:
        """Every stored path of the thread, newest version each, into the fresh directory."""
        wanted = latest_versions(self.store, self.thread_id, None)
        assert self.kernel is not None  # just leased
        failed = await self.workdir_jobs.run(restore_files, self.store, wanted,
                                             self.kernel.spec.workdir)
        self._saved_paths = {f.name for f in wanted} - set(failed)
        variables = ("variables come back from the thread's last snapshot, if it has one"
                     if self.settings.snapshots else "variables were lost")
        note = (f"{reason}; a new kernel was started with the thread's {len(wanted) - len(failed)}"
                f" stored file(s) restored into /mnt/data ({variables})")
        if failed:
            note += f"; not restored: {', '.join(sorted(failed)[:10])}"
        return note

    async def workdir(self) -> Path:
        """The thread's working directory on the host, leasing a kernel if it has none yet."""
        async with self._kernel_lock:
            reason = await self._ensure_kernel()
            if reason:
                self._unreported_restart = reason
            assert self.kernel is not None  # _ensure_kernel() leaves one or raises
            return self.kernel.spec.workdir

    async def awake_kernel(self) -> Kernel:
        """The thread's kernel, restored now if it was hibernated (its variables included):
        for requests that are not cells (a completion, a comm) and need the namespace."""
        async with self._kernel_lock:
            reason = await self._ensure_kernel()
            if reason:
                self._unreported_restart = reason
            await self._restore_snapshot()
            assert self.kernel is not None  # _ensure_kernel() leaves one or raises
            return self.kernel

    async def _execute(self, job: Job) -> None:
        began = time.monotonic()
        if self.fence is not None and (refused := await self.fence(self.thread_id)):
            self.emit(envelopes.status("error", reason=refused, error_code="thread_moved",
                                       duration_ms=_ms(began)), job.call_id)
            job.refused(refused)
            return
        try:
            async with self._kernel_lock:
                restarted_because = await self._ensure_kernel() or self._unreported_restart
                self._unreported_restart = None
                restoring = time.monotonic()
                restored = self._restore_report(await self._restore_snapshot(), restoring)
        except GatewayError as exc:
            self.emit(envelopes.status("error", reason=str(exc), error_code=exc.code,
                                       duration_ms=_ms(began)), job.call_id)
            self.metrics.execution_finished("error", time.monotonic() - began)
            job.refused(str(exc))
            return
        kernel = self.kernel
        assert kernel is not None  # _ensure_kernel() leaves one or raises
        workdir = kernel.spec.workdir
        before = await _snapshot(workdir, self.workdir_jobs)
        translator = OutputTranslator(self.settings.max_output_chars, self._plot_number,
                                      self.settings.max_display_chars)
        record = CellRecord(job.code, self.settings.max_output_chars)
        files: list[str] = []
        stored_ids: dict[str, str] = {}  # displayed file name -> its file id, for the display

        def on_message(msg: dict) -> None:
            record.add(msg)
            for item in translator.translate(msg):
                if isinstance(item, DisplayedFile):
                    stored = self._announce_file(item.filename, item.data, item.mime_type,
                                                 job.call_id, files)
                    if stored is not None:
                        stored_ids[item.filename] = stored.id
                        record.attach_file(stored.mime_type, stored.id)
                elif isinstance(item, Display):
                    shown = stored_ids.get(item.file.filename) if item.file is not None else None
                    self.emit(item.chunk(shown), job.call_id)
                else:
                    self.metrics.bytes_out(len(item["content"]))
                    self.emit(item, job.call_id)

        language = languages.LANGUAGES[self.language or languages.DEFAULT]
        if job.env:
            await self._hidden_cell(kernel, language.set_env(job.env), job.timeout)
        jupyter = job.jupyter
        if jupyter is not None and jupyter.before_run is not None:
            await jupyter.before_run()
        if self.egress is not None:
            self.egress.begin_cell(job.egress)
        result = await kernel.run(job.code, on_message, job.timeout, self.settings.interrupt_grace,
                                  interrupted=self._user_interrupted,
                                  request=jupyter.request if jupyter else None,
                                  on_stdin=jupyter.on_stdin if jupyter else None)
        egress_used = self.egress.end_cell() if self.egress is not None else None
        if job.env and result.state != "killed" and not result.stuck:
            await self._hidden_cell(kernel, language.restore_env(list(job.env)), job.timeout)
        for chunk in translator.finish():
            self.emit(chunk, job.call_id)
        self._plot_number = translator.next_plot_number
        after = await _snapshot(workdir, self.workdir_jobs)
        for name in changed_files(before, after):
            await self._announce_workdir_file(workdir, name, job.call_id, files)
        self._saved_paths &= {display_name(name) for name in after}
        self._workdir_seen = after
        state, details = await self._conclude(result, translator)
        if jupyter is not None:
            error = translator.error or (None, None)
            jupyter.done(CellEnd(state, result.execution_count, error[0], error[1],
                                 tuple(translator.traceback or ()), details.get("reason"),
                                 idle_sent=result.state != "killed" and not result.stuck))
        self.executions += 1
        if restarted_because:
            details["kernel_restarted"] = True
            details.setdefault("reason", restarted_because)
        details["tool_output"] = tool_output(translator.text, state, files, details.get("reason"),
                                             translator.dropped_chars)
        if egress_used is not None:
            details["egress"] = egress_used
        if restored is not None:
            details["restored"] = restored
            details["tool_output"] = restored_line(restored) + "\n" + details["tool_output"]
        self.emit(envelopes.status(state, execution_count=result.execution_count,
                                   duration_ms=_ms(began), files=files, **details), job.call_id)
        # Let the connections' writers send the status before the bookkeeping below.
        await asyncio.sleep(0)
        self.metrics.execution_finished(state, time.monotonic() - began)
        # Ids, state and sizes only: code and file contents never reach info-level logs.
        log.info("thread %s call %s: %s in %.1f ms, %d files", self.thread_id, job.call_id,
                 state, _ms(began), len(files),
                 extra={"thread_id": self.client_thread_id, "identity": self.owner,
                        "call_id": job.call_id,
                        "kernel_id": kernel.id, "state": state})
        self._cell_write = asyncio.create_task(
            self._store_cell(record.to_json(job.call_id, state), self._cell_write))
        # The call is over: a restart from here on is a plain one, not the kill of a running
        # cell. It waits for the lock, so its clean slate is stored after this snapshot.
        self.current = None
        async with self._kernel_lock:
            if self.kernel is kernel and state != "killed":
                await self.snapshots.after_cell(kernel)

    @staticmethod
    async def _hidden_cell(kernel: Kernel, code: str, timeout: float) -> None:
        """A cell the user never sees (not in history, output dropped): ``env``'s set-up and
        clean-up. Its code holds the values, so it is never logged."""
        result = await kernel.run(code, lambda msg: None, timeout, interrupt_grace=0,
                                  store_history=False)
        if result.state != "complete":
            log.warning("kernel %s: a hidden cell ended %s", kernel.id, result.state)

    async def _conclude(self, result: RunResult, translator: OutputTranslator) -> tuple[str, dict]:
        details: dict = {}
        state = result.state
        if translator.error:
            details["error"] = {"ename": translator.error[0], "evalue": translator.error[1],
                                "traceback": translator.traceback}
            if translator.error[0] == "KeyboardInterrupt" and self._user_interrupted:
                state = "interrupted"
        elif (self._user_interrupted and state == "complete"
              and (self.language or languages.DEFAULT) != languages.DEFAULT):
            # Kernels other than IPython end an interrupted cell without an error message
            # (bash_kernel replies "abort"): the interrupt is what ended it.
            state = "interrupted"
            details["reason"] = "interrupted by request"
        if result.reason:
            details["reason"] = result.reason
        if result.state == "killed" or result.stuck:
            if self._stop_reason:
                details["reason"] = self._stop_reason
                self._stop_reason = None
                await self.snapshots.cleared()  # a restart by request: a clean slate
            else:
                self.snapshots.kernel_replaced()
            async with self._kernel_lock:
                if self.kernel is not None and not self.closed:
                    try:
                        self.kernel = await self.pool.replace(self.kernel, died=not result.stuck)
                    except KernelStartError as exc:  # the next cell heals the thread
                        details["reason"] = (f"{details.get('reason')}; no new kernel could "
                                             f"start yet ({exc}); the next cell tries again")
                        return state, details
                    details["kernel_restarted"] = True
                    if result.stuck:
                        details["reason"] = (f"{result.reason}; the kernel did not stop after "
                                             "the interrupt and was restarted")
        return state, details

    async def _announce_workdir_file(self, workdir: Path, name: str, call_id: str,
                                     files: list[str]) -> None:
        """Store a file the cell wrote (copied off the event loop: it may be large)."""
        shown = display_name(name)

        def store() -> StoredFile:
            with open_regular_file(workdir, name) as reader:
                return self.store.put_stream(self.thread_id, self.owner, shown, reader)

        try:
            stored = await self.workdir_jobs.run(store)
        except GatewayError as exc:
            self.emit(envelopes.output(f"[file {shown} not saved: {exc}]\n", "note"), call_id)
            return
        except OSError:  # deleted, swapped for a link or a FIFO meanwhile: nothing to announce
            return
        self._saved_paths.add(shown)
        self._note_unsafe(stored, call_id)
        data = b""
        if stored.size <= self.settings.inline_file_limit:
            data = await asyncio.to_thread(self.store.read, stored)
        files.append(shown)
        self.emit(file_chunk(stored, data, self.settings.inline_file_limit), call_id)

    def _announce_file(self, name: str, data: bytes, mime_type: str | None, call_id: str,
                       files: list[str]) -> StoredFile | None:
        """Store and announce a displayed image (already in memory); the stored file if it was."""
        try:
            stored = self.store.put(self.thread_id, self.owner, name, data, mime_type)
        except GatewayError as exc:
            self.emit(envelopes.output(f"[file {name} not saved: {exc}]\n", "note"), call_id)
            return None
        self._note_unsafe(stored, call_id)
        files.append(name)
        self.emit(file_chunk(stored, data, self.settings.inline_file_limit), call_id)
        return stored

    def _note_unsafe(self, stored: StoredFile, call_id: str) -> None:
        if why := self.store.not_yet_stored(stored):
            self.emit(envelopes.output(f"[file {stored.name}: {why}]\n"), call_id)

    # -- control ----------------------------------------------------------------------------
    async def interrupt(self) -> None:
        """Interrupt the running cell; one still being set up is interrupted as it starts."""
        if self.current is not None:
            self._user_interrupted = True
            if self.kernel is not None:
                await self.kernel.interrupt_cell()

    async def restart(self) -> None:
        """A fresh kernel; a running cell ends "killed", the working directory stays."""
        if self.current is not None and self.kernel is not None:
            self._stop_reason = "kernel restarted by request"
            await self.kernel.kill()
            return
        async with self._kernel_lock:
            if self.kernel is not None:
                self.kernel = await self.pool.replace(self.kernel, died=False)
            await self.snapshots.cleared()
        self.emit(envelopes.status("restarted"), None)

    async def hibernate(self, reason: str, detail: str = "", *, wait: bool = False) -> bool:
        """Store the thread (namespace snapshot with cwd, environment and execution count; the
        working directory's files) and stop its kernel; False when it is not idle: a running,
        queued or restoring thread is never hibernated. The next request restores it.
        ``wait``: first wait until a running cell and its bookkeeping are over (on request)."""
        while wait and (self.busy or self.queued or self._kernel_lock.locked()):
            await asyncio.sleep(0.05)
        if not can_hibernate(self.state()):
            return False
        async with self._kernel_lock:  # taken at once: it was free, and nothing yielded since
            kernel = self.kernel
            assert kernel is not None  # checked above, with no await in between
            language = self.language or languages.DEFAULT
            if language == languages.DEFAULT:
                report = await self._take_snapshot(f"hibernate: {reason}")
            else:  # the snapshot code is IPython's (kernels/startup/20-snapshots.py)
                report = {"error": f"a {language} thread's variables are not kept (snapshots "
                                   "are Python's)", "names": 0, "skipped": []}
            missing = await self._store_workdir(kernel.spec.workdir)
            await self.pool.release(kernel)
            self.kernel = None
            self.hibernated = reason
            self.snapshots.kernel_replaced()
            why = f"thread was hibernated ({detail or reason})"
            if "error" in report:  # stopped anyway: keeping a kernel is what cannot wait
                why += f"; its variables could not be saved: {report['error']}"
            if missing:
                why += f"; files not saved: {', '.join(missing[:10])}"
            self._lost_kernel_reason = (f"{why}; a new kernel was started and the thread "
                                        "restored")
            self.metrics.hibernated(reason, "error" in report and self.settings.snapshots
                                    and language == languages.DEFAULT)
            log.info("thread %s hibernated (%s%s)", self.thread_id, reason,
                     f"; snapshot failed: {report['error']}" if "error" in report else "")
            return True

    async def _store_workdir(self, workdir: Path) -> list[str]:
        """Put into the store what the working directory holds and the store does not yet
        (files changed since the last cell's scan, uploads); the paths that failed."""
        try:
            now = await self.workdir_jobs.run(snapshot, workdir)
        except OSError as exc:
            log.warning("thread %s: working directory not scanned: %s", self.thread_id, exc)
            return []
        failed: list[str] = []
        for name in sorted(now):
            shown = display_name(name)
            if now[name] == self._workdir_seen.get(name) and shown in self._saved_paths:
                continue

            def store(name: str = name, shown: str = shown) -> StoredFile:
                with open_regular_file(workdir, name) as reader:
                    return self.store.put_stream(self.thread_id, self.owner, shown, reader)

            try:
                await self.workdir_jobs.run(store)
            except (GatewayError, OSError) as exc:
                log.warning("thread %s: file not stored at hibernation: %s", self.thread_id,
                            exc)
                failed.append(shown)
                continue
            self._saved_paths.add(shown)
        self._saved_paths &= {display_name(name) for name in now}
        self._workdir_seen = now
        return failed

    def _restore_report(self, restored: dict | None, restoring: float) -> dict | None:
        """What the first status of a new kernel says came back and what did not; after a
        wake-up also the files, and the restore is counted."""
        woke, self._woke = self._woke, None
        if restored is None and woke is None:
            return None
        restored = dict(restored or {"names": 0, "skipped": []})
        restored.pop("kernel_died", None)
        skipped = restored.get("skipped") or []
        whole = next((item["reason"] for item in skipped if item["name"] == "*"), None)
        if whole is not None:  # nothing of the namespace came back: the kernel is clean
            restored["failed"] = whole
        if woke is not None:
            restored.update(hibernated=woke["hibernated"], files=woke["files"],
                            files_missing=woke["files_missing"])
            self.metrics.restored(woke["seconds"] + time.monotonic() - restoring,
                                  whole is not None)
        return restored

    async def snapshot(self, why: str) -> dict:
        """A snapshot of the namespace now (shutdown, ``gateway thread snapshot``); waits for
        a running cell to finish first, like the next cell would."""
        # A running cell holds no lock (and may need it to conclude): wait for it first. The
        # lock is then taken without yielding, so no cell starts in between.
        while self.current is not None or self._kernel_lock.locked():
            await asyncio.sleep(0.05)
        async with self._kernel_lock:
            if self.kernel is None:
                return {"error": "the thread has no kernel (nothing ran since its last "
                                 "snapshot)", "names": 0, "skipped": []}
            return await self._take_snapshot(why)

    async def _take_snapshot(self, why: str) -> dict:
        assert self.kernel is not None  # both callers checked
        if not await self.kernel.is_alive():
            return {"error": "the thread's kernel is not running", "names": 0, "skipped": []}
        return await self.snapshots.take(self.kernel, why)

    async def _restore_snapshot(self) -> dict | None:
        """Before the first cell of a kernel that is new but no clean slate: the last
        snapshot (called with the kernel lock held)."""
        if not self.snapshots.pending:
            return None
        assert self.kernel is not None  # _execute() called _ensure_kernel() first
        restored = await self.snapshots.restore(self.kernel)
        if restored is not None and restored.get("kernel_died"):
            self.kernel = await self.pool.replace(self.kernel, died=True)
            if self._stop_reason:  # a restart by request killed it mid-restore: a clean slate
                self._stop_reason = None
                await self.snapshots.cleared()
                return None
        return restored

    async def _store_cell(self, data: bytes, previous: asyncio.Task | None) -> None:
        """The cell's notebook record, a file of the thread (``GET /threads/{id}/notebook``),
        stored after the previous cell's (the store orders them by time)."""
        if previous is not None:
            await asyncio.wait({previous})
        try:
            await asyncio.to_thread(self.store.put, self.thread_id, self.owner, CELL_NAME, data,
                                    "application/json")
        except GatewayError as exc:
            log.warning("thread %s: cell record not stored: %s", self.thread_id, exc)

    async def cells_stored(self) -> None:
        """Wait until the last cell's record is in the store."""
        if self._cell_write is not None:
            await asyncio.shield(self._cell_write)

    async def close(self, reason: str = "thread closed", state: str = "error") -> None:
        """Stop the thread here; a running cell ends with ``state`` (queued ones "error")."""
        self.closed = True
        if self._worker is not None:
            self._worker.cancel()
        if self.current is not None:
            self.emit(envelopes.status(state, reason=reason), self.current.call_id)
            self.current.refused(reason)
        while not self._queue.empty():
            job = self._queue.get_nowait()
            self.emit(envelopes.status("error", reason=reason), job.call_id)
            job.refused(reason)
        async with self._kernel_lock:
            if self.kernel is not None:
                await self.pool.release(self.kernel)
                self.kernel = None
        if self.egress is not None:
            self.egress.detach()

    def describe(self) -> dict:
        return {
            "thread_id": self.client_thread_id,
            "owner": self.owner,
            "language": self.language or languages.DEFAULT,
            "kernel": self.kernel.id if self.kernel else None,
            "hibernated": self.hibernated,
            "busy": self.busy,
            "queued": self.queued,
            "executions": self.executions,
            "idle_seconds": round(time.monotonic() - self.last_active, 1),
        }


def file_chunk(stored: StoredFile, data: bytes, inline_limit: int) -> envelopes.Chunk:
    # Large files keep the envelope's keys but carry no bytes: clients fetch /files/{id}.
    encoded = base64.b64encode(data).decode() if stored.size <= inline_limit else ""
    return envelopes.file(stored.name, stored.id, encoded, stored.mime_type)


async def _snapshot(workdir: Path, jobs: ThreadWorkdirJobs) -> dict[str, tuple[int, int]]:
    """Scan inline while the directory is small; a big one is scanned in a worker thread."""
    found = snapshot(workdir, limit=INLINE_SNAPSHOT_FILES)
    if len(found) < INLINE_SNAPSHOT_FILES:
        return found
    return await jobs.run(snapshot, workdir)


def _ms(began: float) -> float:
    return round((time.monotonic() - began) * 1000, 2)
