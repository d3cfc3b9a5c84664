"""Escape probes: from inside real sandboxed kernels, the host's knobs stay out of reach.

Every probe only opens, asks or calls with harmless arguments: no test writes a global sysctl.
"""

from __future__ import annotations

import ast
import asyncio
import errno
import json
import os
import urllib.request
from pathlib import Path

import pytest

from gateway.sandbox.seccomp import (
    ALLOWED_SOCKET_FAMILIES,
    DENIED_SYSCALLS,
    NETLINK_ERRNO,
    syscall_number,
)
from support.gateways import session_of, start_gateway, stop_gateway, test_settings
from support.host import host_processes, needs_linux

pytestmark = [pytest.mark.asyncio(loop_scope="session"), needs_linux]

CLONE_NEWUSER = 0x10000000
TIOCSTI = 0x5412
# Newer than libseccomp 2.5 knows (but memfd_secret), by their number on x86_64 and arm64, so
# the probes do not depend on the gateway's own table.
NEWER_SYSCALLS = {"memfd_secret": 447, "statmount": 457, "listmount": 458, "open_tree_attr": 467}
READ_IMPLIES_EXEC, MMAP_PAGE_ZERO, ADDR_NO_RANDOMIZE = 0x0400000, 0x0100000, 0x0040000
PER_LINUX32, QUERY_PERSONALITY = 0x8, 0xFFFFFFFF
PERSONAS = [READ_IMPLIES_EXEC, MMAP_PAGE_ZERO, READ_IMPLIES_EXEC | MMAP_PAGE_ZERO,
            ADDR_NO_RANDOMIZE, QUERY_PERSONALITY, PER_LINUX32, 0]
