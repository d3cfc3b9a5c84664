"""A kernel's OCI bundle for gVisor, built from the same ``SandboxSpec`` as bubblewrap's argv.

Pure: the caller finds out what exists on the host (system paths, matplotlib's font cache) and
writes the result to ``config.json``; nothing here touches the filesystem or starts anything.
The view matches bubblewrap's (launch.py): a read-only root holding only symlinks, the system
directories and the Python install bound read-only, the kernel's runtime directory read-write
at its own path (ipc sockets appear on the host), its working directory at /mnt/data, a private
/tmp, no capabilities, the kernel's own uid, an environment built from nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .launch import IPYTHON_DIR, MPL_DIR, WORKDIR_IN_SANDBOX, SandboxSpec, kernel_environment
from .limits import CPU_PERIOD_US, GROUP_NAME, LimitValues, rlimit_values

OCI_VERSION = "1.0.2"
NAMESPACES = ("pid", "network", "ipc", "uts", "mount")
ROOT_SYMLINKS = ("bin", "lib", "lib64", "sbin")  # as bubblewrap's view has them (launch.py)
STARTUP_DIR = f"{IPYTHON_DIR}/profile_default/startup"
# Directories the kernel's uid writes in (IPython's profile, matplotlib's cache): tmpfs of their
# own, world-writable and sticky, since gVisor makes mount points root's (0755).
WRITABLE_TMP = (f"{IPYTHON_DIR}/profile_default", MPL_DIR)
# With the ptrace platform every task of the sandbox is a traced host process, beside the
# sentry's and the gofer's own threads: the host's pids cgroup is only a backstop against
# exhausting the host, at this many host tasks per allowed process (plus the runtime's own).
# The process limit itself is RLIMIT_NPROC, which gVisor's kernel enforces exactly.
HOST_TASKS_PER_PROCESS = 10
RUNTIME_TASKS = 512


def cgroups_path(kernel_id: str) -> str:
    """The kernel's cgroup, where ``CgroupLimiter`` looks for it (memory use, OOM kills)."""
    return f"/{GROUP_NAME}/{kernel_id}"


def bind(source: str | Path, destination: str | Path, *, writable: bool = False) -> dict[str, Any]:
    return {"destination": str(destination), "type": "bind", "source": str(source),
            "options": ["rbind", "rw" if writable else "ro", "nosuid", "nodev"]}


