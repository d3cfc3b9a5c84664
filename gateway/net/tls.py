"""TLS for the gateway's listeners, and the refusal to serve tokens in clear text on a network.

One ``ssl.SSLContext`` serves the websocket/HTTP port and the upload port alike. ``reload``
loads a renewed certificate into that same context: handshakes after it use the new one,
connections already open keep theirs (nothing is dropped).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl

from ..config import Settings

log = logging.getLogger(__name__)


class InsecureExposure(Exception):
    """The gateway would serve tokens in clear text on a non-loopback address."""


def enabled(settings: Settings) -> bool:
    return bool(settings.tls_cert)


def check_settings(settings: Settings) -> None:
    """Both halves of the key pair or neither; a client CA needs a certificate."""
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise ValueError("tls_cert and tls_key go together: set both (PEM files) or neither")
    if settings.tls_client_ca and not settings.tls_cert:
        raise ValueError("tls_client_ca (mutual TLS) needs tls_cert and tls_key")


def server_context(settings: Settings) -> ssl.SSLContext | None:
    """A server context from the PEM files in the settings, or None without TLS."""
    check_settings(settings)
    if not enabled(settings):
        return None
    # A bare server context trusts no CA but tls_client_ca: a client certificate from a public
    # (system) CA must not pass (tested).
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load(context, settings)
    return context


def _load(context: ssl.SSLContext, settings: Settings) -> None:
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    if settings.tls_client_ca:
        context.load_verify_locations(cafile=settings.tls_client_ca)
        context.verify_mode = ssl.CERT_REQUIRED


def reload(context: ssl.SSLContext, settings: Settings) -> None:
    """Load renewed PEM files into the live context.

    They are tried on a scratch context first: loading a certificate whose key does not match
    straight into the live one would leave it with the new certificate and the old key, and
    every later handshake would fail. (Client CAs are added; OpenSSL cannot remove one from a
    live context, so removing a CA needs a restart.)"""
    if server_context(settings) is None:
        raise ValueError("TLS cannot be turned off by a reload; restart the gateway")
    _load(context, settings)


def is_loopback(host: str) -> bool:
    """Does binding to ``host`` keep the listener on this machine? A name is resolved (locally,
    like the bind will) and every address it gives must be loopback."""
    if host in ("", "0.0.0.0", "::"):
        return False
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    # typeshed allows (int, bytes) addresses, of unknown families; a TCP lookup gives inet ones.
    return bool(infos) and all(
        ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback  # type: ignore[union-attr]
        for info in infos)


def check_exposure(settings: Settings) -> None:
    """Refuse to listen in clear text beyond loopback unless the operator said so."""
    check_settings(settings)
    if enabled(settings) or settings.insecure_http or is_loopback(settings.host):
        return
    raise InsecureExposure(
        f"refusing to serve on {settings.host!r} without TLS: tokens and code would cross the "
        "network in clear text. Either give the gateway a certificate (--tls-cert FILE "
        "--tls-key FILE, PEM), or put a TLS-terminating proxy in front (see 'Exposing the "
        "gateway' in the documentation) and start with --insecure-http, or bind to 127.0.0.1.")


def schemes(settings: Settings) -> tuple[str, str]:
    """(http scheme, websocket scheme) of the listeners."""
    return ("https", "wss") if enabled(settings) else ("http", "ws")
