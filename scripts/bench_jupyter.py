"""A `1+1` cell through Jupyter Server (``--gateway-url``) to this gateway, against the same
through Jupyter Server to Jupyter Kernel Gateway 3 (Nagle fixed: TCP_NODELAY on its websockets),
measured in one run, interleaved in rounds so background load hits both alike.

The round trip is what nbclient waits for: the execute_request sent on Jupyter Server's kernel
websocket until both its execute_reply and its idle status are back. Kernel Gateway runs a
plain local ipykernel; the gateway's kernel is sandboxed (as in production).

    .venv/bin/python -m scripts.bench_jupyter [--rounds 10] [--per-round 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from websockets.asyncio.client import connect

from scripts.benchlib.procs import TOKEN, GatewayProc, KernelGatewayProc, free_port, http_json

SERVER_TOKEN = "bench-token"
RESULTS = Path(__file__).resolve().parents[1] / "bench-results"


class JupyterServer:
    def __init__(self, home: Path, gateway_http: str, gateway_token: str | None) -> None:
        self.home = home
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER_", "KERNEL_"))}
        env.update(HOME=str(home), JUPYTER_CONFIG_DIR=str(home / "config"),
                   JUPYTER_DATA_DIR=str(home / "data"), JUPYTER_RUNTIME_DIR=str(home / "rt"),
                   JUPYTER_PLATFORM_DIRS="1")
        if gateway_token:
            env["JUPYTER_GATEWAY_AUTH_TOKEN"] = gateway_token
        home.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", f"--port={self.port}", "--ip=127.0.0.1",
             "--no-browser", "--allow-root", f"--IdentityProvider.token={SERVER_TOKEN}",
             f"--ServerApp.root_dir={home}", f"--gateway-url={gateway_http}"],
            env=env, stdout=(home / "server.log").open("wb"), stderr=subprocess.STDOUT)
        self.http = f"http://127.0.0.1:{self.port}"

    async def up(self) -> None:
        for _ in range(600):
            try:
                await asyncio.to_thread(http_json, f"{self.http}/api", token=SERVER_TOKEN)
                return
            except (OSError, ValueError):
                await asyncio.sleep(0.2)
        raise RuntimeError((self.home / "server.log").read_text()[-2000:])

    async def kernel_ws(self):
        kernel = await asyncio.to_thread(http_json, f"{self.http}/api/kernels",
                                         b'{"name": "python3"}', "POST", token=SERVER_TOKEN)
        return await connect(f"ws://127.0.0.1:{self.port}/api/kernels/{kernel['id']}/channels",
                             additional_headers={"Authorization": f"token {SERVER_TOKEN}"},
                             max_size=None, compression=None)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


async def roundtrip(ws, session: str) -> float:
    msg_id = uuid.uuid4().hex
    message = {"header": {"msg_id": msg_id, "username": "bench", "session": session,
                          "msg_type": "execute_request", "version": "5.3", "date": ""},
               "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
               "content": {"code": "1+1", "silent": False, "store_history": True,
                           "user_expressions": {}, "allow_stdin": False,
                           "stop_on_error": True}}
    began = time.perf_counter()
    await ws.send(json.dumps(message))
    replied = idle = False
    while not (replied and idle):
        reply = json.loads(await ws.recv())
        if reply["parent_header"].get("msg_id") != msg_id:
            continue
        replied = replied or reply["msg_type"] == "execute_reply"
        idle = idle or (reply["msg_type"] == "status"
                        and reply["content"].get("execution_state") == "idle")
    return (time.perf_counter() - began) * 1000


def summary(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {"n": len(ordered), "median_ms": round(statistics.median(ordered), 2),
            "p90_ms": round(ordered[int(len(ordered) * 0.9)], 2),
            "min_ms": round(ordered[0], 2)}


async def main(rounds: int, per_round: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-jupyter-"))
    # Jupyter Server lists its gateway's kernels; Kernel Gateway refuses that by default.
    os.environ["KG_LIST_KERNELS"] = "True"
    gateway = GatewayProc("jupyter", tmp, "--pool-size", "1")
    kg = KernelGatewayProc(tmp, patched=True)
    servers: list[JupyterServer] = []
    try:
        await gateway.start()
        await gateway.wait_warm()
        await kg.start()
        ours = JupyterServer(tmp / "js-gateway", gateway.http, TOKEN)
        theirs = JupyterServer(tmp / "js-kg", f"http://127.0.0.1:{kg.port}", None)
        servers = [ours, theirs]
        await asyncio.gather(ours.up(), theirs.up())
        sockets = {"gateway": await ours.kernel_ws(), "kernel_gateway_3": await theirs.kernel_ws()}
        samples: dict[str, list[float]] = {name: [] for name in sockets}
        session = uuid.uuid4().hex
        for ws in sockets.values():  # warm-up: first cells, connections, caches
            for _ in range(10):
                await roundtrip(ws, session)
        for _ in range(rounds):
            for name, ws in sockets.items():
                for _ in range(per_round):
                    samples[name].append(await roundtrip(ws, session))
        result = {name: summary(values) for name, values in samples.items()}
        result["ratio_median"] = round(result["gateway"]["median_ms"]
                                       / result["kernel_gateway_3"]["median_ms"], 2)
        for ws in sockets.values():
            await ws.close()
    finally:
        for server in servers:
            server.stop()
        await kg.stop()
        await gateway.stop()
    print("1+1 through Jupyter Server --gateway-url (execute_reply and idle):")
    for name in ("gateway", "kernel_gateway_3"):
        row = result[name]
        print(f"  {name:18} median {row['median_ms']:7.2f} ms  p90 {row['p90_ms']:7.2f} ms  "
              f"min {row['min_ms']:7.2f} ms  (n={row['n']})")
    print(f"  gateway / KG3 (median): {result['ratio_median']}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"bench-jupyter-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=1))
    print(f"  written: {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--per-round", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.per_round))
