"""The fork-server ("zygote") for Python kernels: imports the heavy libraries once, forks kernels.

Runs in the kernel interpreter (not the gateway's: only the standard library and the kernel's
own packages are importable), launched by the gateway inside a bubblewrap that builds the
filesystem view every kernel shares: read-only system and Python, no host data, no network.
It keeps the capabilities it needs to confine a child, and runs no user code itself.

Each kernel is three processes, as under bubblewrap:

  monitor   forked from here; its own session; waits until the gateway has put it into the
            kernel's cgroups, sets the rlimits, enters new mount, pid, network, ipc, uts and
            cgroup namespaces, then waits for ``init`` and exits with the kernel's status.
  init      pid 1 of the new pid namespace: builds the kernel's own view on top of the shared
            one (fresh /proc with the host knobs read-only, private /tmp, /dev/shm and ptys,
            its working directory at /mnt/data and its runtime directory, both passed in as
            descriptors), drops every capability and the bounding set, becomes the kernel's
            unprivileged host uid, sets no_new_privs and loads the seccomp filter. Then it
            forks the kernel and reaps orphans until the kernel exits.
  kernel    ipykernel, with stdio on /dev/null: the first and only process running user code.

Protocol (SOCK_SEQPACKET, one JSON object per message, descriptors as SCM_RIGHTS):
  gateway -> zygote  {"op": "fork", "id", "uid", "argv", "env", "rlimits", "runtime_dir",
                      "hostname", "title"} + [workdir, runtime dir, seccomp program] descriptors
  zygote  -> gateway {"op": "forked", "id", "pid"}   (the monitor's host pid)
  gateway -> zygote  {"op": "go", "id"} once the monitor is in its cgroups, or {"op": "abort"}
  zygote  -> gateway {"op": "exited", "pid", "status"}   (the kernel's exit code, 128+signal)
"""

import ctypes
import errno
import gc
import json
import os
import re
import resource
import select
import signal
import socket
import struct
import sys
import threading
import traceback

# The gateway binds this program and the IPython startup scripts (read-only) into one directory
# of the view (gateway/sandbox/forkserver.py VIEW_DIR), and runs the program by that path.
PROGRAM_IN_VIEW = os.path.abspath(__file__)
STARTUP_IN_VIEW = os.path.join(os.path.dirname(PROGRAM_IN_VIEW), "startup")
STARTUP_IN_KERNEL = "/tmp/ipython/profile_default/startup"
WORKDIR = "/mnt/data"
PROC_READ_ONLY = ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus")

CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS = 0x00020000, 0x02000000, 0x04000000
CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = 0x08000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_SECCOMP, PR_CAPBSET_DROP = 1, 4, 22, 24
PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT = 36, 38, 47
PR_CAP_AMBIENT_CLEAR_ALL, SECCOMP_MODE_FILTER = 4, 2
LINUX_CAPABILITY_VERSION_3 = 0x20080522
SIOCSIFFLAGS, IFF_UP, IFF_LOOPBACK, IFF_RUNNING = 0x8914, 0x1, 0x8, 0x40
MAX_FDS = 3
SYS_MOVE_MOUNT, AT_FDCWD, MOVE_MOUNT_F_EMPTY_PATH = 429, -100, 0x4  # same number on every arch
SYS_OPEN_TREE, OPEN_TREE_CLONE, OPEN_TREE_CLOEXEC, AT_RECURSIVE = 428, 1, os.O_CLOEXEC, 0x8000

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                       ctypes.c_char_p]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
libc.syscall.restype = ctypes.c_long
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                       ctypes.c_ulong]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _check(result, what):
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source, target, fstype, flags, data=None):
    _check(libc.mount(source and source.encode(), target.encode(), fstype and fstype.encode(),
                      flags, data and data.encode()), f"mount {target}")


def umount(target):
    _check(libc.umount2(target.encode(), MNT_DETACH), f"umount {target}")


def prctl(option, arg2=0, arg3=0, arg4=0, arg5=0):
    _check(libc.prctl(option, arg2, arg3, arg4, arg5), f"prctl {option}")


def unshare(flags):
    _check(libc.unshare(flags), "unshare")


