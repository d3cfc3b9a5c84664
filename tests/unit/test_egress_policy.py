"""The egress policy's matching: names, ports, addresses, deny over allow, narrowing."""

import ipaddress

import pytest

from gateway.egress_policy import (
    Policy,
    check_address,
    check_name,
    identity_policy,
    normalize_host,
    parse_identity_lists,
    parse_rule,
    parse_rules,
)


def policy(allow=(), deny=(), narrowing=None) -> Policy:
    return Policy(parse_rules(allow, "egress_allow"), parse_rules(deny, "egress_deny"),
                  None if narrowing is None else parse_rules(narrowing, "the request's list"))


def ip(text):
    return ipaddress.ip_address(text)


def test_no_allow_list_refuses_everything():
    decision = check_name(Policy(), "pypi.org", 443)
    assert not decision.allowed and "egress is off" in decision.reason


def test_a_bare_name_allows_the_web_ports_only():
    p = policy(["pypi.org"])
    assert check_name(p, "pypi.org", 443).allowed
    assert check_name(p, "pypi.org", 80).allowed
    refused = check_name(p, "pypi.org", 22)
    assert not refused.allowed
    assert "port 22 is not listed; allowed: 80, 443" in refused.reason


def test_explicit_and_any_ports():
    p = policy(["mirror.internal:3141", "api.example.com:*"])
    assert check_name(p, "mirror.internal", 3141).allowed
    assert not check_name(p, "mirror.internal", 443).allowed
    assert check_name(p, "api.example.com", 8443).allowed


def test_wildcards_match_subdomains_only():
    p = policy(["*.example.org"])
    assert check_name(p, "a.example.org", 443).allowed
    assert check_name(p, "b.a.example.org", 443).allowed
    assert not check_name(p, "example.org", 443).allowed
    assert not check_name(p, "badexample.org", 443).allowed


def test_deny_wins_and_is_named():
    p = policy(["*.example.org"], deny=["secret.example.org"])
    refused = check_name(p, "secret.example.org", 8080)  # no port in a deny rule: every port
    assert not refused.allowed
    assert "egress_deny 'secret.example.org'" in refused.reason
    assert check_name(p, "public.example.org", 443).allowed


def test_narrowing_never_widens():
    p = policy(["pypi.org", "files.pythonhosted.org"], narrowing=["pypi.org", "evil.test"])
    assert check_name(p, "pypi.org", 443).allowed
    narrowed = check_name(p, "files.pythonhosted.org", 443)
    assert not narrowed.allowed and "this execution's egress_allow" in narrowed.reason
    assert not check_name(p, "evil.test", 443).allowed


def test_private_addresses_need_an_address_rule():
    p = policy(["pypi.test:8080", "127.0.0.1:8080"])
    assert check_address(p, "pypi.test", ip("127.0.0.1"), 8080).allowed
    assert not check_address(p, "pypi.test", ip("127.0.0.1"), 9090).allowed
    refused = check_address(p, "pypi.test", ip("10.1.2.3"), 8080)
    assert not refused.allowed and "10.1.2.3, a private" in refused.reason
    for private in ("169.254.169.254", "192.168.1.1", "::1", "fe80::1", "0.0.0.0",
                    "::ffff:127.0.0.1", "100.64.0.1"):
        assert not check_address(p, "x.test", ip(private), 443).allowed, private
    assert check_address(p, "pypi.org", ip("151.101.0.223"), 443).allowed


def test_networks_and_address_deny():
    p = policy(["*", "10.0.0.0/8:3141"], deny=["151.101.0.0/16"])
    assert check_address(p, "mirror", ip("10.9.8.7"), 3141).allowed
    assert not check_address(p, "mirror", ip("10.9.8.7"), 443).allowed
    denied = check_address(p, "pypi.org", ip("151.101.0.223"), 443)
    assert not denied.allowed and "egress_deny '151.101.0.0/16'" in denied.reason


def test_a_requested_address_matches_address_rules_only():
    p = policy(["pypi.org", "[fd00::1]:443"])
    assert check_name(p, "fd00::1", 443).allowed
    assert not check_name(p, "151.101.0.223", 443).allowed


@pytest.mark.parametrize("bad", ["", "exa mple.org", "host:0", "host:99999", "host:x",
                                 "[::1", "a..b", "*.", "**.example.org"])
def test_bad_patterns_are_refused(bad):
    with pytest.raises(ValueError):
        parse_rule(bad, "egress_allow")


def test_normalize_host():
    assert normalize_host("PyPI.org.") == "pypi.org"
    assert normalize_host("[::1]") == "::1"
    assert normalize_host("bücher.example") == "xn--bcher-kva.example"
    assert normalize_host("bad host") is None


def test_identity_lists():
    lists = parse_identity_lists("alice=a.example.org b.example.org:8443; bob=")
    assert lists == {"alice": "a.example.org b.example.org:8443", "bob": ""}
    with pytest.raises(ValueError):
        parse_identity_lists("alice")
    alice = identity_policy(["pypi.org"], ["x.test"], "alice", lists,
                            {"alice": "b.example.org:443"})
    assert check_name(alice, "b.example.org", 8443).allowed
    assert not check_name(alice, "pypi.org", 443).allowed  # her list replaces the global one
    assert not check_name(alice, "b.example.org", 443).allowed  # her deny adds to the global
    carol = identity_policy(["pypi.org"], [], "carol", lists, {})
    assert check_name(carol, "pypi.org", 443).allowed
    bob = identity_policy(["pypi.org"], [], "bob", lists, {})
    assert not bob.enabled
