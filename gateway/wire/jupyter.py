"""Jupyter's kernel gateway API, the pure half: kernel ids, models, kernelspecs, the
``KERNEL_*`` variables of a start request, websocket frames and the messages the gateway writes
itself (no I/O here).

A Jupyter kernel is one of our threads. Its id is derived from the thread's scoped key, so it
is stable, needs no table, and another identity's id never names one of the caller's threads.
Jupyter Server only routes kernel ids shaped like UUIDs, hence uuid5.
"""

from __future__ import annotations

import datetime
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import ProtocolError
from .languages import DEFAULT, LANGUAGES, Language

Message = dict[str, Any]  # a kernel message: header, parent_header, metadata, content, buffers
V1_SUBPROTOCOL = "v1.kernel.websocket.jupyter.org"
PROTOCOL_VERSION = "5.3"
# Any fixed namespace: ids only need to be stable and not guessable from another identity's.
_NAMESPACE = uuid.UUID("6f1c2a0e-4d57-4a8e-9c3b-0a1d2e3f4b5c")
CHANNELS = ("shell", "control", "stdin", "iopub")
FROM_CLIENT = ("shell", "control", "stdin")
THREAD_PREFIX = "jupyter-"  # the thread ids of kernels a Jupyter client started

# What a start request's env may carry. Jupyter Server sends every KERNEL_* of its own
# environment (KERNEL_LAUNCH_TIMEOUT always, KERNEL_USERNAME, KERNEL_WORKING_DIR for the
# notebook's directory on *its* host): those are accepted and have nothing to do here.
IGNORED_ENV = {
    "KERNEL_LAUNCH_TIMEOUT": "kernels come warm from the pool",
    "KERNEL_USERNAME": "the token's identity owns the kernel",
    "KERNEL_WORKING_DIR": "the kernel's working directory is the thread's /mnt/data",
    "KERNEL_ID": None,  # honoured only when it is the id the gateway would give (see below)
}
THREAD_ENV = "KERNEL_THREAD_ID"  # ours: attach to (or start) this thread of the identity


