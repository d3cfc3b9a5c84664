"""The pure Range / ETag logic and the download plan: no sockets."""

from __future__ import annotations

import pytest

from gateway.net import downloads, front, ranges
from gateway.net.ranges import ByteRange, Unsatisfiable, parse_range
from gateway.threads.files import StoredFile


@pytest.mark.parametrize("header, expected", [
    (None, None),
    ("bytes=0-99", ByteRange(0, 99)),
    ("bytes=100-199", ByteRange(100, 199)),
    ("bytes=990-", ByteRange(990, 999)),
    ("bytes=-10", ByteRange(990, 999)),
    ("bytes=-5000", ByteRange(0, 999)),  # a suffix longer than the file is the whole file
    ("bytes=0-5000", ByteRange(0, 999)),  # an end beyond the file is clamped
    ("bytes = 5-6", ByteRange(5, 6)),
    ("bytes=0-0", ByteRange(0, 0)),
    # Ignored (the whole file is sent), as RFC 9110 allows: not refused.
    ("bytes=0-1,5-6", None), ("items=0-1", None), ("bytes=abc", None), ("bytes=-", None),
    ("bytes=9-3", None), ("bytes=0x10-", None),
])
def test_parse_range(header, expected):
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize("header, size", [
    ("bytes=1000-", 1000), ("bytes=1000-2000", 1000), ("bytes=-0", 1000), ("bytes=0-", 0),
    ("bytes=-1", 0),
])
def test_unsatisfiable_ranges(header, size):
    with pytest.raises(Unsatisfiable):
        parse_range(header, size)


HUGE = "9" * 5000  # past int()'s 4,300-digit limit, still valid Range syntax


@pytest.mark.parametrize("header, expected", [
    (f"bytes=0-{HUGE}", ByteRange(0, 999)),  # an end past any file is clamped
    (f"bytes=-{HUGE}", ByteRange(0, 999)),  # a suffix past any file is the whole file
    (f"bytes={'0' * 5000}5-6", ByteRange(5, 6)),  # leading zeros are not digits that count
    (f"bytes={HUGE}-5", None),  # last < first: ignored like any such range
])
def test_positions_of_any_length(header, expected):
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize("header", [f"bytes={HUGE}-", f"bytes={HUGE}-{HUGE}",
                                    f"bytes=1{'0' * 19}-"])
def test_positions_past_any_file_are_unsatisfiable(header):
    with pytest.raises(Unsatisfiable):
        parse_range(header, 1000)


def test_etag_conditions():
    tag = ranges.etag_of("ab" * 32)
    assert tag == '"' + "ab" * 32 + '"'
    assert ranges.none_match(tag, tag)
    assert ranges.none_match(f'"other", W/{tag}', tag)
    assert ranges.none_match("*", tag)
    assert not ranges.none_match('"other"', tag)
    assert not ranges.none_match(None, tag)
    assert ranges.range_applies(None, tag) and ranges.range_applies(tag, tag)
    assert not ranges.range_applies('"other"', tag)
    assert not ranges.range_applies("Wed, 21 Oct 2015 07:28:00 GMT", tag)


STORED = StoredFile("file_" + "0" * 32, "t1", "alice", "out/report final.csv", "text/csv",
                    1000, "cd" * 32, 0.0)


def test_plan_whole_file_and_head():
    whole = downloads.plan("GET", {}, STORED)
    headers = dict(whole.headers)
    assert (whole.status, whole.offset, whole.length) == (200, 0, 1000)
    assert headers["Content-Length"] == "1000" and headers["Accept-Ranges"] == "bytes"
    assert headers["ETag"] == ranges.etag_of(STORED.sha256)
    assert headers["X-File-Sha256"] == STORED.sha256
    assert 'filename="report_final.csv"' in headers["Content-Disposition"]
    head = downloads.plan("HEAD", {"range": "bytes=0-9"}, STORED)
    assert (head.status, head.length, dict(head.headers)["Content-Length"]) == (200, 0, "1000")


def test_plan_ranges_and_conditions():
    part = downloads.plan("GET", {"range": "bytes=-100"}, STORED)
    assert (part.status, part.offset, part.length) == (206, 900, 100)
    assert dict(part.headers)["Content-Range"] == "bytes 900-999/1000"
    bad = downloads.plan("GET", {"range": "bytes=1000-"}, STORED)
    assert (bad.status, bad.length, dict(bad.headers)["Content-Range"]) == (416, 0, "bytes */1000")
    tag = ranges.etag_of(STORED.sha256)
    assert downloads.plan("GET", {"if-none-match": tag}, STORED).status == 304
    assert downloads.plan("GET", {"if-none-match": tag, "range": "bytes=0-1"},
                          STORED).status == 304
    stale = downloads.plan("GET", {"range": "bytes=0-1", "if-range": '"old"'}, STORED)
    assert (stale.status, stale.length) == (200, 1000)


@pytest.mark.parametrize("line, websocket", [
    (b"GET /ws HTTP/1.1", True), (b"GET /admin HTTP/1.1", True), (b"GET / HTTP/1.1", True),
    (b"GET /healthz HTTP/1.1", True), (b"GET /files/file_x HTTP/1.1", False),
    (b"HEAD /files/file_x HTTP/1.1", False), (b"PUT /threads/t/files/a HTTP/1.1", False),
    (b"HEAD / HTTP/1.1", False), (b"garbage", False), (b"GET  /ws HTTP/1.1", False),
    # Jupyter's REST API is the HTTP handler's; its kernel channels are websockets.
    (b"GET /api/kernels HTTP/1.1", False), (b"GET /api?token=x HTTP/1.1", False),
    (b"GET /kernelspecs/python3/logo-64x64.png HTTP/1.1", False),
    (b"GET /api/kernels/0b1c/channels?session_id=s HTTP/1.1", True),
])
def test_front_routes_by_the_request_line(line, websocket):
    assert front.goes_to_websockets(line) is websocket
