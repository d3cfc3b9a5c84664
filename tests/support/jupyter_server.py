"""Jupyter Server in a subprocess, its kernels on a gateway (``--gateway-url``)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

SERVER_TOKEN = "jupyter-test-token"
START_GUARD = 120.0  # seconds; only so that a server that never comes up fails


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def jupyter_env(home: Path, gateway_http: str, token: str = "tok-alice", **extra: str) -> dict:
    """An environment with its own Jupyter directories, pointing Jupyter at the gateway."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("JUPYTER_", "KERNEL_"))}
    env.update(HOME=str(home), JUPYTER_CONFIG_DIR=str(home / "config"),
               JUPYTER_DATA_DIR=str(home / "data"), JUPYTER_RUNTIME_DIR=str(home / "runtime"),
               # The token in the URL too: nbclient's websocket sends no header.
               JUPYTER_GATEWAY_URL=f"{gateway_http}/jupyter/{token}",
               JUPYTER_GATEWAY_AUTH_TOKEN=token,
               JUPYTER_PLATFORM_DIRS="1", **extra)
    return env


class JupyterServer:
    def __init__(self, process: subprocess.Popen, port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.http = f"http://127.0.0.1:{port}"
        self.ws = f"ws://127.0.0.1:{port}"
        self.log = log

    @classmethod
    async def start(cls, home: Path, gateway_http: str, app: str = "jupyter_server",
                    **env: str) -> JupyterServer:
        home.mkdir(parents=True, exist_ok=True)
        port = free_port()
        log = home / "server.log"
        process = subprocess.Popen(
            [sys.executable, "-m", app, f"--port={port}", "--ip=127.0.0.1", "--no-browser",
             f"--IdentityProvider.token={SERVER_TOKEN}", f"--ServerApp.root_dir={home}",
             f"--gateway-url={gateway_http}", "--allow-root"],
            env=jupyter_env(home, gateway_http, **env), stdout=log.open("wb"),
            stderr=subprocess.STDOUT, cwd=home)
        server = cls(process, port, log)
        await server._until_up()
        return server

    async def _until_up(self) -> None:
        def up() -> bool:
            try:
                with urllib.request.urlopen(f"{self.http}/api/status?token={SERVER_TOKEN}",
                                            timeout=5):
                    return True
            except OSError:
                return False

        deadline = asyncio.get_running_loop().time() + START_GUARD
        while not await asyncio.to_thread(up):
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            assert asyncio.get_running_loop().time() < deadline, self.log.read_text()[-3000:]
            await asyncio.sleep(0.3)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
