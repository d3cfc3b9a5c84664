"""The seccomp filter every sandboxed kernel runs under, built with libseccomp at start-up.

Everything the filter refuses is in the tables below, so a reviewer reads the policy in one place.
It follows Docker's default profile and Flatpak's: the kernel interfaces that local privilege
escalations go through (keyrings, BPF, io_uring, userfaultfd, namespaces, mounts, tracing) and
the host-wide knobs no cell has a reason to touch. Anything not listed is allowed: the kernel
runs ordinary data-analysis code, subprocesses, threads and multiprocessing.

Built with ``pyseccomp`` (ctypes over the system's libseccomp2, the library apt itself depends
on): the same API as libseccomp's own Python bindings, but installable from PyPI into any venv
and any Python version, where Debian's ``python3-seccomp`` serves only the system Python.
"""

from __future__ import annotations

import contextlib
import errno
import os
from dataclasses import dataclass

EPERM, ENOSYS, EAFNOSUPPORT = errno.EPERM, errno.ENOSYS, errno.EAFNOSUPPORT

# syscall -> (errno returned, why it is refused)
DENIED_SYSCALLS: dict[str, tuple[int, str]] = {
    # Kernel keyrings: not namespaced, a long history of exploits.
    "keyctl": (EPERM, "kernel keyrings"),
    "add_key": (EPERM, "kernel keyrings"),
    "request_key": (EPERM, "kernel keyrings"),
    # Looking into or controlling other processes.
    "ptrace": (EPERM, "tracing processes"),
    "process_vm_readv": (EPERM, "reading another process's memory"),
    "process_vm_writev": (EPERM, "writing another process's memory"),
    "kcmp": (EPERM, "comparing other processes' kernel objects"),
    "pidfd_getfd": (EPERM, "stealing another process's file descriptors"),
    "perf_event_open": (EPERM, "performance counters: side channels, kernel exploits"),
    # Large, exploit-prone kernel attack surface that analysis code never needs.
    "bpf": (EPERM, "eBPF programs"),
    "userfaultfd": (EPERM, "userfaultfd: the usual race amplifier in kernel exploits"),
    "io_uring_setup": (EPERM, "io_uring"),
    "io_uring_enter": (EPERM, "io_uring"),
    "io_uring_register": (EPERM, "io_uring"),
    # Namespaces and mounts: the sandbox's own walls.
    "unshare": (EPERM, "new namespaces"),
    "setns": (EPERM, "entering namespaces"),
    "clone3": (ENOSYS, "clone3's flags cannot be inspected; ENOSYS makes libc fall back to clone"),
    "mount": (EPERM, "mounts"),
    "umount2": (EPERM, "mounts"),
    "pivot_root": (EPERM, "mounts"),
    "chroot": (EPERM, "mounts"),
    "fsopen": (EPERM, "the new mount API"),
    "fsconfig": (EPERM, "the new mount API"),
    "fsmount": (EPERM, "the new mount API"),
    "fspick": (EPERM, "the new mount API"),
    "open_tree": (EPERM, "the new mount API"),
    "move_mount": (EPERM, "the new mount API"),
    "mount_setattr": (EPERM, "the new mount API"),
    "name_to_handle_at": (EPERM, "file handles bypass the mount namespace"),
    "open_by_handle_at": (EPERM, "file handles bypass the mount namespace"),
    # The machine itself.
    "kexec_load": (EPERM, "loading a new host kernel"),
    "kexec_file_load": (EPERM, "loading a new host kernel"),
    "init_module": (EPERM, "kernel modules"),
    "finit_module": (EPERM, "kernel modules"),
    "delete_module": (EPERM, "kernel modules"),
    "reboot": (EPERM, "rebooting the host"),
    "swapon": (EPERM, "host swap"),
    "swapoff": (EPERM, "host swap"),
    "acct": (EPERM, "process accounting"),
    "quotactl": (EPERM, "disk quotas"),
    "settimeofday": (EPERM, "the host clock"),
    "clock_settime": (EPERM, "the host clock"),
    "clock_adjtime": (EPERM, "the host clock"),
    "adjtimex": (EPERM, "the host clock"),
    "sethostname": (EPERM, "host names"),
    "setdomainname": (EPERM, "host names"),
    "syslog": (EPERM, "the kernel log"),
    "vhangup": (EPERM, "terminals"),
    "iopl": (EPERM, "raw I/O ports"),
    "ioperm": (EPERM, "raw I/O ports"),
    "uselib": (EPERM, "obsolete library loading"),
    "lookup_dcookie": (EPERM, "obsolete profiling interface"),
    "nfsservctl": (EPERM, "obsolete NFS control"),
}

