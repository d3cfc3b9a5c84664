"""Jupyter iopub messages -> wire chunks (docs/protocol.md, "Envelopes"), without I/O.

One :class:`OutputTranslator` lives for one execution. It turns each iopub message into zero or
more output chunks, or :class:`DisplayedFile` items that the I/O layer stores and announces as file
chunks (storing needs a file id, which is not this module's business). Text is cleaned of terminal
control so a browser can print it as is, and capped so one runaway loop cannot flood a client.
"""

from __future__ import annotations

import re
from typing import Any

from . import envelopes
from .envelopes import Chunk
from .mimebundle import (
    Display,
    DisplayBudget,
    DisplayedFile,
    as_text,
    binary_file,
    display_id,
    small_metadata,
)

__all__ = ["Display", "DisplayedFile", "OutputTranslator", "clean"]

#: A traceback is emitted even past the output cap (it is what the model needs most), but a deep
#: recursion can make it huge, so it has its own limit: its head and its tail (the exception) stay.
TRACEBACK_LIMIT = 20_000

_ESCAPE = re.compile(
    r"\x1b[\]PX^_].*?(?:\x07|\x1b\\|\Z)"  # OSC, DCS, SOS, PM, APC: a string ended by BEL or ST
    r"|(?:\x1b\[|\x9b)[0-?]*[ -/]*(?:[@-~]|\Z)"  # CSI, private modes too (\x1b[?25l), 7 or 8 bit
    r"|\x1b[ -/]*[0-~]",  # two-character and nF escapes: \x1b7, \x1bc, \x1b(B
    re.DOTALL,
)
# C0 (except \t and \n), DEL and C1. Applied after the carriage returns are resolved.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(text: str) -> str:
    """Text as a terminal would leave it, roughly, and with nothing a browser would print as junk.

    Escape sequences go first (a CSI like ``\\x1b[2K`` often precedes a ``\\r``); then progress
    bars collapse: per line only the last non-empty ``\\r`` segment survives (``"10%\\r20%\\n"`` ->
    ``"20%\\n"``, ``"a\\r"`` -> ``"a"``); then the remaining control characters go. This is one
    message on its own; :class:`OutputTranslator` also carries a rewritten line across messages.
    """
    return drop_controls(collapse_returns(strip_escapes(text)))


def strip_escapes(text: str) -> str:
    if "\x1b" in text or "\x9b" in text:  # a memchr: plain text skips the regex
        return _ESCAPE.sub("", text)
    return text


def collapse_returns(text: str) -> str:
    """Per line, the last non-empty ``\\r`` segment (replace, not a terminal's overwrite: a
    progress bar rewrites its whole line, and a shorter rewrite should not keep stale tails)."""
    if "\r" not in text:
        return text
    lines = text.replace("\r\n", "\n").split("\n")
    return "\n".join(_last_segment(line) for line in lines)


def drop_controls(text: str) -> str:
    if text.isascii():  # bytes.translate finds ASCII control characters ~20x faster than re
        raw = text.encode()
        if len(raw.translate(None, _ASCII_CONTROL)) == len(raw):
            return text
    return _CONTROL.sub("", text)


_ASCII_CONTROL = bytes([*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F])


def _last_segment(line: str) -> str:
    for segment in reversed(line.split("\r")):
        if segment:
            return segment
    return ""


def rewrite_of_open_line(text: str) -> tuple[bool, str]:
    """Does ``text`` (escapes stripped) rewrite the line it continues, and what it shows.

    The first line of a message continues the line already on screen: a non-empty segment after
    one of its ``\\r`` replaces that whole line (``"\\r 30%"``); text before any ``\\r`` is
    appended to it (``"abc\\r"`` keeps what was there, followed by ``abc``). Returns
    ``(rewrites, collapsed text)``; ``"\\r\\n"`` is a plain newline, as on a terminal.
    """
    if "\r" not in text:  # most output: no copies of a large print
        return False, text
    text = text.replace("\r\n", "\n")
    first, newline, rest = text.partition("\n")
    segments = first.split("\r")
    rewritten = [segment for segment in segments[1:] if segment]
    head = rewritten[-1] if rewritten else segments[0]
    return bool(rewritten), head + newline + collapse_returns(rest)


