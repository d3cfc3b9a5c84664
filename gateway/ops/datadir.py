"""One owner per data directory: an ``flock``ed lock file naming the gateway that holds it.

Everything under a data directory (workdir mounts, runtime dirs, the kernels' cgroups, the
file store) belongs to one gateway at a time. A second gateway on the same directory used to
"clean up leftovers" at start and so destroy the first one's threads. Now the lock is taken
before any clean-up and held until exit; whoever holds it knows the leftovers are a dead
owner's. The kernel drops an ``flock`` when its holder dies, however it dies (SIGKILL
included), so a stale lock file is simply taken over: no pid guessing, no races.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import GatewayError

LOCK_NAME = "gateway.lock"


class DataDirInUse(GatewayError):
    """Another live gateway holds the data directory's lock."""

    code = "data_dir_in_use"


@dataclass(frozen=True)
class Owner:
    """What the lock file says about the gateway that holds (or last held) the directory."""

    pid: int | None
    port: int | None
    started: float | None

    @classmethod
    def parse(cls, text: str) -> Owner:
        try:
            data = json.loads(text)
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        return cls(data.get("pid"), data.get("port"), data.get("started"))

    def describe(self) -> str:
        started = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
                   if isinstance(self.started, (int, float)) else "unknown")
        return f"pid {self.pid or 'unknown'}, port {self.port or 'unknown'}, started {started}"


class DataDirLock:
    """``acquire`` at start, ``release`` at exit; ``set_port`` once the listener is bound."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / LOCK_NAME
        self._fd: int | None = None
        self._started = time.time()
        self._port: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, port: int | None) -> Owner | None:
        """Take the directory or raise ``DataDirInUse`` naming its owner. Returns the dead
        owner the lock file still named (its leftovers are now ours to clean), if any."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Not inherited by kernels (os.open is O_CLOEXEC by default): a kernel outliving the
        # gateway must not keep the directory locked.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = Owner.parse(_read(fd))
            os.close(fd)
            raise DataDirInUse(
                f"the data directory {self.data_dir} is in use by another gateway "
                f"({owner.describe()}). Stop that gateway first, or give this one a data "
                "directory of its own (--data-dir), with its own --port and kernel_uid_base "
                "range when both run as root") from None
        except BaseException:
            os.close(fd)
            raise
        previous = _read(fd)
        self._fd = fd
        self._port = port
        self._write()
        return Owner.parse(previous) if previous.strip() else None

    def set_port(self, port: int) -> None:
        """The real port (``--port 0`` picks one when the server binds)."""
        self._port = port
        if self._fd is not None:
            self._write()

    def _write(self) -> None:
        assert self._fd is not None
        record = json.dumps({"pid": os.getpid(), "port": self._port, "started": self._started})
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, (record + "\n").encode(), 0)

    def release(self) -> None:
        """Empty the file (a clean exit leaves nothing to take over) and unlock it."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        finally:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None


def read_owner(data_dir: Path) -> Owner | None:
    """Who the lock file names, without locking (for messages and tests)."""
    try:
        text = (data_dir / LOCK_NAME).read_text()
    except OSError:
        return None
    return Owner.parse(text) if text.strip() else None


def _read(fd: int) -> str:
    return os.pread(fd, 4096, 0).decode(errors="replace")
