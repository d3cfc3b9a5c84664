"""Which destinations a thread's kernel may reach through the egress proxy (docs/egress.md).

Pure: no I/O, no resolution. The proxy asks twice for each connection: once for the name and
port the kernel asked for (``check_name``), and once for every address the proxy's own resolver
gave for it (``check_address``). A rule is a host pattern with an optional port:

* ``pypi.internal``, ``pypi.internal:8443``, ``pypi.internal:*`` (no port: 80 and 443);
* ``*.example.org``: any name below example.org (not example.org itself); ``*``: any name;
* ``10.0.0.5``, ``10.0.0.0/8:3141``, ``[fd00::1]:443``: addresses and networks.

``egress_deny`` wins over ``egress_allow``. A name must match an allow rule; an execution may
narrow further with its own list, which is checked as well (never instead). Private, loopback,
link-local and other non-global addresses are refused after resolution unless an allow rule
lists them as addresses: an allowed name that resolves into the host's network (DNS rebinding)
reaches nothing there.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

WEB_PORTS = (80, 443)
ANY_PORT = None
NO_PORT = ()  # the pattern names none: see parse_rule
# One DNS label as the proxy compares them: lower case ASCII (IDNA), digits, - and _.
LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
NAME = re.compile(rf"{LABEL}(?:\.{LABEL})*")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Rule:
    """One pattern of a list; ``source`` names the list it came from, for refusals."""

    text: str
    source: str  # "egress_allow", "egress_deny of identity alice", "the request's egress_allow"
    name: str | None = None  # exact name, "*.suffix" or "*"; None: an address rule
    network: IPNetwork | None = None
    ports: tuple[int, ...] | None = WEB_PORTS  # None: any port

    def matches_name(self, host: str, port: int) -> bool:
        if self.name is None or not self._port(port):
            return False
        if self.name == "*":
            return True
        if self.name.startswith("*."):
            return host.endswith(self.name[1:])
        return host == self.name

    def matches_address(self, address: IPAddress, port: int) -> bool:
        return (self.network is not None and self._port(port)
                and address.version == self.network.version and address in self.network)

    def _port(self, port: int) -> bool:
        return self.ports is None or port in self.ports

    def __str__(self) -> str:
        return f"{self.source} {self.text!r}"


def parse_rule(text: str, source: str) -> Rule:
    """One pattern; ValueError saying what is wrong with it. Without a port, an allow rule
    means the web's ports and a deny rule every port (a denied host stays denied)."""
    entry = text.strip()
    if not entry:
        raise ValueError("an empty pattern")
    host, ports = _split_port(entry)
    if ports == NO_PORT:
        ports = ANY_PORT if "deny" in source else WEB_PORTS
    network = _network(host)
    if network is not None:
        return Rule(entry, source, network=network, ports=ports)
    name = host.lower().rstrip(".")
    bare = name[2:] if name.startswith("*.") else name
    if (name != "*" or host != "*") and not NAME.fullmatch(bare):
        raise ValueError(f"{text!r} is not a host name, *.domain, an address or a network")
    return Rule(entry, source, name=name, ports=ports)


def _split_port(entry: str) -> tuple[str, tuple[int, ...] | None]:
    if entry.startswith("["):  # [v6] or [v6]:port
        host, sep, rest = entry[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{entry!r}: an IPv6 address in brackets, then :PORT")
        return host, _ports(rest[1:], entry) if rest else NO_PORT
    if entry.count(":") > 1:  # a bare IPv6 address or network: no port
        return entry, NO_PORT
    host, sep, port = entry.partition(":")
    return host, _ports(port, entry) if sep else NO_PORT


def _ports(text: str, entry: str) -> tuple[int, ...] | None:
    if text == "*":
        return ANY_PORT
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{entry!r}: the port must be 1-65535 or *")
    return (int(text),)


def _network(host: str) -> IPNetwork | None:
    try:
        return ipaddress.ip_network(host, strict=False)
    except ValueError:
        return None


def parse_rules(entries: Iterable[str], source: str) -> tuple[Rule, ...]:
    """Every pattern of a list; one ValueError naming each bad one."""
    rules, bad = [], []
    for entry in entries:
        try:
            rules.append(parse_rule(entry, source))
        except ValueError as exc:
            bad.append(str(exc))
    if bad:
        raise ValueError("; ".join(bad))
    return tuple(rules)


def split_list(text: str) -> list[str]:
    """``"a.example.org, b.example.org:8443"`` (commas or spaces) -> its patterns."""
    return [item for item in re.split(r"[\s,]+", text) if item]


def parse_identity_lists(text: str) -> dict[str, str]:
    """``"alice=pypi.internal:443 *.example.org;bob=api.example.com"`` -> {identity: list}."""
    lists: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        identity, sep, patterns = item.partition("=")
        if not sep or not identity.strip():
            raise ValueError(f"{item!r}: expected IDENTITY=PATTERNS, entries separated by ;")
        lists[identity.strip()] = patterns.strip()
    return lists


HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def parse_headers(text: str) -> list[tuple[str, str]]:
    """``"Authorization: Bearer x"`` (several on their own lines) -> [(name, value)]. The
    ValueError never quotes the text: it holds secrets."""
    headers = []
    for number, line in enumerate(filter(None, (raw.strip() for raw in text.splitlines())), 1):
        name, sep, value = line.partition(":")
        if not sep or not HEADER_NAME.fullmatch(name.strip()) or not value.strip() or any(
                ord(c) < 32 or ord(c) == 127 for c in value.strip()):
            raise ValueError(f"line {number} is not a 'Name: value' header")
        headers.append((name.strip(), value.strip()))
    if not headers:
        raise ValueError("no header")
    return headers


@dataclass(frozen=True)
class Policy:
    """What one thread may reach: the operator's lists for its identity, and, while a cell
    runs, that cell's own narrowing list (``None``: none)."""

    allow: tuple[Rule, ...] = ()
    deny: tuple[Rule, ...] = ()
    narrowing: tuple[Rule, ...] | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.allow)

    def narrowed(self, rules: tuple[Rule, ...] | None) -> Policy:
        return Policy(self.allow, self.deny, rules)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str  # the rule that decided, in words a user can act on
    rule: Rule | None = None


