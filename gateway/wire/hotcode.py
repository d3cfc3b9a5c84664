"""Incremental extraction of the code a model is writing, for pre-streaming it as ``hot_code``.

The orchestrator relays a tool call as it is generated: ``code_delta`` fragments that, once
concatenated, are either the function-call arguments ``{"code": "..."}`` (``format: "json"``) or
the code itself (``format: "raw"``). Frontends want to show the code while the model is still
writing it, so each fragment must become "the code text that is now certain" without waiting for
the whole document. A JSON parser cannot do that (it needs the complete text): hence this module.

Design, in the sans-I/O style of h11/websockets:

* No I/O, no asyncio, no clocks: callers push ``str`` fragments in and get ``str`` / chunk dicts
  out, so the logic is exhaustively testable (``tests/unit/test_hotcode.py`` splits at every
  boundary).
* ``CodeExtractor`` is an explicit, small state machine over the top-level JSON object. It knows
  just enough JSON to find the top-level ``"code"`` string and to skip every other value (nested
  objects, arrays, strings with ``\\"`` or ``}`` inside, scalars). Full validation is left to
  orjson in ``finish()``, the one authority on what the arguments mean; the streamed text is then
  checked against orjson's value, so what was shown is exactly what runs.
* Inside the code string (the hot path, megabytes of it) text is handled in slices, never char by
  char: one possessive regex match spans the longest run of complete tokens and the stdlib's C
  ``scanstring`` decodes it; a fragment without ``"``, ``\\`` or control characters is passed
  through after a single regex search.
* A character is yielded as soon as it is certain and never before: an escape split across
  fragments (``\\`` | ``n``, ``\\u00`` | ``e9``) is held back until complete, and a high-surrogate
  escape only until its low half arrives, so a yielded piece never holds half a character.
* Errors are ``ProtocolError(code="bad_arguments")``. ``feed()`` raises early only when the input
  is already certainly invalid (it does not start with ``{``, an invalid escape, a lone surrogate,
  a raw control character in the code string): orjson would reject it too, and yielding e.g. a
  lone surrogate would make the outbound envelope unserializable.

``HotCodeStream`` wraps an extractor and produces the ``hot_code`` envelope chunks of
docs/protocol.md: the fence opener once before the first code text, one chunk per decoded piece,
and the fence closer once, as soon as the code string is known to be complete (or at execute time).
"""

from __future__ import annotations

import re
from enum import Enum, auto
from json.decoder import (  # type: ignore[attr-defined]  # real, but typeshed omits it
    scanstring as _scanstring,
)
from typing import Literal

import orjson

from gateway.errors import ProtocolError

from .envelopes import FENCE_CLOSE, FENCE_OPEN, Chunk, hot_code

__all__ = ["CodeExtractor", "HotCodeStream", "Format"]

Format = Literal["json", "raw"]

ERROR_CODE = "bad_arguments"

# JSON insignificant whitespace (RFC 8259); anything else between tokens is invalid.
_WS = " \t\n\r"
# Inside the code string: the characters that end a plain run. Everything else is yielded verbatim.
# Control characters and surrogates are here only to reject them early (orjson rejects them too).
_CODE_SPECIAL = re.compile(r'["\\\x00-\x1f\ud800-\udfff]')
# The longest run of complete, valid code-string tokens, matched possessively (no backtracking).
# \\uXXXX surrogates only count as a whole pair, so a run never ends inside a character.
_CODE_TOKENS = re.compile(
    r'(?:[^"\\\x00-\x1f\ud800-\udfff]++'
    r"|\\[\"\\/bfnrt]"
    r"|\\u(?![dD][89a-fA-F])[0-9a-fA-F]{4}"
    r"|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"
    r")*+"
)
_code_special = _CODE_SPECIAL.search
# Inside any other string: only the end quote and escapes matter (validation is orjson's job).
_STR_SPECIAL = re.compile(r'["\\]')
# Outside strings while skipping a value: the structural characters.
_STRUCTURAL = re.compile(r'["{}\[\],]')
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")
_HEX_PREFIX = re.compile(r"[0-9a-fA-F]{0,4}")
_SIMPLE_ESCAPES = {
    '"': '"',
    "\\": "\\",
    "/": "/",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
}


