"""Signed short-lived tokens (gateway/signed_tokens.py): what they grant, and every way one is
refused alike (expired, tampered, another key, malformed)."""

from __future__ import annotations

import base64
import json
import os

import pytest

from gateway import auth, signed_tokens
from gateway.config import Settings
from gateway.signed_tokens import Access, mint, verify

KEY = b"k" * 32
NOW = 1_800_000_000.0


def test_a_token_grants_one_identity_until_it_expires() -> None:
    token = mint(KEY, "alice", 900, now=NOW)
    assert token.startswith("gw1.")
    access = verify(KEY, token, now=NOW + 899)
    assert access == Access("alice", None, NOW + 900)
    assert access.signed and access.allows("any-thread")
    assert verify(KEY, token, now=NOW + 900) is None, "expired"
    assert verify(b"x" * 32, token, now=NOW) is None, "another key (rotation)"
    assert verify(b"", token, now=NOW) is None


def test_named_threads_limit_the_token() -> None:
    access = verify(KEY, mint(KEY, "alice", 60, ["t2", "t1", "t1"], now=NOW), now=NOW)
    assert access is not None and access.threads == frozenset({"t1", "t2"})
    assert access.allows("t1") and not access.allows("t3")


def test_tampering_is_refused() -> None:
    token = mint(KEY, "alice", 60, ["t1"], now=NOW)
    payload, signature = token[4:].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    for change in ({"sub": "bob"}, {"exp": claims["exp"] + 10**6}, {"threads": ["t1", "t9"]}):
        forged = base64.urlsafe_b64encode(json.dumps({**claims, **change}).encode())
        assert verify(KEY, f"gw1.{forged.decode().rstrip('=')}.{signature}", now=NOW) is None
    for broken in (token[:-2], token + "x", "gw1." + payload, "gw1..", "gw1", "", token[4:]):
        assert verify(KEY, broken, now=NOW) is None, broken


def test_a_validly_signed_but_malformed_payload_is_refused() -> None:
    for claims in ({"sub": 1, "exp": NOW + 60}, {"sub": "a"}, {"sub": "a", "exp": "soon"},
                   {"sub": "a", "exp": int(NOW) + 60, "threads": "t1"}, [1]):
        payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
        assert verify(KEY, f"gw1.{payload}.{signed_tokens._sign(KEY, payload)}", now=NOW) is None


@pytest.mark.parametrize(("identity", "ttl", "threads"), [
    ("", 60, ()), ("a:b", 60, ()), ("a/b", 60, ()), ("alice", 0, ()), ("alice", -5, ()),
    ("alice", 2 * 86400, ()), ("alice", 60, ["../x"]), ("alice", 60, [f"t{i}" for i in range(65)]),
])
def test_mint_refuses_bad_requests(identity: str, ttl: float, threads: list[str]) -> None:
    with pytest.raises(ValueError):
        mint(KEY, identity, ttl, threads)


def test_the_key_file_is_made_once_private_and_rotation_replaces_it(tmp_path) -> None:
    assert signed_tokens.load_key(tmp_path, create=False) == b""
    key = signed_tokens.load_key(tmp_path)
    assert len(key) == 32 and signed_tokens.load_key(tmp_path) == key
    assert os.stat(signed_tokens.key_file(tmp_path)).st_mode & 0o777 == 0o600
    token = mint(key, "alice", 60)
    assert verify(signed_tokens.load_key(tmp_path), token)
    signed_tokens.rotate_key(tmp_path)
    assert verify(signed_tokens.load_key(tmp_path), token) is None
    assert signed_tokens.signing_key("from-settings", tmp_path) != signed_tokens.load_key(tmp_path)


def test_auth_takes_both_kinds_and_asks_for_the_key_only_for_signed_ones() -> None:
    tokens = Settings(tokens={"plain-token": "bob"}).tokens
    asked = []

    def key() -> bytes:
        asked.append(1)
        return KEY

    assert auth.access_for(tokens, "plain-token", key) == Access("bob")
    assert not asked
    assert auth.access_for(tokens, mint(KEY, "alice", 60), key).identity == "alice"  # type: ignore[union-attr]
    assert auth.access_for(tokens, "gw1.nope.nope", key) is None
    assert auth.access_for(tokens, None, key) is None


def test_settings_mask_the_signing_key() -> None:
    settings = Settings(token_signing_key="very-secret")
    assert settings.masked()["token_signing_key"] == "***"
    assert Settings().masked()["token_signing_key"] == ""


def test_a_signed_token_is_redacted_wherever_it_stands() -> None:
    from gateway.ops.redact import redact

    token = mint(KEY, "alice", 60, ["t1"])
    for line in (f"GET /files/x?token={token}", f"oops {token} in a message",
                 f"path /threads/{token}/notebook", f"Authorization: Bearer {token}"):
        assert token not in redact(line) and "[redacted]" in redact(line), line
    assert redact("gw1.txt is a file name") == "gw1.txt is a file name"


def test_the_cli_mints_with_the_data_dirs_key_and_rotates_it(tmp_path) -> None:
    from typer.testing import CliRunner

    from gateway.cli.main import app

    runner = CliRunner()
    minted = runner.invoke(app, ["token", "mint", "--identity", "alice", "--thread", "t1",
                                 "--ttl", "15m", "--data-dir", str(tmp_path)])
    assert minted.exit_code == 0, minted.output
    token = minted.output.strip()
    access = verify(signed_tokens.load_key(tmp_path), token)
    assert access is not None and access.identity == "alice" and access.threads == {"t1"}
    assert runner.invoke(app, ["token", "rotate", "--data-dir", str(tmp_path)]).exit_code == 0
    assert verify(signed_tokens.load_key(tmp_path), token) is None
    refused = runner.invoke(app, ["token", "mint", "--identity", "alice", "--ttl", "3d",
                                  "--data-dir", str(tmp_path)])
    assert refused.exit_code != 0 and "ttl" in refused.output