def normalize_host(host: str) -> str | None:
    """A requested host as rules compare it: lower case, IDNA, no trailing dot, an address in
    canonical form (IPv6 unbracketed). None when it is neither a name nor an address."""
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    address = as_address(host)
    if address is not None:
        return str(address)
    try:
        name = host.rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None
    return name if NAME.fullmatch(name) else None


def as_address(host: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
    return address


def check_name(policy: Policy, host: str, port: int) -> Decision:
    """May a connection to ``host:port`` be attempted? ``host`` is normalized."""
    where = f"{host}:{port}"
    address = as_address(host)

    def matches(rule: Rule) -> bool:
        if address is not None:
            return rule.matches_address(address, port)
        return rule.matches_name(host, port)

    if not policy.enabled:
        return Decision(False, "egress is off for this thread (egress_allow is empty)")
    for rule in policy.deny:
        if matches(rule):
            return Decision(False, f"{where} matches {rule}", rule)
    allowed = next((rule for rule in policy.allow if matches(rule)), None)
    if allowed is None:
        return Decision(False, f"{where} matches no rule of egress_allow"
                        + _port_hint(policy.allow, host, port, address))
    if policy.narrowing is not None:
        narrowed = next((rule for rule in policy.narrowing if matches(rule)), None)
        if narrowed is None:
            return Decision(False, f"{where} is not in this execution's egress_allow")
    return Decision(True, f"{where} matches {allowed}", allowed)


def _port_hint(rules: Sequence[Rule], host: str, port: int, address: IPAddress | None) -> str:
    """Names the ports that would be allowed when only the port is wrong."""
    ports = sorted({p for rule in rules if rule.ports is not None for p in rule.ports
                    if (rule.matches_address(address, p) if address is not None
                        else rule.matches_name(host, p))})
    return f" (port {port} is not listed; allowed: {', '.join(map(str, ports))})" if ports else ""


def check_address(policy: Policy, host: str, address: IPAddress, port: int) -> Decision:
    """May the connection for ``host`` go to ``address`` (from the proxy's resolver)?"""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for rule in policy.deny:
        if rule.matches_address(address, port):
            return Decision(False, f"{host} resolves to {address}, which matches {rule}", rule)
    if address.is_global and not address.is_multicast:
        return Decision(True, f"{address} is a public address")
    listed = next((rule for rule in policy.allow if rule.matches_address(address, port)), None)
    if listed is None:
        return Decision(False, f"{host} resolves to {address}, a private, loopback or link-local "
                        "address: refused unless egress_allow lists it as an address")
    return Decision(True, f"{address}:{port} matches {listed}", listed)


def identity_policy(allow: Sequence[str], deny: Sequence[str], identity: str,
                    identity_allow: dict[str, str], identity_deny: dict[str, str]) -> Policy:
    """The operator's policy for ``identity``: its own allow list replaces the global one when
    set; its deny list adds to the global one. The lists were validated with the settings."""
    if identity in identity_allow:
        allow_rules = parse_rules(split_list(identity_allow[identity]),
                                  f"egress_allow of identity {identity}")
    else:
        allow_rules = parse_rules(allow, "egress_allow")
    deny_rules = parse_rules(deny, "egress_deny")
    if identity in identity_deny:
        deny_rules += parse_rules(split_list(identity_deny[identity]),
                                  f"egress_deny of identity {identity}")
    return Policy(allow_rules, deny_rules)
