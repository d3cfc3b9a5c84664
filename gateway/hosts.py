"""Which ``Host`` headers the gateway answers (DNS rebinding).

A page on ``evil.example`` can make its name resolve to 127.0.0.1 a moment after the browser
loaded it: the browser then sends that page's requests to the gateway on loopback, as same-origin
requests for ``evil.example``, so neither the origin check nor CORS stops them. The ``Host``
header still says ``evil.example``. Like Jupyter Server (``allow_remote_access`` off when it
listens on loopback), a gateway listening on a loopback address answers only requests whose Host
is a local name or address (``localhost``, 127.0.0.0/8, ``[::1]``), plus the names in
``allowed_hosts`` (``*``: any) and the gateway's own ``public_url`` and ``advertise_url``. On
any other address the check is off unless ``allowed_hosts`` is set (a TLS proxy or a private
network decides which names reach it). No I/O here: whether the listener is on loopback is the
caller's to find out (``gateway.tls.is_loopback``).
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import Settings

REFUSAL_STATUS = 421  # Misdirected Request: this server does not answer for that name
REFUSAL = {"error": "host not allowed: add the name clients use for the gateway to the "
                    "allowed_hosts setting"}
LOCAL_NAMES = frozenset({"localhost"})
# What a DNS name may hold once IDNA-encoded (underscores: some internal names have them).
NAME = re.compile(r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)*")
PORT = re.compile(r"[0-9]{1,5}")


def normalize(value: str) -> str | None:
    """The host of a ``Host`` header (or of an ``allowed_hosts`` entry) without its port, in
    the form names are compared in: lower case, IDNA (punycode), no trailing dot; an IP
    address in its canonical form, IPv6 without brackets. None when malformed."""
    value = value.strip()
    if value.startswith("["):
        address, sep, rest = value[1:].partition("]")
        if not sep or (rest and not (rest.startswith(":") and PORT.fullmatch(rest[1:]))):
            return None
        return _ipv6(address)
    if value.count(":") > 1:  # bare IPv6 (an entry such as ::1; a Host header brackets it)
        return _ipv6(value)
    host, sep, port = value.partition(":")
    if sep and not PORT.fullmatch(port):
        return None
    host = host[:-1] if host.endswith(".") else host
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    try:
        name = host.encode("idna").decode("ascii").lower()
    except UnicodeError:  # an empty or overlong label, or characters IDNA refuses
        return None
    return name if NAME.fullmatch(name) else None


def _ipv6(text: str) -> str | None:
    try:
        return str(ipaddress.IPv6Address(text))
    except ValueError:
        return None


def is_local(host: str) -> bool:
    """Is this normalized host a name or address of this machine's loopback?"""
    if host in LOCAL_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def parse_list(spec: str | Iterable[str]) -> tuple[str, ...]:
    """``"gw.example.com, 10.0.0.5"`` (or a list) -> a tuple of entries; a malformed entry is
    an error at start-up rather than a silent refusal later."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    entries = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        if item != "*" and (normalize(item) is None or _has_port(item)):
            raise ValueError(f"bad host {item!r} in allowed_hosts: expected a host name or an "
                             "IP address without scheme, path or port, or *")
        entries.append(item)
    return tuple(entries)


def _has_port(entry: str) -> bool:
    if entry.startswith("["):
        return not entry.endswith("]")
    return entry.count(":") == 1


def host_of_url(url: str) -> str | None:
    """The normalized host of a URL setting (``public_url``, ``advertise_url``), if any."""
    try:
        host = urllib.parse.urlsplit(url.strip()).hostname
    except ValueError:
        return None
    return normalize(host) if host else None


def allowed(host_headers: Sequence[str], allowed_hosts: Iterable[str], *, loopback: bool,
            own_hosts: Iterable[str] = ()) -> bool:
    """May a request with these ``Host`` header values be answered? ``loopback``: the gateway
    listens on a loopback address; ``own_hosts``: the hosts of its ``public_url`` and
    ``advertise_url`` (names the operator gave it, never an attacker's)."""
    entries = tuple(allowed_hosts)
    if "*" in entries or (not loopback and not entries):
        return True
    if not host_headers:
        # HTTP/1.0 without Host: a local tool (curl -0, a health checker). Browsers always
        # send Host, and a rebinding attack needs a browser, so nothing is lost by answering.
        return True
    if len(host_headers) > 1:
        return False  # which one would a proxy have routed by? Answer none.
    host = normalize(host_headers[0])
    if host is None:
        return False
    return is_local(host) or host in {normalize(entry) for entry in (*entries, *own_hosts)}


def own_hosts(*urls: str) -> tuple[str, ...]:
    """The normalized hosts of the gateway's own URL settings that are set."""
    return tuple(host for host in map(host_of_url, filter(None, urls)) if host is not None)


def request_allowed(host_headers: Sequence[str], settings: Settings, *, loopback: bool) -> bool:
    """``allowed`` with the settings of a running gateway (read per request: a reload may
    change ``allowed_hosts``)."""
    return allowed(host_headers, settings.allowed_hosts, loopback=loopback,
                   own_hosts=own_hosts(settings.public_url, settings.advertise_url))
