"""/healthz, /readyz and /metrics: up or down for anyone, the details only with a token.

The gateway half; the pure half is tests/unit/test_probes_policy.py."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import pytest

from gateway import auth
from support.gateways import until_ready

ADMIN = "probe-admin-token"


async def get(url: str, token: str | None = None) -> tuple[int, bytes]:
    def fetch() -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                        timeout=60) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    return await asyncio.to_thread(fetch)  # the server shares this event loop


@pytest.fixture
def admin_token(running):
    settings = running.gateway.settings
    saved = settings.admin_token
    settings.admin_token = auth.digest(ADMIN)
    yield ADMIN
    settings.admin_token = saved


async def test_healthz_without_token_says_only_up(running):
    status, body = await get(f"{running.http}/healthz")
    assert status == 200
    assert json.loads(body) == {"status": "ok"}
    status, body = await get(f"{running.http}/healthz", "wrong")
    assert status == 200 and json.loads(body) == {"status": "ok"}


async def test_healthz_with_a_client_or_admin_token_has_the_sandbox_report(running, admin_token):
    for token in ("tok-alice", admin_token):
        status, body = await get(f"{running.http}/healthz", token)
        health = json.loads(body)
        assert status == 200 and health["status"] == "ok"
        assert health["sandbox"] == "bubblewrap"
        assert "memory" in health["limits"]["enforced"]
        assert health["pool"]["max_kernels"] == running.gateway.settings.max_kernels
        assert "python" in health["languages"] and "threads" in health
    status, body = await get(f"{running.http}/healthz?token=tok-alice")
    assert "sandbox" in json.loads(body), "the page's way of sending a token works too"


async def test_readyz_without_token_says_only_ready(running):
    await until_ready(running.gateway)
    status, body = await get(f"{running.http}/readyz")
    assert status == 200 and json.loads(body) == {"ready": True}
    pool = running.gateway.pool
    pool.draining = True
    try:
        status, body = await get(f"{running.http}/readyz")
        assert status == 503 and json.loads(body) == {"ready": False}
        status, body = await get(f"{running.http}/readyz", "tok-alice")
        assert status == 503 and json.loads(body)["reason"].startswith("draining")
    finally:
        pool.draining = False


async def test_metrics_need_a_token(running, admin_token):
    status, body = await get(f"{running.http}/metrics")
    assert status == 401 and b"gateway_" not in body
    for token in ("tok-alice", admin_token):
        status, body = await get(f"{running.http}/metrics", token)
        assert status == 200 and b"gateway_kernels" in body