_as_text = as_text


def _shorten(text: str, limit: int) -> str:
    """Cut the middle out of ``text``: a traceback's first frames and its exception line matter."""
    if len(text) <= limit:
        return text
    head, tail = limit // 4, limit - limit // 4
    return f"{text[:head]}\n[... {len(text) - limit:,} characters cut ...]\n{text[-tail:]}"


class OutputTranslator:
    """Translates the iopub messages of one execution; keeps the state that spans them.

    ``execution_count``, ``error`` (``(ename, evalue)``) and ``traceback`` (its cleaned lines)
    feed the final status chunk; ``next_plot_number`` lets a session keep numbering plots across
    executions; ``dropped_chars`` and ``dropped_lines`` count text withheld by the cap, reported
    by :meth:`finish` with the rich display data the display budget withheld.
    """

    def __init__(self, max_output_chars: int = 1_000_000, first_plot_number: int = 1,
                 max_display_chars: int = 4_000_000) -> None:
        self.max_output_chars = max_output_chars
        self.next_plot_number = first_plot_number
        self.execution_count: int | None = None
        self.error: tuple[str, str] | None = None
        self.traceback: list[str] = []
        self.displays = DisplayBudget(max_display_chars)
        self.emitted_chars = 0  # text counted against the cap (tracebacks are not)
        self.dropped_chars = 0
        self._dropped_newlines = 0
        self._dropped_partial_line = False
        self._pieces: list[str] = []
        self._tracebacks_past_cap = 0
        self._open_line_chars = 0  # of text sent since the last newline: what a rewind drops
        self._return_pending = False  # the last stream text ended with a bare carriage return
        self._open_line_stream = ""  # stdout or stderr: whose text the open line holds

    @property
    def text(self) -> str:
        """The output as a screen shows it (rewritten lines at their last state): for one-shot
        callers such as the CLI and for the model's ``tool_output``."""
        return "".join(self._pieces)

    @property
    def dropped_lines(self) -> int:
        return self._dropped_newlines + self._dropped_partial_line

    def translate(self, msg: dict[str, Any]) -> list[Chunk | DisplayedFile | Display]:
        """One iopub message in, its chunks, files and displays out (often none: status, ...).

        A :class:`Display` comes right after the file it shows (if any) and right before its
        ``text/plain`` fallback, so a client that renders it can skip that text."""
        msg_type = msg.get("header", {}).get("msg_type") or msg.get("msg_type")
        content = msg.get("content") or {}
        if msg_type == "stream":
            return self._stream(_as_text(content.get("text", "")), content.get("name", ""))
        if msg_type == "execute_input":
            self.execution_count = content.get("execution_count", self.execution_count)
            return []
        if msg_type == "execute_result":
            self.execution_count = content.get("execution_count", self.execution_count)
            return self._display(content, msg_type)
        if msg_type in ("display_data", "update_display_data"):
            return self._display(content, msg_type)
        if msg_type == "error":
            return self._error(content)
        return []  # status, clear_output (already sent, cannot be unsent), comm_*, unknown

    def finish(self) -> list[Chunk]:
        """At the end of the execution: notes saying what the caps withheld, if anything."""
        notes = []
        if self.dropped_chars:
            lines = self.dropped_lines
            notes.append(envelopes.output(
                f"\n[output truncated: {self.dropped_chars:,} characters "
                f"({lines:,} line{'' if lines == 1 else 's'}) dropped, "
                f"limit {self.max_output_chars:,}]\n", "note"))
        if self.displays.omitted_chars:
            notes.append(envelopes.output(
                f"\n[rich display data truncated: {self.displays.omitted_chars:,} characters "
                f"not sent inline, limit {self.displays.limit:,}]\n", "note"))
        return notes

    def _display(self, content: dict[str, Any],
                 source: str) -> list[Chunk | DisplayedFile | Display]:
        """A rich display: its bundle as a :class:`Display`; an image also becomes a file
        (and then its text/plain, only ``<Figure ...>``, is not output)."""
        data = content.get("data")
        data = data if isinstance(data, dict) else {}
        items: list[Chunk | DisplayedFile | Display] = []
        shown = None
        if (binary := binary_file(data)) is not None:
            mime_type, extension, payload = binary
            shown = DisplayedFile(f"plot_{self.next_plot_number}.{extension}", mime_type, payload)
            self.next_plot_number += 1
            items.append(shown)
        inline, omitted = self.displays.take(data)
        items.append(Display(source, inline, display_id(content), small_metadata(content),
                             omitted, shown))
        if shown is None and "text/plain" in data:
            text = clean(_as_text(data["text/plain"]))
            # A repr carries no newline; without one the next output would glue onto it.
            stream = "result" if source == "execute_result" else "display"
            items += self._text(text if text.endswith("\n") else text + "\n", stream=stream)
        return items

    def _error(self, content: dict[str, Any]) -> list[Chunk | DisplayedFile | Display]:
        ename, evalue = str(content.get("ename", "")), str(content.get("evalue", ""))
        self.error = (ename, evalue)
        traceback = content.get("traceback") or [f"{ename}: {evalue}"]
        text = _shorten(clean("\n".join(_as_text(line) for line in traceback)), TRACEBACK_LIMIT)
        self.traceback = text.rstrip("\n").split("\n")
        text = text if text.endswith("\n") else text + "\n"
        room = max(self.max_output_chars - self.emitted_chars, 0)
        if len(text) <= room:
            self.emitted_chars += len(text)
        elif self._tracebacks_past_cap + len(text) <= TRACEBACK_LIMIT:
            # Past the cap one traceback's worth still goes out: it is what the model needs.
            self._tracebacks_past_cap += len(text)
        else:
            self.dropped_chars += len(text)
            self._dropped_newlines += text.count("\n")
            return []
        self._append(text)
        return [envelopes.output(text, "traceback")]

    def _stream(self, raw: str, name: str) -> list[Chunk | DisplayedFile | Display]:
        """stdout/stderr: a carriage return may rewrite the open line, even one an earlier
        message wrote (``print(i, end="\\r")``, tqdm): the line then goes out again, after a
        ``rewind`` chunk that tells clients how much of what they have to drop.

        The two streams are flushed separately (a cell's last stdout can overtake a progress
        bar's final newline on stderr), so, as notebooks show them apart, one stream's text
        never continues or rewrites a line the other left open: it starts a new line."""
        text = strip_escapes(raw)
        if not text:
            return []
        if self._open_line_chars and name != self._open_line_stream:
            text = "\n" + text
        elif self._return_pending:
            text = "\r" + text
        self._open_line_stream = name
        self._return_pending = text.endswith("\r")
        rewrites, text = rewrite_of_open_line(text)
        return self._text(drop_controls(text), rewrites, "stderr" if name == "stderr" else "stdout")

    def _text(self, text: str, rewrites: bool = False,
              stream: str = "stdout") -> list[Chunk | DisplayedFile | Display]:
        """Emit ``text`` within the cap; the part beyond it is only counted."""
        room = max(self.max_output_chars - self.emitted_chars, 0)
        if rewrites and room == 0:
            self._return_pending = False  # the line keeps the last state that went out
        if len(text) > room:
            dropped = text[room:]
            self.dropped_chars += len(dropped)
            self._dropped_newlines += dropped.count("\n")
            self._dropped_partial_line = not dropped.endswith("\n")
            text = text[:room]
        if not text:
            return []
        chunks: list[Chunk | DisplayedFile | Display] = []
        if rewrites and self._open_line_chars:
            chunks.append(envelopes.rewind(self._open_line_chars))
            self._erase_open_line()
        self.emitted_chars += len(text)
        self._append(text)
        chunks.append(envelopes.output(text, stream))
        return chunks

    def _append(self, text: str) -> None:
        self._pieces.append(text)
        newline = text.rfind("\n")
        self._open_line_chars = (len(text) - newline - 1 if newline >= 0
                                 else self._open_line_chars + len(text))

    def _erase_open_line(self) -> None:
        left = self._open_line_chars
        while left:
            last = self._pieces[-1]
            if len(last) <= left:
                self._pieces.pop()
                left -= len(last)
            else:
                self._pieces[-1] = last[:-left]
                left = 0
        self._open_line_chars = 0