class JupyterError(ProtocolError):
    """A refused Jupyter API request; ``status`` is its HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message, code="jupyter_request")
        self.status = status


def kernel_id(thread_key: str) -> str:
    """The Jupyter kernel id of a thread (``thread_key``: scoped per identity)."""
    return str(uuid.uuid5(_NAMESPACE, thread_key))


def spec_name(language: str) -> str:
    """The kernelspec name of a language: Python's is Jupyter's usual ``python3``."""
    return LANGUAGES[language].kernel_name if language == DEFAULT else language


def language_of_spec(name: object) -> Language:
    """The language a kernelspec name stands for; 404 for names this gateway has no spec of."""
    for language in LANGUAGES.values():
        if name in (spec_name(language.name), language.name):
            return language
    known = ", ".join(spec_name(n) for n in LANGUAGES)
    raise JupyterError(f"no such kernel {name!r:.60} (kernelspecs: {known})", 404)


def kernelspec(language: Language) -> Message:
    """The model of one kernelspec: what ``GET /api/kernelspecs/{name}`` returns."""
    name = spec_name(language.name)
    return {"name": name, "resources": {},
            "spec": {"argv": [], "env": {}, "display_name": display_name(language),
                     "language": language.name, "interrupt_mode": "message",
                     "metadata": {"sandboxed": True}}}


def display_name(language: Language) -> str:
    return f"{language.name.capitalize()} (sandboxed gateway)"


def kernelspecs(available: list[str]) -> Message:
    """``GET /api/kernelspecs``: the languages this host can run."""
    specs = {spec_name(name): kernelspec(LANGUAGES[name]) for name in available}
    default = spec_name(DEFAULT) if DEFAULT in available else next(iter(specs), "")
    return {"default": default, "kernelspecs": specs}


def iso_time(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).isoformat(
        timespec="microseconds").replace("+00:00", "Z")


def kernel_model(thread_key: str, language: str, last_activity: float, state: str,
                 connections: int) -> Message:
    """A kernel as ``GET /api/kernels`` lists it."""
    return {"id": kernel_id(thread_key), "name": spec_name(language),
            "last_activity": iso_time(last_activity), "execution_state": state,
            "connections": connections}


@dataclass(frozen=True)
class StartRequest:
    """A valid ``POST /api/kernels``: its language, and the thread to use (None: a new one)."""

    language: Language
    thread_id: str | None


def start_request(body: bytes, own_kernel_id: Callable[[str], str]) -> StartRequest:
    """Parse ``{"name", "env"}``. ``own_kernel_id(thread_id)``: the kernel id a thread of the
    caller would have (a ``KERNEL_ID`` must be that, or absent)."""
    try:
        data = orjson.loads(body) if body.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise JupyterError(f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise JupyterError("body must be a JSON object such as {\"name\": \"python3\"}")
    language = language_of_spec(data.get("name") or spec_name(DEFAULT))
    env = data.get("env") or {}
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise JupyterError("env must be an object of strings")
    refused = sorted(k for k in env if k not in IGNORED_ENV and k != THREAD_ENV)
    if refused:
        raise JupyterError(
            f"not supported: {', '.join(refused)[:300]}. The gateway's sandbox sets the "
            "kernel's image, user, resources and environment; accepted: "
            f"{', '.join(sorted([*IGNORED_ENV, THREAD_ENV]))} (set variables in a cell)")
    thread_id = env.get(THREAD_ENV) or None
    if thread_id is not None and (len(thread_id) > 128 or not thread_id.isprintable()):
        raise JupyterError(f"{THREAD_ENV}: at most 128 printable characters")
    if (wanted := env.get("KERNEL_ID")) and thread_id is None:
        raise JupyterError("KERNEL_ID cannot be chosen: the gateway names kernels after "
                           f"threads (use {THREAD_ENV})")
    if wanted and thread_id is not None and wanted != own_kernel_id(thread_id):
        raise JupyterError(f"KERNEL_ID does not match {THREAD_ENV}")
    return StartRequest(language, thread_id)


# -- websocket frames -------------------------------------------------------------------------

def _require_message(msg: object) -> Message:
    if not isinstance(msg, dict):
        raise ProtocolError("a kernel message must be a JSON object")
    header = msg.get("header")
    if not isinstance(header, dict) or not isinstance(header.get("msg_type"), str) \
            or not isinstance(header.get("msg_id"), str):
        raise ProtocolError("a kernel message needs a header with msg_id and msg_type")
    for key in ("parent_header", "metadata", "content"):
        if not isinstance(msg.setdefault(key, {}), dict):
            raise ProtocolError(f"a kernel message's {key} must be an object")
    return msg


def _channel_of(msg: Message) -> str:
    """The message's channel field, popped. Jupyter Server's GatewayKernelClient (nbclient's
    and papermill's way in) sends none: as Jupyter Server itself does, its messages go to
    shell, except those only another channel takes."""
    channel = msg.pop("channel", None)
    if channel is None:
        kind = msg["header"]["msg_type"]
        return ("stdin" if kind == "input_reply" else "control"
                if kind in ("interrupt_request", "shutdown_request", "debug_request")
                else "shell")
    return _check_channel(channel)


def _check_channel(channel: object) -> str:
    if channel not in FROM_CLIENT:
        raise ProtocolError(f"channel must be one of {', '.join(FROM_CLIENT)}, "
                            f"got {channel!r:.40}")
    return str(channel)


def decode_frame(frame: str | bytes, subprotocol: str | None) -> tuple[str, Message]:
    """A frame from a Jupyter client: (channel, message with ``buffers``); ProtocolError when
    it is not a kernel message for a channel a client may write."""
    if subprotocol == V1_SUBPROTOCOL:
        if isinstance(frame, str):
            raise ProtocolError("the v1 kernel protocol sends binary frames")
        return _decode_v1(frame)
    if isinstance(frame, bytes):
        return _decode_legacy_binary(frame)
    try:
        msg = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"frame is not JSON: {exc}") from None
    msg = _require_message(msg)
    msg["buffers"] = []
    return _channel_of(msg), msg


def _decode_v1(frame: bytes) -> tuple[str, Message]:
    try:
        count = int.from_bytes(frame[:8], "little")
        if not 6 <= count <= 1024 or len(frame) < 8 * (count + 1):
            raise ValueError
        offsets = [int.from_bytes(frame[8 * (i + 1):8 * (i + 2)], "little")
                   for i in range(count)]
        # Where each part starts, and where the last one ends.
        if offsets != sorted(offsets) or offsets[0] < 8 * (count + 1) \
                or offsets[-1] > len(frame):
            raise ValueError
        parts = [frame[offsets[i]:offsets[i + 1]] for i in range(count - 1)]
        channel = parts[0].decode()
        header, parent, metadata, content = (orjson.loads(p) for p in parts[1:5])
    except (ValueError, UnicodeDecodeError, orjson.JSONDecodeError):
        raise ProtocolError("malformed v1 kernel frame") from None
    msg = _require_message({"header": header, "parent_header": parent, "metadata": metadata,
                            "content": content})
    msg["buffers"] = [bytes(p) for p in parts[5:]]
    return _check_channel(channel), msg


def _decode_legacy_binary(frame: bytes) -> tuple[str, Message]:
    """The legacy protocol's frame for a message with buffers: a count, offsets, JSON, buffers."""
    try:
        count = struct.unpack("!I", frame[:4])[0]
        if not 1 <= count <= 1024 or len(frame) < 4 * (count + 1):
            raise ValueError
        offsets = [*struct.unpack("!" + "I" * count, frame[4:4 * (count + 1)]), len(frame)]
        if offsets != sorted(offsets):
            raise ValueError
        parts = [frame[offsets[i]:offsets[i + 1]] for i in range(count)]
        msg = orjson.loads(parts[0])
    except (ValueError, struct.error, orjson.JSONDecodeError):
        raise ProtocolError("malformed binary kernel frame") from None
    msg = _require_message(msg)
    msg["buffers"] = [bytes(p) for p in parts[1:]]
    return _channel_of(msg), msg


def encode_frame(channel: str, msg: Message, subprotocol: str | None) -> str | bytes:
    """A kernel message as the client's protocol frames it (legacy: JSON text, or the binary
    form when it carries buffers)."""
    buffers = [bytes(b) for b in msg.get("buffers") or []]
    parts = [orjson.dumps(msg.get(k) or {}) for k in ("header", "parent_header", "metadata",
                                                       "content")]
    if subprotocol == V1_SUBPROTOCOL:
        pieces = [channel.encode(), *parts, *buffers]
        offsets = [8 * (2 + len(pieces))]
        for piece in pieces:
            offsets.append(offsets[-1] + len(piece))
        head = len(offsets).to_bytes(8, "little") + b"".join(
            o.to_bytes(8, "little") for o in offsets)
        return head + b"".join(pieces)
    header = msg.get("header") or {}
    body = (b'{"header":' + parts[0] + b',"parent_header":' + parts[1] + b',"metadata":'
            + parts[2] + b',"content":' + parts[3] + b',"channel":' + orjson.dumps(channel)
            + b',"msg_id":' + orjson.dumps(header.get("msg_id")) + b',"msg_type":'
            + orjson.dumps(header.get("msg_type")) + b',"buffers":[]}')
    if not buffers:
        return body.decode()
    pieces = [body, *buffers]
    offsets = [4 * (len(pieces) + 1)]
    for piece in pieces[:-1]:
        offsets.append(offsets[-1] + len(piece))
    return struct.pack("!" + "I" * (len(pieces) + 1), len(pieces), *offsets) + b"".join(pieces)


# -- messages the gateway writes itself -------------------------------------------------------

def reply(request: Message, msg_type: str, content: Message, now: float) -> Message:
    """A message answering ``request`` (its parent), from the kernel's side."""
    header = request.get("header") or {}
    return {"header": {"msg_id": uuid.uuid4().hex, "msg_type": msg_type,
                       "session": header.get("session", ""), "username": "gateway",
                       "date": iso_time(now), "version": PROTOCOL_VERSION},
            "parent_header": header, "metadata": {}, "content": content, "buffers": []}


def kernel_info(language: Language) -> Message:
    """kernel_info_reply's content for a thread without a kernel now (hibernated): answered
    here, so that opening a notebook does not wake the thread."""
    info: Message = {"name": language.name, "version": "", "mimetype": "text/plain",
            "file_extension": ""}
    if language.name == DEFAULT:
        info = {"name": "python", "version": "3", "mimetype": "text/x-python",
                "file_extension": ".py", "pygments_lexer": "ipython3",
                "codemirror_mode": {"name": "ipython", "version": 3},
                "nbconvert_exporter": "python"}
    return {"status": "ok", "protocol_version": PROTOCOL_VERSION,
            "implementation": "code-interpreter-gateway", "implementation_version": "1",
            "language_info": info, "banner": display_name(language), "help_links": [],
            "debugger": False}


@dataclass(frozen=True)
class CellEnd:
    """How a Jupyter client's execute_request ended in the thread's queue."""

    state: str  # complete | error | timeout | interrupted | killed | refused
    execution_count: int | None = None
    ename: str | None = None
    evalue: str | None = None
    traceback: tuple[str, ...] = ()
    reason: str | None = None
    idle_sent: bool = True  # did the kernel publish this cell's idle (else it is written here)


def cell_end_messages(request: Message, end: CellEnd, now: float) -> list[tuple[str, Message]]:
    """What a Jupyter client still needs once its execute_request is over: the reply on
    shell, and when the kernel never got to say so, the error and idle on iopub."""
    out: list[tuple[str, Message]] = []
    ename, evalue, trace = end.ename, end.evalue, list(end.traceback)
    if end.state != "complete" and ename is None:
        ename = {"timeout": "TimeoutError", "interrupted": "KeyboardInterrupt"}.get(
            end.state, "GatewayError")
        evalue = end.reason or end.state
        trace = [f"{ename}: {evalue}"]
    if not end.idle_sent:
        out.append(("iopub", reply(request, "status", {"execution_state": "busy"}, now)))
        if ename is not None:
            out.append(("iopub", reply(request, "error", {
                "ename": ename, "evalue": evalue, "traceback": trace}, now)))
    if ename is None:
        content: Message = {"status": "ok", "execution_count": end.execution_count,
                   "user_expressions": {}, "payload": []}
    else:
        content = {"status": "error", "execution_count": end.execution_count,
                   "ename": ename, "evalue": evalue, "traceback": trace}
    out.append(("shell", reply(request, "execute_reply", content, now)))
    if not end.idle_sent:
        out.append(("iopub", reply(request, "status", {"execution_state": "idle"}, now)))
    return out
