"""Exposing the gateway: origin checks at the handshake, the refusal to serve clear text beyond
loopback, tokens rotated by SIGHUP in a real ``gateway serve``, and no token in any log line.

The pure half; the gateway half is tests/kernel/test_exposure.py."""

from __future__ import annotations

import pytest

from gateway import auth
from gateway.config import Settings
from gateway.net import tls

# -- secure by default -------------------------------------------------------------------------


def test_what_lifts_the_refusal():
    assert not tls.is_loopback("0.0.0.0") and not tls.is_loopback("::")
    assert tls.is_loopback("127.0.0.1") and tls.is_loopback("::1")
    assert tls.is_loopback("localhost") and tls.is_loopback("127.0.0.53")
    with pytest.raises(tls.InsecureExposure):
        tls.check_exposure(Settings(host="0.0.0.0"))
    tls.check_exposure(Settings(host="0.0.0.0", insecure_http=True))
    tls.check_exposure(Settings(host="0.0.0.0", tls_cert="c.pem", tls_key="k.pem"))
    tls.check_exposure(Settings(host="127.0.0.1"))
    with pytest.raises(ValueError, match="go together"):
        tls.check_exposure(Settings(tls_cert="c.pem"))


# -- rotation by SIGHUP in a real `gateway serve`, logs captured at DEBUG ------------------------


def test_argv_without_the_token_option():
    from gateway.net import hidden_tokens

    args = ["serve", "--token", "a:T", "--port", "1", "--token=b:U", "--host", "h"]
    assert hidden_tokens.without_token_option(args) == ["serve", "--port", "1", "--host", "h"]
    spec = hidden_tokens.hashed_spec("a:T,b:" + auth.digest("U"))
    assert spec == f"a:{auth.digest('T')},b:{auth.digest('U')}"
    assert hidden_tokens.has_clear_token("a:T") and not hidden_tokens.has_clear_token(spec)
