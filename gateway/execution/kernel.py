"""One running kernel: a jupyter_client manager and client around a sandboxed ipykernel.

``Kernel.run`` executes one cell and feeds this cell's iopub messages to a callback; it notices
timeouts and death, and leaves the policy (restart, report) to the session.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.asyncio
from jupyter_client.adapter import adapt
from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.session import Session

from ..errors import KernelStartError
from ..sandbox.forkserver import Zygote
from ..sandbox.kernelspec import KERNEL_NAME, PinnedKernelSpecs
from ..sandbox.launch import HostSandbox, SandboxSpec
from ..wire.languages import PYTHON

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.2  # how often a waiting execution checks that its kernel is still alive
# Start-up: kernel_info is asked again after this long without a reply, and once answered,
# iopub must deliver its busy/idle within this long (else it is not subscribed yet: ask again).
READY_REPLY_WAIT = 1.0
READY_IOPUB_WAIT = 0.2
# A fresh kernel's first cell is about twice as slow as later ones (lazy imports, the first
# output formatting, cold code paths). One throwaway cell while the kernel waits in the pool
# pays for that; each language has its own (gateway/languages).
WARM_UP_CELL = PYTHON.warm_up
# Run by the kernel interpreter inside the sandbox (``python -c``): the gateway's package is
# not importable there.
TCP_BRIDGE_SOURCE = (Path(__file__).parent / "languages" / "tcp_bridge.py").read_text()
# An interrupt can be lost: it may reach the kernel just before the cell starts, or land in a
# handler that swallows KeyboardInterrupt. A cell still running this long after the kernel
# answered the interrupt (it signals itself, then answers) gets it once more; after
# ``interrupt_grace`` the session restarts the kernel. Counting from the answer, not from the
# request, keeps a re-send from crossing a first interrupt that is merely slow on a busy host.
INTERRUPT_RESEND_AFTER = 1.0
# How long a finished cell waits for the kernel to answer the interrupts sent during it.
INTERRUPT_REPLY_WAIT = 10.0


@dataclass
class RunResult:
    """How one execution ended, before the session turns it into a status chunk."""

    state: str  # complete | error | timeout | killed
    execution_count: int | None = None
    reason: str | None = None
    stuck: bool = False  # did not stop after the interrupt (timeout's or the user's)


class Kernel:
    def __init__(self, spec: SandboxSpec, host: HostSandbox, kernels_dir: Path, python: str,
                 kernel_name: str = KERNEL_NAME, warm_up: str = WARM_UP_CELL,
                 tcp_bridge: bool = False, late_output_grace: float = 0.0,
                 signal_program: str | None = None, zygote: Zygote | None = None):
        self.spec = spec
        self._zygote = zygote  # forks this kernel instead of bubblewrap exec'ing it
        self.host = host
        self.id = spec.kernel_id
        self.kernel_name = kernel_name  # the language's kernelspec (gateway.languages)
        self._signal_program = signal_program  # interrupted by SIGINT to this program
        self.started_at = time.monotonic()
        self.executions = 0
        self._warm_up_cell = warm_up
        # A TCP-only kernel, behind gateway/execution/languages/tcp_bridge.py.
        self._tcp_bridge = tcp_bridge
        self._late_output_grace = late_output_grace  # see Language.late_output_grace
        self._manager = AsyncKernelManager(
            kernel_name=kernel_name,
            # Our kernelspec by path, never one jupyter finds elsewhere on the host.
            kernel_spec_manager=PinnedKernelSpecs(kernels_dir / kernel_name),
            transport="ipc",
            ip=str(spec.runtime_dir / "kernel"),
            connection_file=str(spec.runtime_dir / "connection.json"),
            cache_ports=False,
        )
        self._python = python
        self._client: AsyncKernelClient | None = None  # from start() on
        self._running = False
        self._user_interrupt_at: float | None = None  # when the user interrupted this cell
        self._unanswered_interrupts: set[str] = set()  # interrupt_request msg ids
        self._interrupt_answered_at: float | None = None  # the first answer during this cell

    @property
    def pid(self) -> int | None:
        provisioner = self._manager.provisioner
        return getattr(provisioner, "pid", None) if provisioner else None

    async def start(self, timeout: float) -> None:
        spec = self._manager.kernel_spec
        if spec is not None:
            spec.argv = [self._python, *spec.argv[1:]] if spec.argv[0] == "python" else spec.argv
            if self._tcp_bridge:
                spec.argv = [self._python, "-c", TCP_BRIDGE_SOURCE, "{connection_file}", "--",
                             *spec.argv]
            if self.host.provisioner != _provisioner_of(spec.metadata):
                # The kernelspecs name bubblewrap's; the gateway's sandbox decides.
                spec.metadata = {**spec.metadata,
                                 "kernel_provisioner": {"provisioner_name": self.host.provisioner}}
        try:
            await self._manager.start_kernel(sandbox=self.spec, host=self.host,
                                             zygote=self._zygote)
            self._client = self._manager.client()
            self._client.start_channels()
            await asyncio.wait_for(self._wait_ready(), timeout)
            await self._warm_up(timeout)
        except Exception as exc:
            await self.shutdown()
            raise KernelStartError(f"kernel {self.id} failed to start: {exc!r}") from exc
        except BaseException:  # cancelled mid-launch (thread closed, shutdown): leave nothing
            await asyncio.shield(self.shutdown())
            raise

    # --- start-up handshake (issue 21) -------------------------------------------------
    async def _wait_ready(self) -> None:
        """kernel_info answered on shell, and iopub delivering: the kernel can run cells.

        Not jupyter_client's ``wait_for_ready``: it ends by reading iopub until 0.2 s pass
        without a message, a fixed 0.2 s on every start that nothing here needs (``_follow``
        matches each iopub message to its cell and skips older ones). It also cannot notice a
        kernel that exited at once; this checks every ``POLL_INTERVAL``."""
        client = self._client
        assert client is not None  # start() made it
        while True:
            request = client.kernel_info()
            reply = await self._shell_reply(request, READY_REPLY_WAIT)
            if reply is None:
                continue  # not up yet (or the request was lost): ask again
            # The kernel publishes busy/idle for that request: once one arrives, iopub is
            # subscribed and no output of the first cell can be lost. Left queued for _follow.
            if await client.iopub_channel.socket.poll(int(READY_IOPUB_WAIT * 1000)):
                client._handle_kernel_info_reply(reply)
                return

    async def _shell_reply(self, msg_id: str, timeout: float) -> dict | None:
        """The shell reply to ``msg_id`` within ``timeout`` seconds, or None; raises
        KernelStartError as soon as the kernel is found dead."""
        assert self._client is not None  # started
        channel = self._client.shell_channel
        deadline = time.monotonic() + timeout
        while True:
            frames = _receive_ready(channel.socket)
            if frames is not None:
                msg = _decode(channel, frames)
                if msg["parent_header"].get("msg_id") == msg_id:
                    return msg
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if not await channel.socket.poll(int(min(POLL_INTERVAL, remaining) * 1000)):
                if not await self.is_alive():
                    reason = await self.death_reason()
                    raise KernelStartError(f"kernel exited during start-up: {reason}")
    # --- end of start-up handshake -------------------------------------------------------

    async def _warm_up(self, timeout: float) -> None:
        result = await self.run(self._warm_up_cell, lambda msg: None, timeout, interrupt_grace=0,
                                store_history=False)
        if result.state != "complete":
            raise KernelStartError(f"kernel warm-up ended {result.state}: {result.reason}")

    async def _next_iopub(self, timeout: float) -> dict | None:
        """The next iopub message, or None after ``timeout`` seconds.

        Receive at once when a message is queued and poll only when none is: the client's
        ``get_iopub_msg`` polls before every receive. Never a receive under a timeout (one
        cancelled just as it completed would drop its message), and no ``zmq.Again`` on this
        path: its traceback would keep this frame, and a 100 MB output with it, in a reference
        cycle until the next full garbage collection.
        """
        assert self._client is not None  # started
        channel = self._client.iopub_channel
        frames = _receive_ready(channel.socket)
        if frames is None:
            if not await channel.socket.poll(int(timeout * 1000)):
                return None
            frames = _receive_ready(channel.socket)
            if frames is None:
                return None
        return _decode(channel, frames)

    def _discard_shell_replies(self) -> None:
        # Replies only repeat what iopub said; read them (without decoding) so they never pile
        # up, here rather than after ``idle``, where it would delay the status chunk.
        assert self._client is not None  # started
        while _receive_ready(self._client.shell_channel.socket) is not None:
            pass

    async def is_alive(self) -> bool:
        return await self._manager.is_alive()

    async def run(
        self,
        code: str,
        on_message: Callable[[dict], None],
        timeout: float,
        interrupt_grace: float,
        store_history: bool = True,
        interrupted: bool = False,
        silent: bool = False,
        request: dict | None = None,
        on_stdin: Callable[[dict], None] | None = None,
    ) -> RunResult:
        """Execute ``code``; feed this cell's iopub messages to ``on_message`` until idle.

        ``store_history=False`` runs a cell the user never sees: not in ``In``, the execution
        count or ``executions``. ``interrupted``: the user interrupted the cell before it was
        sent (it is interrupted at once, with the same re-send and grace). ``silent`` (implies
        ``store_history=False``): the kernel also skips its per-cell hooks (matplotlib's
        figure flush, the snapshot check) and announces no ``execute_input``.
        ``request``: a Jupyter client's own execute_request (header, metadata, content), sent
        as it is so the kernel's messages name it as their parent; ``on_stdin`` then gets the
        kernel's input_requests (answered with ``send_stdin``)."""
        client = self._client
        assert client is not None  # a kernel runs cells once started
        self._discard_shell_replies()
        if request is None:
            store_history = store_history and not silent
            msg_id = client.execute(code, silent=silent, store_history=store_history,
                                    allow_stdin=False)
        else:
            content = request["content"]
            store_history = bool(content.get("store_history", True)) and not content.get(
                "silent")
            message = client.session.msg("execute_request", content, header=request["header"],
                                         metadata=request.get("metadata") or {})
            client.shell_channel.send(message)
            msg_id = request["header"]["msg_id"]
        self.executions += store_history
        self._running = True
        self._user_interrupt_at = None
        try:
            if interrupted:
                await self.interrupt_cell()
            result = await self._follow(msg_id, on_message, timeout, interrupt_grace, on_stdin)
            if self._unanswered_interrupts and result.state != "killed" and not result.stuck:
                await self._settle_interrupts()
            return result
        finally:
            self._running = False
            self._user_interrupt_at = None
            self._interrupt_answered_at = None
            self._unanswered_interrupts.clear()

    async def _settle_interrupts(self) -> None:
        """Wait for the kernel's reply to every interrupt sent during the cell. It signals
        itself before it replies, so after the replies no late SIGINT (a re-send, or one the
        control thread took long to handle) can land at the start of the next cell, where
        ipykernel swallows it and that cell ends "complete" without having run."""
        assert self._client is not None  # started
        socket = self._client.control_channel.socket
        deadline = time.monotonic() + INTERRUPT_REPLY_WAIT
        while self._unanswered_interrupts:
            if self._read_interrupt_replies():
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not await socket.poll(int(remaining * 1000)):
                log.warning("kernel %s: no reply to %d interrupt(s) in %.0f s", self.id,
                            len(self._unanswered_interrupts), INTERRUPT_REPLY_WAIT)
                return

    def _read_interrupt_replies(self) -> bool:
        """Take the interrupt replies already queued, without waiting; True if any."""
        assert self._client is not None  # started
        channel = self._client.control_channel
        read = False
        while (frames := _receive_ready(channel.socket)) is not None:
            reply = _decode(channel, frames)
            self._unanswered_interrupts.discard(reply["parent_header"].get("msg_id"))
            if self._interrupt_answered_at is None:
                self._interrupt_answered_at = time.monotonic()
            read = True
        return read

    async def interrupt_cell(self) -> None:
        """The user's interrupt of the running cell, re-sent and enforced by ``run``."""
        if self._running:
            if self._user_interrupt_at is None:
                self._user_interrupt_at = time.monotonic()
            await self.interrupt()

    async def _follow(self, msg_id: str, on_message: Callable[[dict], None], timeout: float,
                      interrupt_grace: float,
                      on_stdin: Callable[[dict], None] | None = None) -> RunResult:
        deadline = time.monotonic() + timeout
        interrupted_at: float | None = None  # the timeout's interrupt
        resent = False
        saw_error = False
        count = None
        while True:
            if on_stdin is not None:  # a cell waiting for input publishes nothing meanwhile
                self._relay_stdin(on_stdin)
            now = time.monotonic()
            if interrupted_at is None and now >= deadline:
                await self.interrupt()
                interrupted_at = now
            first = min(t for t in (interrupted_at, self._user_interrupt_at, math.inf)
                        if t is not None)
            if first < math.inf and self._unanswered_interrupts:
                self._read_interrupt_replies()
            resend_at = _resend_time(first, self._interrupt_answered_at, interrupt_grace)
            if not resent and not saw_error and now >= resend_at:
                resent = True
                log.info("kernel %s: cell still running %.1f s after the interrupt; sending "
                         "it again", self.id, now - first)
                await self.interrupt()
            if now >= first + interrupt_grace:
                if interrupted_at is not None:
                    return RunResult("timeout", count, f"timed out after {timeout:g} s",
                                     stuck=True)
                return RunResult("interrupted", count, "interrupted by request", stuck=True)
            limit = first + interrupt_grace
            if interrupted_at is None:  # the deadline is still ahead
                limit = min(limit, deadline)
            if not resent:
                limit = min(limit, resend_at)
            wait = max(0.0, min(POLL_INTERVAL, limit - now))
            msg = await self._next_iopub(wait)
            if msg is None:
                if not await self.is_alive():
                    return RunResult("killed", count, await self.death_reason())
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if kind == "execute_input":
                count = msg["content"].get("execution_count")
            elif kind == "error":
                saw_error = True
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                break
            on_message(msg)
        saw_error = await self._late_output(msg_id, on_message) or saw_error
        if interrupted_at is not None:
            return RunResult("timeout", count, f"timed out after {timeout:g} s; interrupted")
        return RunResult("error" if saw_error else "complete", count)

    def _relay_stdin(self, on_stdin: Callable[[dict], None]) -> None:
        assert self._client is not None  # started
        channel = self._client.stdin_channel
        while (frames := _receive_ready(channel.socket)) is not None:
            on_stdin(_decode(channel, frames))

    def send_stdin(self, message: dict) -> None:
        """A Jupyter client's input_reply, on the socket the kernel asked through."""
        assert self._client is not None  # started
        self._client.stdin_channel.send(message)

    def side_client(self) -> AsyncKernelClient:
        """A client of its own (its own sockets) to this kernel: Jupyter's requests go through
        one, beside the cells this object runs; iopub reaches every subscriber. Its own
        session too: a shared one would give both the same socket identity, and would take
        each iopub message, seen by both, for a replayed one (its duplicate check)."""
        shared = self._manager.session
        return self._manager.client(session=Session(
            key=shared.key, signature_scheme=shared.signature_scheme, username="gateway"))

    async def _late_output(self, msg_id: str, on_message: Callable[[dict], None]) -> bool:
        """A kernel that may publish a cell's output after its ``idle`` (Deno's sometimes sends
        the ``execute_result`` just after): this cell's messages within the grace still count.
        True when one of them was an error."""
        saw_error = False
        until = time.monotonic() + self._late_output_grace
        while (left := until - time.monotonic()) > 0:
            msg = await self._next_iopub(left)
            if msg is None:
                break
            if msg["parent_header"].get("msg_id") != msg_id or msg["header"]["msg_type"] in (
                    "status", "execute_input"):
                continue
            saw_error = saw_error or msg["header"]["msg_type"] == "error"
            on_message(msg)
        return saw_error

    async def interrupt(self) -> None:
        if self._signal_program is not None and not self.host.sees_kernel_processes:
            # In gVisor the kernel's processes are not the host's: its runtime signals it.
            provisioner = self._manager.provisioner
            if provisioner is not None:
                await provisioner.send_signal(signal.SIGINT)
                if self._interrupt_answered_at is None:
                    self._interrupt_answered_at = time.monotonic()
            return
        if self._signal_program is not None:
            self._signal_interrupt()
            return
        # interrupt_mode "message": a control-channel request, which crosses the sandbox. Sent
        # on the client's control channel (not the manager's) so ``run`` can read the reply.
        assert self._client is not None  # started
        request = self._client.session.msg("interrupt_request", {})
        self._client.control_channel.send(request)
        self._unanswered_interrupts.add(request["header"]["msg_id"])

    def _signal_interrupt(self) -> None:
        """SIGINT to the kernel's own process, found in its cgroup from outside the sandbox;
        counted as answered at once (there is no reply to wait for)."""
        assert self._signal_program is not None  # interrupt() calls this only then
        cgroups = self.host.cgroups
        pids = cgroups.processes(self.id) if cgroups is not None else []
        target = interrupt_target({pid: _process_facts(pid) for pid in pids},
                                  self._signal_program)
        if target is None:
            log.warning("kernel %s: no %s process to interrupt", self.id, self._signal_program)
            return
        try:
            os.kill(target, signal.SIGINT)
        except ProcessLookupError:
            return
        if self._interrupt_answered_at is None:
            self._interrupt_answered_at = time.monotonic()

    async def kill(self) -> None:
        """Kill the kernel's whole process tree (the sandbox's pid namespace dies with it)."""
        if self._manager.provisioner is not None:
            await self._manager.provisioner.kill()

    async def death_reason(self) -> str:
        provisioner = self._manager.provisioner
        code = None
        process = getattr(provisioner, "process", None) if provisioner is not None else None
        if process is not None:
            code = process.poll()
        if provisioner is not None and getattr(provisioner, "oom_killed", lambda: False)():
            return f"memory limit of {self.spec.limits.memory // 2**20} MiB exceeded"
        if code is None:
            return "kernel stopped responding"
        signum = -code if code < 0 else code - 128 if code > 128 else None
        if signum:
            try:
                name = signal.Signals(signum).name
            except ValueError:
                name = f"signal {signum}"
            if name == "SIGSEGV":
                return "kernel crashed (segmentation fault)"
            if name == "SIGKILL":
                return "kernel was killed (SIGKILL)"
            return f"kernel died ({name})"
        return f"kernel process exited with code {code}"

    async def shutdown(self) -> None:
        """Stop the kernel at once and free its sandbox; never raises."""
        if self._client is not None:
            self._client.stop_channels()
        try:
            if self._manager.has_kernel:
                await self._manager.shutdown_kernel(now=True)
            elif self._manager.provisioner is not None:
                await self._manager.provisioner.cleanup(restart=False)
        except Exception:  # a kernel that is already gone must not break shutdown
            log.exception("kernel %s: error during shutdown", self.id)