# By number: this Python may lack a name (AF_BLUETOOTH needs headers at build time).
FAMILIES = {"AF_NETLINK": 16, "AF_PACKET": 17, "AF_VSOCK": 40, "AF_ALG": 38,
            "AF_BLUETOOTH": 31, "AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10}


def syscall_numbers() -> dict[str, int]:
    """This machine's numbers for the denied syscalls (the kernel cell calls them raw)."""
    numbers = {}
    for name in [*DENIED_SYSCALLS, "clone", "ioctl", "getpid", "personality"]:
        number = syscall_number(name)  # the gateway's: libseccomp's, or by number if newer
        if number is not None and number >= 0:
            numbers[name] = number
    return numbers


PROBE_CELL = """
import ctypes, errno, json, os, socket
libc = ctypes.CDLL(None, use_errno=True)
report = {}
def attempt(name, *args):
    ctypes.set_errno(0)
    result = libc.syscall(ctypes.c_long(NUMBERS[name]), *[ctypes.c_long(a) for a in args])
    return errno.errorcode.get(ctypes.get_errno(), ctypes.get_errno()) if result == -1 else "ok"
for path in ("/proc/sys/kernel/core_pattern", "/proc/sys/kernel/hostname",
             "/proc/sys/vm/overcommit_memory"):
    try:
        os.close(os.open(path, os.O_WRONLY))  # opened, never written
        report[path] = "writable"
    except OSError as exc:
        report[path] = errno.errorcode[exc.errno]
report["syscalls"] = {name: attempt(name, 0, 0, 0, 0, 0, 0) for name in DENIED}
report["clone_newuser"] = attempt("clone", CLONE_NEWUSER, 0, 0, 0, 0)
report["unshare_newuser"] = attempt("unshare", CLONE_NEWUSER)
report["tiocsti"] = attempt("ioctl", 0, TIOCSTI, 0)
report["getpid"] = attempt("getpid")
def persona(value):
    previous = libc.syscall(ctypes.c_long(NUMBERS["personality"]), ctypes.c_long(value))
    if previous == -1:
        return errno.errorcode[ctypes.get_errno()]
    libc.syscall(ctypes.c_long(NUMBERS["personality"]), ctypes.c_long(previous))  # put back
    return "ok"
report["personality"] = {hex(value): persona(value) for value in PERSONAS}
def newer(name):
    ctypes.set_errno(0)
    result = libc.syscall(ctypes.c_long(NEWER_SYSCALLS[name]), *[ctypes.c_long(0)] * 5)
    if result == -1:
        return errno.errorcode[ctypes.get_errno()]
    if name == "memfd_secret":
        os.close(result)
    return "ok"
report["newer"] = {name: newer(name) for name in NEWER_SYSCALLS}
families = {}
for name, number in FAMILIES.items():
    try:
        socket.socket(number, socket.SOCK_RAW if name == "AF_PACKET" else socket.SOCK_DGRAM).close()
        families[name] = "ok"
    except OSError as exc:
        families[name] = errno.errorcode[exc.errno]
report["sockets"] = families
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
report["status"] = {k: status[k].split()[0] for k in ("Uid", "Seccomp", "NoNewPrivs",
                                                         "CapEff", "CapBnd", "CapPrm",
                                                         "CapInh", "CapAmb")}
print(json.dumps(report))
"""


def probe_code(denied: list[str] | None = None) -> tuple[str, list[str]]:
    numbers = syscall_numbers()
    denied = [name for name in denied or DENIED_SYSCALLS if name in numbers]
    code = (f"NUMBERS = {numbers!r}\nDENIED = {denied!r}\n"
            f"CLONE_NEWUSER = {CLONE_NEWUSER}\nTIOCSTI = {TIOCSTI}\nFAMILIES = {FAMILIES!r}\n"
            f"NEWER_SYSCALLS = {NEWER_SYSCALLS!r}\nPERSONAS = {PERSONAS!r}\n" + PROBE_CELL)
    return code, denied


async def test_kernel_code_cannot_reach_host_knobs(client, thread_id):
    # The suite's gateways fork Python kernels from the zygote when root
    # (gateway/sandbox/forkserver.py).
    await probe_and_check(client.thread(thread_id))


async def test_the_exec_launch_passes_the_same_probes(data_root):
    """Kernels exec'd by bubblewrap (``kernel_start = exec``, and every other language)."""
    running = await start_gateway(test_settings(data_root / "exec-launch", pool_size=1,
                                                kernel_start="exec"))
    try:
        assert running.gateway.pool.start_method == "exec"
        async with await running.client() as client:
            await probe_and_check(client.thread("exec-launch"))
    finally:
        await stop_gateway(running)


async def probe_and_check(thread) -> None:
    code, denied = probe_code()
    result = await thread.run(code)
    assert result.state == "complete", result.output
    report = json.loads(result.output.strip().splitlines()[-1])

    # Host-global and namespaced sysctls alike: never writable.
    for path in ("/proc/sys/kernel/core_pattern", "/proc/sys/kernel/hostname",
                 "/proc/sys/vm/overcommit_memory"):
        assert report[path] in {"EROFS", "EACCES", "EPERM"}, (path, report[path])

    status = report["status"]
    assert status["Uid"] != "0"
    assert status["Seccomp"] == "2"
    assert status["NoNewPrivs"] == "1"
    assert int(status["CapEff"], 16) == 0
    assert int(status["CapPrm"], 16) == 0
    assert int(status["CapBnd"], 16) == 0
    assert int(status["CapInh"], 16) == 0
    assert int(status["CapAmb"], 16) == 0

    # Each denied syscall answers with the filter's errno, not the kernel's own.
    expected = {name: errno.errorcode[DENIED_SYSCALLS[name][0]] for name in denied}
    assert report["syscalls"] == expected
    assert report["clone_newuser"] == "EPERM"  # without the filter: ENOSPC (--disable-userns)
    assert report["unshare_newuser"] == "EPERM"
    assert report["tiocsti"] == "EPERM"
    assert report["getpid"] == "ok"

    # Only the plain personas: the flags that weaken memory protection are refused.
    assert report["personality"] == {
        hex(READ_IMPLIES_EXEC): "EPERM", hex(MMAP_PAGE_ZERO): "EPERM",
        hex(READ_IMPLIES_EXEC | MMAP_PAGE_ZERO): "EPERM", hex(ADDR_NO_RANDOMIZE): "EPERM",
        hex(QUERY_PERSONALITY): "ok", hex(PER_LINUX32): "ok", hex(0): "ok"}
    # The filter's errno, whatever this host's kernel would have answered: memfd_secret gives
    # a descriptor and the others EFAULT for these arguments on a kernel that has them.
    if os.uname().machine in ("x86_64", "aarch64"):  # where NEWER_SYSCALLS's numbers hold
        assert report["newer"] == {"memfd_secret": "ENOSYS", "statmount": "ENOSYS",
                                   "listmount": "ENOSYS", "open_tree_attr": "EPERM"}

    sockets = report["sockets"]
    assert sockets["AF_NETLINK"] == errno.errorcode[NETLINK_ERRNO]
    for family in ("AF_PACKET", "AF_VSOCK", "AF_ALG", "AF_BLUETOOTH"):
        assert sockets[family] == "EAFNOSUPPORT", (family, sockets)
    for family in ALLOWED_SOCKET_FAMILIES:
        assert sockets[family] == "ok", (family, sockets)


async def test_foreign_abi_syscalls_kill_the_process(client, thread_id):
    # An x32 syscall (the native number with bit 30 set) would slip past rules written for
    # x86_64; the filter kills the process instead. Probed in a child, not the kernel.
    if os.uname().machine != "x86_64":
        pytest.skip("x32 exists only on x86_64")
    getpid = syscall_numbers()["getpid"]
    code = f"""
import subprocess, sys
child = subprocess.run([sys.executable, "-c",
    "import ctypes; ctypes.CDLL(None).syscall(ctypes.c_long({getpid} | 0x40000000))"])
print(child.returncode)
"""
    result = await client.thread(thread_id).run(code)
    assert result.output.strip() == str(-31)  # SIGSYS


def kernel_processes(runtime_dir: Path, python: str) -> list[int]:
    """Host pids of a kernel's ipykernel (identified by its connection file's directory)."""
    pids = []
    for pid in host_processes(str(runtime_dir).encode()):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        # A forked kernel's command line is one string (set by setproctitle, zygote.py).
        argv = b" ".join(argv).split()
        if argv[0] == python.encode() and b"ipykernel_launcher" in argv:
            pids.append(pid)
    return pids


def host_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


async def test_kernels_run_as_their_own_unprivileged_host_uids(running, client, thread_id):
    if os.geteuid() != 0:
        pytest.skip("uids per kernel need a gateway started as root")
    first, second = client.thread(thread_id), client.thread(thread_id + "-second")
    await first.run("open('mine.txt', 'w').write('written by the kernel')")
    await second.run("1")
    gateway = running.gateway
    kernels = [session_of(gateway, t.id).kernel for t in (first, second)]
    uids = []
    for kernel in kernels:
        pids = kernel_processes(kernel.spec.runtime_dir, gateway.settings.kernel_python)
        assert pids, "the kernel process was not found on the host"
        uids.append({host_uid(pid) for pid in pids})
    assert all(len(found) == 1 for found in uids)
    first_uid, second_uid = (found.pop() for found in uids)
    assert 0 not in (first_uid, second_uid)
    assert first_uid != second_uid
    assert first_uid == kernels[0].spec.uid
    written = kernels[0].spec.workdir / "mine.txt"
    assert written.stat().st_uid == first_uid


async def test_uploaded_files_belong_to_the_kernel(running, client, thread_id):
    if os.geteuid() != 0:
        pytest.skip("uids per kernel need a gateway started as root")
    thread = client.thread(thread_id)
    await thread.upload("nested/dir/data.csv", b"a,b\n1,2\n")
    result = await thread.run(
        "import os\nopen('nested/dir/data.csv', 'a').write('3,4\\n')\n"
        "os.rename('nested/dir/data.csv', 'nested/data.csv')\n"
        "print(open('nested/data.csv').read().count(','))")
    assert result.state == "complete", result.output
    assert result.output.strip() == "3"


async def test_workload_under_the_filter(client, thread_id):
    code = """
import multiprocessing, subprocess, threading
import numpy as np, pandas as pd, matplotlib.pyplot as plt
frame = pd.DataFrame({"k": np.arange(1000) % 7, "v": np.arange(1000)})
print(int(frame.groupby("k").v.sum().sum()))
plt.plot([1, 2, 3]); plt.savefig("chart.png"); plt.close()
print(subprocess.run(["ls"], capture_output=True, text=True).stdout.split())
with multiprocessing.Pool(2) as pool:
    print(pool.map(abs, [-1, -2, -3]))
worker = threading.Thread(target=print, args=("thread ok",)); worker.start(); worker.join()
"""
    result = await client.thread(thread_id).run(code)
    assert result.state == "complete", result.output
    lines = result.output.strip().splitlines()
    assert lines[0] == str(sum(range(1000)))
    assert "chart.png" in ast.literal_eval(lines[1])
    assert lines[2] == "[1, 2, 3]"
    assert lines[3] == "thread ok"
    assert "chart.png" in result.status["files"]


async def test_health_says_what_the_sandbox_enforces(running):
    def get():
        request = urllib.request.Request(running.http + "/healthz",
                                         headers={"Authorization": "Bearer tok-alice"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    health = await asyncio.to_thread(get)
    enforced, missing = health["limits"]["enforced"], health["limits"]["not_enforced"]
    for layer in ("proc_sys_read_only", "userns_disabled", "seccomp"):
        assert layer in enforced and layer not in missing, health["limits"]
    if os.geteuid() == 0:
        assert "one host uid per kernel" in enforced["unprivileged_uid"], health["limits"]


async def test_the_root_launch_keeps_the_other_layers(data_root):
    """Where kernels cannot get their own uid (``kernel_uid_base = 0`` here; a host that
    restricts unprivileged user namespaces in production), one bubblewrap launches them as
    host root without capabilities, and /proc/sys, user namespaces and the filter still hold."""
    if os.geteuid() != 0:
        pytest.skip("the root launch needs a gateway started as root")
    running = await start_gateway(test_settings(data_root / "root-launch", pool_size=1,
                                                kernel_uid_base=0))
    try:
        missing = running.gateway.host.report.missing
        assert "kernel_uid_base = 0" in missing["unprivileged_uid"]
        client = await running.client()
        try:
            code, _ = probe_code(["keyctl", "bpf"])
            result = await client.thread("root-launch").run(code)
        finally:
            await client.close()
        report = json.loads(result.output.strip().splitlines()[-1])
        assert report["/proc/sys/kernel/core_pattern"] == "EROFS"
        assert report["/proc/sys/kernel/hostname"] == "EROFS"
        assert report["status"]["Seccomp"] == "2"
        assert int(report["status"]["CapEff"], 16) == 0
        assert report["syscalls"] == {"keyctl": "EPERM", "bpf": "EPERM"}
        assert report["unshare_newuser"] == "EPERM"
        assert report["sockets"]["AF_NETLINK"] == errno.errorcode[NETLINK_ERRNO]
    finally:
        await stop_gateway(running)