def tmpfs(destination: str, mode: str = "1777") -> dict[str, Any]:
    return {"destination": destination, "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "nodev", f"mode={mode}"]}


def mounts(spec: SandboxSpec, system_paths: Iterable[str],
           mpl_cache_files: Iterable[Path]) -> list[dict[str, Any]]:
    """Every mount, parents before children. ``system_paths``: the /usr and /etc entries
    that exist on this host (launch.SYSTEM_DIRS, SYSTEM_FILES)."""
    found = [{"destination": "/proc", "type": "proc", "source": "proc"},
             tmpfs("/dev", "755"), tmpfs("/dev/shm"), tmpfs("/tmp")]
    found += [bind(path, path) for path in system_paths]
    found += [bind(root, root) for root in spec.python_roots]
    found += [bind(spec.runtime_dir, spec.runtime_dir, writable=True),
              bind(spec.workdir, WORKDIR_IN_SANDBOX, writable=True)]
    found += [tmpfs(path) for path in WRITABLE_TMP]
    found += [bind(spec.startup_dir, STARTUP_DIR)]
    found += [bind(cache, f"{MPL_DIR}/{cache.name}") for cache in mpl_cache_files]
    return found


def rlimits(spec: SandboxSpec) -> list[dict[str, Any]]:
    """File size, open files, no core dumps, and processes (counted by gVisor's kernel, where
    the sandbox holds this kernel's tasks and nothing else)."""
    values = rlimit_values(spec.limits, with_memory=False, with_nproc=True)
    return [{"type": name, "hard": value, "soft": value} for name, value in values.items()]


def host_task_limit(limits: LimitValues) -> int:
    return limits.pids * HOST_TASKS_PER_PROCESS + RUNTIME_TASKS


def resources(spec: SandboxSpec) -> dict[str, Any]:
    """The host cgroup of the whole sandbox: the kernel's memory plus what gVisor itself uses,
    its cpu share, and the host-task backstop."""
    limits = spec.limits
    quota = max(1000, int(limits.cpu * CPU_PERIOD_US))
    return {"memory": {"limit": limits.memory, "swap": limits.memory},
            "pids": {"limit": host_task_limit(limits)},
            "cpu": {"quota": quota, "period": CPU_PERIOD_US}}


def bundle_config(spec: SandboxSpec, argv: list[str], root: Path, init: str, *,
                  system_paths: Iterable[str] = (),
                  mpl_cache_files: Iterable[Path] = ()) -> dict[str, Any]:
    """``config.json`` of ``spec``'s kernel, running ``argv`` under ``init`` (tini); ``root``
    is the read-only root directory (only the ``ROOT_SYMLINKS`` in it: every other path is a mount).

    The sandbox's first process is pid 1, which no signal of its own group reaches: ipykernel
    interrupts itself with ``killpg(getpgid())``, i.e. ``kill(-1)``, everyone but itself. Under
    tini the kernel is pid 2 and leads its own group, as under bubblewrap; ``-g`` passes a
    signal from ``runsc kill`` on to that group, and tini reaps orphans."""
    uid = spec.uid if spec.uid is not None else 0
    # kernels/startup/06-gvisor-interrupts.py reads it.
    environment = {**kernel_environment(spec), "KERNEL_SANDBOX": "gvisor"}
    no_capabilities: dict[str, list[str]] = {
        kind: [] for kind in ("bounding", "effective", "inheritable", "permitted", "ambient")}
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False,
            "user": {"uid": uid, "gid": uid},
            "args": [init, "-g", "--", *argv],
            "env": [f"{key}={value}" for key, value in environment.items()],
            "cwd": WORKDIR_IN_SANDBOX,
            "capabilities": no_capabilities,
            "noNewPrivileges": True,
            "rlimits": rlimits(spec),
        },
        "root": {"path": str(root), "readonly": True},
        "hostname": "sandbox",
        "mounts": mounts(spec, system_paths, mpl_cache_files),
        "linux": {
            "namespaces": [{"type": kind} for kind in NAMESPACES],
            "resources": resources(spec),
            "cgroupsPath": cgroups_path(spec.kernel_id),
        },
    }


def runsc_global_args(runsc: str, state_dir: Path, platform: str) -> list[str]:
    """The flags every runsc command of this gateway shares: its own state directory (so it
    lists, signals and deletes only its own sandboxes), no network, and the platform. With
    ``--host-uds=create`` the kernel may bind the ipc sockets jupyter_client connects to, and
    cannot connect to any socket of the host."""
    return [runsc, f"--root={state_dir}", "--network=none", "--host-uds=create",
            f"--platform={platform}"]


def run_argv(global_args: list[str], bundle: Path, kernel_id: str) -> list[str]:
    return [*global_args, "run", "--bundle", str(bundle), kernel_id]


def kill_argv(global_args: list[str], kernel_id: str, signal_name: str) -> list[str]:
    """To the kernel (the sandbox's first process), as ``kill`` would inside it."""
    return [*global_args, "kill", kernel_id, signal_name]


def delete_argv(global_args: list[str], kernel_id: str) -> list[str]:
    """Kill whatever runs in the sandbox and drop its state: the only way to be sure nothing
    is left (the ``run`` wrapper's death leaves the sandbox running)."""
    return [*global_args, "delete", "-force", kernel_id]


def list_argv(global_args: list[str]) -> list[str]:
    return [*global_args, "list", "-quiet"]
