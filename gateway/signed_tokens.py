"""Short-lived tokens a backend may hand to a browser: signed, scoped, nothing stored.

A signed token is ``gw1.<payload>.<signature>``: the payload (base64url JSON) names one
identity, optionally the only threads it may touch, and when it expires; the signature is
HMAC-SHA256 over the payload with the gateway's signing key. Nothing about a token is kept, so a
token cannot be revoked alone: rotating the key invalidates every token signed with it. The key
is the ``token_signing_key`` setting, or (when unset) 32 random bytes in ``DATA_DIR/token-signing-
key``, created on first use and re-read when the file changes (``gateway token rotate``).

Why not JWT: one algorithm and three fields need neither a dependency nor ``alg`` negotiation,
the usual source of JWT mistakes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PREFIX = "gw1."
KEY_FILE = "token-signing-key"
MAX_TTL = 24 * 3600.0  # a browser token is short-lived by design: a day at most
MAX_THREADS = 64
# The protocol's thread ids (wire/protocol.py's ID_PATTERN; auth sits below the wire layer).
THREAD_ID = re.compile(r"(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}")


@dataclass(frozen=True, slots=True)
class Access:
    """Who a token speaks for, and the threads it may touch (None: all of the identity's)."""

    identity: str
    threads: frozenset[str] | None = None
    expires: float | None = None

    @property
    def signed(self) -> bool:
        """A signed token (it expires); a configured client token does not."""
        return self.expires is not None

    def allows(self, thread_id: str) -> bool:
        return self.threads is None or thread_id in self.threads


def is_signed(token: str | None) -> bool:
    return bool(token) and token.startswith(PREFIX)  # type: ignore[union-attr]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(key: bytes, payload: str) -> str:
    return _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())


def mint(key: bytes, identity: str, ttl: float, threads: Iterable[str] = (),
         now: float | None = None) -> str:
    """A token for ``identity``, valid ``ttl`` seconds, for ``threads`` only if any are named."""
    if not identity or ":" in identity or "," in identity or "/" in identity:
        raise ValueError(f"bad identity {identity!r}: not empty, no ':', ',' or '/'")
    if not 0 < ttl <= MAX_TTL:
        raise ValueError(f"ttl must be more than 0 and at most {MAX_TTL:.0f} s, got {ttl:g}")
    names = sorted(set(threads))
    if len(names) > MAX_THREADS:
        raise ValueError(f"at most {MAX_THREADS} threads per token")
    for name in names:
        if not THREAD_ID.fullmatch(name):
            raise ValueError(f"bad thread id {name[:80]!r}")
    claims: dict[str, object] = {"sub": identity, "exp": int((now or time.time()) + ttl)}
    if names:
        claims["threads"] = names
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    return f"{PREFIX}{payload}.{_sign(key, payload)}"


def verify(key: bytes, token: str, now: float | None = None) -> Access | None:
    """The token's access, or None when it is malformed, tampered with, signed with another
    key or expired (one answer for all: the caller says 401 alike)."""
    if not is_signed(token) or not key:
        return None
    payload, _, signature = token[len(PREFIX):].partition(".")
    if not hmac.compare_digest(_sign(key, payload), signature):
        return None
    try:
        claims = json.loads(_unb64(payload))
        identity, expires = claims["sub"], claims["exp"]
        threads = claims.get("threads")
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    if not isinstance(identity, str) or not isinstance(expires, int):
        return None
    if expires <= (now or time.time()):
        return None
    if threads is not None and not (isinstance(threads, list)
                                    and all(isinstance(t, str) for t in threads)):
        return None
    return Access(identity, None if threads is None else frozenset(threads), float(expires))


_cache: dict[Path, tuple[int, bytes]] = {}


def key_file(data_dir: Path) -> Path:
    return Path(data_dir) / KEY_FILE


def load_key(data_dir: Path, *, create: bool = True) -> bytes:
    """The data dir's signing key (made on first use); re-read only when the file changed."""
    path = key_file(data_dir)
    try:
        changed = path.stat().st_mtime_ns
    except FileNotFoundError:
        if not create:
            return b""
        return rotate_key(data_dir)
    cached = _cache.get(path)
    if cached is None or cached[0] != changed:
        cached = (changed, bytes.fromhex(path.read_text().strip()))
        _cache[path] = cached
    return cached[1]


def rotate_key(data_dir: Path) -> bytes:
    """Write a new key (atomically, owner-only): every token signed before is invalid at once."""
    path = key_file(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    temporary = path.with_name(f".{KEY_FILE}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key.hex() + "\n")
    os.replace(temporary, path)
    _cache.pop(path, None)
    return key


def signing_key(setting: str, data_dir: Path) -> bytes:
    """The key in force: the ``token_signing_key`` setting if set, else the data dir's file."""
    return hashlib.sha256(setting.encode()).digest() if setting else load_key(data_dir)
