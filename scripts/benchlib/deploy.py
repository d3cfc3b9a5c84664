"""deploy/'s compose files as data: the privileges they grant the gateway's container, which
the container tests, the chart test and scripts.bench_container share."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
COMPOSE_CLUSTER = DEPLOY / "compose-cluster.yaml"


def compose_service(path: Path, name: str) -> dict:
    """A service of a compose file, its YAML anchors and merge keys resolved."""
    return yaml.safe_load(path.read_text())["services"][name]


def privileges(service: dict) -> dict:
    """What a compose service grants beyond docker's defaults, in the chart's terms."""
    options = dict(option.split("=", 1) for option in service.get("security_opt", []))
    return {"drop": sorted(service.get("cap_drop", [])), "add": sorted(service["cap_add"]),
            "seccomp": options.get("seccomp"), "apparmor": options.get("apparmor")}


def docker_run_flags(service: dict) -> list[str]:
    """The same grants as `docker run` flags."""
    granted = privileges(service)
    flags = [f"--cap-drop={cap}" for cap in granted["drop"]]
    flags += [f"--cap-add={cap}" for cap in granted["add"]]
    flags += [f"--security-opt={option}" for option in service.get("security_opt", [])]
    if service.get("read_only"):
        flags.append("--read-only")
    flags += [f"--tmpfs={path}" for path in service.get("tmpfs", [])]
    return flags
