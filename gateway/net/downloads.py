"""``GET``/``HEAD /files/{file_id}``: what to answer (pure) and how the bytes travel (sendfile).

``plan`` decides status, headers and which bytes from the request's headers and the stored
file's metadata, with no I/O. ``send_body`` moves the bytes from the store to the socket with
``loop.sendfile``: zero-copy on plain TCP (the page cache feeds the socket, nothing is copied into
the gateway's memory), and with TLS asyncio's fallback reads 256 KiB blocks in a worker thread
and waits for the socket to drain before the next. Either way memory per download stays at
most a block or two whatever the file size, and the event loop only ever waits on a writable
socket, so other connections' streams keep flowing.
"""

from __future__ import annotations

import asyncio
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..threads.files import StoredFile
from . import ranges

FILE_PATH = re.compile(r"/files/(file_[0-9a-f]{32})")
# sendfile is called per chunk so a stalled reader is noticed: each chunk must leave within
# STALL_TIMEOUT, i.e. a client slower than about 17 KiB/s for a minute is cut off.
SEND_CHUNK = 1 * 2**20
STALL_TIMEOUT = 60.0


def content_disposition(name: str) -> str:
    """Attachment with an ASCII fallback and the RFC 5987 UTF-8 name: no header injection."""
    base = name.rsplit("/", 1)[-1]
    ascii_name = re.sub(r"[^A-Za-z0-9._-]", "_", base) or "download"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{urllib.parse.quote(base)}"


@dataclass(frozen=True)
class Plan:
    """The answer to one download request: send ``length`` bytes from ``offset`` after the
    head (``length`` is 0 for ``HEAD``, 304 and 416)."""

    status: int
    headers: list[tuple[str, str]]
    offset: int = 0
    length: int = 0


def plan(method: str, headers: Mapping[str, str], stored: StoredFile) -> Plan:
    """Status, headers and byte span for ``method`` (GET or HEAD) with the request's
    lower-cased ``headers``, for a file the requester may read."""
    etag = ranges.etag_of(stored.sha256)
    common = [("ETag", etag), ("Accept-Ranges", "bytes"), ("Cache-Control", "no-store"),
              ("X-Content-Type-Options", "nosniff")]
    if ranges.none_match(headers.get("if-none-match"), etag):
        return Plan(304, common)
    described = [*common, ("Content-Type", stored.mime_type),
                 ("Content-Disposition", content_disposition(stored.name)),
                 ("X-File-Sha256", stored.sha256)]
    wanted = None
    # Range is defined for GET only; HEAD describes the whole file.
    if method == "GET" and ranges.range_applies(headers.get("if-range"), etag):
        try:
            wanted = ranges.parse_range(headers.get("range"), stored.size)
        except ranges.Unsatisfiable:
            return Plan(416, [*common, ("Content-Range", f"bytes */{stored.size}"),
                              ("Content-Length", "0")])
    if wanted is None:
        whole = [*described, ("Content-Length", str(stored.size))]
        return Plan(200, whole, 0, stored.size if method == "GET" else 0)
    partial = [*described, ("Content-Range", wanted.content_range(stored.size)),
               ("Content-Length", str(wanted.length))]
    return Plan(206, partial, wanted.start, wanted.length)


async def send_body(writer: asyncio.StreamWriter, path: Path, offset: int, length: int) -> None:
    """Send ``length`` bytes of ``path`` from ``offset`` to the client, a chunk at a time.

    Raises TimeoutError when a chunk does not leave within ``STALL_TIMEOUT`` (the caller
    drops the connection), ConnectionError when the file ends early (it was removed)."""
    loop = asyncio.get_running_loop()
    with open(path, "rb") as source:
        sent = 0
        while sent < length:
            count = min(SEND_CHUNK, length - sent)
            done = await asyncio.wait_for(
                loop.sendfile(writer.transport, source, offset + sent, count), STALL_TIMEOUT)
            if done == 0:
                raise ConnectionError(f"{path.name} ended {length - sent} bytes early")
            sent += done
