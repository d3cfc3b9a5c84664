"""The sandbox's policy as data and argv: no kernel, no bubblewrap run."""

from __future__ import annotations

import errno
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.sandbox.launch import (
    PROC_READ_ONLY,
    SandboxSpec,
    inner_argv,
    outer_bwrap_argv,
    parent_dir_args,
    parse_bwrap_version,
    single_bwrap_argv,
)
from gateway.sandbox.limits import LimitValues
from gateway.sandbox.seccomp import (
    ALLOWED_PERSONALITIES,
    ALLOWED_SOCKET_FAMILIES,
    CLONE_NAMESPACE_FLAGS,
    DENIED_IOCTLS,
    DENIED_SYSCALLS,
    build_program,
    personality_denials,
    syscall_number,
)
from gateway.sandbox.uids import UidRange, UidsExhausted

# What the issue (Docker's and Flatpak's defaults) asks the filter to refuse, at the least.
MUST_DENY = """keyctl add_key request_key ptrace perf_event_open bpf userfaultfd io_uring_setup
io_uring_enter io_uring_register kexec_load kexec_file_load init_module finit_module
delete_module mount umount2 pivot_root chroot fsopen fsconfig fsmount fspick open_tree
move_mount unshare setns clone3 process_vm_readv process_vm_writev acct swapon reboot
settimeofday open_tree_attr listmount statmount memfd_secret""".split()
# ENOSYS where callers must fall back as on kernels without the syscall; EPERM for the rest.
ANSWER_ENOSYS = {"clone3", "listmount", "statmount", "memfd_secret"}


def test_the_table_covers_the_required_syscalls():
    assert set(MUST_DENY) <= set(DENIED_SYSCALLS)
    assert {name for name, (code, _) in DENIED_SYSCALLS.items()
            if code == errno.ENOSYS} == ANSWER_ENOSYS
    assert all(code == errno.EPERM for name, (code, _) in DENIED_SYSCALLS.items()
               if name not in ANSWER_ENOSYS)
    assert all(why for _, why in DENIED_SYSCALLS.values())
    assert {"CLONE_NEWUSER", "CLONE_NEWNS", "CLONE_NEWPID", "CLONE_NEWNET"} <= set(
        CLONE_NAMESPACE_FLAGS)
    assert set(DENIED_IOCTLS) == {"TIOCSTI", "TIOCLINUX"}
    assert set(ALLOWED_SOCKET_FAMILIES) == {"AF_UNIX", "AF_INET", "AF_INET6"}


def test_the_filter_compiles_here():
    program = build_program()
    assert program.skipped == ()
    assert len(program.bpf) % 8 == 0 and len(program.bpf) > 8 * len(DENIED_SYSCALLS)


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86_64 numbers")
def test_syscalls_newer_than_libseccomp_are_resolved_by_number():
    numbers = {name: syscall_number(name) for name in
               ("memfd_secret", "statmount", "listmount", "open_tree_attr", "personality")}
    assert numbers == {"memfd_secret": 447, "statmount": 457, "listmount": 458,
                       "open_tree_attr": 467, "personality": 135}
    assert syscall_number("no_such_syscall") is None


def _persona_denied(persona: int) -> bool:
    return any(persona & mask == value for mask, value in personality_denials())


def test_personality_rules_match_every_persona_but_the_plain_ones():
    allowed = set(ALLOWED_PERSONALITIES)
    assert allowed == {0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF}  # Docker's default profile
    assert not any(_persona_denied(persona) for persona in allowed)
    bits = [1 << bit for bit in range(32)]
    samples = {*bits, *(a | b for a in bits for b in bits), *(0xFFFFFFFF ^ b for b in bits),
               *(0xFFFFFFFF ^ (a | b) for a in bits for b in bits),
               *(persona | b for persona in allowed for b in bits),
               *(random.Random(7).getrandbits(32) for _ in range(20_000))}
    let_through = [hex(p) for p in samples - allowed if not _persona_denied(p)]
    assert let_through == []


FILTERED_CHILD = """
import ctypes, errno, json, sys
libc = ctypes.CDLL(None, use_errno=True)
class Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
bpf = sys.stdin.buffer.read()
buffer = ctypes.create_string_buffer(bpf, len(bpf))
program = Program(len(bpf) // 8, ctypes.addressof(buffer))
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
assert libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
assert libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.c_ulong(ctypes.addressof(program)),
                  0, 0) == 0
def call(number, *args):
    ctypes.set_errno(0)
    result = libc.syscall(ctypes.c_long(number), *[ctypes.c_long(a) for a in args])
    return errno.errorcode[ctypes.get_errno()] if result == -1 else "ok"
print(json.dumps({name: call(number, *args) for name, number, args in json.loads(sys.argv[1])}))
"""


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86_64 numbers")
def test_the_compiled_filter_answers_as_the_tables_say():
    """The program itself, loaded into a throwaway child: no sandbox, no kernel."""
    personality = 135
    calls = [("read_implies_exec", personality, [0x0400000]),
             ("mmap_page_zero", personality, [0x0100000]),
             ("high_bits", personality, [1 << 32]),
             ("query", personality, [0xFFFFFFFF]), ("per_linux", personality, [0]),
             ("memfd_secret", 447, [0]), ("statmount", 457, [0, 0, 0, 0]),
             ("listmount", 458, [0, 0, 0, 0]), ("open_tree_attr", 467, [0, 0, 0, 0, 0]),
             ("getpid", 39, [])]
    child = subprocess.run([sys.executable, "-c", FILTERED_CHILD, json.dumps(calls)],
                           input=build_program().bpf, capture_output=True, check=True)
    assert json.loads(child.stdout) == {
        "read_implies_exec": "EPERM", "mmap_page_zero": "EPERM", "high_bits": "EPERM",
        "query": "ok", "per_linux": "ok", "memfd_secret": "ENOSYS", "statmount": "ENOSYS",
        "listmount": "ENOSYS", "open_tree_attr": "EPERM", "getpid": "ok"}