def fresh(target, fstype, flags, data):
    """A new instance of a filesystem at ``target``, instead of (not over) the shared one."""
    try:
        umount(target)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # nothing mounted there
            raise
    mount(fstype, target, fstype, flags, data)


def bind(source, target, read_only=False):
    mount(source, target, None, MS_BIND | MS_REC)
    restrict(target, read_only)


def restrict(target, read_only=False):
    flags = MS_NOSUID | MS_NODEV | (MS_RDONLY | MS_NOEXEC if read_only else 0)
    mount(None, target, None, MS_REMOUNT | MS_BIND | flags)


def move_mount(tree_fd, target):
    """Attach the detached mount ``tree_fd`` (from ``open_tree``) at ``target``."""
    _check(libc.syscall(SYS_MOVE_MOUNT, tree_fd, b"", AT_FDCWD, target.encode(),
                        MOVE_MOUNT_F_EMPTY_PATH), f"move_mount {target}")


def attach(tree_fd, target):
    """Attach a detached mount the gateway cloned on the host at ``target``: a directory of
    another mount namespace cannot be bound here by path."""
    move_mount(tree_fd, target)
    restrict(target)


def set_title(title):
    """What ``ps`` shows (and tests look for): a fork's command line is the zygote's."""
    try:
        import setproctitle
    except ImportError:
        return
    setproctitle.setproctitle(title)


# --- the zygote ------------------------------------------------------------------------

def preload():
    """What every kernel imports at start (kernels/startup/00-gateway.py), paid for once."""
    import io

    import ipykernel.debugger  # noqa: F401  (debugpy: half of an IPKernelApp's set-up)
    import ipykernel.ipkernel  # noqa: F401
    import ipykernel.kernelapp  # noqa: F401
    import ipykernel.zmqshell  # noqa: F401
    try:
        import matplotlib
        matplotlib.use("module://matplotlib_inline.backend_inline")
        import matplotlib.pyplot as plt
        import numpy
        import pandas
        figure = plt.figure(figsize=(2, 2))
        figure.gca().plot([0, 1], [0, 1])
        figure.savefig(io.BytesIO(), format="png")
        plt.close(figure)
        pandas.DataFrame({"k": numpy.arange(100) % 3, "v": numpy.arange(100)}).groupby("k").v.sum()
    except ImportError:
        pass
    for name in ("cloudpickle", "setproctitle"):  # the snapshot startup script's, ours
        try:
            __import__(name)
        except ImportError:
            pass


def send(sock, message):
    sock.send(json.dumps(message).encode())


def serve(sock):
    wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    waiting = {}  # request id -> (monitor pid, write end of its go pipe)
    while True:
        readable, _, _ = select.select([sock, wake_read], [], [])
        if wake_read in readable:
            while True:
                try:
                    os.read(wake_read, 512)
                except BlockingIOError:
                    break
            reap(sock, waiting)
        if sock not in readable:
            continue
        data, fds, _, _ = socket.recv_fds(sock, 1 << 20, MAX_FDS)
        if not data:
            return  # the gateway is gone; the monitors die with us (parent-death signal)
        request = json.loads(data)
        if request["op"] == "fork":
            go_read, go_write = os.pipe2(os.O_CLOEXEC)
            pid = os.fork()
            if pid == 0:
                sock.detach()  # closed below with every other descriptor of the zygote's
                monitor(request, fds, go_read)
            os.close(go_read)
            for fd in fds:
                os.close(fd)
            waiting[request["id"]] = (pid, go_write)
            send(sock, {"op": "forked", "id": request["id"], "pid": pid})
        elif request["op"] in ("go", "abort"):
            pid, go_write = waiting.pop(request["id"], (None, None))
            if go_write is not None:
                if request["op"] == "go":
                    os.write(go_write, b"g")
                os.close(go_write)  # end of file without "g": the monitor exits


def reap(sock, waiting):
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        for key, (monitor_pid, go_write) in list(waiting.items()):
            if monitor_pid == pid:
                os.close(go_write)
                del waiting[key]
        send(sock, {"op": "exited", "pid": pid, "status": exit_code(status)})


def exit_code(status):
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


# --- a kernel's three processes -----------------------------------------------------------

