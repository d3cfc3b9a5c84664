"""Per-thread working directories on the host, each a size-capped tmpfs where possible."""

from __future__ import annotations

import errno
import logging
import os
import secrets
import shutil
import stat
import subprocess
import unicodedata
from io import BufferedReader
from pathlib import Path

from ..wire.protocol import UNSAFE_NAME_CATEGORIES
from .uids import UidRange

log = logging.getLogger(__name__)

SKIP_NAMES = {"__pycache__", ".ipynb_checkpoints"}


class Workdirs:
    """Creates and removes working directories under ``root``.

    As root, each directory is a tmpfs mount of ``disk_limit`` bytes, so filling the disk fails
    inside the thread with ENOSPC and nobody else notices. Otherwise only RLIMIT_FSIZE bounds a
    single file, and that gap is reported. With ``uids``, each directory belongs to a host uid
    of its own, the uid its kernels run as.
    """

    def __init__(self, root: Path, disk_limit: int, use_tmpfs: bool,
                 uids: UidRange | None = None) -> None:
        self.root = root
        self.disk_limit = disk_limit
        self.use_tmpfs = use_tmpfs and os.geteuid() == 0 and shutil.which("mount") is not None
        self.uids = uids
        self._owners: dict[Path, int] = {}
        self._mounted: set[Path] = set()
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o700)

    def create(self) -> Path:
        uid = self.uids.allocate() if self.uids else None
        path = self.root / secrets.token_hex(8)
        path.mkdir(mode=0o700)
        if uid is not None:
            self._owners[path] = uid
        owner = f",uid={uid},gid={uid}" if uid is not None else ""
        if self.use_tmpfs:
            result = subprocess.run(
                ["mount", "-t", "tmpfs", "-o",
                 f"size={self.disk_limit},mode=0700,nosuid,nodev{owner}",
                 "gateway-workdir", str(path)],
                capture_output=True,
            )
            if result.returncode != 0:
                log.warning("tmpfs for workdir failed (%s); disk usage is not capped",
                            result.stderr.decode().strip())
                self.use_tmpfs = False
            else:
                self._mounted.add(path)
        if uid is not None and not os.path.ismount(path):
            os.chown(path, uid, uid)
        return path

    def owner(self, path: Path) -> int | None:
        """The host uid the kernels of this working directory run as (None: the gateway's)."""
        return self._owners.get(path)

    def problem(self, path: Path) -> str | None:
        """Why ``path`` can no longer serve as a working directory (None: it can): removed or
        unmounted from outside, the kernel would write where the gateway never looks."""
        if not path.is_dir():
            return "its working directory was removed"
        if path in self._mounted and not os.path.ismount(path):
            return "its working directory is no longer mounted"
        return None

    def remove(self, path: Path) -> None:
        if os.path.ismount(path):
            subprocess.run(["umount", "-l", str(path)], capture_output=True)
        shutil.rmtree(path, ignore_errors=True)
        self._mounted.discard(path)
        uid = self._owners.pop(path, None)
        if uid is not None and self.uids:
            self.uids.release(uid)

    def remove_all(self) -> None:
        """At start-up and shutdown: nothing from an earlier run stays mounted."""
        for path in self.root.iterdir():
            self.remove(path)


def snapshot(root: Path, limit: int = 10_000) -> dict[str, tuple[int, int]]:
    """{relative path: (mtime_ns, size)} of the visible regular files under ``root``.

    Only stats: no file is opened, and each directory is opened from ``root`` one component at
    a time without following links, so a subdirectory swapped for a symlink is never walked.
    """
    found: dict[str, tuple[int, int]] = {}
    stack: list[list[str]] = [[]]
    while stack and len(found) < limit:
        parts = stack.pop()
        try:
            directory = open_directory(root, parts)
        except OSError:
            continue
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    if entry.name.startswith(".") or entry.name in SKIP_NAMES:
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        stack.append([*parts, entry.name])
                    elif entry.is_file(follow_symlinks=False):
                        st = entry.stat(follow_symlinks=False)
                        found["/".join([*parts, entry.name])] = (st.st_mtime_ns, st.st_size)
        except OSError:
            pass
        finally:
            os.close(directory)
    return found


