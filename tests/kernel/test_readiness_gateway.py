"""Start-up fails fast with what to fix when no kernel can start; /readyz says why it waits.

The gateway half; the pure half is tests/unit/test_readiness.py."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from importlib import metadata
from pathlib import Path

import pytest

import gateway
from gateway.app import Gateway
from gateway.errors import KernelUnavailable
from support.gateways import test_settings, until_ready
from support.host import host_processes
from support.kernelspecs import SPEC, kernels_dir

GATEWAY = str(Path(sys.executable).parent / "gateway")


@pytest.mark.asyncio(loop_scope="session")
async def test_kernels_that_never_start_stop_start_up_with_the_reason(tmp_path):
    # The kernelspec is valid and the provisioner registered, so only a launch can tell.
    failing = {**SPEC, "argv": ["python", "-c", "raise SystemExit(3)", "{connection_file}"]}
    settings = test_settings(tmp_path / "data", pool_size=2,
                             kernels_dir=kernels_dir(tmp_path / "kernels", failing))
    gw = Gateway(settings)
    with pytest.raises(KernelUnavailable) as caught:
        await gw.start()
    message = str(caught.value)
    assert "no kernel can start" in message and "attempts failed" in message
    assert "failed to start" in message  # the kernel's own error, not only a count
    starts = gw.pool.stats.starts
    assert gw.pool.draining and gw.pool.total == 0, "the pool stopped trying"
    assert gw.pool.stats.starts == starts
    assert not host_processes(str(settings.data_dir).encode())
    await gw.close()


def run_gateway(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([GATEWAY, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "GATEWAY_TOKENS": "t", **env})


def test_serve_and_exec_without_kernel_files_fail_with_one_message(tmp_path):
    missing = str(tmp_path / "no-kernels")
    for args in (["serve", "--port", "0", "--data-dir", str(tmp_path / "data")],
                 ["exec", "print(1)"]):
        result = run_gateway(*args, GATEWAY_KERNELS_DIR=missing)
        assert result.returncode == 2, result
        assert "error: no kernel can start" in result.stderr
        assert missing in result.stderr and "Traceback" not in result.stderr


def test_version():
    result = run_gateway("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"gateway {gateway.__version__}"
    assert metadata.version("code-interpreter-gateway") == gateway.__version__


async def readyz(running) -> tuple[int, dict]:
    def get() -> tuple[int, dict]:
        try:
            request = urllib.request.Request(f"{running.http}/readyz",
                                             headers={"Authorization": "Bearer tok-alice"})
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    return await asyncio.to_thread(get)  # the server shares this event loop


@pytest.mark.asyncio(loop_scope="session")
async def test_readyz_says_ready_with_no_reason(running):
    await until_ready(running.gateway)
    status, body = await readyz(running)
    assert status == 200 and body["ready"] is True and body["reason"] is None
    assert body["pool"]["warm"] >= 1


@pytest.mark.asyncio(loop_scope="session")
async def test_readyz_says_why_it_is_not_ready(running):
    pool = running.gateway.pool
    pool.draining = True  # what `gateway pool drain` does first
    try:
        status, body = await readyz(running)
    finally:
        pool.draining = False
    assert status == 503 and body["ready"] is False
    assert body["reason"].startswith("draining")
