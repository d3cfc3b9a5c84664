"""Reading a kernel message without jupyter_client's date parsing: the same message, and the
same refusals (unsigned, forged, replayed)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from jupyter_client.session import Session

from gateway.execution.kernel import _decode


def frames(session: Session, content: dict, buffers: list[bytes] | None = None) -> list[bytes]:
    # Buffers travel as frames after the signed ones (Session.send appends them).
    return [*session.serialize(session.msg("execute_result", content)), *(buffers or [])]


def test_a_signed_message_reads_like_jupyter_clients_except_for_dates():
    sender, receiver = Session(key=b"k"), Session(key=b"k")
    wire = frames(sender, {"data": {"text/plain": "2"}, "execution_count": 3}, [b"\x00\x01"])
    decoded = _decode(SimpleNamespace(session=receiver), wire)
    reference = Session(key=b"k").deserialize(Session(key=b"k").feed_identities(wire)[1])
    assert decoded["content"] == reference["content"]
    assert decoded["msg_type"] == reference["msg_type"] == "execute_result"
    assert decoded["msg_id"] == reference["msg_id"]
    assert decoded["parent_header"] == reference["parent_header"]
    assert bytes(decoded["buffers"][0]) == b"\x00\x01"
    assert isinstance(decoded["header"]["date"], str)  # left as sent: nothing reads it


def test_forged_unsigned_and_replayed_messages_are_refused():
    sender = Session(key=b"k")
    wire = frames(sender, {"data": {}})
    forged = [*wire]
    forged[-1] = forged[-1].replace(b"{", b'{"x": 1, ', 1)  # content changed after signing
    with pytest.raises(ValueError, match="Invalid Signature"):
        _decode(SimpleNamespace(session=Session(key=b"k")), forged)
    with pytest.raises(ValueError, match="Invalid Signature"):
        _decode(SimpleNamespace(session=Session(key=b"other")), wire)
    unsigned = [*wire]
    unsigned[1] = b""  # after the <IDS|MSG> delimiter: the signature
    with pytest.raises(ValueError, match="Unsigned"):
        _decode(SimpleNamespace(session=Session(key=b"k")), unsigned)
    receiver = SimpleNamespace(session=Session(key=b"k"))
    assert _decode(receiver, wire)["content"] == {"data": {}}
    with pytest.raises(ValueError, match="Duplicate Signature"):
        _decode(receiver, wire)
