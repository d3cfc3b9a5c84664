"""The Host check against DNS rebinding: the pure rules, then every kind of request to a real
gateway on 127.0.0.1 (websocket and admin handshakes, the small GETs websockets answers, and
the HTTP handler's downloads, uploads and notebooks).

The pure half; the gateway half is tests/kernel/test_hosts_server.py."""

from __future__ import annotations

import pytest

from gateway import hosts
from gateway.config import Settings

# -- pure rules ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "normalized"), [
    ("localhost", "localhost"),
    ("LocalHost:8765", "localhost"),
    ("localhost.:8765", "localhost"),
    ("127.0.0.1:8765", "127.0.0.1"),
    ("127.1.2.3", "127.1.2.3"),
    ("[::1]:8765", "::1"),
    ("[0:0:0:0:0:0:0:1]", "::1"),
    ("::1", "::1"),  # an allowed_hosts entry may leave out the brackets
    ("GW.Example.COM.", "gw.example.com"),
    ("bücher.example", "xn--bcher-kva.example"),
    ("xn--bcher-kva.example:443", "xn--bcher-kva.example"),
    ("", None),
    (":8765", None),
    ("evil.example:", None),
    ("evil.example:http", None),
    ("[::1", None),
    ("[::1]x", None),
    ("[evil.example]:80", None),
    ("user@evil.example", None),
    ("evil.example/path", None),
    ("evil example", None),
    ("a..example", None),
    ("-a.example", None),
    ("127.0.0.1:8765, evil.example", None),
])
def test_normalize(value, normalized):
    assert hosts.normalize(value) == normalized


@pytest.mark.parametrize("host", ["localhost:8765", "127.0.0.1:8765", "127.0.0.1", "127.9.9.9:1",
                                  "[::1]:8765", "[::ffff:127.0.0.1]:8765", "LOCALHOST",
                                  "localhost.:8765"])
def test_loopback_listener_answers_local_names(host):
    assert hosts.allowed([host], (), loopback=True)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8765", "localhost.evil.example",
                                  "127.0.0.1.evil.example", "10.0.0.5:8765", "[::2]:8765",
                                  "0.0.0.0:8765", "[::]:8765", "", "localhost:x",
                                  "127.0.0.1:8765 evil.example"])
def test_loopback_listener_refuses_other_names(host):
    assert not hosts.allowed([host], (), loopback=True)


def test_several_host_headers_are_refused():
    assert not hosts.allowed(["127.0.0.1:1", "evil.example"], (), loopback=True)
    assert not hosts.allowed(["127.0.0.1:1", "127.0.0.1:1"], ("gw.example",), loopback=False)


def test_no_host_header_is_a_local_tool_not_a_browser():
    assert hosts.allowed([], (), loopback=True)
    assert hosts.allowed([], ("gw.example",), loopback=False)


def test_allowed_hosts_add_names_case_insensitively_without_port():
    entries = hosts.parse_list("gw.example, Bücher.Example., 10.0.0.5, [fd00::1]")
    for host in ("gw.example:8765", "GW.EXAMPLE", "gw.example.", "xn--bcher-kva.example:1",
                 "10.0.0.5:80", "[fd00::1]:8765", "localhost:8765"):
        assert hosts.allowed([host], entries, loopback=True), host
    for host in ("evil.example", "gw.example.evil.example", "sub.gw.example", "10.0.0.6"):
        assert not hosts.allowed([host], entries, loopback=True), host


def test_star_allows_any_host():
    assert hosts.allowed(["evil.example"], ("*",), loopback=True)
    assert hosts.allowed(["evil.example"], ("*",), loopback=False)


def test_beyond_loopback_the_check_is_off_unless_allowed_hosts_is_set():
    assert hosts.allowed(["anything.example:8765"], (), loopback=False)
    assert hosts.allowed(["10.0.0.5"], (), loopback=False, own_hosts=("gw.example",))
    assert not hosts.allowed(["anything.example"], ("gw.example",), loopback=False)
    assert hosts.allowed(["gw.example:443"], ("gw.example",), loopback=False)
    # Local names stay accepted: a rebinding page can only send its own name.
    assert hosts.allowed(["127.0.0.1:8765"], ("gw.example",), loopback=False)


def test_the_gateways_own_urls_name_it():
    own = hosts.own_hosts("https://GW.example.com/", "", "ws://10.0.0.5:8765", "not a url")
    assert own == ("gw.example.com", "10.0.0.5")
    assert hosts.allowed(["gw.example.com"], (), loopback=True, own_hosts=own)
    assert hosts.allowed(["10.0.0.5:8765"], ("other.example",), loopback=False, own_hosts=own)
    assert not hosts.allowed(["evil.example"], (), loopback=True, own_hosts=own)


@pytest.mark.parametrize("bad", ["https://gw.example", "gw.example:443", "[::1]:8765",
                                 "gw.example/path", "gw example", "a..example"])
def test_malformed_entries_are_refused_at_start(bad):
    with pytest.raises(ValueError, match="allowed_hosts"):
        hosts.parse_list(bad)
    with pytest.raises(ValueError, match="allowed_hosts"):
        Settings(allowed_hosts=(bad,))


def test_settings_take_a_comma_separated_list():
    from gateway import config

    settings = config.from_environment(
        {"GATEWAY_ALLOWED_HOSTS": "gw.example, 10.0.0.5"})
    assert settings.allowed_hosts == ("gw.example", "10.0.0.5")


