"""Egress settings, the execute request's egress_allow, and the proxy's request heads (pure)."""

from pathlib import Path

import pytest

from gateway import config
from gateway.config import Settings
from gateway.errors import ProtocolError, SettingsError
from gateway.sandbox.egress_head import Refused, parse_head, refusal_response
from gateway.sandbox.egress_proxy import egress_environment
from gateway.wire.protocol import Execute, parse_request


def problems(**values) -> dict[str, str]:
    with pytest.raises(SettingsError) as caught:
        Settings(**values)
    return dict(caught.value.problems)


def test_egress_is_off_by_default_and_sets_nothing_in_kernels():
    settings = Settings()
    assert not settings.egress
    assert egress_environment(settings, Path("/run/k1")) == {}


def test_egress_on_gives_kernels_the_forwarder_settings():
    settings = Settings(egress_allow=("pypi.org",), egress_pip_index="https://pypi.org/simple/")
    assert settings.egress
    env = egress_environment(settings, Path("/run/k1"))
    assert env == {"KERNEL_EGRESS_SOCKET": "/run/k1/egress.sock", "KERNEL_EGRESS_PORT": "3128",
                   "KERNEL_EGRESS_PIP_INDEX": "https://pypi.org/simple/"}
    # One identity's list is enough for kernels to need the forwarder.
    assert Settings(identity_egress_allow={"ci": "pypi.org"}).egress
    assert not Settings(identity_egress_allow={"guest": ""}).egress


def test_egress_is_refused_with_the_gvisor_sandbox():
    found = problems(sandbox="gvisor", egress_allow=("pypi.org",))
    assert "sandbox = bwrap" in found["egress_allow"]
    found = problems(sandbox="gvisor", identity_egress_allow={"ci": "pypi.org"})
    assert "gVisor sandbox cannot connect" in found["egress_allow"]


def test_bad_patterns_are_refused_by_setting_and_identity():
    found = problems(egress_allow=("pypi.org", "bad host"), egress_deny=("x:99999",),
                     identity_egress_allow={"alice": "ok.org [::1"},
                     egress_pip_index="ftp://mirror")
    assert "'bad host' is not a host name" in found["egress_allow"]
    assert "the port must be 1-65535" in found["egress_deny"]
    assert found["identity_egress_allow"].startswith("identity alice: ")
    assert "egress_pip_index" in found


def test_egress_settings_from_text():
    settings = config.from_environment(environ={
        "GATEWAY_EGRESS_ALLOW": "pypi.org, *.example.org:8443",
        "GATEWAY_IDENTITY_EGRESS_ALLOW": "alice=a.example.org b.example.org;bob=",
        "GATEWAY_EGRESS_BYTES_PER_THREAD": "100MiB"})
    assert settings.egress_allow == ("pypi.org", "*.example.org:8443")
    assert settings.identity_egress_allow == {"alice": "a.example.org b.example.org", "bob": ""}
    assert settings.egress_bytes_per_thread == 100 * 2**20
    with pytest.raises(SettingsError, match="IDENTITY=PATTERNS"):
        config.from_environment(environ={"GATEWAY_IDENTITY_EGRESS_DENY": "alice"})


def test_execute_egress_allow():
    request = parse_request(b'{"type": "execute", "thread_id": "t", "call_id": "c", '
                            b'"code": "1", "egress_allow": ["pypi.org", "*.example.org:*"]}')
    assert isinstance(request, Execute)
    assert [rule.text for rule in request.egress_rules()] == ["pypi.org", "*.example.org:*"]
    assert Execute("t", "c", "1").egress_rules() is None
    for bad, words in (('"pypi.org"', "expected a list"), ('["a b"]', "is not a host name"),
                       ("[1]", "must be a string"),
                       ("[" + ",".join(['"a.org"'] * 65) + "]", "at most 64")):
        with pytest.raises(ProtocolError, match=words):
            parse_request(f'{{"type": "execute", "thread_id": "t", "call_id": "c", '
                          f'"egress_allow": {bad}}}')


