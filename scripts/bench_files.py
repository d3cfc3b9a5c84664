"""Download and upload throughput on loopback for a large file, and the gateway's peak RSS
growth during each: the code before the one-port change (a git worktree) against this one, in
the same run.

    .venv/bin/python -m scripts.bench_files [--size-mib 1024] [--before REV]

Each side is a real ``gateway serve`` (its own checkout on PYTHONPATH) on a fresh data dir. The
file is put into each store with that checkout's own ``FileStore`` before the gateway starts;
the download reads it back (1 MiB reads, discarded); the upload PUTs it into a thread's working
directory (before: on the separate upload port; after: on the websocket's port). RSS is sampled
every 10 ms from /proc while each transfer runs.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson
import psutil

from gateway.client import GatewayClient

ROOT = Path(__file__).resolve().parent.parent

MiB = 2**20
TOKEN = secrets.token_urlsafe(32)
PUT_FILE = """
import sys
from pathlib import Path
try:
    from gateway.threads.files import FileStore
except ImportError:  # a checkout from before the layers (gateway/files.py)
    from gateway.files import FileStore
store = FileStore(Path(sys.argv[1]), 1 << 40, 1 << 40)
with open(sys.argv[2], 'rb') as source:
    print(store.put_stream('bench', 'bench', 'big.bin', source).id)
"""


def before_revision() -> str:
    """The commit before the one that added the front (the one-port change)."""
    added = subprocess.run(["git", "-C", str(ROOT), "log", "--diff-filter=A", "--format=%H",
                            "--", "gateway/front.py"], capture_output=True, text=True,
                           check=True).stdout.split()
    if not added:
        raise SystemExit("gateway/front.py was never committed: give --before REV")
    return added[-1] + "^"


class Served:
    """One ``gateway serve`` from ``checkout`` with a 1 GiB-capable thread."""

    def __init__(self, name: str, checkout: Path, tmp: Path, source: Path) -> None:
        data = tmp / name
        files = data / "files"
        files.mkdir(parents=True)
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(checkout),
               "GATEWAY_TOKENS": f"bench:{TOKEN}"}
        self.file_id = subprocess.run([sys.executable, "-c", PUT_FILE, str(files), str(source)],
                                      env=env, capture_output=True, text=True,
                                      check=True).stdout.strip()
        self.log = tmp / f"{name}.log"
        limit = str(4 * 1024 * MiB)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--port", "0", "--data-dir", str(data),
             "--pool-size", "1", "--set", f"disk_limit={limit}",
             "--set", f"max_upload_total={limit}", "--set", f"file_size_limit={limit}",
             "--set", f"thread_file_quota={limit}",
             "--set", f"kernels_dir={checkout / 'kernels'}"],
            env=env, cwd=str(checkout), stdout=subprocess.PIPE, stderr=self.log.open("w"),
            text=True, start_new_session=True)
        line = self.proc.stdout.readline()
        match = re.search(r"websocket (ws://[^)]+)\)", line)
        if match is None:
            raise RuntimeError(f"{name} did not start: {line!r}\n{self.log.read_text()[-2000:]}")
        self.url = match.group(1)
        self.port = int(re.search(r":(\d+)/ws", self.url).group(1))

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Peak:
    """Peak RSS growth of a process while the block runs."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.baseline = self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.baseline) / MiB


def download(port: int, file_id: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        connection.request("GET", f"/files/{file_id}",
                           headers={"Authorization": f"Bearer {TOKEN}"})
        response = connection.getresponse()
        if response.status != 200:
            raise RuntimeError(f"download: {response.status} {response.read()[:200]!r}")
        received = 0
        while data := response.read(MiB):
            received += len(data)
        return received
    finally:
        connection.close()


def upload(port: int, source: Path) -> dict:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        with open(source, "rb") as body:
            connection.request("PUT", "/threads/bench/files/up.bin", body=body, headers={
                "Authorization": f"Bearer {TOKEN}",
                "Content-Length": str(os.fstat(body.fileno()).st_size)})
        response = connection.getresponse()
        answer = response.read()
        if response.status != 201:
            raise RuntimeError(f"upload: {response.status} {answer[:200]!r}")
        return orjson.loads(answer)
    finally:
        connection.close()


async def measure(served: Served, source: Path) -> dict:
    size = source.stat().st_size
    client = await GatewayClient.connect(served.url, TOKEN)
    try:
        await client.thread("bench").run("1")  # the thread exists, with its working directory
        health = orjson.loads(await asyncio.to_thread(_get, served.port, "/healthz"))
        upload_port = served.port if served.name_is_after else health["upload_port"]
        results = {}
        with Peak(served.proc.pid) as peak:
            began = time.perf_counter()
            got = await asyncio.to_thread(download, served.port, served.file_id)
            elapsed = time.perf_counter() - began
        if got != size:  # reported, not hidden: the old path could cut a large body short
            print(f"{served.log.stem}: download ended after {got} of {size} bytes", flush=True)
        results["download"] = (got / MiB / elapsed, peak.growth_mib)
        with Peak(served.proc.pid) as peak:
            began = time.perf_counter()
            await asyncio.to_thread(upload, upload_port, source)
            elapsed = time.perf_counter() - began
        results["upload"] = (size / MiB / elapsed, peak.growth_mib)
        await client.thread("bench").run("import os; os.remove('up.bin')")
        return results
    finally:
        await client.close()


def _get(port: int, path: str) -> bytes:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("GET", path, headers={"Authorization": f"Bearer {TOKEN}"})
        return connection.getresponse().read()
    finally:
        connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--before", help="git revision of the old code path (default: the "
                        "parent of the commit that added gateway/front.py)")
    args = parser.parse_args()
    before = args.before or before_revision()
    with tempfile.TemporaryDirectory(prefix="bench-files-") as scratch:
        tmp = Path(scratch)
        worktree = tmp / "before"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q",
                        str(worktree), before], check=True)
        try:
            source = tmp / "big.bin"
            with open(source, "wb") as sink:  # random bytes: no file system shortcut
                block = os.urandom(MiB)
                for _ in range(args.size_mib):
                    sink.write(block)
            rows = {}
            for name, checkout in (("before", worktree), ("after", ROOT)):
                served = Served(name, checkout, tmp, source)
                served.name_is_after = name == "after"
                try:
                    rows[name] = asyncio.run(measure(served, source))
                finally:
                    served.stop()
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                            str(worktree)], check=False)
    print(f"{args.size_mib} MiB file on loopback; before = {before}")
    print(f"{'':8} {'download MB/s':>14} {'peak RSS +MiB':>14} {'upload MB/s':>12} "
          f"{'peak RSS +MiB':>14}")
    for name, row in rows.items():
        (down, down_rss), (up, up_rss) = row["download"], row["upload"]
        print(f"{name:8} {down * MiB / 1e6:14.0f} {down_rss:14.0f} {up * MiB / 1e6:12.0f} "
              f"{up_rss:14.0f}")


if __name__ == "__main__":
    main()
