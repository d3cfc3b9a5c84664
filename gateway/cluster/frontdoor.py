"""The HAProxy configuration for a set of nodes, from ``deploy/haproxy-cluster.cfg`` (pure)."""

from __future__ import annotations

import re

NODES_BLOCK = re.compile(r"(?m)^(?P<indent>[ \t]*)# nodes: begin\n.*?^[ \t]*# nodes: end$",
                         re.DOTALL)


def haproxy_config(template: str, nodes: dict[str, str]) -> str:
    """``template`` with one ``server`` line per node (name -> ``host:port``) in every
    ``# nodes: begin`` ... ``# nodes: end`` block."""
    for name, address in nodes.items():
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or not re.fullmatch(r"[\w.:\[\]-]+",
                                                                           address):
            raise ValueError(f"bad node {name!r} at {address!r}")

    def servers(match: re.Match) -> str:
        indent = match.group("indent")
        lines = [f"{indent}# nodes: begin"]
        lines += [f"{indent}server {name} {address}" for name, address in nodes.items()]
        lines.append(f"{indent}# nodes: end")
        return "\n".join(lines)

    rendered, count = NODES_BLOCK.subn(servers, template)
    if not count:
        raise ValueError("the HAProxy template has no '# nodes: begin' ... '# nodes: end' block")
    return rendered
