"""/healthz, /readyz and /metrics: up or down for anyone, the details only with a token.

The pure half; the gateway half is tests/kernel/test_probes.py."""

from __future__ import annotations

from gateway import auth
from gateway.config import Settings
from gateway.net import probes

ADMIN = "probe-admin-token"


def test_what_a_caller_without_token_is_told():
    report = {"status": "degraded", "sandbox": "bubblewrap", "pool": {"warm": 1}}
    assert probes.health(report, detailed=False) == {"status": "degraded"}
    assert probes.health(report, detailed=True) == report
    ready = {"ready": False, "reason": "draining", "pool": {"warm": 0}}
    assert probes.readiness(ready, detailed=False) == {"ready": False}
    assert probes.readiness(ready, detailed=True) == ready


def test_client_and_admin_tokens_see_details():
    settings = Settings(tokens={"tok-alice": "alice"}, admin_token=ADMIN)
    assert probes.may_see_details(settings, "tok-alice")
    assert probes.may_see_details(settings, ADMIN)
    for token in (None, "", "wrong", auth.digest("tok-alice")):
        assert not probes.may_see_details(settings, token)
    assert not probes.may_see_details(Settings(), "")
