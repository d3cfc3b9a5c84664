"""Processes a benchmark starts and measures: `gateway serve` subprocesses, bare
jupyter_client kernels (the baseline), Jupyter Kernel Gateway, and /proc readings."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from websockets.asyncio.client import connect

from gateway.client import GatewayClient
from gateway.net.admin import process_rss

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # .venv/bin when run as `.venv/bin/python -m scripts.bench`
GATEWAY_SRC: Path | None = None  # --gateway-src: run `gateway serve` from another source tree
IDENTITY, TOKEN = "bench", "bench-" + secrets.token_hex(8)
MiB = 2**20
STARTUP_CODE = (ROOT / "kernels" / "startup" / "00-gateway.py").read_text()


# -- processes and HTTP ----------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(url: str, data: bytes | None = None, method: str | None = None,
              token: str | None = None) -> dict:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def proc_rss(pid: int) -> int:
    """VmRSS of a process in bytes (0 if it is gone)."""
    return process_rss(pid) or 0


def proc_pss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def proc_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return math.nan


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        return raw.replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class GatewayProc:
    """`gateway serve` in a subprocess with its own data directory and port."""

    def __init__(self, name: str, tmp: Path, *args: str, env: dict | None = None,
                 src: Path | None = None) -> None:
        self.name = name
        self.src = src or GATEWAY_SRC
        self.args = list(args)
        self.extra_env = env or {}
        self.data_dir = tmp / f"gw-{name}"
        self.log_path = tmp / f"gw-{name}.log"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.url = f"ws://127.0.0.1:{self.port}/ws"
        self.http = f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, timeout: float = 180) -> None:
        env = {**os.environ, "GATEWAY_TOKENS": f"{IDENTITY}:{TOKEN}", **self.extra_env}
        launcher = [str(BIN / "gateway")]
        if self.src is not None:  # A/B a change: same venv, another checkout's gateway/
            env["PYTHONPATH"] = str(self.src)
            # The editable install maps gateway.kernels to this checkout's kernels/: the other
            # tree's kernel-side code (startup files) must come with its gateway.
            if (self.src / "kernels").is_dir():
                env.setdefault("GATEWAY_KERNELS_DIR", str(self.src / "kernels"))
            # -P: the working directory must not shadow PYTHONPATH with another gateway/
            launcher = [sys.executable, "-P", "-c", "from gateway.cli.main import app; app()"]
        cmd = [*launcher, "serve", "--port", str(self.port),
               "--data-dir", str(self.data_dir), *self.args]
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log_path.open("w"),
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     cwd=self.log_path.parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway {self.name} exited ({self.proc.returncode}):\n"
                                   + self.log_tail())
            with contextlib.suppress(OSError, ValueError):
                await asyncio.to_thread(http_json, self.http + "/healthz")
                return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"gateway {self.name} did not start in {timeout} s:\n"
                           + self.log_tail())

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text().splitlines()[-lines:])
        return ""

    async def health(self) -> dict:
        # The pool figures are details: they need a token (gateway/net/probes.py).
        return await asyncio.to_thread(http_json, self.http + "/healthz", token=TOKEN)

    async def wait_warm(self, timeout: float = 120, settle: float = 0.0) -> float:
        """Wait until the pool is full again (warm == target, nothing starting); seconds waited."""
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            pool = (await self.health())["pool"]
            if pool["warm"] >= min(pool["target"], pool["max_kernels"]) and not pool["starting"]:
                if settle:
                    await asyncio.sleep(settle)
                return time.monotonic() - began
            await asyncio.sleep(0.05)
        raise RuntimeError(f"pool of {self.name} not warm after {timeout} s")

    async def client(self) -> GatewayClient:
        return await GatewayClient.connect(self.url, TOKEN)

    async def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(self.proc.wait, 60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            await asyncio.to_thread(self.proc.wait, 10)


class BareKernel:
    """A kernel driven by jupyter_client directly (the baseline)."""

    def __init__(self, label: str, km: AsyncKernelManager, kc) -> None:
        self.label = label
        self.km = km
        self.kc = kc

    @classmethod
    async def start(cls, label: str, *, ipc_dir: Path | None = None,
                    extra: list[str] | None = None) -> BareKernel:
        if ipc_dir is not None:
            ipc_dir.mkdir(parents=True, exist_ok=True)
            km = AsyncKernelManager(kernel_name="python3", transport="ipc",
                                    ip=str(ipc_dir / "kernel"),
                                    connection_file=str(ipc_dir / "connection.json"))
        else:
            km = AsyncKernelManager(kernel_name="python3")
        await km.start_kernel(extra_arguments=extra or [],
                              stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        kc = km.client()
        kc.start_channels()
        await kc.wait_for_ready(timeout=60)
        return cls(label, km, kc)

    async def execute(self, code: str) -> tuple[float, int]:
        """Execute; wait for iopub idle. Returns (seconds, characters of stream/result text)."""
        kc = self.kc
        began = time.perf_counter()
        msg_id = kc.execute(code)
        chars = 0
        while True:
            msg = await kc.get_iopub_msg(timeout=300)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if kind == "stream":
                chars += len(msg["content"]["text"])
            elif kind == "execute_result":
                chars += len(msg["content"]["data"].get("text/plain", ""))
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                elapsed = time.perf_counter() - began
                break
        with contextlib.suppress(Exception):  # keep the shell socket drained
            while True:
                await kc.get_shell_msg(timeout=0)
        return elapsed, chars

    async def stop(self) -> None:
        self.kc.stop_channels()
        with contextlib.suppress(Exception):
            await self.km.shutdown_kernel(now=True)


async def cold_start(ipc_dir: Path) -> float:
    """jupyter_client: start a default kernel, run the startup imports, then 1+1."""
    began = time.perf_counter()
    kernel = await BareKernel.start("cold")
    try:
        await kernel.execute(STARTUP_CODE)
        await kernel.execute("1+1")
        return time.perf_counter() - began
    finally:
        await kernel.stop()


def kernel_memory(gw: GatewayProc) -> list[dict]:
    """Per kernel of this gateway: RSS and PSS of its process tree, cgroup memory usage."""
    runtime = gw.data_dir / "runtime"
    ids = sorted(p.name for p in runtime.iterdir() if p.is_dir())
    procs = {pid: cmdline(pid) for pid in descendants(gw.pid)}
    out = []
    for kid in ids:
        marker = f"/runtime/{kid}"
        tree = [pid for pid, cmd in procs.items() if marker in cmd]
        if not tree:
            continue
        cg_dir = Path("/sys/fs/cgroup/memory/code-interpreter-gateway") / kid
        usage = cg_rss = None
        with contextlib.suppress(OSError, ValueError):
            usage = int((cg_dir / "memory.usage_in_bytes").read_text())
            stat = dict(line.split() for line in (cg_dir / "memory.stat").read_text().splitlines())
            cg_rss = int(stat.get("total_rss", stat.get("rss", 0)))
        if usage is None:  # cgroup v2
            v2 = Path("/sys/fs/cgroup/code-interpreter-gateway") / kid / "memory.current"
            with contextlib.suppress(OSError, ValueError):
                usage = int(v2.read_text())
        out.append({"kernel": kid, "pids": len(tree), "rss": sum(map(proc_rss, tree)),
                    "pss": sum(map(proc_pss, tree)), "cgroup": usage, "cgroup_rss": cg_rss})
    return out


class KernelGatewayProc:
    """Jupyter Kernel Gateway 3 in a subprocess, one kernel, its /channels websocket."""

    PATCH = ("import tornado.websocket as w\n"
             "_open = w.WebSocketHandler.open\n"
             "def open(self, *a, **k):\n"
             "    self.set_nodelay(True)\n"
             "    return _open(self, *a, **k)\n"
             "w.WebSocketHandler.open = open\n"
             "from kernel_gateway import launch_instance\n"
             "launch_instance()\n")

    def __init__(self, tmp: Path, patched: bool) -> None:
        self.port = free_port()
        self.patched = patched
        self.log_path = tmp / f"kg-{'patched' if patched else 'plain'}.log"
        self.proc: subprocess.Popen | None = None

    async def start(self) -> None:
        args = [f"--KernelGatewayApp.port={self.port}", "--KernelGatewayApp.ip=127.0.0.1"]
        if self.patched:
            cmd = [sys.executable, "-c", self.PATCH, *args]
        else:
            cmd = [str(BIN / "jupyter"), "kernelgateway", *args]
        self.proc = subprocess.Popen(cmd, stdout=self.log_path.open("w"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        base = f"http://127.0.0.1:{self.port}"
        for _ in range(300):
            if self.proc.poll() is not None:
                raise RuntimeError("kernel gateway exited: " + self.log_path.read_text()[-2000:])
            with contextlib.suppress(OSError, ValueError):
                await asyncio.to_thread(http_json, base + "/api")
                break
            await asyncio.sleep(0.1)
        kernel = await asyncio.to_thread(http_json, base + "/api/kernels",
                                         b'{"name": "python3"}', "POST")
        self.ws_url = f"ws://127.0.0.1:{self.port}/api/kernels/{kernel['id']}/channels"

    async def measure(self, n: int, quickack: bool) -> tuple[list[float], list]:
        session = uuid.uuid4().hex
        async with connect(self.ws_url, max_size=None, compression=None) as ws:
            sock = ws.transport.get_extra_info("socket")

            async def roundtrip() -> tuple[float, list]:
                msg_id = uuid.uuid4().hex
                message = {
                    "header": {"msg_id": msg_id, "username": "bench", "session": session,
                               "msg_type": "execute_request", "version": "5.3", "date": ""},
                    "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                    "content": {"code": "1+1", "silent": False, "store_history": True,
                                "user_expressions": {}, "allow_stdin": False,
                                "stop_on_error": True},
                }
                trace = []
                began = time.perf_counter()
                await ws.send(json.dumps(message))
                while True:
                    if quickack:
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
                    reply = json.loads(await ws.recv())
                    at = time.perf_counter() - began
                    state = reply["content"].get("execution_state")
                    mine = reply["parent_header"].get("msg_id") == msg_id
                    trace.append([round(at * 1000, 2), reply["channel"],
                                  reply["msg_type"] + (f":{state}" if state else "")
                                  + ("" if mine else " (previous request)")])
                    if (reply["channel"] == "iopub" and state == "idle"
                            and reply["parent_header"].get("msg_id") == msg_id):
                        return at, trace

            for _ in range(5):
                await roundtrip()
            samples, last = [], []
            for _ in range(n):
                seconds, last = await roundtrip()
                samples.append(seconds * 1000)
            return samples, last

    async def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, 20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


