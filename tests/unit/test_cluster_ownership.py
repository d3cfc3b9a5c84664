"""Where a request for a thread is served (gateway/cluster/ownership.py), and the HAProxy
configuration for a set of nodes (gateway/cluster/frontdoor.py): pure, no servers."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cluster import ownership
from gateway.cluster.frontdoor import haproxy_config
from gateway.cluster.ownership import Claim

LIVE = {"a": {"threads": "3", "draining": False}, "b": {"threads": "1", "draining": False},
        "c": {"threads": "0", "draining": True}}


def test_claims_round_trip_and_reject_garbage():
    claim = Claim("node-1:8765", 42)
    assert Claim.decode(claim.encode()) == claim
    assert Claim.decode(claim.encode().encode()) == claim
    assert Claim.decode(None) is None
    assert Claim.decode("no-epoch") is None
    assert Claim.decode("node x") is None


def test_a_thread_held_here_is_served_here():
    claim = Claim("a", 7)
    assert ownership.route(claim, "a", LIVE, draining=False) == ownership.Local(claim)
    # Draining stops new claims, not threads still held.
    assert ownership.route(claim, "a", LIVE, draining=True) == ownership.Local(claim)


def test_a_thread_held_by_a_live_node_is_relayed():
    assert ownership.route(Claim("b", 2), "a", LIVE, False) == ownership.Relay("b")


def test_a_thread_held_by_a_vanished_node_waits_for_its_lease():
    assert ownership.route(Claim("gone", 2), "a", LIVE, False) == ownership.WaitForLease("gone")


def test_a_free_thread_is_claimed_here_unless_draining():
    assert ownership.route(None, "a", LIVE, draining=False) == ownership.ClaimHere()
    # The least loaded node that is not draining itself takes it.
    assert ownership.route(None, "a", LIVE, draining=True) == ownership.ClaimElsewhere("b")


def test_a_draining_node_alone_refuses():
    decision = ownership.route(None, "a", {"a": LIVE["a"], "c": LIVE["c"]}, draining=True)
    assert isinstance(decision, ownership.Refuse)


def test_least_loaded_ties_break_by_id():
    live = {"z": {"threads": "1"}, "y": {"threads": "1"}, "x": {"threads": "2"}}
    assert ownership.least_loaded(live, exclude="q") == "y"
    assert ownership.least_loaded({}, exclude="q") is None


def test_haproxy_config_lists_every_node_in_every_backend():
    template = (Path(__file__).parents[2] / "deploy" / "haproxy-cluster.cfg").read_text()
    rendered = haproxy_config(template, {"n1": "127.0.0.1:9001", "n2": "10.0.0.2:8765"})
    assert rendered.count("server n1 127.0.0.1:9001") == 2  # ready and alive backends
    assert rendered.count("server n2 10.0.0.2:8765") == 2
    assert "127.0.0.1:8765" not in rendered  # the template's example lines are gone
    assert "option httpchk GET /readyz" in rendered
    assert "timeout tunnel" in rendered


@pytest.mark.parametrize("name,address", [("n1\nbind", "127.0.0.1:1"),
                                          ("n1", "127.0.0.1:1 check\nserver x")])
def test_haproxy_config_refuses_injected_lines(name, address):
    with pytest.raises(ValueError):
        haproxy_config("# nodes: begin\n# nodes: end\n", {name: address})


def test_haproxy_config_needs_the_markers():
    with pytest.raises(ValueError):
        haproxy_config("backend x\n", {"n1": "127.0.0.1:1"})
