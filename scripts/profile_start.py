"""Where a sandboxed kernel's start goes: each step timed, on the real sandbox.

Steps of one pooled kernel start (``KernelPool`` → ``Kernel.start``), measured one kernel at a
time so the numbers are not mixed with queueing:

  sandbox        bubblewrap launch(es) + an interpreter that does nothing (``python -c pass``)
  ipykernel      the same + ``import ipykernel.kernelapp``
  libraries      the same + ``import numpy, pandas, matplotlib.pyplot`` (the startup pre-imports)
  launch         Kernel.start: the sandbox launched (exec: Popen of bubblewrap returned; fork:
                 the zygote forked and the fork joined its cgroups)
  bound          its ipc sockets exist (interpreter + ipykernel up, before the startup scripts)
  ready          kernel_info answered (startup scripts ran) and iopub connected
  warm           the warm-up cell done: the kernel is what the pool hands out

    .venv/bin/python -m scripts.profile_start [--rounds 5]

Run as root for the production path (cgroups, one uid per kernel).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from gateway.app import Gateway
from gateway.config import Settings
from gateway.execution import kernel as kernel_module

PROBES = {
    "sandbox": "pass",
    "ipykernel": "import ipykernel.kernelapp",
    "libraries": "import ipykernel.kernelapp, numpy, pandas, matplotlib.pyplot",
}


async def probe(gateway: Gateway, code: str) -> float:
    """Seconds to run ``code`` in a fresh sandbox, launch to exit."""
    pool = gateway.pool
    workdir = await asyncio.to_thread(gateway.workdirs.create)
    spec = pool._spec(workdir)
    host = gateway.host
    seccomp_fd = host.seccomp.memfd() if host.seccomp else None
    try:
        if spec.uid is not None and host.drop_uid:
            from gateway.sandbox.launch import give_to_uid
            give_to_uid(spec.runtime_dir, spec.uid)
        argv = host.launch_command(spec, [gateway.settings.kernel_python, "-c", code],
                                   seccomp_fd)
        began = time.monotonic()
        proc = await asyncio.to_thread(
            subprocess.run, argv, capture_output=True,
            pass_fds=(seccomp_fd,) if seccomp_fd is not None else ())
        took = time.monotonic() - began
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr.decode()[-500:])
        return took
    finally:
        if seccomp_fd is not None:
            import os
            os.close(seccomp_fd)
        if host.cgroups:
            await host.cgroups.remove_when_empty(spec.kernel_id)
        await asyncio.to_thread(gateway.workdirs.remove, workdir)


async def kernel_steps(gateway: Gateway) -> dict[str, float]:
    """Kernel.start of one pooled kernel, with the moment each step finished."""
    marks: dict[str, float] = {}
    began = time.monotonic()
    real_ready, real_warm = kernel_module.Kernel._wait_ready, kernel_module.Kernel._warm_up
    runtime: list[Path] = []

    async def watch_bound() -> None:
        while not runtime:
            await asyncio.sleep(0.002)
        while not any(p.is_socket() for p in runtime[0].iterdir()):
            await asyncio.sleep(0.002)
        marks["bound"] = time.monotonic() - began

    async def wait_ready(self):
        marks["launch"] = time.monotonic() - began
        runtime.append(self.spec.runtime_dir)
        await real_ready(self)
        marks["ready"] = time.monotonic() - began

    async def warm_up(self, timeout):
        await real_warm(self, timeout)
        marks["warm"] = time.monotonic() - began

    kernel_module.Kernel._wait_ready, kernel_module.Kernel._warm_up = wait_ready, warm_up
    watcher = asyncio.create_task(watch_bound())
    try:
        workdir = await asyncio.to_thread(gateway.workdirs.create)
        kernel = await gateway.pool._start_kernel(workdir)
        await watcher
        await kernel.shutdown()
        await asyncio.to_thread(gateway.workdirs.remove, workdir)
    finally:
        watcher.cancel()
        kernel_module.Kernel._wait_ready, kernel_module.Kernel._warm_up = real_ready, real_warm
    return marks


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="profile-start-") as tmp:
        settings = Settings(data_dir=Path(tmp), pool_size=0, port=0, kernel_uid_base=720_000)
        gateway = Gateway(settings)
        await gateway.pool.start()
        results: dict[str, list[float]] = {}
        for _ in range(opts.rounds):  # interleaved, so background load hits every step alike
            for name, code in PROBES.items():
                results.setdefault(name, []).append(await probe(gateway, code))
            for name, value in (await kernel_steps(gateway)).items():
                results.setdefault(name, []).append(value)
        await gateway.pool.close()
    print(f"{'step':<10} {'median s':>9} {'min s':>7}   ({opts.rounds} rounds, one at a time; "
          f"the probes exec'd by bubblewrap, Kernel.start {gateway.pool.start_method}ed)")
    for name in (*PROBES, "launch", "bound", "ready", "warm"):
        values = results.get(name, [])
        if values:
            print(f"{name:<10} {statistics.median(values):9.3f} {min(values):7.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
