"""Client tokens: stored only as SHA-256 digests, verified by hashing what a client presents.

The tokens setting maps ``sha256:<hex>`` -> identity. A clear token given in the settings is
hashed the moment the settings are built, so neither memory dumps of the settings, ``config
show`` nor a reload ever hold it. Tokens made by ``new_token`` carry 256 random bits: an unsalted
fast hash is enough for secrets that cannot be guessed (a salted slow hash only helps for
passwords people pick).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Mapping

from .signed_tokens import Access, is_signed, verify

PREFIX = "sha256:"
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def digest(token: str) -> str:
    """The stored form of a token: ``sha256:<hex>``."""
    return PREFIX + hashlib.sha256(token.encode()).hexdigest()


def is_digest(value: str) -> bool:
    return DIGEST.fullmatch(value) is not None


def stored_form(value: str) -> str:
    """A digest stays as it is; a clear token is hashed."""
    return value if is_digest(value) else digest(value)


def hashed_tokens(tokens: Mapping[str, str]) -> dict[str, str]:
    """{token or digest: identity} -> {digest: identity}."""
    return {stored_form(token): identity for token, identity in tokens.items()}


def identity_for(tokens: Mapping[str, str], presented: str | None) -> str | None:
    """The identity whose stored digest matches the presented token, or None.

    A dict lookup by digest is safe from timing attacks: its timing says something about the
    digest, and a digest does not lead back to a token."""
    if not presented:
        return None
    return tokens.get(digest(presented))


def access_for(tokens: Mapping[str, str], presented: str | None,
               signing_key: Callable[[], bytes]) -> Access | None:
    """What a presented token may do: a configured client token speaks for its identity's
    threads, a signed one (signed_tokens.py) for one identity until it expires, maybe for
    named threads only. The key is asked for only when a signed token is presented."""
    if is_signed(presented):
        access = verify(signing_key(), presented)  # type: ignore[arg-type]
        if access is not None:
            return access
    identity = identity_for(tokens, presented)
    return None if identity is None else Access(identity)


def matches(stored: str, presented: str | None) -> bool:
    """Does a single stored secret (clear or digest, e.g. the admin token) match?"""
    if not stored or not presented:
        return False
    return hmac.compare_digest(stored_form(stored), digest(presented))


def new_token() -> str:
    """A fresh client token: 256 random bits, URL-safe (it may go in ``?token=``)."""
    return secrets.token_urlsafe(32)


def config_line(identity: str, token: str) -> str:
    """The entry for the tokens setting that accepts ``token`` as ``identity``."""
    if not identity or ":" in identity or "," in identity:
        raise ValueError(f"bad identity {identity!r}: no ':' or ',' and not empty")
    return f"{identity}:{digest(token)}"
