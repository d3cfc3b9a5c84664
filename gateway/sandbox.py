"""How a kernel process is launched: inside bubblewrap, with resource limits.

``SandboxProvisioner`` is a jupyter_client kernel provisioner, so a remote provisioner
(e.g. Kubernetes via gateway_provisioners) can take its place without touching the pool.
The sandbox sees: a read-only system (/usr and the Python install only), a private /tmp, one
writable working directory at ``/mnt/data``, its own ipc socket directory, no network at all,
its own pid namespace, no capabilities, and an environment built from scratch.
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

from .limits import CgroupLimiter, LimitReport, LimitValues, rlimit_args

log = logging.getLogger(__name__)

WORKDIR_IN_SANDBOX = "/mnt/data"
IPYTHON_DIR = "/tmp/ipython"
MPL_DIR = "/tmp/matplotlib"
# Joins the kernel's cgroups before exec, so every process it ever forks is accounted.
JOIN_CGROUPS = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 97; shift; done; shift; exec "$@"'
SYSTEM_DIRS = ("/usr", "/etc/alternatives")
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/localtime", "/etc/mime.types", "/etc/nsswitch.conf")


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


class HostSandbox:
    """What this host can enforce, probed once: bubblewrap, cgroups, rlimits."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bwrap = shutil.which("bwrap")
        self.prlimit = shutil.which("prlimit")
        self.cgroups = CgroupLimiter() if enabled and os.geteuid() == 0 else None
        self.report = LimitReport()
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

    def check(self) -> None:
        from .errors import SandboxUnavailable

        if self.enabled and not self.bwrap:
            raise SandboxUnavailable(
                "bubblewrap (bwrap) is not installed; install the Debian package 'bubblewrap' "
                "or start with --sandbox none to run kernels unisolated"
            )

    def launch_command(self, spec: SandboxSpec, kernel_cmd: list[str]) -> list[str]:
        """The full argv: [join cgroups] [prlimit] bwrap ... kernel_cmd."""
        assert self.bwrap is not None
        cmd: list[str] = []
        controllers = self.cgroups.controllers if self.cgroups else set()
        if self.cgroups and controllers:
            procs = self.cgroups.create(spec.kernel_id, spec.limits)
            cmd += ["/bin/sh", "-c", JOIN_CGROUPS, "gateway-sandbox", *map(str, procs), "--"]
        if self.prlimit:
            cmd += [self.prlimit, *rlimit_args(
                spec.limits,
                with_memory="memory" not in controllers,
                with_nproc="pids" not in controllers,
            ), "--"]
        return cmd + bwrap_argv(self.bwrap, spec) + kernel_cmd


def bwrap_argv(bwrap: str, spec: SandboxSpec) -> list[str]:
    argv = [
        bwrap,
        "--unshare-all",  # user, ipc, pid, net, uts, cgroup namespaces: no network at all
        "--die-with-parent",
        "--new-session",
        "--cap-drop", "ALL",
        "--clearenv",
        "--hostname", "sandbox",
        "--proc", "/proc",
        "--dev", "/dev",
        "--tmpfs", "/tmp",
    ]
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
    for root in spec.python_roots:
        argv += ["--ro-bind", str(root), str(root)]
    argv += [
        "--bind", str(spec.runtime_dir), str(spec.runtime_dir),
        "--bind", str(spec.workdir), WORKDIR_IN_SANDBOX,
        "--ro-bind", str(spec.startup_dir), f"{IPYTHON_DIR}/profile_default/startup",
    ]
    if spec.mpl_cache and spec.mpl_cache.is_dir():
        for cache_file in spec.mpl_cache.glob("fontlist-*.json"):
            argv += ["--ro-bind", str(cache_file), f"{MPL_DIR}/{cache_file.name}"]
    argv += ["--chdir", WORKDIR_IN_SANDBOX]
    for key, value in kernel_environment(spec).items():
        argv += ["--setenv", key, value]
    return argv


def kernel_environment(spec: SandboxSpec) -> dict[str, str]:
    """Built from nothing: no gateway variable or secret can leak into the kernel."""
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

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        self.spec = kwargs.pop("sandbox")
        self.host = kwargs.pop("host")
        return await super().pre_launch(**kwargs)

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> Any:
        assert self.spec is not None and self.host is not None
        if self.spec.enabled:
            cmd = self.host.launch_command(self.spec, cmd)
            kwargs["env"] = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        else:
            kwargs["env"] = unsandboxed_environment(self.spec)
            kwargs["cwd"] = str(self.spec.workdir)
        # The kernel's output goes nowhere near the gateway's own terminal or logs.
        kwargs["stdout"] = subprocess.DEVNULL
        kwargs["stderr"] = subprocess.DEVNULL
        return await super().launch_kernel(cmd, **kwargs)

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