def close_all_but(keep):
    low = 3
    for fd in sorted(fd for fd in keep if fd >= 3):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, resource.getrlimit(resource.RLIMIT_NOFILE)[1])


def monitor(request, fds, go_read):
    try:
        # The zygote's socket and pipes, and the go pipes of other starts (a copy here would
        # keep an aborted start's monitor waiting for ever).
        close_all_but({go_read, *fds})
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        set_title(f"gateway-kernel-monitor {request['runtime_dir']}")
        if os.read(go_read, 1) != b"g":
            os._exit(1)  # the gateway gave up on this start
        os.close(go_read)
        for name, value in request["rlimits"].items():
            resource.setrlimit(getattr(resource, name), (value, value))
        # Cgroup namespace last: the gateway has put this process into the kernel's cgroups.
        unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
                | CLONE_NEWCGROUP)
        mount(None, "/", None, MS_REC | MS_PRIVATE)
        pid = os.fork()
        if pid == 0:
            init(request, fds)
        for fd in fds:
            os.close(fd)
        _, status = os.waitpid(pid, 0)
        os._exit(exit_code(status))
    except BaseException:
        traceback.print_exc()
        os._exit(1)


def init(request, fds):
    try:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        set_title(f"gateway-kernel-init {request['runtime_dir']}")
        workdir_fd, runtime_fd, seccomp_fd = fds
        build_view(request, workdir_fd, runtime_fd)
        program = os.read(seccomp_fd, 1 << 20) if seccomp_fd is not None else b""
        close_all_but(())  # nothing open reaches the kernel (its stdio is replaced below)
        drop_privileges(request["uid"])
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # cleared by the uid change
        load_seccomp(program)
        check_confined(request["uid"])
        os.environ.clear()
        os.environ.update(request["env"])
        # From here on nothing of this namespace writes to the gateway's log (the zygote's
        # stderr): set-up errors were reported above.
        to_dev_null()
        pid = os.fork()
        if pid == 0:
            kernel(request["argv"], request["title"])
        # Python's SIGINT handler would let the kernel end its own namespace with kill(1, ...)
        # (pid 1 gets only signals it handles); like bubblewrap's init, it handles none.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        while True:  # pid 1: reap orphans; leave (killing the namespace) with the kernel
            reaped, status = os.wait()
            if reaped == pid:
                os._exit(exit_code(status))
    except BaseException:
        traceback.print_exc()
        os._exit(1)