def test_connect_and_plain_http_heads():
    connect = parse_head(b"CONNECT PyPI.org:443 HTTP/1.1\r\nHost: pypi.org:443\r\n\r\n")
    assert (connect.method, connect.host, connect.port) == ("CONNECT", "pypi.org", 443)
    plain = parse_head(b"GET http://user:pw@api.test/v1/x?y=1 HTTP/1.1\r\nHost: other.test\r\n"
                       b"Proxy-Authorization: Basic xx\r\nConnection: keep-alive\r\n\r\n")
    assert (plain.host, plain.port, plain.path) == ("api.test", 80, "/v1/x?y=1")
    forwarded = plain.forwarded_head()
    assert forwarded.startswith(b"GET /v1/x?y=1 HTTP/1.1\r\nHost: api.test\r\n")
    assert b"Proxy-Authorization" not in forwarded and b"keep-alive" not in forwarded
    assert b"other.test" not in forwarded  # the checked host, never another name
    assert parse_head(b"GET http://api.test:8080/ HTTP/1.0\r\n\r\n").forwarded_head() == (
        b"GET / HTTP/1.0\r\nHost: api.test:8080\r\nConnection: close\r\n\r\n")
    assert forwarded.endswith(b"Connection: close\r\n\r\n")
    assert parse_head(b"CONNECT [::1]:8443 HTTP/1.1\r\n\r\n").host == "::1"


@pytest.mark.parametrize("head", [
    b"GET /relative HTTP/1.1\r\n\r\n",  # not a proxy request
    b"GET https://pypi.org/ HTTP/1.1\r\n\r\n",  # https goes through CONNECT
    b"CONNECT pypi.org HTTP/1.1\r\n\r\n",  # no port
    b"CONNECT pypi.org:0 HTTP/1.1\r\n\r\n",
    b"CONNECT bad_host!:443 HTTP/1.1\r\n\r\n",
    b"CONNECT pypi.org:443 SPDY/3\r\n\r\n",
    b"garbage\r\n\r\n",
])
def test_bad_heads_are_400(head):
    with pytest.raises(Refused) as caught:
        parse_head(head)
    assert caught.value.status == 400


def test_a_refusal_names_its_rule_in_the_status_line():
    answer = refusal_response(Refused(403, "x.test:443 matches egress_deny 'x.test'"))
    status_line = answer.split(b"\r\n")[0]
    assert status_line == b"HTTP/1.1 403 Egress refused: x.test:443 matches egress_deny 'x.test'"
    assert answer.endswith(b"\r\n\r\nEgress refused: x.test:443 matches egress_deny 'x.test'\n")


def test_configured_headers_are_checked_without_quoting_them():
    found = problems(egress_headers={"api.test": "Authorization Bearer s3cret",
                                     "bad host": "X-Key: s3cret"})
    assert "s3cret" not in found["egress_headers"]
    assert "entry 'api.test': line 1 is not a 'Name: value' header" in found["egress_headers"]
    settings = Settings(egress_allow=("api.test",),
                        egress_headers={"api.test:8080": "Authorization: Bearer s3cret\nX-A: 1"})
    assert settings.masked()["egress_headers"] == {"api.test:8080": "***"}
    with pytest.raises(SettingsError) as caught:
        config.from_environment(environ={"GATEWAY_EGRESS_HEADERS": "Authorization: s3cret"})
    assert "s3cret" not in str(caught.value)


def test_configured_headers_replace_the_kernels_own():
    request = parse_head(b"GET http://api.test:8080/x HTTP/1.1\r\nauthorization: guess\r\n"
                         b"Accept: */*\r\n\r\n")
    forwarded = request.forwarded_head([("Authorization", "Bearer s3cret")])
    assert forwarded == (b"GET /x HTTP/1.1\r\nHost: api.test:8080\r\nAccept: */*\r\n"
                         b"Authorization: Bearer s3cret\r\nConnection: close\r\n\r\n")
