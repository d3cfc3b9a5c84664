"""``sandbox = gvisor``: each kernel in a gVisor sandbox of its own (``runsc``).

A thin shell over oci.py: it writes each kernel's bundle, starts ``runsc run`` in the
foreground (its exit is the kernel's), signals through ``runsc kill``, and always ends with
``runsc delete -force``, at a kernel's clean-up and, for sandboxes a killed gateway left behind,
at the next start. The kernel's syscalls are answered by gVisor's own kernel (the sentry), which
the host sees only as a few seccomp-filtered processes: the host kernel's attack surface is what
the sentry and its file proxy (the gofer) call, not what user code calls.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

from .launch import (
    SYSTEM_DIRS,
    SYSTEM_FILES,
    HostSandbox,
    SandboxProvisioner,
    SandboxSpec,
    give_to_uid,
)
from .limits import CgroupLimiter, LimitReport
from .oci import (
    ROOT_SYMLINKS,
    bundle_config,
    delete_argv,
    host_task_limit,
    kill_argv,
    list_argv,
    run_argv,
    runsc_global_args,
)

log = logging.getLogger(__name__)

RUNSC_TIMEOUT = 30.0  # one runsc command (kill, delete, list); a loaded host is slow
PROVISIONER = "gateway-gvisor"
# runsc delete can time out on a loaded host ("context deadline exceeded"): tried again; what
# still fails is deleted at the next start (clean_leftovers).
DELETE_ATTEMPTS = 3


class GvisorHost(HostSandbox):
    """What a gVisor gateway enforces, and its runsc command lines. Kernels are never forked
    from a zygote here: each sandbox is a kernel of its own, with nothing to share."""

    name = "gvisor"
    provisioner = PROVISIONER
    sees_kernel_processes = False  # the host sees the sentry, not the kernel's processes
    forks_kernels = False  # by design: no warning that kernel_start = fork is not honoured

    def __init__(self, platform: str, state_dir: Path, drop_uid: bool = True) -> None:
        self.enabled = True
        self.platform = platform
        self.state_dir = state_dir
        self.runsc = shutil.which("runsc")
        self.tini = shutil.which("tini")
        self.bwrap = self.prlimit = self.setpriv = None
        self.seccomp = None
        self.disable_userns = False
        self.root = os.geteuid() == 0
        self.cgroups = CgroupLimiter() if self.root else None
        self.drop_uid = self.root and drop_uid
        self.version = runsc_version(self.runsc) if self.runsc else None
        self.report = gvisor_report(self.platform, self.version, self.cgroups, self.drop_uid)

    def describe(self) -> str:
        return f"gvisor ({self.platform})"

    def check(self) -> None:
        from ..errors import SandboxUnavailable

        if not self.runsc:
            raise SandboxUnavailable("sandbox = gvisor needs runsc: install the Debian package "
                                     "'runsc' (or gVisor's release), or use sandbox = bwrap")
        if not self.tini:
            raise SandboxUnavailable("sandbox = gvisor needs tini (the Debian package 'tini') "
                                     "as the sandbox's first process")
        if not self.root:
            raise SandboxUnavailable("sandbox = gvisor needs a gateway started as root "
                                     "(runsc creates namespaces and cgroups)")

    def fork_problem(self) -> str | None:
        return "kernels run in gVisor: each sandbox has a kernel of its own, nothing to fork"

    def global_args(self) -> list[str]:
        assert self.runsc is not None  # check() passed
        return runsc_global_args(self.runsc, self.state_dir, self.platform)

    def bundle_dir(self, kernel_id: str) -> Path:
        """Beside the runtime directories, not among them (those are kernels' own)."""
        return self.state_dir.parent / "gvisor-bundles" / kernel_id

    def prepare(self) -> Path:
        """The shared read-only root: the host's top-level symlinks (/bin -> usr/bin on a
        merged-/usr system), nothing else; every other path is a mount."""
        root = self.state_dir.parent / "gvisor-root"
        root.mkdir(parents=True, exist_ok=True)
        for name in ROOT_SYMLINKS:
            link, host = root / name, Path("/", name)
            if host.is_symlink() and not link.is_symlink():
                link.symlink_to(os.readlink(host))
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return root

    def write_bundle(self, spec: SandboxSpec, argv: list[str], mpl_cache: Path | None) -> Path:
        bundle = self.bundle_dir(spec.kernel_id)
        bundle.mkdir(mode=0o700, parents=True, exist_ok=True)
        present = [p for p in (*SYSTEM_DIRS, *SYSTEM_FILES) if os.path.exists(p)]
        caches = sorted(mpl_cache.glob("fontlist-*.json")) if mpl_cache else []
        assert self.tini is not None  # check() passed
        config = bundle_config(spec, argv, self.prepare(), self.tini, system_paths=present,
                               mpl_cache_files=caches)
        (bundle / "config.json").write_text(json.dumps(config, indent=1))
        return bundle

    def clean_leftovers(self) -> None:
        """Delete every sandbox in this gateway's state directory: at start, after a SIGKILL,
        they are a dead gateway's (the data directory's lock says no live one uses it); at
        close, any whose shutdown was cut short (a task cancelled as the pool closed)."""
        if self.runsc and self.state_dir.is_dir():
            listed = run_runsc(list_argv(self.global_args())) or ""
            for kernel_id in listed.split():
                log.warning("deleting gVisor sandbox %s left behind", kernel_id)
                for _ in range(DELETE_ATTEMPTS):
                    if run_runsc(delete_argv(self.global_args(), kernel_id)) is not None:
                        break
        shutil.rmtree(self.bundle_dir("-").parent, ignore_errors=True)


def gvisor_report(platform: str, version: str | None, cgroups: CgroupLimiter | None,
                  drop_uid: bool) -> LimitReport:
    report = LimitReport()
    enforced, missing = report.enforced, report.missing
    enforced["isolation"] = (f"gVisor {version or '(runsc missing)'}, platform {platform}: "
                             "the kernel's syscalls are answered by gVisor's own kernel")
    enforced["network"] = "none (runsc --network=none); host sockets: bind only, no connect"
    enforced["proc_sys_read_only"] = "gVisor's own /proc/sys: no host sysctl is reachable"
    enforced["userns_disabled"] = "namespaces made inside exist only in gVisor's kernel"
    enforced["seccomp"] = "runsc's filters on the sentry and gofer (not on user code)"
    enforced["processes"] = "RLIMIT_NPROC in gVisor's kernel (host cgroup as a backstop)"
    enforced["file size, open files"] = "rlimits in gVisor's kernel"
    if cgroups is not None:
        kind = f"cgroup v{cgroups.version}"
        for name, limit in (("memory", "memory"), ("cpu", "cpu")):
            if name in cgroups.controllers:
                enforced[limit] = f"{kind}, the whole sandbox (kernel and gVisor)"
            else:
                missing[limit] = f"{kind} {name} controller not writable"
    else:
        missing["memory"] = missing["cpu"] = "cgroups need root"
    if drop_uid:
        enforced["unprivileged_uid"] = "one uid per kernel (its files on the host are that uid's)"
    else:
        missing["unprivileged_uid"] = "turned off by the operator (kernel_uid_base = 0)"
    return report


def runsc_version(runsc: str) -> str | None:
    try:
        out = subprocess.run([runsc, "--version"], capture_output=True, text=True,
                             timeout=RUNSC_TIMEOUT).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    first = out.split("\n", 1)[0]  # "runsc version 0.0~20221219.0"
    return first.rsplit(" ", 1)[-1] or None


def run_runsc(argv: list[str]) -> str | None:
    """Blocking; its stdout, None when it failed (logged, never raised: clean-up goes on)."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=RUNSC_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("%s failed: %s", " ".join(argv[-3:]), exc)
        return None
    if result.returncode != 0:
        log.warning("%s: %s", " ".join(argv[-3:]), result.stderr.strip()[-300:])
        return None
    return result.stdout


async def run_runsc_async(argv: list[str]) -> str | None:
    """None when one runsc command succeeded; else what went wrong."""
    try:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
    except OSError as exc:
        return str(exc)
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), RUNSC_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        return f"no answer in {RUNSC_TIMEOUT:.0f} s"
    if process.returncode == 0:
        return None
    return stderr.decode(errors="replace").strip()[-300:] or f"exit {process.returncode}"


class GvisorProvisioner(SandboxProvisioner):
    """The kernel is ``runsc run``'s container: the wrapper process stands for it (its exit
    status is the kernel's), every signal goes through runsc, and clean-up deletes the
    sandbox whatever happened to the wrapper."""

    deleted = False

    @property
    def gvisor(self) -> GvisorHost:
        assert isinstance(self.host, GvisorHost)
        return self.host

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> Any:
        assert self.spec is not None
        host = self.gvisor
        if self.spec.uid is not None and host.drop_uid:
            give_to_uid(self.spec.runtime_dir, self.spec.uid)
        if host.cgroups is not None:
            # Made and limited here, not by runsc: it would remove the cgroups it made as soon
            # as the sandbox dies, before the gateway reads whether the memory limit killed it
            # (and runsc leaves a cgroup it did not make without limits).
            host.cgroups.create(self.spec.kernel_id, self.spec.limits,
                                host_tasks=host_task_limit(self.spec.limits))
        bundle = await asyncio.to_thread(host.write_bundle, self.spec, cmd, self.spec.mpl_cache)
        kwargs["stdout"] = subprocess.DEVNULL
        kwargs["stderr"] = subprocess.DEVNULL
        kwargs["env"] = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        self.deleted = False
        return await super(SandboxProvisioner, self).launch_kernel(
            run_argv(host.global_args(), bundle, self.spec.kernel_id), **kwargs)

    async def send_signal(self, signum: int) -> None:
        if self.spec is None or self.process is None:
            return
        if signum == signal.SIGKILL:
            await self._delete()
            return
        problem = await run_runsc_async(kill_argv(
            self.gvisor.global_args(), self.spec.kernel_id,
            signal.Signals(signum).name.removeprefix("SIG")))
        if problem is not None:
            log.warning("runsc kill of kernel %s: %s", self.spec.kernel_id, problem)

    async def kill(self, restart: bool = False) -> None:
        await self._delete()

    async def terminate(self, restart: bool = False) -> None:
        await self.send_signal(signal.SIGTERM)

    async def _delete(self) -> None:
        """``runsc delete -force``; the wrapper exits once its sandbox is gone."""
        if self.spec is None or self.deleted:
            return
        for attempt in range(1, DELETE_ATTEMPTS + 1):
            # Not a loop that can spin: each attempt is bounded by RUNSC_TIMEOUT.
            problem = await run_runsc_async(delete_argv(self.gvisor.global_args(),
                                                        self.spec.kernel_id))
            if problem is None:
                break
            # Usual on a loaded host ("stopping container: context deadline exceeded"): the
            # next attempt finds the sandbox stopped. Only the last one's failure is a problem.
            level = logging.WARNING if attempt == DELETE_ATTEMPTS else logging.INFO
            log.log(level, "runsc delete of kernel %s (attempt %d of %d): %s",
                    self.spec.kernel_id, attempt, DELETE_ATTEMPTS, problem)
        self.deleted = True
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # a wrapper that outlived its sandbox has nothing to wait for

    async def cleanup(self, restart: bool = False) -> None:
        await self._delete()
        await super().cleanup(restart)  # the cgroups (SandboxProvisioner)
        if self.spec is not None:
            bundle = self.gvisor.bundle_dir(self.spec.kernel_id)
            await asyncio.to_thread(shutil.rmtree, bundle, True)
