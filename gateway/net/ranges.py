"""Pure HTTP conditional and range logic for downloads (RFC 9110 §13, §14): no I/O.

``parse_range`` turns a ``Range`` header into one byte range of a file of known size, the
``ETag`` of a stored file is its SHA-256 (content-addressed: equal tags mean equal bytes), and
``If-None-Match`` / ``If-Range`` are answered from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# One range only: several would need multipart/byteranges, which no resuming client asks for.
SINGLE_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
# A byte position of any real file has at most 19 digits (off_t is 63 bits). Longer numbers are
# valid syntax, so they must not reach int(), which refuses over 4,300 digits with a ValueError.
MAX_POSITION_DIGITS = 19
BEYOND_ANY_FILE = 10**MAX_POSITION_DIGITS


class Unsatisfiable(ValueError):
    """A well-formed single byte range that selects no byte of the file (answered with 416)."""


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``start`` to ``end`` inclusive, as HTTP counts them."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


def _position(digits: str) -> int:
    """A byte position, capped at ``BEYOND_ANY_FILE``: past the end of every file, the exact
    number changes nothing (a start there is unsatisfiable, an end or suffix there means "all")."""
    significant = digits.lstrip("0")
    if len(significant) > MAX_POSITION_DIGITS:
        return BEYOND_ANY_FILE
    return int(significant or "0")


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The range a ``Range`` header asks for in a file of ``size`` bytes.

    None means "send the whole file": no header, or one the server may ignore (another unit,
    several ranges, malformed syntax, last < first; RFC 9110 §14.2 lets a server ignore
    those). Raises ``Unsatisfiable`` for a valid range that starts at or beyond the end, or an
    empty suffix."""
    if header is None:
        return None
    match = SINGLE_RANGE.fullmatch(header.strip().replace(" ", ""))
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # suffix: the last N bytes
        suffix = _position(last)
        if suffix == 0 or size == 0:
            raise Unsatisfiable(f"bytes=-{suffix} of a {size}-byte file")
        return ByteRange(max(0, size - suffix), size - 1)
    start = _position(first)
    # Two capped positions compare equal, so a start and an end both past any file is
    # unsatisfiable below even when the end is the smaller: either way no byte is sent.
    if last and _position(last) < start:
        return None  # invalid syntax per RFC 9110: ignored, not refused
    if start >= size:
        raise Unsatisfiable(f"range starts at {start} of a {size}-byte file")
    return ByteRange(start, min(_position(last), size - 1) if last else size - 1)


def etag_of(sha256: str) -> str:
    """A strong entity tag: the digest names the bytes exactly."""
    return f'"{sha256}"'


def _tags(header: str) -> list[str]:
    return [tag.strip() for tag in header.split(",") if tag.strip()]


def none_match(header: str | None, etag: str) -> bool:
    """Does ``If-None-Match`` match (so the answer is 304)? Weak comparison, as the RFC says."""
    if header is None:
        return False
    tags = _tags(header)
    return "*" in tags or etag in (tag.removeprefix("W/") for tag in tags)


def range_applies(if_range: str | None, etag: str) -> bool:
    """Honour ``Range`` only if ``If-Range`` is absent or names this very file (strong
    comparison); a date or another tag means the client's copy is stale: send everything."""
    return if_range is None or if_range.strip() == etag
