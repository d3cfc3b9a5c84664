"""Opening files in a working directory the kernel owns: never a link, never a wait.

No kernel here: the hostile entries (FIFOs, symlinks, directories, a leased file) are made by
the test itself in a temporary directory, as a kernel could make them in its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gateway.sandbox.workdirs import (
    UnsafePath,
    open_directory,
    open_regular_file,
    open_regular_for_writing,
    snapshot,
)

WRITE = os.O_WRONLY | os.O_CREAT | os.O_APPEND
HANG_GUARD = 120  # seconds; only so that a helper that blocks fails instead of hanging


@pytest.fixture
def workdir(tmp_path):
    """A directory, and after the test every FIFO in it opened once for reading: a writer
    still waiting in open() (a helper that blocks) is let go, so the hang guard can fail."""
    yield tmp_path
    for path in tmp_path.rglob("*"):
        if path.is_fifo():
            os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))


def guarded(function, *args):
    """``function(*args)`` in a worker; a call still running after HANG_GUARD fails the test."""
    pool = ThreadPoolExecutor(1)
    try:
        return pool.submit(function, *args).result(timeout=HANG_GUARD)
    finally:
        pool.shutdown(wait=False)


def open_for_writing(directory: Path, name: str, flags: int = WRITE) -> int:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return guarded(open_regular_for_writing, fd, name, flags)
    finally:
        os.close(fd)


def open_descriptors() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_a_regular_file_is_created_and_appended_to(workdir):
    for part in (b"first ", b"second"):
        fd = open_for_writing(workdir, "data.bin")
        with os.fdopen(fd, "ab") as handle:
            handle.write(part)
    assert (workdir / "data.bin").read_bytes() == b"first second"
    assert (workdir / "data.bin").stat().st_mode & 0o777 == 0o644


def test_a_fifo_without_a_reader_is_refused_at_once(workdir):
    os.mkfifo(workdir / "pipe")
    before = open_descriptors()
    with pytest.raises(UnsafePath, match="'pipe' is not a regular file"):
        open_for_writing(workdir, "pipe")
    assert open_descriptors() == before


def test_a_fifo_with_a_reader_opens_but_is_refused(workdir):
    # With a peer, the FIFO's open succeeds (and would block without O_NONBLOCK if there were
    # none): only the check after it tells it from a file; nothing is written into it.
    os.mkfifo(workdir / "pipe")
    reader = os.open(workdir / "pipe", os.O_RDONLY | os.O_NONBLOCK)
    try:
        before = open_descriptors()
        with pytest.raises(UnsafePath, match="'pipe' is not a regular file"):
            open_for_writing(workdir, "pipe")
        assert open_descriptors() == before, "the FIFO's descriptor is closed again"
        assert os.read(reader, 1) == b"", "nothing was written, and the writer is gone"
    finally:
        os.close(reader)


def test_a_symlink_is_never_followed(workdir, tmp_path_factory):
    target = tmp_path_factory.mktemp("outside") / "host-file"
    target.write_bytes(b"host")
    (workdir / "link").symlink_to(target)
    with pytest.raises(UnsafePath, match="'link' is not a regular file"):
        open_for_writing(workdir, "link")
    with pytest.raises(FileExistsError):
        open_for_writing(workdir, "link", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    assert target.read_bytes() == b"host"


def test_a_directory_is_refused(workdir):
    (workdir / "folder").mkdir()
    with pytest.raises(UnsafePath, match="'folder' is not a regular file"):
        open_for_writing(workdir, "folder")


def test_an_existing_entry_fails_an_exclusive_create(workdir):
    os.mkfifo(workdir / "pipe")
    with pytest.raises(FileExistsError):
        open_for_writing(workdir, "pipe", os.O_WRONLY | os.O_CREAT | os.O_EXCL)


def test_a_leased_file_is_refused_instead_of_waiting_out_the_lease(workdir):
    # A process that holds a lease on a file (the kernel may take one on its own files) makes
    # a conflicting open wait until the lease breaks, 45 s by default; O_NONBLOCK fails it.
    (workdir / "leased").write_bytes(b"x")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, os, signal, sys\n"
         "signal.signal(signal.SIGIO, signal.SIG_IGN)\n"  # the lease-break notice
         "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
         "fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)\n"
         "print('leased', flush=True)\n"
         "sys.stdin.read()\n", str(workdir / "leased")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "leased\n"
        with pytest.raises(UnsafePath, match="'leased' is leased by another process"):
            open_for_writing(workdir, "leased")
    finally:
        holder.stdin.close()
        holder.wait(timeout=HANG_GUARD)


def test_reading_refuses_a_fifo_a_symlink_and_a_directory(workdir):
    os.mkfifo(workdir / "pipe")
    (workdir / "link").symlink_to("/etc/hostname")
    (workdir / "folder").mkdir()
    (workdir / "plain.txt").write_bytes(b"plain")
    for name in ("pipe", "link", "folder"):
        with pytest.raises(UnsafePath):
            guarded(open_regular_file, workdir, name)
    with guarded(open_regular_file, workdir, "plain.txt") as reader:
        assert reader.read() == b"plain"


def test_a_fifo_where_a_directory_is_expected_is_refused(workdir):
    os.mkfifo(workdir / "pipe")
    with pytest.raises(UnsafePath, match="'pipe' is not a plain directory"):
        guarded(open_directory, workdir, ["pipe"])


def test_the_scan_stats_files_and_walks_no_link(workdir, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    (outside / "host.txt").write_bytes(b"host")
    (workdir / "sub").mkdir()
    (workdir / "sub" / "a.txt").write_bytes(b"a")
    (workdir / "top.txt").write_bytes(b"top")
    (workdir / ".hidden").write_bytes(b"hidden")
    (workdir / "linked").symlink_to(outside)
    os.mkfifo(workdir / "pipe")
    found = guarded(snapshot, workdir)
    assert sorted(found) == ["sub/a.txt", "top.txt"]
    assert found["top.txt"][1] == 3