# Namespace flags refused in clone(2) (its flags are argument 0 on x86_64 and arm64).
CLONE_NAMESPACE_FLAGS: dict[str, int] = {
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
    "CLONE_NEWTIME": 0x00000080,
}

# ioctl requests refused on any descriptor: pushing input into a terminal someone else reads.
DENIED_IOCTLS: dict[str, int] = {"TIOCSTI": 0x5412, "TIOCLINUX": 0x541C}

# The only socket families a kernel may open; everything else fails with EAFNOSUPPORT
# (packet, bluetooth, vsock, alg, ...).
ALLOWED_SOCKET_FAMILIES: dict[str, int] = {"AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10}
# Netlink fails with EOPNOTSUPP instead, as on hosts without it: libzmq (ipykernel's transport)
# resolves addresses with getifaddrs() and aborts the process on any other errno from it.
AF_NETLINK, NETLINK_ERRNO = 16, errno.EOPNOTSUPP


@dataclass(frozen=True)
class SeccompProgram:
    """A compiled BPF program, handed to bubblewrap (``--seccomp FD``) at every launch."""

    bpf: bytes
    skipped: tuple[str, ...] = ()  # syscalls this architecture does not have

    def memfd(self) -> int:
        """A fresh descriptor holding the program, positioned at its start (bwrap reads it)."""
        fd = os.memfd_create("gateway-seccomp", os.MFD_CLOEXEC)
        os.write(fd, self.bpf)
        os.lseek(fd, 0, os.SEEK_SET)
        return fd


def build_program() -> SeccompProgram:
    """Compile the tables above for this machine's architecture.

    Raises ``ImportError`` or ``OSError`` when libseccomp is not usable here.
    """
    import pyseccomp as seccomp

    program = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    # Foreign ABIs (x32, i386 via int 0x80) would bypass every rule written for the native one.
    program.set_attr(seccomp.Attr.ACT_BADARCH, seccomp.KILL_PROCESS)
    # A binary search over syscall numbers instead of a linear chain: every allowed syscall
    # (write, sendmsg, poll: all of a cell's output) otherwise walks past every rule first.
    with contextlib.suppress(OSError):  # libseccomp < 2.5 has only the linear chain
        program.set_attr(seccomp.Attr.CTL_OPTIMIZE, 2)
    skipped = []
    for name, (code, _why) in DENIED_SYSCALLS.items():
        try:
            program.add_rule(seccomp.ERRNO(code), name)
        except (OSError, ValueError, RuntimeError):
            skipped.append(name)  # not a syscall on this architecture
    for flag in CLONE_NAMESPACE_FLAGS.values():
        program.add_rule(seccomp.ERRNO(EPERM), "clone",
                         seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    for request in DENIED_IOCTLS.values():
        program.add_rule(seccomp.ERRNO(EPERM), "ioctl",
                         seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, request))
    for family in _denied_families_below(AF_NETLINK):
        program.add_rule(seccomp.ERRNO(EAFNOSUPPORT), "socket", seccomp.Arg(0, seccomp.EQ, family))
    program.add_rule(seccomp.ERRNO(NETLINK_ERRNO), "socket", seccomp.Arg(0, seccomp.EQ, AF_NETLINK))
    # Everything above, including values with high bits set that the kernel would truncate.
    program.add_rule(seccomp.ERRNO(EAFNOSUPPORT), "socket",
                     seccomp.Arg(0, seccomp.GT, AF_NETLINK))
    with os.fdopen(os.memfd_create("gateway-seccomp-build", os.MFD_CLOEXEC), "w+b") as out:
        program.export_bpf(out)
        out.seek(0)
        bpf = out.read()
    return SeccompProgram(bpf=bpf, skipped=tuple(skipped))


def _denied_families_below(limit: int) -> list[int]:
    allowed = set(ALLOWED_SOCKET_FAMILIES.values())
    return [family for family in range(limit) if family not in allowed]
