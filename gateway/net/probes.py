"""What /healthz, /readyz and /metrics tell whom.

Anyone who reaches the port (a load balancer's health check, a page that got through) learns
only whether the gateway is up and ready: the status code, ``status`` and ``ready``. The rest -
sandbox layers, which limits are not enforced, pool figures, languages, thread counts, why it is
not ready, the Prometheus metrics - tells an attacker where to aim, so it needs a client token
or the admin token (``Authorization: Bearer``, or ``?token=``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import auth

if TYPE_CHECKING:
    from ..config import Settings

TOKEN_NEEDED = {"error": "missing or invalid token: /metrics needs a client or the admin token"}


def may_see_details(settings: Settings, token: str | None) -> bool:
    """Does ``token`` belong to a client or to the admin?"""
    return (auth.identity_for(settings.tokens, token) is not None
            or auth.matches(settings.admin_token, token))


def health(report: dict, detailed: bool) -> dict:
    """/healthz: the full report, or only its status (``ok`` or ``degraded``)."""
    return report if detailed else {"status": report["status"]}


def readiness(report: dict, detailed: bool) -> dict:
    """/readyz: the full report, or only ``ready`` (the status code says it too)."""
    return report if detailed else {"ready": report["ready"]}
