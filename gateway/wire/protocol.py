"""Inbound messages: parse and validate what clients send (docs/protocol.md, "Requests").

Pure functions and frozen dataclasses, no I/O, in the style of h11 events: every request type
validates its own fields on construction, so an object of one of these classes is valid wherever
it travels, and ``parse_request`` is the single place that turns untrusted text into one of them.
Anything wrong with a message raises ``ProtocolError`` (never another exception), whose ``code``
and message go back to the client in an error chunk; messages never echo more than a short clip
of what the client sent.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import orjson

from .. import egress_policy
from ..errors import ProtocolError
from .languages import find as find_language

__all__ = [
    "ID_PATTERN",
    "MAX_ID_LENGTH",
    "MAX_FILENAME_BYTES",
    "MAX_COMPONENT_BYTES",
    "CodeDelta",
    "Execute",
    "Interrupt",
    "Restart",
    "Close",
    "Subscribe",
    "Result",
    "Upload",
    "Request",
    "REQUEST_TYPES",
    "ProtocolError",  # raised by everything here; defined in gateway.errors
    "parse_request",
    "validate_id",
    "validate_filename",
    "scoped_thread_id",
    "client_thread_id",
]

MAX_ID_LENGTH = 128
# Ids end up in file paths, metric labels and log lines: a conservative ASCII alphabet, starting
# with an alphanumeric so an id is never "-x" (an option) or ".x" (hidden / traversal).
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}")
# Linux file systems limit a name component to 255 bytes and we keep whole paths modest.
MAX_COMPONENT_BYTES = 255
MAX_FILENAME_BYTES = 1024
DEFAULT_MAX_TIMEOUT = 3600.0
DEFAULT_MAX_UPLOAD_BYTES = 50 * 2**20
# Characters no file name needs and that hide or spoof things: controls (incl. NUL, newline),
# format characters (bidi overrides such as U+202E, zero-width chars), lone surrogates, and the
# Unicode line/paragraph separators.
UNSAFE_NAME_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_CLIP = 80


def _clip(value: object) -> str:
    """A short repr of client input for error messages: never echo a megabyte back."""
    if isinstance(value, str | bytes):
        text = repr(value[: _CLIP + 1])
    elif value is None or isinstance(value, bool | int | float):
        text = repr(value)
    else:  # containers: naming the type is enough, and repr() of a huge one is costly
        return f"<{_json_type(value)}>"
    return text if len(text) <= _CLIP else text[: _CLIP - 3] + "..."


def _json_type(value: object) -> str:
    """The JSON name of a parsed value's type, for "expected X, got Y" messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def validate_id(value: object, field: str) -> str:
    """Check a thread or call id and return it.

    Ids are used as directory names and dictionary keys, so they must be short, printable ASCII,
    free of '/' and of '..' (no path traversal even if someone joins them into a path).
    """
    if value is None:
        raise ProtocolError(f"{field}: required string")
    if not isinstance(value, str):
        raise ProtocolError(f"{field}: expected string, got {_json_type(value)}")
    if not value:
        raise ProtocolError(f"{field}: must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise ProtocolError(f"{field}: longer than {MAX_ID_LENGTH} characters")
    if ID_PATTERN.fullmatch(value) is None:
        raise ProtocolError(
            f"{field}: {_clip(value)} must start with a letter or digit and contain only "
            "letters, digits and '_.:@-'"
        )
    if ".." in value:
        raise ProtocolError(f"{field}: {_clip(value)} must not contain '..'")
    return value


def scoped_thread_id(identity: str, thread_id: str) -> str:
    """The gateway's name for ``identity``'s thread ``thread_id``.

    Thread ids are the client's, scoped per identity: alice's ``t1`` and bob's ``t1`` are two
    threads, so no identity can learn which ids another uses or take one first. A client id
    never holds '/', so the last '/' separates the two whatever the identity is.
    """
    return f"{identity}/{thread_id}"


def client_thread_id(scoped: str) -> str:
    """The id the client knows for a scoped thread (``scoped_thread_id``'s ``thread_id``)."""
    return scoped.rpartition("/")[2]


def validate_filename(name: object) -> str:
    """Check an uploaded file's name and return it as a safe relative POSIX path.

    The name is joined under the thread's working directory, so anything that could escape it or
    surprise a later reader is rejected rather than silently repaired (a repaired name would
    silently differ from what the user asked for): absolute paths, '..', empty or '.' components,
    backslashes, control and invisible characters, hidden files (leading '.'), and names longer
    than the file system allows.
    """
    if name is None:
        raise ProtocolError("upload.filename: required string", code="bad_filename")
    if not isinstance(name, str):
        raise ProtocolError(
            f"upload.filename: expected string, got {_json_type(name)}", code="bad_filename"
        )
    if not name:
        raise ProtocolError("upload.filename: must not be empty", code="bad_filename")
    too_long = f"upload.filename: longer than {MAX_FILENAME_BYTES} bytes"
    if len(name) > MAX_FILENAME_BYTES:  # cheap guard before looking at every character
        raise ProtocolError(too_long, code="bad_filename")
    for char in name:
        if unicodedata.category(char) in UNSAFE_NAME_CATEGORIES:
            raise ProtocolError(
                f"upload.filename: {_clip(name)} contains control or invisible character "
                f"U+{ord(char):04X}",
                code="bad_filename",
            )
    if len(name.encode("utf-8")) > MAX_FILENAME_BYTES:  # no surrogates left: cannot fail
        raise ProtocolError(too_long, code="bad_filename")
    if "\\" in name:
        raise ProtocolError(
            f"upload.filename: {_clip(name)} contains a backslash; use '/'", code="bad_filename"
        )
    if name.startswith("/"):
        raise ProtocolError(
            f"upload.filename: {_clip(name)} must be relative", code="bad_filename"
        )
    for part in name.split("/"):
        if part in ("", ".", ".."):
            raise ProtocolError(
                f"upload.filename: {_clip(name)} has an empty, '.' or '..' component",
                code="bad_filename",
            )
        if part.startswith("."):
            raise ProtocolError(
                f"upload.filename: {_clip(name)} has a hidden component (leading '.')",
                code="bad_filename",
            )
        if len(part.encode("utf-8")) > MAX_COMPONENT_BYTES:
            raise ProtocolError(
                f"upload.filename: a component is longer than {MAX_COMPONENT_BYTES} bytes",
                code="bad_filename",
            )
    return name


def _check_str(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise ProtocolError(f"{field}: expected string, got {_json_type(value)}")
    return value


def _check_timeout(value: object, field: str) -> float:
    """A positive finite number of seconds. ``bool`` is an ``int`` in Python, not here."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(f"{field}: expected number, got {_json_type(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ProtocolError(f"{field}: must be a finite number")
    if not value > 0:
        raise ProtocolError(f"{field}: must be greater than 0, got {_clip(value)}")
    try:
        return float(value)
    except OverflowError:  # an int beyond float range (only possible when built directly)
        raise ProtocolError(f"{field}: too large") from None


ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
MAX_ENV_VARIABLES = 64
MAX_ENV_BYTES = 32 * 1024  # names and values, UTF-8


def validate_env(env: object) -> dict[str, str]:
    """``execute.env``: an object of at most 64 string variables (32 KiB in all), names as a
    shell accepts them, values without NUL. The message never quotes a value."""
    if not isinstance(env, dict):
        raise ProtocolError(f"execute.env: expected an object, got {_json_type(env)}")
    if len(env) > MAX_ENV_VARIABLES:
        raise ProtocolError(f"execute.env: at most {MAX_ENV_VARIABLES} variables, got {len(env)}")
    size = 0
    for name, value in env.items():
        if not isinstance(name, str) or not ENV_NAME.fullmatch(name):
            raise ProtocolError(f"execute.env: bad variable name {_clip(name)} (letters, digits "
                                "and _, not starting with a digit, at most 128)")
        if not isinstance(value, str) or "\x00" in value:
            raise ProtocolError(f"execute.env: the value of {name} must be a string without NUL")
        size += len(name.encode()) + len(value.encode("utf-8", "surrogatepass"))
    if size > MAX_ENV_BYTES:
        raise ProtocolError(f"execute.env: at most {MAX_ENV_BYTES} bytes of names and values")
    return env


MAX_EGRESS_PATTERNS = 64


def validate_egress(patterns: object) -> tuple[str, ...]:
    """``execute.egress_allow``: a list of at most 64 host patterns (docs/egress.md)."""
    if not isinstance(patterns, list | tuple):
        raise ProtocolError(f"execute.egress_allow: expected a list, got {_json_type(patterns)}")
    if len(patterns) > MAX_EGRESS_PATTERNS:
        raise ProtocolError(f"execute.egress_allow: at most {MAX_EGRESS_PATTERNS} patterns")
    if not all(isinstance(p, str) and len(p) <= 300 for p in patterns):
        raise ProtocolError("execute.egress_allow: each pattern must be a string")
    try:
        egress_policy.parse_rules(patterns, "the request's egress_allow")
    except ValueError as exc:
        raise ProtocolError(f"execute.egress_allow: {str(exc)[:400]}") from None
    return tuple(patterns)


@dataclass(frozen=True, slots=True)
class CodeDelta:
    """A fragment of a call's code as the model writes it.

    ``format="json"``: fragments of the tool call's JSON arguments ``{"code": "..."}``, split at
    any point; ``format="raw"``: fragments of the code itself. May be empty.
    """

    TYPE: ClassVar[str] = "code_delta"
    thread_id: str
    call_id: str
    delta: str
    format: Literal["json", "raw"] = "json"
    language: str | None = None  # the thread's, on its first request (gateway/languages)

    def __post_init__(self) -> None:
        validate_id(self.thread_id, "code_delta.thread_id")
        validate_id(self.call_id, "code_delta.call_id")
        if self.language is not None:
            find_language(self.language)
        if self.delta is None:
            raise ProtocolError("code_delta.delta: required string")
        _check_str(self.delta, "code_delta.delta")
        if self.format not in ("json", "raw"):
            raise ProtocolError(
                f'code_delta.format: expected "json" or "raw", got {_clip(self.format)}'
            )


@dataclass(frozen=True, slots=True)
class Execute:
    """Run a call: ``code`` if given, else what the call's deltas built.

    ``timeout`` (seconds) is stored as a float; ``None`` means the server's default.
    """

    TYPE: ClassVar[str] = "execute"
    thread_id: str
    call_id: str
    code: str | None = None
    timeout: float | None = None
    language: str | None = None  # the thread's, on its first request (gateway/languages)
    # Variables this cell alone sees; values may be secrets: never in a repr or a log.
    env: dict[str, str] | None = field(default=None, repr=False)
    # Host patterns this cell's egress is narrowed to (docs/egress.md); never widens.
    egress_allow: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        validate_id(self.thread_id, "execute.thread_id")
        validate_id(self.call_id, "execute.call_id")
        if self.env is not None:
            validate_env(self.env)
        if self.egress_allow is not None:
            object.__setattr__(self, "egress_allow", validate_egress(self.egress_allow))
        if self.language is not None:
            find_language(self.language)
        if self.code is not None:
            _check_str(self.code, "execute.code")
        if self.timeout is not None:
            object.__setattr__(self, "timeout", _check_timeout(self.timeout, "execute.timeout"))

    def egress_rules(self) -> tuple[egress_policy.Rule, ...] | None:
        if self.egress_allow is None:
            return None
        return egress_policy.parse_rules(self.egress_allow, "the request's egress_allow")


@dataclass(frozen=True, slots=True)
class Interrupt:
    """Interrupt the thread's running execution (KeyboardInterrupt in the kernel)."""

    TYPE: ClassVar[str] = "interrupt"
    thread_id: str

    def __post_init__(self) -> None:
        validate_id(self.thread_id, "interrupt.thread_id")


@dataclass(frozen=True, slots=True)
class Restart:
    """Replace the thread's kernel with a fresh one (state is lost, files stay)."""

    TYPE: ClassVar[str] = "restart"
    thread_id: str

    def __post_init__(self) -> None:
        validate_id(self.thread_id, "restart.thread_id")


@dataclass(frozen=True, slots=True)
class Close:
    """End the thread: its kernel is released, its files remain downloadable."""

    TYPE: ClassVar[str] = "close"
    thread_id: str

    def __post_init__(self) -> None:
        validate_id(self.thread_id, "close.thread_id")


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Receive a thread's envelopes live on this connection (e.g. a frontend watching).

    ``since_seq``: the last ``seq`` this client saw; what came after it is sent first."""

    TYPE: ClassVar[str] = "subscribe"
    thread_id: str
    since_seq: int | None = None

    def __post_init__(self) -> None:
        validate_id(self.thread_id, "subscribe.thread_id")
        if self.since_seq is not None and (type(self.since_seq) is not int
                                           or self.since_seq < 0):
            raise ProtocolError("subscribe.since_seq: expected a non-negative integer, got "
                                f"{_clip(self.since_seq)}")


@dataclass(frozen=True, slots=True)
class Result:
    """Ask again for a finished call's final status (after a dropped connection)."""

    TYPE: ClassVar[str] = "result"
    thread_id: str
    call_id: str

    def __post_init__(self) -> None:
        validate_id(self.thread_id, "result.thread_id")
        validate_id(self.call_id, "result.call_id")


@dataclass(frozen=True, slots=True)
class Upload:
    """Put a file into the thread's working directory; ``filename`` is a safe relative path."""

    TYPE: ClassVar[str] = "upload"
    thread_id: str
    filename: str
    data: bytes = field(repr=False)  # may be tens of megabytes: keep it out of logs
    call_id: str | None = None
    # A file larger than one message is sent in parts: ``offset`` of this part, ``final`` on the
    # last. The parts go to a hidden file that becomes visible under ``filename`` at the end.
    offset: int = 0
    final: bool = True

    def __post_init__(self) -> None:
        validate_id(self.thread_id, "upload.thread_id")
        object.__setattr__(self, "filename", validate_filename(self.filename))
        if not isinstance(self.data, bytes):
            raise ProtocolError(f"upload.data: expected bytes, got {type(self.data).__name__}")
        if self.call_id is not None:
            validate_id(self.call_id, "upload.call_id")
        if type(self.offset) is not int or self.offset < 0:
            raise ProtocolError(f"upload.offset: expected a non-negative integer, got "
                                f"{_clip(self.offset)}")
        if type(self.final) is not bool:
            raise ProtocolError(f"upload.final: expected boolean, got {_json_type(self.final)}")
        if (self.offset or not self.final) and self.call_id is None:
            raise ProtocolError("upload: a file sent in parts needs a call_id naming the upload")


Request = CodeDelta | Execute | Interrupt | Restart | Close | Subscribe | Result | Upload

REQUEST_TYPES: dict[str, type[Request]] = {
    cls.TYPE: cls for cls in (CodeDelta, Execute, Interrupt, Restart, Close, Subscribe, Result,
                              Upload)
}
_KNOWN = ", ".join(sorted(REQUEST_TYPES))


def _decode_base64(encoded: object, max_bytes: int) -> bytes:
    """Strict base64 (no whitespace, no junk), refusing oversized payloads before decoding."""
    if encoded is None:
        raise ProtocolError("upload.base64: required string")
    encoded = _check_str(encoded, "upload.base64")
    # Every 4 characters decode to at most 3 bytes: anything longer than this cannot fit.
    if len(encoded) > 4 * -(-max_bytes // 3):
        raise ProtocolError(f"upload: file larger than {max_bytes} bytes", code="too_large")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):  # ValueError: non-ASCII characters
        raise ProtocolError("upload.base64: not valid base64") from None
    if len(data) > max_bytes:
        raise ProtocolError(f"upload: file larger than {max_bytes} bytes", code="too_large")
    return data


def parse_request(
    raw: str | bytes,
    *,
    max_timeout: float = DEFAULT_MAX_TIMEOUT,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
) -> Request:
    """Turn one websocket message into a validated request, or raise ``ProtocolError``.

    Unknown extra fields are ignored (newer clients may send more); ``null`` counts as absent
    for optional fields. ``max_timeout`` and ``max_upload_bytes`` are server policy, which is why
    they are checked here and not by the dataclasses.
    """
    if not isinstance(raw, str | bytes | bytearray | memoryview):
        raise TypeError(f"parse_request takes str or bytes, not {type(raw).__name__}")
    try:
        # orjson validates UTF-8 itself and caps nesting depth, so bytes go in without a copy.
        message: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if not isinstance(raw, str):
            try:
                bytes(raw).decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolError("message is not valid UTF-8") from None
        raise ProtocolError(f"invalid JSON: {str(exc)[:200]}") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"message must be a JSON object, got {_json_type(message)}")

    kind = message.get("type")
    if not isinstance(kind, str) or kind not in REQUEST_TYPES:
        what = "message has no type" if kind is None else f"unknown message type {_clip(kind)}"
        raise ProtocolError(f"{what}; expected one of: {_KNOWN}", code="unknown_type")

    # Fields are JSON values of any type here: each request class validates its own.
    get: Callable[[str], Any] = message.get
    if kind == "code_delta":
        fmt = get("format")
        return CodeDelta(get("thread_id"), get("call_id"), get("delta"),
                         "json" if fmt is None else fmt, get("language"))
    if kind == "execute":
        timeout = get("timeout")
        if timeout is not None:
            timeout = _check_timeout(timeout, "execute.timeout")
            if timeout > max_timeout:
                raise ProtocolError(
                    f"execute.timeout: at most {max_timeout:g} seconds, got {timeout:g}"
                )
        env = get("env")
        return Execute(get("thread_id"), get("call_id"), get("code"), timeout, get("language"),
                       env or None, get("egress_allow"))
    if kind == "upload":
        # Cheap checks first: don't decode megabytes of base64 for a message with a bad id.
        thread_id = validate_id(get("thread_id"), "upload.thread_id")
        filename = validate_filename(get("filename"))
        call_id = get("call_id")
        if call_id is not None:
            validate_id(call_id, "upload.call_id")
        data = _decode_base64(get("base64"), max_upload_bytes)
        offset, final = get("offset"), get("final")
        return Upload(thread_id, filename, data, call_id, 0 if offset is None else offset,
                      True if final is None else final)
    if kind == "subscribe":
        return Subscribe(get("thread_id"), get("since_seq"))
    if kind == "result":
        return Result(get("thread_id"), get("call_id"))
    return REQUEST_TYPES[kind](get("thread_id"))  # type: ignore[call-arg]