@pytest.mark.parametrize("text, version", [
    ("bubblewrap 0.8.0\n", (0, 8, 0)),
    ("bubblewrap 0.11.1", (0, 11, 1)),
    ("bwrap: unknown", (0,)),
    ("", (0,)),
])
def test_bwrap_version(text, version):
    assert parse_bwrap_version(text) == version


def spec(**changes) -> SandboxSpec:
    values = dict(
        kernel_id="kabc", workdir=Path("/data/workdirs/w1"),
        runtime_dir=Path("/data/runtime/kabc"), startup_dir=Path("/opt/gw/kernels/startup"),
        python_roots=(Path("/root/.pyenv/versions/3.11.7"), Path("/srv/app/.venv")),
        limits=LimitValues(2**30, 256, 1.0, 2**28, 1024), uid=100_007)
    values.update(changes)
    return SandboxSpec(**values)


def test_the_outer_bwrap_is_root_without_a_user_namespace():
    argv = outer_bwrap_argv("/usr/bin/bwrap", spec())
    assert "--unshare-all" not in argv and "--unshare-user" not in argv
    assert {"--unshare-net", "--unshare-pid", "--unshare-ipc"} <= set(argv)
    caps = [argv[i + 1] for i, a in enumerate(argv) if a == "--cap-add"]
    assert caps == ["CAP_SETUID", "CAP_SETGID"]
    assert "--seccomp" not in argv  # the filter goes on the inner, unprivileged half


def test_the_inner_half_drops_uid_then_locks_down():
    argv = inner_argv("/usr/bin/bwrap", "/usr/bin/setpriv", 100_007, True, 5)
    assert argv[:5] == ["/usr/bin/setpriv", "--reuid=100007", "--regid=100007",
                        "--clear-groups", "--"]
    bwrap = argv[5:]
    assert bwrap[0] == "/usr/bin/bwrap"
    assert {"--unshare-user", "--disable-userns"} <= set(bwrap)
    assert bwrap[bwrap.index("--cap-drop") + 1] == "ALL"
    assert bwrap[bwrap.index("--seccomp") + 1] == "5"
    assert bwrap[-1] == "--"


def test_proc_sys_is_read_only_in_every_launch():
    nested = inner_argv("/usr/bin/bwrap", "/usr/bin/setpriv", 100_007, True, None)
    single = single_bwrap_argv("/usr/bin/bwrap", spec(uid=None), True, 3)
    for argv in (nested, single):
        assert "--ro-bind" in argv
        assert any(argv[i:i + 3] == ["--ro-bind", "/proc/sys", "/proc/sys"]
                   for i in range(len(argv)))
    # After the fresh procfs, or the bind would be hidden by it.
    assert single.index("/proc/sys") > single.index("--proc")
    assert "/proc/sys" in PROC_READ_ONLY
    assert {"--unshare-user", "--disable-userns"} <= set(single)
    assert single[single.index("--seccomp") + 1] == "3"


def test_parents_of_binds_are_traversable_by_the_kernel_uid():
    args = parent_dir_args(["/root/.pyenv/versions/3.11.7", "/data/runtime/kabc", "/mnt/data",
                            "/tmp/ipython/profile_default/startup", "/tmp/matplotlib"])
    made = {args[i + 3]: args[i + 1] for i in range(0, len(args), 4)}
    assert made["/root"] == "0755"  # the host's /root is 0700
    assert made["/root/.pyenv/versions"] == "0755"
    assert made["/mnt"] == "0755"
    assert made["/tmp/ipython/profile_default"] == "0777"
    assert made["/tmp/matplotlib"] == "0777"
    assert "/root/.pyenv/versions/3.11.7" not in made  # the bind itself makes that one
    assert "/tmp" not in made and "/usr" not in made


def test_uids_are_unique_and_reused_after_release():
    uids = UidRange(100_000, 3)
    taken = [uids.allocate() for _ in range(3)]
    assert taken == [100_000, 100_001, 100_002]
    with pytest.raises(UidsExhausted):
        uids.allocate()
    uids.release(100_001)
    assert uids.allocate() == 100_001
    with pytest.raises(ValueError):
        UidRange(0, 10)


def test_two_gateways_on_one_host_never_hand_out_the_same_uid(tmp_path):
    # RLIMIT_NPROC counts a uid's tasks host-wide: a shared uid would let one gateway's fork
    # bomb stop the other's kernels from starting. Claims are flocks, as between processes.
    first, second = UidRange(100_000, 3, tmp_path), UidRange(100_000, 3, tmp_path)
    a = first.allocate()
    b = second.allocate()
    assert a == 100_000 and b == 100_001
    first.release(a)
    assert second.allocate() == 100_000  # released: free for anyone
    assert first.allocate() == 100_002
    with pytest.raises(UidsExhausted):
        first.allocate()
