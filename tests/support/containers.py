"""The deploy tests' helpers: the compose files (whose privileges the chart must match), and
docker-compose projects started and removed by the tests (tests/deploy)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from scripts.benchlib.deploy import (  # noqa: F401 - the tests import them from here
    COMPOSE,
    COMPOSE_CLUSTER,
    DEPLOY,
    REPO,
    compose_service,
    privileges,
)

CHART = DEPLOY / "helm" / "code-interpreter-gateway"
IMAGE = "code-interpreter-gateway:latest"
# Where the image puts deploy/drain.sh: Kubernetes' preStop hook runs it, the container test too.
DRAIN_HOOK = "/usr/local/bin/gateway-drain"
ENABLED = os.environ.get("GATEWAY_DEPLOY_TESTS") == "1"


def require_docker() -> None:
    """Skip unless the container tests were asked for and docker and the images are here."""
    if not ENABLED:
        pytest.skip("container test: runs with GATEWAY_DEPLOY_TESTS=1 (make deploy-check)")
    for program in ("docker", "docker-compose"):
        if not shutil.which(program):
            pytest.skip(f"{program} not found (sh scripts/setup-deploy.sh installs it)")
    if subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True,
                      timeout=60).returncode:
        pytest.skip(f"image {IMAGE} not built (make image)")


def http_status(url: str, token: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}
                                     if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return 0


def http_json(url: str, token: str) -> dict:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:  # /readyz's 503 carries the report too
        return json.load(exc)


def wait_for(check, timeout: float, what: str, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


class Project:
    """A docker-compose project of one of deploy/'s files, with a name of its own; ``down``
    removes its containers, networks and volumes."""

    def __init__(self, file: Path, env: dict[str, str]) -> None:
        self.file = file
        self.name = f"cigwtest{uuid.uuid4().hex[:8]}"
        self.env = {**os.environ, **env}

    def compose(self, *args: str, timeout: float = 300, check: bool = True
                ) -> subprocess.CompletedProcess:
        result = subprocess.run(["docker-compose", "-p", self.name, "-f", str(self.file), *args],
                                env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode:
            raise RuntimeError(f"docker-compose {' '.join(args)}: {result.stderr[-3000:]}")
        return result

    def container(self, service: str) -> str:
        return self.compose("ps", "-q", service).stdout.strip()

    def inspect(self, service: str) -> dict:
        out = subprocess.run(["docker", "inspect", self.container(service)],
                             capture_output=True, text=True, timeout=60, check=True).stdout
        return json.loads(out)[0]

    def logs(self) -> str:
        return self.compose("logs", "--no-color", "--tail", "80", check=False).stdout

    def down(self) -> None:
        self.compose("down", "-v", "-t", "5", check=False)
