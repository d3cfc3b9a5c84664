"""Per-execution environment variables: ``execute.env`` is validated, visible to its cell only,
and gone in the next one (Python here; bash in test_languages.py).

The pure half; the gateway half is tests/kernel/test_env_cells.py."""

from __future__ import annotations

import pytest

from gateway.errors import ProtocolError
from gateway.wire.protocol import Execute, parse_request, validate_env


def test_env_is_parsed_and_never_shown_in_a_repr():
    request = parse_request('{"type": "execute", "thread_id": "t", "call_id": "c", "code": "x",'
                            ' "env": {"API_KEY": "s3cret-value", "_X1": ""}}')
    assert request.env == {"API_KEY": "s3cret-value", "_X1": ""}
    assert "s3cret" not in repr(request)
    assert parse_request('{"type": "execute", "thread_id": "t", "call_id": "c", "code": "x",'
                         ' "env": {}}').env is None


@pytest.mark.parametrize(("env", "why"), [
    ([["A", "b"]], "expected an object"),
    ({"1A": "x"}, "bad variable name"),
    ({"A-B": "x"}, "bad variable name"),
    ({"A B": "x"}, "bad variable name"),
    ({"": "x"}, "bad variable name"),
    ({"A" * 129: "x"}, "bad variable name"),
    ({"A": 1}, "must be a string"),
    ({"A": "x\x00y"}, "without NUL"),
    ({f"V{i}": "" for i in range(65)}, "at most 64 variables"),
    ({"BIG": "x" * 40_000}, "at most 32768 bytes"),
])
def test_bad_env_is_refused_without_quoting_values(env, why):
    with pytest.raises(ProtocolError, match=why) as refused:
        validate_env(env)
    assert "x" * 50 not in str(refused.value)
    with pytest.raises(ProtocolError):
        Execute("t", "c", "x", env=env)
