"""Forked Python kernels: the gateway's half of the fork-server (``kernels/zygote.py``).

A fresh kernel interpreter spends most of its start importing numpy, pandas and matplotlib, and
each one keeps a private copy of them. The zygote imports them once; every kernel is a fork of
it, sharing those pages copy-on-write. The zygote runs inside a bubblewrap that builds the
filesystem view all kernels share; each fork then confines itself before any user code runs
(its own namespaces, working directory, uid, seccomp filter: see kernels/zygote.py), and this
side puts it into its cgroups first. One zygote serves one pool; it is started on first use
and again after it dies (its kernels die with it, as they die with bubblewrap).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
from pathlib import Path
from typing import Any

from ..config import bundled_kernels_dir
from ..errors import KernelStartError, ZygoteUnavailable
from .launch import (
    MPL_DIR,
    WORKDIR_IN_SANDBOX,
    HostSandbox,
    SandboxSpec,
    kernel_environment,
    matplotlib_cache_args,
    parent_dir_args,
    sandbox_environment,
    shared_view_args,
)

log = logging.getLogger(__name__)

PROGRAM = bundled_kernels_dir() / "zygote.py"  # the package's own, whatever kernels_dir is
# Where the zygote sees its program and the startup scripts (kernels/zygote.py finds them
# beside itself). Its mount points must be made inside the sandbox's own filesystems: below a
# path bound from the host (a Python prefix, such as the venv /opt/gateway the README installs
# into) they would land in a read-only bind, where bubblewrap cannot create them. /run is never
# bound into a sandbox (shared_view_args binds /usr and a few /etc entries; the only paths the
# host chooses are the Python prefixes and the runtime root), so bubblewrap makes this
# directory on its own root tmpfs; and /run holds only runtime state, emptied at boot, which
# no package installs into: no Python prefix can contain it.
VIEW_DIR = "/run/gateway-zygote"
# What Python kernels cost when they are exec'd instead (docs/benchmarks.md, "Bursts of new
# threads": PSS per kernel 101 against 36 MiB, p99 time to a burst's first results 39 against
# 4 s).
EXEC_COST = "about 3x the memory per kernel and bursts of new threads about 10x slower"
# What confining a fork takes; the zygote keeps these and nothing else, its forks none.
CAPABILITIES = ("CAP_SYS_ADMIN", "CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP", "CAP_NET_ADMIN")
READY_TIMEOUT = 120.0  # the zygote's imports, on a loaded host
MAX_MESSAGE = 1 << 16
SYS_OPEN_TREE, AT_FDCWD, AT_SYMLINK_NOFOLLOW = 428, -100, 0x100  # same number on every arch
OPEN_TREE_CLONE, OPEN_TREE_CLOEXEC = 1, os.O_CLOEXEC
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
ZYGOTE_NAMESPACES = ("--unshare-ipc", "--unshare-net", "--unshare-uts")


def zygote_argv(bwrap: str, python: str, program: Path, startup_dir: Path,
                mpl_cache: Path | None, runtime_root: Path, python_roots: tuple[Path, ...],
                environment: dict[str, str], fd: int) -> list[str]:
    """bubblewrap around the zygote: every kernel's shared view, no per-kernel path in it."""
    mountpoints = [str(runtime_root), WORKDIR_IN_SANDBOX]
    # Not its own pid namespace: the gateway reads the forks' pids (cgroups, signals) as they
    # are on the host; each fork enters a pid namespace of its own.
    argv = [bwrap, *ZYGOTE_NAMESPACES, "--die-with-parent", "--new-session"]
    for capability in CAPABILITIES:
        argv += ["--cap-add", capability]
    argv += shared_view_args(read_only_proc=False)
    argv += parent_dir_args([*(str(root) for root in python_roots), *mountpoints,
                             f"{VIEW_DIR}/startup", MPL_DIR])
    for root in python_roots:
        argv += ["--ro-bind", str(root), str(root)]
    for mountpoint in mountpoints:
        argv += ["--dir", mountpoint]
    argv += ["--ro-bind", str(startup_dir), f"{VIEW_DIR}/startup",
             "--ro-bind", str(program), f"{VIEW_DIR}/zygote.py"]
    argv += matplotlib_cache_args(mpl_cache)
    argv += ["--chdir", "/"]
    for key, value in environment.items():
        argv += ["--setenv", key, value]
    # Forking is safe only from a single thread: pyarrow's jemalloc would start a purging
    # thread at import (its forks purge inline instead). debugpy checks frozen modules at import
    # and would say so on stderr, i.e. in the gateway's log.
    argv += ["--setenv", "JE_ARROW_MALLOC_CONF", "background_thread:false",
             "--setenv", "PYDEVD_DISABLE_FILE_VALIDATION", "1"]
    # The runtime root only names the zygote in ``ps`` (as a kernel's command line does).
    return [*argv, "--", python, f"{VIEW_DIR}/zygote.py", str(fd), str(runtime_root)]