def _provisioner_of(metadata: dict) -> str | None:
    return metadata.get("kernel_provisioner", {}).get("provisioner_name")


def interrupt_target(processes: dict[int, tuple[int, str] | None], program: str) -> int | None:
    """Of a cgroup's processes (pid -> (parent pid, executable path), None when gone), the
    top-most one running ``program``: the kernel itself, not a copy its code started."""
    def runs(pid: int) -> bool:
        facts = processes.get(pid)
        return facts is not None and os.path.basename(facts[1]) == program

    for pid in sorted(processes):
        facts = processes[pid]  # not None where runs(pid)
        if runs(pid) and facts is not None and not runs(facts[0]):
            return pid
    return None


def _process_facts(pid: int) -> tuple[int, str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        executable = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None
    # The command name may hold spaces and parentheses: fields resume after the last ")".
    return int(stat.rsplit(")", 1)[1].split()[1]), executable


def _resend_time(first: float, answered: float | None, grace: float) -> float:
    """When a cell still running after its interrupt gets it again: a while after the kernel
    answered, or, if the answer is slow to come (a loaded host), still early enough for the
    re-send to act before ``grace`` runs out. Two SIGINTs close together are harmless: the
    kernel ignores the second while it reports the first (kernels/startup/05-interrupts.py)."""
    latest = first + max(INTERRUPT_RESEND_AFTER, grace - INTERRUPT_RESEND_AFTER)
    if answered is None:
        return latest
    return min(answered + INTERRUPT_RESEND_AFTER, latest)


def _receive_ready(socket: zmq.asyncio.Socket) -> list[bytes] | None:
    """A message already queued on ``socket``, or None, without waiting."""
    # pyzmq types every option's value as int | bytes (EVENTS is an int), and this receive as
    # an Awaitable: it is an asyncio Future, done at once (NOBLOCK, with a message queued).
    if not socket.get(zmq.EVENTS) & zmq.POLLIN:  # type: ignore[arg-type, operator]
        return None
    return socket.recv_multipart(flags=zmq.NOBLOCK).result()  # type: ignore[attr-defined]


def _decode(channel, frames: list[bytes]) -> dict:
    """The message in ``frames`` received on ``channel`` (a jupyter_client channel).

    ``Session.deserialize`` without its ``extract_dates``: turning the header dates into
    datetimes (dateutil, two headers per message) was the largest cost of reading a message,
    and nothing here reads a date. Signature, duplicate check and protocol adaptation stay."""
    session = channel.session
    _, parts = session.feed_identities(frames)
    if len(parts) < 5:
        return session.deserialize(parts)  # raises its own error for a malformed message
    if session.auth is not None:
        signature = parts[0]
        if not signature:
            raise ValueError("Unsigned Message")
        if signature in session.digest_history:
            raise ValueError(f"Duplicate Signature: {signature!r}")
        session._add_digest(signature)
        if not hmac.compare_digest(signature, session.sign(parts[1:5])):
            raise ValueError(f"Invalid Signature: {signature!r}")
    unpack = session.unpack
    header = unpack(parts[1])
    return adapt({"header": header, "msg_id": header["msg_id"], "msg_type": header["msg_type"],
                  "parent_header": unpack(parts[2]), "metadata": unpack(parts[3]),
                  "content": unpack(parts[4]),
                  "buffers": [memoryview(b) for b in parts[5:]]})