class _State(Enum):
    """Where the parser stands in ``{ "key" : value , ... }`` (top level only)."""

    START = auto()  # before the opening '{'
    FIRST_KEY = auto()  # after '{': a key or '}'
    NEXT_KEY = auto()  # after ',': a key
    KEY = auto()  # inside a top-level key string
    COLON = auto()  # after a key: ':'
    VALUE = auto()  # after ':': the value starts
    CODE = auto()  # inside the top-level "code" string: the hot path
    SKIP = auto()  # inside/after any other value, until ',' or '}' at depth 0
    END = auto()  # after the closing '}': only whitespace
    FAILED = auto()  # a ProtocolError was raised; it is raised again


def _bad(message: str) -> ProtocolError:
    return ProtocolError(message, code=ERROR_CODE)


class CodeExtractor:
    """Decode the code of one tool call from its argument fragments, as early as is certain.

    ``feed()`` returns the code text that became certain with this fragment (possibly ``""``);
    ``finish()`` is called at execute time and returns the whole code, validating the arguments.
    """

    __slots__ = (
        "format",
        "_state",
        "_raw",
        "_parts",
        "_pending",
        "_complete",
        "_finished",
        "_error",
        "_key",
        "_key_has_escape",
        "_is_code_key",
        "_code_keys",
        "_depth",
        "_in_str",
        "_esc",
        "_result",
        "_fast",
    )

    def __init__(self, format: Format) -> None:
        if format not in ("json", "raw"):
            raise ProtocolError(f"unknown code_delta format {format!r} (expected 'json' or 'raw')")
        self.format: Format = format
        self._state = _State.START
        # Every fragment, kept for orjson's verdict in finish() (json) or as the code itself (raw).
        self._raw: list[str] = []
        # Decoded code pieces (json only; for raw the code *is* _raw).
        self._parts: list[str] = []
        # Start of an escape in the code string that is not complete yet (at most 12 chars).
        self._pending = ""
        self._complete = False
        self._finished = False
        self._error: ProtocolError | None = None
        # Current top-level key (raw, undecoded) and whether it is "code".
        self._key: list[str] = []
        self._key_has_escape = False
        self._is_code_key = False
        self._code_keys = 0
        # SKIP state: nesting depth below the top-level object, inside a string, after a backslash.
        self._depth = 0
        self._in_str = False
        self._esc = False
        self._result: str | None = None
        # True while a fragment can take feed()'s shortcut: json, in the code string, nothing
        # pending, not failed, not finished. One flag so the shortcut tests one attribute.
        self._fast = False

    # ------------------------------------------------------------------ public API

    @property
    def complete(self) -> bool:
        """json: the top-level code string's closing quote was seen; raw: after ``finish()``."""
        return self._complete

    @property
    def code(self) -> str:
        """All code decoded so far (the concatenation of everything ``feed()`` returned)."""
        parts = self._raw if self.format == "raw" else self._parts
        if len(parts) > 1:
            # Collapse so repeated reads stay O(n) overall.
            parts[:] = ["".join(parts)]
        return parts[0] if parts else ""

    def feed(self, fragment: str) -> str:
        """Consume one fragment; return the newly certain code text (``""`` if none yet)."""
        # Shortcut for the common case, a fragment in the middle of the code string with nothing
        # to decode: one regex search, two appends. Matters for token-sized fragments.
        if self._fast and _code_special(fragment) is None:
            self._raw.append(fragment)
            self._parts.append(fragment)
            return fragment
        return self._feed(fragment)

    def _feed(self, fragment: str) -> str:
        if self._finished:
            raise ProtocolError("code_delta after the call was executed", code=ERROR_CODE)
        if self.format == "raw":
            if fragment:
                self._raw.append(fragment)
            return fragment
        if self._error is not None:
            raise self._error
        if not fragment:
            return ""
        self._raw.append(fragment)
        try:
            out = self._run(fragment)
        except ProtocolError as exc:
            self._state = _State.FAILED
            self._error = exc
            self._fast = False
            raise
        self._fast = self._state is _State.CODE and not self._pending
        if out:
            self._parts.append(out)
        return out

    def finish(self) -> str:
        """Return the whole code to execute; for json, validate the arguments with orjson first.

        Raises ``ProtocolError(code="bad_arguments")`` if the arguments are not a JSON object with a
        string ``"code"``. Idempotent: later calls return the same code (or raise the same error).
        """
        if self._result is not None:
            return self._result
        self._finished = True
        self._fast = False
        if self._error is not None:
            raise self._error
        if self.format == "raw":
            self._complete = True
            self._result = self.code
            return self._result
        try:
            self._result = self._validate()
        except ProtocolError as exc:
            self._error = exc
            raise
        return self._result

    # ------------------------------------------------------------------ internals

    def _validate(self) -> str:
        text = "".join(self._raw)
        if not text.strip(_WS):
            raise _bad(
                "the tool call has no arguments (expected a JSON object with a 'code' string)"
            )
        try:
            args = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise _bad(f"the tool call arguments are not valid JSON: {exc}") from None
        if not isinstance(args, dict):
            raise _bad(f"the tool call arguments must be a JSON object, not {type(args).__name__}")
        if "code" not in args:
            raise _bad("the tool call arguments have no 'code' key")
        code = args["code"]
        if not isinstance(code, str):
            raise _bad(f"the 'code' argument must be a string, not {type(code).__name__}")
        if code != self.code or not self._complete:
            # Valid JSON whose last "code" is not what was streamed: only duplicate keys can do
            # that (JSON keeps the last one). Refuse rather than run code nobody was shown.
            if self._code_keys > 1:
                raise _bad("the 'code' argument is given more than once")
            raise _bad("the 'code' argument does not match the streamed code")  # pragma: no cover
        return code

    def _run(self, s: str) -> str:
        """Advance the state machine over ``s``; return the decoded code text it completed."""
        out: list[str] = []
        i = 0
        if self._state is _State.CODE:
            # Most slow-path fragments are in the code string: go straight there.
            if self._pending:
                s = self._pending + s
                self._pending = ""
            i = self._code(s, 0, out)
        n = len(s)
        while i < n:
            st = self._state
            if st is _State.CODE:
                i = self._code(s, i, out)
            elif st is _State.SKIP:
                i = self._skip(s, i)
            elif st is _State.KEY:
                i = self._key_chars(s, i)
            else:
                c = s[i]
                if c in _WS:
                    i += 1
                    continue
                i += 1
                if st is _State.START:
                    if c != "{":
                        raise _bad(
                            "the tool call arguments must be a JSON object starting with '{', "
                            f"got {c!r}"
                        )
                    self._state = _State.FIRST_KEY
                elif st is _State.FIRST_KEY or st is _State.NEXT_KEY:
                    if c == '"':
                        self._key.clear()
                        self._key_has_escape = False
                        self._esc = False
                        self._state = _State.KEY
                    elif c == "}" and st is _State.FIRST_KEY:
                        self._state = _State.END
                    else:
                        raise _bad(f"expected a key in the tool call arguments, got {c!r}")
                elif st is _State.COLON:
                    if c != ":":
                        raise _bad(
                            f"expected ':' after a key in the tool call arguments, got {c!r}"
                        )
                    self._state = _State.VALUE
                elif st is _State.VALUE:
                    if self._is_code_key and c == '"' and not self._complete:
                        self._state = _State.CODE
                    else:
                        # Any other value (or a non-string "code", which finish() reports):
                        # re-scan this character in SKIP.
                        self._depth = 0
                        self._in_str = False
                        self._esc = False
                        self._state = _State.SKIP
                        i -= 1
                elif st is _State.END:
                    raise _bad(f"unexpected {c!r} after the end of the tool call arguments")
                else:  # pragma: no cover - FAILED is caught in feed()
                    raise _bad("the tool call arguments were already rejected")
        return "".join(out)

    def _key_chars(self, s: str, i: int) -> int:
        """Collect a top-level key up to its closing quote; decide whether it is "code"."""
        n = len(s)
        if self._esc:
            # The previous fragment ended with a backslash: this character is escaped.
            self._key.append(s[i])
            self._esc = False
            i += 1
        while i < n:
            m = _STR_SPECIAL.search(s, i)
            if m is None:
                self._key.append(s[i:])
                return n
            j = m.start()
            if s[j] == "\\":
                self._key_has_escape = True
                if j + 1 >= n:
                    self._key.append(s[i : j + 1])
                    self._esc = True
                    return n
                self._key.append(s[i : j + 2])
                i = j + 2
                continue
            self._key.append(s[i:j])
            raw = "".join(self._key)
            if self._key_has_escape:
                try:
                    key = orjson.loads('"' + raw + '"')
                except orjson.JSONDecodeError as exc:
                    raise _bad(f"invalid key in the tool call arguments: {exc}") from None
            else:
                key = raw
            self._is_code_key = key == "code"
            if self._is_code_key:
                self._code_keys += 1
            self._state = _State.COLON
            return j + 1
        return n

    def _skip(self, s: str, i: int) -> int:
        """Skip a non-code value (any JSON), stopping after ',' or '}' of the top-level object."""
        n = len(s)
        while i < n:
            if self._in_str:
                if self._esc:
                    self._esc = False
                    i += 1
                    continue
                m = _STR_SPECIAL.search(s, i)
                if m is None:
                    return n
                j = m.start()
                if s[j] == "\\":
                    # Skip the escaped character (for \uXXXX the hex digits are harmless).
                    if j + 1 >= n:
                        self._esc = True
                        return n
                    i = j + 2
                else:
                    self._in_str = False
                    i = j + 1
                continue
            m = _STRUCTURAL.search(s, i)
            if m is None:
                return n
            j = m.start()
            c = s[j]
            i = j + 1
            if c == '"':
                self._in_str = True
            elif c == "{" or c == "[":
                self._depth += 1
            elif c == "}" or c == "]":
                if self._depth == 0:
                    if c == "]":
                        raise _bad("unbalanced ']' in the tool call arguments")
                    self._state = _State.END
                    return i
                self._depth -= 1
            elif self._depth == 0:  # ',' between top-level members
                self._state = _State.NEXT_KEY
                return i
        return n

    def _code(self, s: str, i: int, out: list[str]) -> int:
        """Decode the code string from ``s[i:]`` into ``out``; hold back an incomplete escape.

        One regex match finds the longest run of complete, valid tokens (plain text, simple
        escapes, BMP ``\\uXXXX``, whole surrogate pairs); C code (``scanstring``) decodes it. What
        stops the run (the closing quote, an incomplete or invalid escape, a control character, a
        lone surrogate) is then handled here, one item at a time.
        """
        n = len(s)
        match = _CODE_TOKENS.match
        while True:
            # The pattern ends in ``*+``: it matches (maybe empty) at every position.
            k = match(s, i).end()  # type: ignore[union-attr]
            if k > i:
                if k < n and s[k] == '"':
                    # The run ends at the closing quote: decode in place, no copy.
                    out.append(_scanstring(s, i, True)[0])
                else:
                    run = s[i:k]
                    out.append(_scanstring(run + '"', 0, True)[0] if "\\" in run else run)
                if k == n:
                    return n
                i = k
            j = i
            c = s[j]
            if c == '"':
                self._complete = True
                self._depth = 0
                self._in_str = False
                self._esc = False
                self._state = _State.SKIP
                return j + 1
            if c != "\\":
                if "\ud800" <= c <= "\udfff":
                    raise _bad("the 'code' argument contains a lone surrogate character")
                raise _bad(f"the 'code' argument contains an unescaped control character {c!r}")
            if j + 1 >= n:
                self._pending = s[j:]
                return n
            # Complete valid escapes are normally consumed by the regex above; decoding them here
            # too keeps this step a whole decoder on its own (and its errors precise).
            e = s[j + 1]
            simple = _SIMPLE_ESCAPES.get(e)
            if simple is not None:
                out.append(simple)
                i = j + 2
                continue
            if e != "u":
                raise _bad(f"invalid escape {s[j : j + 2]!r} in the 'code' argument")
            if j + 6 > n:
                self._hold(s, j)
                return n
            hexa = s[j + 2 : j + 6]
            if _HEX4.fullmatch(hexa) is None:
                raise _bad(f"invalid escape {s[j : j + 6]!r} in the 'code' argument")
            cp = int(hexa, 16)
            if 0xDC00 <= cp <= 0xDFFF:
                raise _bad(f"lone low surrogate {s[j : j + 6]!r} in the 'code' argument")
            if cp < 0xD800 or cp > 0xDBFF:
                out.append(chr(cp))
                i = j + 6
                continue
            # A high surrogate: certain only together with the low half that must follow.
            if j + 12 > n:
                self._hold(s, j)
                return n
            low = s[j + 6 : j + 12]
            lcp = int(low[2:], 16) if low[:2] == "\\u" and _HEX4.fullmatch(low[2:]) else -1
            if not 0xDC00 <= lcp <= 0xDFFF:
                raise _bad(f"lone high surrogate {s[j : j + 6]!r} in the 'code' argument")
            out.append(chr(0x10000 + ((cp - 0xD800) << 10) + (lcp - 0xDC00)))
            i = j + 12

    def _hold(self, s: str, j: int) -> None:
        """Keep an incomplete ``\\u`` escape (or surrogate pair) at ``s[j:]`` for the next fragment.

        Rejects it now if what is there can already never become valid.
        """
        tail = s[j:]
        hexa = tail[2:6]
        if _HEX_PREFIX.fullmatch(hexa) is None:
            raise _bad(f"invalid escape {tail!r} in the 'code' argument")
        if len(tail) > 6:
            # A complete high surrogate followed by the start of what must be its low half.
            rest = tail[6:]
            if not "\\u".startswith(rest[:2]) or (
                len(rest) > 2
                and (
                    _HEX_PREFIX.fullmatch(rest[2:]) is None
                    or rest[2] not in "dD"
                    or (len(rest) > 3 and rest[3] not in "cdefCDEF")
                )
            ):
                raise _bad(f"lone high surrogate {tail[:6]!r} in the 'code' argument")
        self._pending = tail