def detached_copy(directory: Path) -> int:
    """A descriptor of a detached bind mount of ``directory`` (``open_tree``), which the
    fork attaches in its own mount namespace: the zygote never sees any kernel's files."""
    fd: int = _libc.syscall(SYS_OPEN_TREE, AT_FDCWD, str(directory).encode(),
                            OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_SYMLINK_NOFOLLOW)
    if fd < 0:
        err = ctypes.get_errno()
        raise KernelStartError(f"cannot pass {directory} to a forked kernel: "
                               f"{os.strerror(err)} (open_tree needs Linux 5.2)")
    return fd


class ForkedProcess:
    """A forked kernel's monitor process, as jupyter_client's provisioner uses a ``Popen``.

    Not the gateway's child: the zygote reaps it and reports its exit status."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int) -> None:
        self.pid = pid
        # Opened while the monitor waits for "go" (not reaped, so the pid is surely its own):
        # signals through it can never reach a process that reused the pid.
        self._pidfd: int | None = os.pidfd_open(pid)
        self._returncode: int | None = None

    @property
    def returncode(self) -> int | None:
        return self._returncode

    @returncode.setter
    def returncode(self, code: int | None) -> None:
        self._returncode = code
        if code is not None and self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def poll(self) -> int | None:
        return self._returncode

    def wait(self, timeout: float | None = None) -> int | None:
        return self._returncode

    def send_signal(self, signum: int) -> None:
        if self._pidfd is not None:
            signal.pidfd_send_signal(self._pidfd, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


class Zygote:
    def __init__(self, host: HostSandbox, python: str, startup_dir: Path,
                 mpl_cache: Path | None, runtime_root: Path, python_roots: tuple[Path, ...],
                 environment: tuple[tuple[str, str], ...]) -> None:
        self.host = host
        self._argv = (python, startup_dir, mpl_cache, runtime_root, python_roots,
                      sandbox_environment(environment))
        self._process: asyncio.subprocess.Process | None = None
        self._socket: socket.socket | None = None
        self._starting: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[dict[str, Any]] | None = None  # the zygote's "ready" message
        self._forks: dict[str, asyncio.Future[int]] = {}  # request id -> the forked pid
        self._running: dict[int, ForkedProcess] = {}
        self._requests = 0
        self.starts = 0
        self._pid: int | None = None
        self.threads = 0  # the zygote's threads when it was ready to fork (must be 1)

    @property
    def pid(self) -> int | None:
        """The zygote's host pid (bubblewrap's child), while it is up."""
        return self._pid if self._socket else None

    async def fork(self, spec: SandboxSpec, argv: list[str]) -> ForkedProcess:
        """A kernel running ``argv`` (an ipykernel command line) in ``spec``'s sandbox."""
        await self._ensure_started()
        assert self._socket is not None and self.host.seccomp is not None
        assert self.host.cgroups is not None and spec.uid is not None
        if argv[1:3] != ["-m", "ipykernel_launcher"]:
            raise KernelStartError(f"the zygote forks ipykernel only, not {argv[:3]}")
        self._requests += 1
        request_id = str(self._requests)
        request = {"op": "fork", "id": request_id, "uid": spec.uid, "argv": argv[3:],
                   "env": kernel_environment(spec), "rlimits": self.host.rlimits(spec),
                   "runtime_dir": str(spec.runtime_dir), "hostname": "sandbox",
                   "title": f"{argv[0]} -m ipykernel_launcher {' '.join(argv[3:])}"}
        forked = asyncio.get_running_loop().create_future()
        self._forks[request_id] = forked
        fds: list[int] = []
        try:
            fds += [detached_copy(spec.workdir), detached_copy(spec.runtime_dir),
                    self.host.seccomp.memfd()]
            socket.send_fds(self._socket, [json.dumps(request).encode()], fds)
            for fd in fds:
                os.close(fd)
            fds = []
            pid = await asyncio.wait_for(forked, READY_TIMEOUT)
        finally:
            for fd in fds:
                os.close(fd)
            # A reply that comes after this start gave up is answered with "abort" (_handle).
            self._forks.pop(request_id, None)
        try:
            process = ForkedProcess(pid)
        except ProcessLookupError as exc:  # the fork failed before it could wait for "go"
            raise KernelStartError(f"kernel {spec.kernel_id}: its fork exited at once") from exc
        self._running[pid] = process
        try:
            for procs in self.host.cgroups.create(spec.kernel_id, spec.limits):
                procs.write_text(str(pid))
        except BaseException as exc:  # never a fork left waiting (cancelled start included)
            self._send({"op": "abort", "id": request_id})
            if isinstance(exc, OSError):
                raise KernelStartError(
                    f"kernel {spec.kernel_id}: cgroups not joined: {exc}") from exc
            raise
        self._send({"op": "go", "id": request_id})
        return process

    def _send(self, message: dict[str, Any]) -> None:
        if self._socket is not None:
            self._socket.send(json.dumps(message).encode())

    async def _ensure_started(self) -> None:
        if self._socket is not None:
            return
        if self._starting is None or self._starting.done():
            self._starting = asyncio.ensure_future(self._start())
        await asyncio.shield(self._starting)

    async def _start(self) -> None:
        assert self.host.bwrap is not None
        python, startup_dir, mpl_cache, runtime_root, python_roots, environment = self._argv
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = zygote_argv(self.host.bwrap, python, PROGRAM, startup_dir, mpl_cache,
                           runtime_root, python_roots, environment, theirs.fileno())
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        try:
            self._process = await asyncio.create_subprocess_exec(
                *argv, pass_fds=(theirs.fileno(),), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        finally:
            theirs.close()
        ours.setblocking(False)
        self._socket = ours
        self.starts += 1
        loop.add_reader(ours.fileno(), self._on_readable)
        asyncio.ensure_future(self._log_stderr(self._process))
        try:
            ready = await asyncio.wait_for(asyncio.shield(self._ready), READY_TIMEOUT)
        except Exception as exc:
            self._lost()
            raise ZygoteUnavailable(f"the kernel zygote did not start: {exc!r}") from exc
        # The kernels' memory limits do not cover the zygote; the host's OOM killer should
        # pick a kernel over it (all of its kernels die with it).
        with contextlib.suppress(OSError):
            Path(f"/proc/{ready['pid']}/oom_score_adj").write_text("-500")
        self.threads, self._pid = ready["tasks"], ready["pid"]
        if self.threads != 1:
            log.warning("kernel zygote %d has %d threads: forks may inherit a held lock",
                        self._pid, self.threads)
        log.info("kernel zygote %d ready", self._pid)

    async def _log_stderr(self, process: asyncio.subprocess.Process) -> None:
        # Only the zygote and the set-up of its forks write here: a kernel's stdio is /dev/null.
        assert process.stderr is not None
        async for line in process.stderr:
            log.warning("kernel zygote: %s", line.decode(errors="replace").rstrip())

    def _on_readable(self) -> None:
        while self._socket is not None:
            try:
                data, _, _, _ = socket.recv_fds(self._socket, MAX_MESSAGE, 0)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._lost()
                return
            self._handle(json.loads(data))

    def _handle(self, message: dict[str, Any]) -> None:
        op = message["op"]
        if op == "ready" and self._ready is not None and not self._ready.done():
            self._ready.set_result(message)
        elif op == "forked":
            future = self._forks.get(message["id"])
            if future is not None and not future.done():
                future.set_result(message["pid"])
            else:  # its start was cancelled or timed out meanwhile
                self._send({"op": "abort", "id": message["id"]})
        elif op == "exited":
            process = self._running.pop(message["pid"], None)
            if process is not None:
                process.returncode = message["status"]

    def _lost(self) -> None:
        """The zygote is gone: its kernels died with it (parent-death signal)."""
        if self._socket is not None:
            asyncio.get_running_loop().remove_reader(self._socket.fileno())
            self._socket.close()
            self._socket = None
        for process in self._running.values():
            process.returncode = 128 + signal.SIGKILL
        self._running.clear()
        for future in [*self._forks.values(), self._ready]:
            if future is not None and not future.done():
                future.set_exception(KernelStartError("the kernel zygote exited"))
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()

    async def close(self) -> None:
        process = self._process
        if self._socket is not None:
            self._lost()
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
