"""The one part of a proxied connection the gateway parses: its request head (pure).

A kernel's HTTP client sends the egress proxy ``CONNECT host:port`` (HTTPS, or any TLS: the
proxy never looks inside) or one plain-HTTP request with an absolute ``http://`` URL. Nothing
after the head is parsed: bytes are relayed. Refusals are answers whose reason phrase names
the rule, so the error an HTTP client raises says why.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import egress_policy

MAX_HEAD = 16 * 1024


class Refused(Exception):
    """A connection the proxy answers itself: HTTP status, the reason (naming the rule, put in
    the status line) and the outcome /metrics counts it under."""

    def __init__(self, status: int, reason: str, outcome: str = "refused") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.outcome = outcome


@dataclass
class HeadRequest:
    method: str
    host: str
    port: int
    path: str  # origin-form, for plain HTTP
    version: str
    headers: list[tuple[str, str]]

    def forwarded_head(self, added: list[tuple[str, str]] | None = None) -> bytes:
        """The request as the origin server gets it: origin-form, no proxy headers, one request
        per connection, and the checked host as its ``Host`` (another name in that header
        would reach a different site sharing the allowed server). ``added``: the operator's
        headers, which replace any of the same name the kernel sent."""
        added = added or []
        replaced = {name.lower() for name, _ in added}
        lines = [f"{self.method} {self.path} {self.version}"]
        host = f"[{self.host}]" if ":" in self.host else self.host
        lines.append(f"Host: {host}" if self.port == 80 else f"Host: {host}:{self.port}")
        for name, value in self.headers:
            if name.lower() not in ("host", "proxy-connection", "proxy-authorization",
                                    "connection", "keep-alive", *replaced):
                lines.append(f"{name}: {value}")
        lines += [f"{name}: {value}" for name, value in added]
        lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def parse_head(head: bytes) -> HeadRequest:
    """``CONNECT host:port`` or ``METHOD http://host[:port]/path``; Refused(400) otherwise."""
    try:
        text = head.decode("latin-1")
        request_line, *header_lines = text.split("\r\n")
        method, target, version = request_line.split(" ")
    except ValueError:
        raise Refused(400, "not an HTTP proxy request", "bad_request") from None
    if not version.startswith("HTTP/1."):
        raise Refused(400, "not an HTTP/1 proxy request", "bad_request")
    headers = []
    for line in header_lines:
        if line:
            name, sep, value = line.partition(":")
            if not sep:
                raise Refused(400, "malformed header line", "bad_request")
            headers.append((name.strip(), value.strip()))
    if method == "CONNECT":
        hostport, path = target, ""
    elif target.startswith("http://"):
        rest = target[len("http://"):]
        slash = rest.find("/")
        hostport, path = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
        hostport = hostport.rpartition("@")[2]  # user:password@ is not part of the host
    else:
        raise Refused(400, "only CONNECT and plain http:// URLs go through the egress proxy",
                      "bad_request")
    host, port = split_host_port(hostport, None if method == "CONNECT" else 80)
    return HeadRequest(method, host, port, path, version, headers)


def split_host_port(text: str, default: int | None) -> tuple[str, int]:
    if text.startswith("["):
        raw, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        raw, _, port_text = text.rpartition(":") if ":" in text else (text, "", "")
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise Refused(400, f"bad port in {text!r}", "bad_request")
        port = int(port_text)
    elif default is None:
        raise Refused(400, f"CONNECT needs host:port, got {text!r}", "bad_request")
    else:
        port = default
    host = egress_policy.normalize_host(raw)
    if host is None:
        raise Refused(400, f"bad host in {text!r}", "bad_request")
    return host, port


def refusal_response(refusal: Refused) -> bytes:
    """The reason phrase carries the rule: HTTP clients put it in the error they raise."""
    reason = " ".join(f"Egress refused: {refusal.reason}".split())
    body = (reason + "\n").encode("utf-8", "replace")
    return (f"HTTP/1.1 {refusal.status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode(
                "latin-1", "replace") + body