class HotCodeStream:
    """Turn one call's code deltas into the ``hot_code`` chunks (docs/protocol.md, "Envelopes").

    Chunks are ``[FENCE_OPEN, piece, ..., FENCE_CLOSE]``: the opener precedes the first code text,
    pieces are never empty, and the closer is sent exactly once, as soon as the code is known to be
    complete (json: its closing quote) or at ``close()``. The pieces join to the executed code.
    """

    __slots__ = ("extractor", "fence_open", "_opened", "_closed")

    def __init__(self, format: Format, fence_open: str = FENCE_OPEN) -> None:
        self.extractor = CodeExtractor(format)
        self.fence_open = fence_open  # "```python\n", or the thread's language's
        self._opened = False
        self._closed = False

    @property
    def closed(self) -> bool:
        """The fence closer has been emitted."""
        return self._closed

    def feed(self, fragment: str) -> list[Chunk]:
        """Consume one delta; return the chunks to send now (possibly none)."""
        text = self.extractor.feed(fragment)
        chunks: list[Chunk] = []
        if text and not self._closed:
            if not self._opened:
                chunks.append(hot_code(self.fence_open))
                self._opened = True
            chunks.append(hot_code(text))
        if self.extractor.complete and not self._closed:
            if not self._opened:
                chunks.append(hot_code(self.fence_open))
                self._opened = True
            chunks.append(hot_code(FENCE_CLOSE))
            self._closed = True
        return chunks

    def close(self) -> tuple[str, list[Chunk]]:
        """At execute: validate, return ``(code, chunks still owed)`` (opener and/or closer).

        Raises ``ProtocolError`` for invalid arguments; use ``abort()`` then to close the fence.
        Calling it again returns the same code and no chunks.
        """
        code = self.extractor.finish()
        chunks: list[Chunk] = []
        if not self._opened:
            chunks.append(hot_code(self.fence_open))
            self._opened = True
        if not self._closed:
            chunks.append(hot_code(FENCE_CLOSE))
            self._closed = True
        return code, chunks

    def abort(self) -> list[Chunk]:
        """The call will not run (bad arguments, cancelled): close a fence left open, if any."""
        if self._opened and not self._closed:
            self._closed = True
            return [hot_code(FENCE_CLOSE)]
        self._closed = True
        return []
