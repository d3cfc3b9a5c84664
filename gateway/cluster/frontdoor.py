"""The HAProxy configuration for a set of nodes, from ``deploy/haproxy-cluster.cfg`` (pure)."""

from __future__ import annotations

import re

NODES_BLOCK = re.compile(r"(?m)^(?P<indent>[ \t]*)# nodes: begin\n.*?^[ \t]*# nodes: end$",
                         re.DOTALL)


def haproxy_config(template: str, nodes: dict[str, str]) -> str:
    """``template`` with one ``server`` line per node (name -> ``host:port``)."""
    match = NODES_BLOCK.search(template)
    if match is None:
        raise ValueError("the HAProxy template has no '# nodes: begin' ... '# nodes: end' block")
    indent = match.group("indent")
    for name, address in nodes.items():
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or not re.fullmatch(r"[\w.:\[\]-]+",
                                                                           address):
            raise ValueError(f"bad node {name!r} at {address!r}")
    lines = [f"{indent}# nodes: begin"]
    lines += [f"{indent}server {name} {address}" for name, address in nodes.items()]
    lines.append(f"{indent}# nodes: end")
    return template[:match.start()] + "\n".join(lines) + template[match.end():]