def display_name(name: str) -> str:
    """A file name safe to show: control, invisible, bidi-override and undecodable characters
    (lone surrogates from non-UTF-8 bytes) become "_", so no name can spoof another."""
    return "".join("_" if unicodedata.category(c) in UNSAFE_NAME_CATEGORIES else c for c in name)


def changed_files(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]
) -> list[str]:
    """Files new or modified between two snapshots, in a stable order."""
    return sorted(name for name, stamp in after.items() if before.get(name) != stamp)


# The kernel owns its working directory and can swap any path in it for a symlink or a FIFO at
# any moment. The gateway (root) therefore never resolves a path there: it walks it one
# component at a time with O_NOFOLLOW from a directory descriptor, so a race cannot lead it out.
# And no open there may wait: O_DIRECTORY already refuses a FIFO (ENOTDIR, decided before the
# FIFO's open could wait for a peer); O_NONBLOCK is there so that stays true whatever the entry.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# Files: O_NONBLOCK makes a FIFO fail at once (ENXIO for a writer with no reader) or open
# without waiting (a reader), and a file the kernel holds a lease on fail with EWOULDBLOCK
# instead of waiting out the lease-break time (45 s); it changes nothing else for a regular
# file. Whatever opens is then checked to be one (a FIFO with a peer opens).
_FILE_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# What open() answers when the entry is not a regular file: a symlink (O_NOFOLLOW), a
# directory opened for writing, a FIFO with no reader or a socket.
_NOT_REGULAR = {errno.ELOOP, errno.EISDIR, errno.ENXIO}


class UnsafePath(OSError):
    """A path inside a working directory is not a plain file under plain directories."""


def open_directory(root: Path | int, parts: list[str], create: bool = False) -> int:
    """A descriptor of ``root/parts...`` (root: a path or a directory descriptor), refusing
    symlinks anywhere below root; optionally creating missing directories."""
    fd = os.dup(root) if isinstance(root, int) else os.open(root, _DIR_FLAGS)
    try:
        for part in parts:
            if create:
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                    give_to_directory_owner(fd, part)
                except FileExistsError:
                    pass
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise UnsafePath(exc.errno, f"{part!r} is not a plain directory") from exc
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def give_to_directory_owner(directory_fd: int, name: str) -> None:
    """``name`` in the directory now belongs to the directory's owner: what the gateway (root)
    writes into a working directory must stay writable by the kernel's own uid."""
    if os.geteuid() != 0:
        return
    owner = os.fstat(directory_fd)
    os.chown(name, owner.st_uid, owner.st_gid, dir_fd=directory_fd, follow_symlinks=False)


def open_regular_file(root: Path, relative: str) -> BufferedReader:
    """``root/relative`` opened for reading, only if it is a regular file reached without links."""
    *parents, name = relative.split("/")
    directory = open_directory(root, parents)
    try:
        fd = os.open(name, os.O_RDONLY | _FILE_FLAGS, dir_fd=directory)
    except OSError as exc:
        raise UnsafePath(exc.errno, f"{relative!r} is not a plain file") from exc
    finally:
        os.close(directory)
    _check_regular(fd, relative)
    return os.fdopen(fd, "rb")


def open_regular_for_writing(dir_fd: int, name: str, flags: int, mode: int = 0o644) -> int:
    """A descriptor of ``name`` in the directory, opened with ``flags`` (O_WRONLY, O_CREAT,
    O_APPEND, O_EXCL...), only if it is a regular file: a symlink, FIFO, socket, directory or
    leased file there raises ``UnsafePath`` at once, never followed and never waited for."""
    try:
        fd = os.open(name, flags | _FILE_FLAGS, mode, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in _NOT_REGULAR:
            raise UnsafePath(exc.errno, f"{name!r} is not a regular file") from exc
        if exc.errno == errno.EWOULDBLOCK:
            raise UnsafePath(exc.errno, f"{name!r} is leased by another process") from exc
        raise
    _check_regular(fd, name)
    return fd


def _check_regular(fd: int, name: str) -> None:
    """Close ``fd`` and raise ``UnsafePath`` unless it is a regular file."""
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafePath(errno.EINVAL, f"{name!r} is not a regular file")
