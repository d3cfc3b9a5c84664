"""``gateway serve`` as a real subprocess, and what a killed one leaves behind."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from support.http import http_get

GATEWAY_BIN = Path(sys.executable).with_name("gateway")


def workdir_mounts(data_dir: Path) -> set[str]:
    prefix = str(data_dir / "workdirs") + "/"
    mounts = set()
    for line in Path("/proc/mounts").read_text().splitlines():
        target = line.split()[1].replace("\\040", " ")
        if target.startswith(prefix):
            mounts.add(target)
    return mounts


def unmount_leftovers(data_dir: Path) -> None:
    """After a SIGKILLed gateway that is not restarted: its workdir tmpfs mounts stay behind."""
    for target in workdir_mounts(data_dir):
        subprocess.run(["umount", "-l", target], capture_output=True)


async def wait_until(predicate, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return predicate()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GatewayProcess:
    """``gateway serve`` as a subprocess on 127.0.0.1, with alice's and bob's tokens."""

    def __init__(self, data_dir: Path, *args: str) -> None:
        self.data_dir = data_dir
        self.args = args
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, timeout: float = 180) -> GatewayProcess:
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/ws"
        self.http = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env["GATEWAY_TOKENS"] = "alice:tok-alice,bob:tok-bob"
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir.parent / f"gateway-{self.port}.log", "wb")  # noqa: SIM115
        self.proc = await asyncio.create_subprocess_exec(
            str(GATEWAY_BIN), "serve", "--port", str(self.port), "--data-dir",
            str(self.data_dir), "--pool-size", "1", "--max-kernels", "8", *self.args,
            stdout=asyncio.subprocess.PIPE, stderr=log, env=env)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(),
                                          max(0.1, deadline - time.monotonic()))
            if not line:
                raise AssertionError(f"gateway exited with {await self.proc.wait()}")
            if b"listening" in line:
                return self

    def kill(self, signum: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.send_signal(signum)

    async def stop(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    async def healthy(self, timeout: float = 5) -> bool:
        try:
            status, body, _ = await asyncio.wait_for(
                http_get(self.http + "/healthz", timeout=timeout), timeout + 1)
        except (TimeoutError, OSError):
            return False
        return status == 200 and json.loads(body)["status"] == "ok"
