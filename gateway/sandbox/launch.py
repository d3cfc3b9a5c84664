"""How a kernel process is launched: inside bubblewrap, with resource limits.

``SandboxProvisioner`` is a jupyter_client kernel provisioner, so a remote provisioner
(e.g. Kubernetes via gateway_provisioners) can take its place without touching the pool.
The sandbox sees: a read-only system (/usr and the Python install only), a private /tmp, one
writable working directory at ``/mnt/data``, its own ipc socket directory, no network at all,
its own pid namespace, no capabilities, and an environment built from scratch.

Launched by root, a kernel goes through two bubblewraps. The outer one runs as root without a
user namespace, so it can bind paths only root can reach (a Python under /root) and builds the
whole filesystem view; its child drops to the kernel's own unprivileged host uid (``setpriv``),
and the inner one, started by that uid, adds a user namespace that forbids further ones
(``--disable-userns``), read-only ``/proc/sys`` and the seccomp filter. A host uid other than 0
is what keeps host-global sysctls shut: the kernel checks only that uid, not capabilities.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_client.provisioning import LocalProvisioner

from .limits import CgroupLimiter, LimitReport, LimitValues, rlimit_args, rlimit_values
from .seccomp import SeccompProgram, build_program

log = logging.getLogger(__name__)

WORKDIR_IN_SANDBOX = "/mnt/data"
IPYTHON_DIR = "/tmp/ipython"
MPL_DIR = "/tmp/matplotlib"
# Joins the kernel's cgroups before exec, so every process it ever forks is accounted.
JOIN_CGROUPS = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 97; shift; done; shift; exec "$@"'
SYSTEM_DIRS = ("/usr", "/etc/alternatives", "/etc/R")  # /etc/R: R's configuration
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/localtime", "/etc/mime.types", "/etc/nsswitch.conf")
# Host-global kernel knobs that a fresh procfs shows writable to host root: read-only, always.
PROC_READ_ONLY = ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus")
MIN_BWRAP_FOR_DISABLE_USERNS = (0, 8, 0)
NAMESPACES_WITHOUT_USER = ("--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
                           "--unshare-cgroup-try")


@dataclass(frozen=True)
class SandboxSpec:
    """Everything one sandboxed kernel launch needs to know; built by the pool."""

    kernel_id: str
    workdir: Path  # host path bound at /mnt/data
    runtime_dir: Path  # host path holding the connection file and ipc sockets
    startup_dir: Path  # IPython startup scripts (bound read-only)
    python_roots: tuple[Path, ...]  # the kernel interpreter's prefixes (bound read-only)
    limits: LimitValues
    mpl_cache: Path | None = None
    enabled: bool = True
    uid: int | None = None  # the kernel's host uid (and gid); None: the launcher's own
    # Extra variables for code in the kernel (settings of the kernel-side startup code).
    environment: tuple[tuple[str, str], ...] = ()


class HostSandbox:
    """What this host can enforce, probed once: bubblewrap, cgroups, rlimits, seccomp, uids."""

    name = "bubblewrap"
    provisioner = "gateway-sandbox"  # the kernelspecs' own (pyproject's entry points)
    sees_kernel_processes = True  # a kernel's processes are host processes in its cgroup
    forks_kernels = True  # Python kernels may be forked from a zygote (if fork_problem() allows)

    def __init__(self, enabled: bool, drop_uid: bool = True) -> None:
        self.enabled = enabled
        self.bwrap = shutil.which("bwrap")
        self.prlimit = shutil.which("prlimit")
        self.setpriv = shutil.which("setpriv")
        self.cgroups = CgroupLimiter() if enabled and os.geteuid() == 0 else None
        self.report = LimitReport()
        self.seccomp: SeccompProgram | None = None
        self.disable_userns = False
        self.drop_uid = False  # root launches kernels under their own unprivileged uid
        if not enabled:
            self.report.missing["sandbox"] = "disabled by the operator (--sandbox none)"
            return
        self.report.enforced["isolation"] = "bubblewrap" if self.bwrap else "MISSING"
        if self.cgroups:
            self.cgroups.report(self.report)
        else:
            for name in ("memory", "processes", "cpu"):
                self.report.missing[name] = "cgroups need root"
        if self.prlimit:
            self.report.enforced["file size, open files"] = "rlimit"
            if "memory" in self.report.missing:
                self.report.enforced["memory"] = "rlimit (address space)"
                del self.report.missing["memory"]
        else:
            self.report.missing["file size, open files"] = "prlimit not found"
        if self.bwrap:
            self._probe_hardening(drop_uid)

    def _probe_hardening(self, drop_uid: bool) -> None:
        assert self.bwrap is not None
        enforced, missing = self.report.enforced, self.report.missing
        enforced["proc_sys_read_only"] = "read-only bind of " + ", ".join(
            path for path in PROC_READ_ONLY if os.path.exists(path))
        version = bwrap_version(self.bwrap)
        if version >= MIN_BWRAP_FOR_DISABLE_USERNS:
            self.disable_userns = True
            enforced["userns_disabled"] = "bwrap --disable-userns, seccomp on unshare/clone"
        else:
            missing["userns_disabled"] = (
                f"bubblewrap {'.'.join(map(str, version))} lacks --disable-userns (needs 0.8); "
                "seccomp still refuses unshare and clone with namespace flags")
        try:
            self.seccomp = build_program()
            enforced["seccomp"] = f"libseccomp filter, {len(self.seccomp.bpf) // 8} instructions"
            if self.seccomp.skipped:  # unknown to this libseccomp and to our table of numbers
                enforced["seccomp"] += f"; not refused here: {', '.join(self.seccomp.skipped)}"
        except (ImportError, OSError, RuntimeError, ValueError) as exc:
            missing["seccomp"] = f"libseccomp not usable: {exc}"
            if self.disable_userns:
                enforced["userns_disabled"] = "bwrap --disable-userns (no seccomp backstop)"
        if os.geteuid() != 0:
            enforced["unprivileged_uid"] = (
                f"the gateway's own uid {os.geteuid()} (kernels are not separated by uid)")
        elif not drop_uid:
            missing["unprivileged_uid"] = "turned off by the operator (kernel_uid_base = 0)"
        elif not self.setpriv:
            missing["unprivileged_uid"] = "setpriv (util-linux) not found; kernels run as root"
        else:
            problem = self._probe_nested_launch()
            if problem:
                missing["unprivileged_uid"] = f"kernels run as host root: {problem}"
            else:
                self.drop_uid = True
                enforced["unprivileged_uid"] = "one host uid per kernel (setpriv before bwrap)"

    def _probe_nested_launch(self) -> str | None:
        """None when an unprivileged uid can start the inner bubblewrap here (it needs
        unprivileged user namespaces, which some hosts restrict, e.g. Ubuntu 24.04's AppArmor)."""
        assert self.bwrap is not None and self.setpriv is not None
        probe_uid = 65534  # nobody: the probe creates no file
        argv = [self.bwrap, *NAMESPACES_WITHOUT_USER, "--die-with-parent",
                "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
                "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--",
                *inner_argv(self.bwrap, self.setpriv, probe_uid, self.disable_userns, None),
                "/bin/true"]
        try:
            result = subprocess.run(argv, capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"probe failed: {exc}"
        if result.returncode != 0:
            return ("an unprivileged uid cannot start bubblewrap (unprivileged user namespaces "
                    f"restricted?): {result.stderr.decode(errors='replace').strip()[-300:]}")
        return None

    def describe(self) -> str:
        return self.name if self.enabled else "DISABLED"

    def clean_leftovers(self) -> None:
        """At start and close: nothing of bubblewrap's outlives the gateway (--die-with-parent)."""

    def check(self) -> None:
        from ..errors import SandboxUnavailable

        if self.enabled and not self.bwrap:
            raise SandboxUnavailable(
                "bubblewrap (bwrap) is not installed; install the Debian package 'bubblewrap' "
                "or start with --sandbox none to run kernels unisolated"
            )

    def launch_command(self, spec: SandboxSpec, kernel_cmd: list[str],
                       seccomp_fd: int | None) -> list[str]:
        """The full argv: [join cgroups] [prlimit] bwrap ... [setpriv bwrap ...] kernel_cmd."""
        assert self.bwrap is not None
        cmd: list[str] = []
        controllers = self.cgroups.controllers if self.cgroups else set()
        if self.cgroups and controllers:
            procs = self.cgroups.create(spec.kernel_id, spec.limits)
            cmd += ["/bin/sh", "-c", JOIN_CGROUPS, "gateway-sandbox", *map(str, procs), "--"]
        if self.prlimit:
            cmd += [self.prlimit, *rlimit_args(spec.limits, **self._rlimit_choice(spec)), "--"]
        if self._drops_uid(spec):
            assert self.setpriv is not None and spec.uid is not None
            return cmd + [
                *outer_bwrap_argv(self.bwrap, spec), "--",
                *inner_argv(self.bwrap, self.setpriv, spec.uid, self.disable_userns, seccomp_fd),
                *kernel_cmd]
        return cmd + single_bwrap_argv(self.bwrap, spec, self.disable_userns,
                                       seccomp_fd) + kernel_cmd

    def _drops_uid(self, spec: SandboxSpec) -> bool:
        return self.drop_uid and spec.uid is not None

    def _rlimit_choice(self, spec: SandboxSpec) -> dict[str, bool]:
        controllers = self.cgroups.controllers if self.cgroups else set()
        return {"with_memory": "memory" not in controllers,
                # With a uid of its own, RLIMIT_NPROC counts exactly this kernel's tasks.
                "with_nproc": self._drops_uid(spec) or "pids" not in controllers}

    def rlimits(self, spec: SandboxSpec) -> dict[str, int]:
        """The rlimits of ``spec``'s kernel, by ``resource`` name (for a forked kernel)."""
        return rlimit_values(spec.limits, **self._rlimit_choice(spec))

    def fork_problem(self) -> str | None:
        """Why kernels cannot be forked from a zygote here (None: they can). A forked kernel
        gets its isolation from the zygote, not from bubblewrap, and only root can give it."""
        if not self.enabled:
            return "the sandbox is off"
        if not self.bwrap:
            return "bubblewrap is missing"
        if os.geteuid() != 0:
            return "the gateway is not root (a forked kernel's namespaces and uid need it)"
        if not self.drop_uid:
            return "kernels would not get their own uid"
        if self.seccomp is None:
            return "no seccomp filter"
        if not (self.cgroups and self.cgroups.controllers):
            return "no cgroups"
        return None


def bwrap_version(bwrap: str) -> tuple[int, ...]:
    try:
        out = subprocess.run([bwrap, "--version"], capture_output=True, text=True,
                             timeout=10).stdout
        return parse_bwrap_version(out)
    except (OSError, subprocess.TimeoutExpired):
        return (0,)


def parse_bwrap_version(text: str) -> tuple[int, ...]:
    """``"bubblewrap 0.8.0"`` -> (0, 8, 0); (0,) when unreadable."""
    for word in text.split():
        parts = word.split(".")
        if len(parts) >= 2 and all(p.isdigit() for p in parts):
            return tuple(int(p) for p in parts)
    return (0,)


def single_bwrap_argv(bwrap: str, spec: SandboxSpec, disable_userns: bool,
                      seccomp_fd: int | None) -> list[str]:
    """One bubblewrap with every namespace: for a launcher that cannot or need not change uid."""
    argv = [bwrap, "--unshare-all", "--unshare-user"]  # every namespace: no network at all
    if disable_userns:
        argv += ["--disable-userns"]
    argv += ["--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    argv += filesystem_args(spec, read_only_proc=True)
    if seccomp_fd is not None:
        argv += ["--seccomp", str(seccomp_fd)]
    return argv


def outer_bwrap_argv(bwrap: str, spec: SandboxSpec) -> list[str]:
    """Root's half: every namespace but the user one, and the whole filesystem view.

    Its child keeps only CAP_SETUID/CAP_SETGID, to become the kernel's uid at once."""
    return [bwrap, *NAMESPACES_WITHOUT_USER, "--die-with-parent", "--new-session",
            "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
            *filesystem_args(spec, read_only_proc=False)]


def inner_argv(bwrap: str, setpriv: str, uid: int, disable_userns: bool,
               seccomp_fd: int | None) -> list[str]:
    """The unprivileged half: drop to ``uid``, then a user namespace that allows no other,
    no capabilities, read-only kernel knobs, and the seccomp filter."""
    argv = [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--",
            bwrap, "--unshare-user"]
    if disable_userns:
        argv += ["--disable-userns"]
    # The outer bwrap's view, as it is: --dev-bind, because a plain --bind would add nodev and
    # lock the kernel out of /dev/null. /proc/sys is made read-only here, not in the outer
    # bwrap: --disable-userns writes the namespace's own user.max_user_namespaces through it.
    argv += ["--die-with-parent", "--cap-drop", "ALL", "--dev-bind", "/", "/",
             *_read_only_proc_args()]
    if seccomp_fd is not None:
        argv += ["--seccomp", str(seccomp_fd)]
    return argv + ["--"]


def _read_only_proc_args() -> list[str]:
    argv = []
    for path in PROC_READ_ONLY:
        if os.path.exists(path):
            argv += ["--ro-bind", path, path]
    return argv


def filesystem_args(spec: SandboxSpec, *, read_only_proc: bool) -> list[str]:
    """What the kernel sees, in bwrap's language (everything else of the host is absent)."""
    argv = shared_view_args(read_only_proc=read_only_proc)
    startup = f"{IPYTHON_DIR}/profile_default/startup"
    binds = [*(str(root) for root in spec.python_roots), str(spec.runtime_dir),
             WORKDIR_IN_SANDBOX, startup, MPL_DIR]
    argv += parent_dir_args(binds)
    for root in spec.python_roots:
        argv += ["--ro-bind", str(root), str(root)]
    argv += [
        "--bind", str(spec.runtime_dir), str(spec.runtime_dir),
        "--bind", str(spec.workdir), WORKDIR_IN_SANDBOX,
        "--ro-bind", str(spec.startup_dir), startup,
    ]
    argv += matplotlib_cache_args(spec.mpl_cache)
    argv += ["--chdir", WORKDIR_IN_SANDBOX]
    for key, value in kernel_environment(spec).items():
        argv += ["--setenv", key, value]
    return argv


def matplotlib_cache_args(mpl_cache: Path | None) -> list[str]:
    argv: list[str] = []
    if mpl_cache and mpl_cache.is_dir():
        for cache_file in mpl_cache.glob("fontlist-*.json"):
            argv += ["--ro-bind", str(cache_file), f"{MPL_DIR}/{cache_file.name}"]
    return argv


def shared_view_args(*, read_only_proc: bool) -> list[str]:
    """The system part of every kernel's view: the same for all, no per-kernel path."""
    argv = ["--clearenv", "--hostname", "sandbox", "--proc", "/proc"]
    if read_only_proc:
        argv += _read_only_proc_args()
    # Made by root for a kernel that may run as another uid: world-writable, sticky.
    argv += ["--dev", "/dev", "--perms", "1777", "--tmpfs", "/dev/shm",
             "--perms", "1777", "--tmpfs", "/tmp"]
    # /etc itself, which bwrap would otherwise make 0700 for root: a kernel's own uid must
    # reach the few entries bound below (/etc/alternatives holds e.g. R's BLAS links).
    argv += ["--perms", "0755", "--dir", "/etc"]
    for path in SYSTEM_DIRS:
        if os.path.exists(path):
            argv += ["--ro-bind", path, path]
    for link in ("bin", "lib", "lib64", "sbin"):
        target = os.path.join("/", link)
        if os.path.islink(target):
            argv += ["--symlink", os.readlink(target), target]
    for path in SYSTEM_FILES:
        if os.path.exists(path):
            argv += ["--ro-bind", path, path]
    return argv


def parent_dir_args(paths: list[str]) -> list[str]:
    """``--dir`` for every directory leading to ``paths`` (and for ``paths`` under /tmp).

    bwrap would copy each parent's host mode, and a parent like /root (0700) would then lock
    an unprivileged kernel out of its own interpreter. Under /tmp the kernel's uid must be able
    to write (IPython's profile, matplotlib's cache)."""
    system = tuple(SYSTEM_DIRS)
    made: list[str] = []
    for path in paths:
        parts = Path(path).parts
        wanted = [str(Path(*parts[:i])) for i in range(2, len(parts))]
        if path.startswith("/tmp/") and path != f"{IPYTHON_DIR}/profile_default/startup":
            wanted.append(path)
        for directory in wanted:
            inside_bind = any(directory == p or directory.startswith(p + "/") for p in paths
                              if p != path and not p.startswith("/tmp/"))
            if directory in made or directory == "/tmp" or inside_bind or any(
                    directory == s or directory.startswith(s + "/") for s in system):
                continue
            made.append(directory)
    args: list[str] = []
    for directory in made:
        mode = "0777" if directory.startswith("/tmp/") else "0755"
        args += ["--perms", mode, "--dir", directory]
    return args


def kernel_environment(spec: SandboxSpec) -> dict[str, str]:
    """Built from nothing: no gateway variable or secret can leak into the kernel."""
    return sandbox_environment(spec.environment)


def sandbox_environment(extra: tuple[tuple[str, str], ...] = ()) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {
        "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
        "HOME": WORKDIR_IN_SANDBOX,
        "LANG": "C.UTF-8",
        "TMPDIR": "/tmp",
        "IPYTHONDIR": IPYTHON_DIR,
        "MPLCONFIGDIR": MPL_DIR,
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "JUPYTER_RUNTIME_DIR": "/tmp/jupyter",
        "PYTHONDONTWRITEBYTECODE": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        **dict(extra),
    }


def unsandboxed_environment(spec: SandboxSpec) -> dict[str, str]:
    """``--sandbox none``: still a clean environment, pointed at the host paths."""
    env = kernel_environment(spec)
    env.update(
        HOME=str(spec.workdir),
        IPYTHONDIR=str(spec.runtime_dir / "ipython"),
        MPLCONFIGDIR=str(spec.mpl_cache or spec.runtime_dir / "matplotlib"),
        JUPYTER_RUNTIME_DIR=str(spec.runtime_dir),
        TMPDIR=str(spec.runtime_dir),
    )
    startup = spec.runtime_dir / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    for script in spec.startup_dir.glob("*.py"):
        shutil.copy(script, startup / script.name)
    return env


def give_to_uid(directory: Path, uid: int) -> None:
    """The kernel's runtime directory (connection file, ipc sockets) belongs to its uid."""
    os.chown(directory, uid, uid)
    for entry in os.scandir(directory):
        os.chown(entry.path, uid, uid, follow_symlinks=False)


def prepare_matplotlib_cache(python: str, cache_dir: Path) -> Path | None:
    """Build matplotlib's font cache once on the host so no kernel pays for it at start."""
    if any(cache_dir.glob("fontlist-*.json")):
        return cache_dir
    cache_dir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [python, "-c", "import matplotlib.font_manager"],
        env={"MPLCONFIGDIR": str(cache_dir), "PATH": os.environ.get("PATH", "")},
        capture_output=True,
        timeout=120,
    )
    if result.returncode != 0:
        log.warning("matplotlib font cache not built: %s", result.stderr.decode()[-500:])
        return None
    return cache_dir


class SandboxProvisioner(LocalProvisioner):
    """A local provisioner that wraps the kernel command in bubblewrap and resource limits.

    The pool passes ``sandbox=SandboxSpec`` and ``host=HostSandbox`` to ``start_kernel``.
    """

    spec: SandboxSpec | None = None
    host: HostSandbox | None = None
    zygote: Any = None  # a gateway.zygote.Zygote: the kernel is forked from it, not exec'd

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        self.spec = kwargs.pop("sandbox")
        self.host = kwargs.pop("host")
        self.zygote = kwargs.pop("zygote", None)
        return await super().pre_launch(**kwargs)

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> Any:
        assert self.spec is not None and self.host is not None
        # The kernel's output goes nowhere near the gateway's own terminal or logs.
        kwargs["stdout"] = subprocess.DEVNULL
        kwargs["stderr"] = subprocess.DEVNULL
        if not self.spec.enabled:
            kwargs["env"] = unsandboxed_environment(self.spec)
            kwargs["cwd"] = str(self.spec.workdir)
            return await super().launch_kernel(cmd, **kwargs)
        if self.spec.uid is not None and self.host.drop_uid:
            give_to_uid(self.spec.runtime_dir, self.spec.uid)
        if self.zygote is not None:
            self.process = await self.zygote.fork(self.spec, cmd)
            # Its own session from its first instruction: the whole kernel is one group.
            self.pid = self.pgid = self.process.pid
            return self.connection_info
        seccomp_fd = self.host.seccomp.memfd() if self.host.seccomp else None
        try:
            cmd = self.host.launch_command(self.spec, cmd, seccomp_fd)
            kwargs["env"] = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
            if seccomp_fd is not None:
                kwargs["pass_fds"] = (seccomp_fd,)
            return await super().launch_kernel(cmd, **kwargs)
        finally:
            if seccomp_fd is not None:
                os.close(seccomp_fd)

    async def kill(self, restart: bool = False) -> None:
        await super().kill(restart)
        self._kill_cgroup()

    async def send_signal(self, signum: int) -> None:
        await super().send_signal(signum)
        if signum == signal.SIGKILL:
            self._kill_cgroup()

    def _kill_cgroup(self) -> None:
        if self.spec and self.host and self.host.cgroups:
            self.host.cgroups.kill_all(self.spec.kernel_id)

    def oom_killed(self) -> bool:
        if self.spec and self.host and self.host.cgroups:
            return self.host.cgroups.oom_killed(self.spec.kernel_id)
        return False

    async def cleanup(self, restart: bool = False) -> None:
        await super().cleanup(restart)
        if self.spec and self.host and self.host.cgroups:
            self.host.cgroups.kill_all(self.spec.kernel_id)
            await self.host.cgroups.remove_when_empty(self.spec.kernel_id)