def build_view(request, workdir_fd, runtime_fd):
    fresh("/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
    for path in PROC_READ_ONLY:
        if os.path.exists(path):
            bind(path, path, read_only=True)
    kept = clone_mounts_under("/tmp")
    fresh("/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    put_back(kept)
    fresh("/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    fresh("/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620")
    os.makedirs(STARTUP_IN_KERNEL)
    os.makedirs("/tmp/matplotlib", exist_ok=True)
    for directory in ("/tmp/ipython", "/tmp/ipython/profile_default", "/tmp/matplotlib"):
        os.chmod(directory, 0o777)  # as bubblewrap's --perms 0777 --dir: the kernel's uid writes
    bind(STARTUP_IN_VIEW, STARTUP_IN_KERNEL, read_only=True)
    for path in (STARTUP_IN_VIEW, PROGRAM_IN_VIEW):  # the zygote's own, not the kernel's
        umount(path)
    attach(workdir_fd, WORKDIR)
    runtime_dir = request["runtime_dir"]
    # Its parent is an empty directory of the shared view (or on the private /tmp): a tmpfs
    # of its own takes the mount point, so no fork writes where another one looks.
    os.makedirs(os.path.dirname(runtime_dir), mode=0o755, exist_ok=True)
    mount("tmpfs", os.path.dirname(runtime_dir), "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    os.mkdir(runtime_dir)
    attach(runtime_fd, runtime_dir)
    socket.sethostname(request["hostname"])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        import fcntl
        fcntl.ioctl(probe, SIOCSIFFLAGS,
                    struct.pack("16sH", b"lo", IFF_UP | IFF_LOOPBACK | IFF_RUNNING))
    os.chdir(WORKDIR)


def mount_points():
    for line in open("/proc/self/mountinfo"):
        # Spaces and the like are octal escapes in mountinfo.
        yield re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])


def clone_mounts_under(directory):
    """What the shared view mounted below ``directory`` (a Python install or the font cache
    under /tmp), cloned, to be put back once a fresh filesystem has taken ``directory``."""
    points = sorted(p for p in mount_points() if p.startswith(directory + "/"))
    top = [p for p in points if not any(p.startswith(q + "/") for q in points)]
    clones = []
    for path in top:
        fd = libc.syscall(SYS_OPEN_TREE, AT_FDCWD, path.encode(),
                          OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE)
        _check(0 if fd >= 0 else -1, f"open_tree {path}")
        clones.append((path, fd, os.path.isdir(path)))
    return clones


def put_back(clones):
    for path, fd, is_dir in clones:
        if is_dir:
            os.makedirs(path, mode=0o755, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            open(path, "a").close()
        move_mount(fd, path)
        os.close(fd)


def drop_privileges(uid):
    last = int(open("/proc/sys/kernel/cap_last_cap").read())
    for cap in range(last + 1):
        prctl(PR_CAPBSET_DROP, cap)
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)  # from root to another uid: permitted and effective cleared
    clear_capabilities()  # the inheritable set is not
    prctl(PR_SET_NO_NEW_PRIVS, 1)


class CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def clear_capabilities():
    header = CapHeader(LINUX_CAPABILITY_VERSION_3, 0)
    data = (CapData * 2)()  # all zero: no effective, permitted or inheritable capability
    _check(libc.capset(ctypes.byref(header), data), "capset")


def load_seccomp(program):
    if not program or len(program) % 8:
        raise RuntimeError(f"no usable seccomp program ({len(program)} bytes)")
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = SockFprog(len(program) // 8, ctypes.addressof(buffer))
    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog))


def check_confined(uid):
    """Fail closed: the kernel is forked only when the kernel itself says it is confined."""
    status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
    caps = [int(status[name].strip(), 16) for name in ("CapInh", "CapPrm", "CapEff", "CapBnd",
                                                         "CapAmb")]
    ids = {int(v) for key in ("Uid", "Gid") for v in status[key].split()}
    if (any(caps) or ids != {uid} or status["NoNewPrivs"].strip() != "1"
            or status["Seccomp"].strip() != "2"):
        raise RuntimeError(f"not confined: {status}")


def to_dev_null():
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def kernel_app_class():
    import zmq
    from ipykernel.kernelapp import IPKernelApp

    class ForkedKernelApp(IPKernelApp):
        """ipykernel's app, with iopub unbounded from its bind on (see startup/01-output.py,
        which sets it later: a subscriber whose connection is being set up just then keeps
        the default of 1,000 messages, and a fork is up soon enough to hit that)."""

        def _bind_socket(self, s, port):
            if s.socket_type == zmq.XPUB:
                s.setsockopt(zmq.SNDHWM, 0)
            return super()._bind_socket(s, port)

    return ForkedKernelApp


def kernel(argv, title):
    try:
        set_title(title)
        # The uid change made init and so this process non-dumpable: /proc/self would belong
        # to root and e.g. /proc/self/environ be unreadable. An exec'd kernel is dumpable (its
        # own uid may read its own /proc); init stays as it is, out of the kernel's reach.
        prctl(PR_SET_DUMPABLE, 1)
        numpy = sys.modules.get("numpy")
        if numpy is not None:
            numpy.random.seed()  # its global generator was seeded once, in the zygote
        sys.argv = ["ipykernel_launcher", *argv]
        kernel_app_class().launch_instance(argv=argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        code = 1
    os._exit(code)


def main():
    sock = socket.socket(fileno=int(sys.argv[1]))
    gc.disable()  # collections during the imports would only dirty pages before the freeze
    preload()
    gc.collect()
    # Objects made so far stay out of the collector for good (in the kernels too): a
    # collection writes into every object it visits, which would copy their pages.
    gc.freeze()
    gc.enable()
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    send(sock, {"op": "ready", "pid": os.getpid(), "threads": threading.active_count(),
                "tasks": len(os.listdir("/proc/self/task"))})
    serve(sock)


if __name__ == "__main__":
    main()
