"""Jupyter iopub messages as a kernel sends them, and what the translator makes of them."""

from __future__ import annotations

import itertools
import struct
import zlib

_ids = itertools.count(1)
PARENT = "exec-msg-id-1"


def msg(msg_type: str, **content) -> dict:
    """An iopub message shaped like jupyter_client's ``get_iopub_msg()`` result."""
    msg_id = f"iopub-{next(_ids)}"
    return {
        "header": {"msg_id": msg_id, "msg_type": msg_type, "session": "s", "username": "u",
                   "date": "2024-01-01T00:00:00Z", "version": "5.3"},
        "msg_id": msg_id,
        "msg_type": msg_type,
        "parent_header": {"msg_id": PARENT, "msg_type": "execute_request"},
        "metadata": {},
        "content": content,
        "buffers": [],
    }


def stream(text: str, name: str = "stdout") -> dict:
    return msg("stream", name=name, text=text)


def tiny_png(width: int = 1, height: int = 1) -> bytes:
    def part(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + part(b"IHDR", header)
            + part(b"IDAT", zlib.compress(rows)) + part(b"IEND", b""))


def texts(items: list) -> str:
    """The text chunks' content (files and rewinds left out)."""
    return "".join(item["content"] for item in items
                   if isinstance(item, dict) and item["type"] == "hot_code_output")


SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10"/></svg>'

# As ipykernel sends it for `def f(x): return 1/x` then `f(0)` (IPython 8 colours, Linux scheme).
IPYTHON_TRACEBACK = [
    "\x1b[0;31m---------------------------------------------------------------------------"
    "\x1b[0m",
    "\x1b[0;31mZeroDivisionError\x1b[0m                         "
    "Traceback (most recent call last)",
    "Cell \x1b[0;32mIn[2], line 1\x1b[0m\n\x1b[0;32m----> 1\x1b[0m "
    "\x1b[43mf\x1b[49m\x1b[43m(\x1b[49m"
    "\x1b[38;5;241;43m0\x1b[39;49m\x1b[43m)\x1b[49m\n",
    "Cell \x1b[0;32mIn[1], line 1\x1b[0m, in \x1b[0;36mf\x1b[0;34m(x)\x1b[0m\n"
    "\x1b[0;32m----> 1\x1b[0m \x1b[38;5;28;01mdef\x1b[39;00m \x1b[38;5;21mf\x1b[39m(x): "
    "\x1b[38;5;28;01mreturn\x1b[39;00m "
    "\x1b[38;5;241m1\x1b[39m\x1b[38;5;241m/\x1b[39mx\n",
    "\x1b[0;31mZeroDivisionError\x1b[0m: division by zero",
]
