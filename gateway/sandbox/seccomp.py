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
NR_UNKNOWN = -1  # libseccomp's __NR_SCMP_ERROR: a name it does not know on any architecture

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
    # ENOSYS, as on hosts booted without secretmem, so callers fall back to ordinary memory.
    "memfd_secret": (ENOSYS, "secret memory: locked pages cut out of the host's direct map"),
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
    "open_tree_attr": (EPERM, "the new mount API"),
    # Mounts by id, other mount namespaces' included since 6.11; ENOSYS, as on kernels before
    # 6.8, so tools fall back to /proc/self/mountinfo.
    "listmount": (ENOSYS, "listing mounts by id"),
    "statmount": (ENOSYS, "reading mounts by id"),
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

# Syscalls newer than some libseccomp releases (2.5 knows none but memfd_secret), by number.
# Syscalls added since Linux 5.1 have one number on every architecture of the unified table;
# only those listed here are trusted to use it (a wrong number would refuse another syscall).
NUMBERS_OF_NEWER_SYSCALLS: dict[str, int] = {
    "memfd_secret": 447, "statmount": 457, "listmount": 458, "open_tree_attr": 467}
UNIFIED_NUMBERING_ARCHES = ("X86_64", "AARCH64")

# personality(2): only the plain personas Docker's default profile allows. The flags fail with
# EPERM: READ_IMPLIES_EXEC makes every mapping executable, MMAP_PAGE_ZERO maps page 0 (how a
# NULL dereference in the host kernel is exploited), ADDR_NO_RANDOMIZE turns ASLR off.
ALLOWED_PERSONALITIES: dict[int, str] = {
    0x0: "PER_LINUX", 0x8: "PER_LINUX32", 0x20000: "UNAME26", 0x20008: "PER_LINUX32|UNAME26",
    0xFFFFFFFF: "query the current persona"}
QUERY_PERSONALITY = 0xFFFFFFFF

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
        number = syscall_number(name)
        try:
            if number is None:
                raise ValueError(f"{name} is unknown here")
            program.add_rule(seccomp.ERRNO(code), number)
        except (OSError, ValueError, RuntimeError):
            skipped.append(name)  # not a syscall on this architecture
    for mask, value in personality_denials():
        program.add_rule(seccomp.ERRNO(EPERM), "personality",
                         seccomp.Arg(0, seccomp.MASKED_EQ, mask, value))
    # The kernel reads an unsigned int; higher bits are refused rather than reasoned about.
    program.add_rule(seccomp.ERRNO(EPERM), "personality",
                     seccomp.Arg(0, seccomp.GT, QUERY_PERSONALITY))
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


def syscall_number(name: str) -> int | None:
    """This architecture's number for ``name``: libseccomp's (negative for a syscall only other
    architectures have), else ours for a syscall newer than this libseccomp, else None."""
    import pyseccomp as seccomp

    number: int = seccomp.resolve_syscall(seccomp.Arch.NATIVE, name)
    if number != NR_UNKNOWN:
        return number
    arches = {getattr(seccomp.Arch, arch) for arch in UNIFIED_NUMBERING_ARCHES}
    return NUMBERS_OF_NEWER_SYSCALLS.get(name) if seccomp.system_arch() in arches else None


def personality_denials() -> list[tuple[int, int]]:
    """(mask, value) pairs for MASKED_EQ rules on personality's argument that together match
    every 32-bit persona except ``ALLOWED_PERSONALITIES``.

    libseccomp 2.5 takes one comparison per argument in a rule, so "none of these five" is
    spelt as a union. The allowed personas other than the query are every combination of a few
    plain bits; call the other bits flags. A persona with some flags set but not all has, going
    round the flags, a set flag followed by a clear one (the first rules); one with every flag
    set is the query unless a plain bit is clear (the last rules). tests/unit/test_seccomp.py
    keeps the table in that shape."""
    plain = 0
    for persona in ALLOWED_PERSONALITIES:
        if persona != QUERY_PERSONALITY:
            plain |= persona
    flags = [bit for bit in range(32) if not plain >> bit & 1]
    rules = [(1 << bit | 1 << after, 1 << bit)
             for bit, after in zip(flags, flags[1:] + flags[:1], strict=True)]
    every_flag = sum(1 << bit for bit in flags)
    rules += [(every_flag | 1 << bit, every_flag) for bit in range(32) if plain >> bit & 1]
    return rules


def _denied_families_below(limit: int) -> list[int]:
    allowed = set(ALLOWED_SOCKET_FAMILIES.values())
    return [family for family in range(limit) if family not in allowed]
