"""Tokens stored as hashes: hashing, verification, and the settings never holding a clear one."""

from __future__ import annotations

import hashlib

import pytest

from gateway import auth, config
from gateway.config import Settings


def test_digest_is_sha256_hex():
    assert auth.digest("T1") == "sha256:" + hashlib.sha256(b"T1").hexdigest()
    assert auth.is_digest(auth.digest("x"))
    assert not auth.is_digest("sha256:abc") and not auth.is_digest("T1")


def test_settings_hash_clear_tokens_and_keep_digests():
    hashed = auth.digest("T2")
    settings = Settings(tokens={"T1": "alice", hashed: "bob"}, admin_token="adm")
    assert settings.tokens == {auth.digest("T1"): "alice", hashed: "bob"}
    assert settings.admin_token == auth.digest("adm")
    text = repr(settings) + repr(settings.masked())
    assert "T1" not in text.replace(auth.digest("T1"), "") and "'adm'" not in text
    again = Settings(tokens=settings.tokens, admin_token=settings.admin_token)
    assert again.tokens == settings.tokens, "hashing is idempotent (reloads, replace())"
    assert again.admin_token == settings.admin_token


def test_spec_with_digests_parses_to_identities():
    line = auth.config_line("alice", "secret-token")
    tokens = config.coerce("tokens", f"{line},bob:plain")
    settings = Settings(tokens=tokens)
    assert auth.identity_for(settings.tokens, "secret-token") == "alice"
    assert auth.identity_for(settings.tokens, "plain") == "bob"
    assert auth.identity_for(settings.tokens, line.split(":", 1)[1]) is None, \
        "the digest itself is not a token"
    assert auth.identity_for(settings.tokens, "") is None
    assert auth.identity_for(settings.tokens, None) is None


def test_admin_token_matches_clear_or_hashed():
    assert auth.matches(auth.digest("adm"), "adm")
    assert auth.matches("adm", "adm")
    assert not auth.matches(auth.digest("adm"), "other")
    assert not auth.matches("", "adm") and not auth.matches("adm", None)


def test_new_tokens_are_long_random_and_url_safe():
    tokens = {auth.new_token() for _ in range(50)}
    assert len(tokens) == 50
    assert all(len(t) >= 43 and t.replace("-", "").replace("_", "").isalnum() for t in tokens)


@pytest.mark.parametrize("identity", ["", "a:b", "a,b"])
def test_config_line_refuses_ambiguous_identities(identity):
    with pytest.raises(ValueError):
        auth.config_line(identity, "t")


def test_toml_file_with_hashed_tokens(tmp_path):
    line = auth.config_line("alice", "tok")
    path = tmp_path / "gateway.toml"
    path.write_text(f'tokens = "{line}"\nadmin_token = "{auth.digest("adm")}"\n'
                    'allowed_origins = ["https://app.example.com"]\n')
    settings = config.from_environment(environ={}, config_file=path)
    assert auth.identity_for(settings.tokens, "tok") == "alice"
    assert auth.matches(settings.admin_token, "adm")
    assert settings.allowed_origins == ("https://app.example.com",)


def test_a_bad_tokens_entry_is_reported_without_quoting_it():
    with pytest.raises(ValueError) as refused:
        config.parse_tokens("alice:ok,:clear-secret-1")
    assert "entry 2" in str(refused.value) and "clear-secret-1" not in str(refused.value)
