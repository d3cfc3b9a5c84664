"""An async Python client, thin over ``websockets``: threads, code streaming, execution, files."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

FINAL_STATES = frozenset({"complete", "error", "timeout", "interrupted", "killed"})
_call_numbers = itertools.count(1)


def is_final(envelope: dict) -> bool:
    """Does this envelope end its call (the final status, or a protocol error for it)?"""
    chunk = envelope["chunk"]
    if chunk["type"] == "error":
        return True
    return chunk["type"] == "status" and chunk["content"].get("state") in FINAL_STATES


@dataclass
class Result:
    """Everything one call produced, folded."""

    call_id: str
    envelopes: list[dict] = field(default_factory=list)

    def _chunks(self, kind: str) -> list:
        return [e["chunk"]["content"] for e in self.envelopes if e["chunk"]["type"] == kind]

    @property
    def output(self) -> str:
        """The text as a screen shows it: a ``rewind`` drops the rewritten line it names."""
        pieces: list[str] = []
        for envelope in self.envelopes:
            chunk = envelope["chunk"]
            if chunk["type"] == "hot_code_output":
                pieces.append(chunk["content"])
            elif chunk["type"] == "rewind":
                text = "".join(pieces)
                pieces = [text[: max(len(text) - chunk["content"]["chars"], 0)]]
        return "".join(pieces)

    @property
    def hot_code(self) -> str:
        return "".join(self._chunks("hot_code"))

    @property
    def files(self) -> list[dict]:
        return self._chunks("code_interpreter_stream")

    @property
    def displays(self) -> list[dict]:
        """Rich results, as sent: ``{"source", "display_id", "data", ...}`` (docs/protocol.md)."""
        return self._chunks("display")

    @property
    def status(self) -> dict:
        statuses = self._chunks("status")
        return statuses[-1] if statuses else {}

    @property
    def state(self) -> str | None:
        errors = self._chunks("error")
        return "protocol_error" if errors else self.status.get("state")

    @property
    def error(self) -> dict | None:
        errors = self._chunks("error")
        return errors[-1] if errors else None


class GatewayClient:
    """One websocket connection; envelopes are routed to the call (or thread) that awaits them."""

    def __init__(self, connection: ClientConnection, http_base: str, token: str,
                 ssl_context: ssl.SSLContext | None = None,
                 reconnect: Callable[[], Awaitable[ClientConnection]] | None = None,
                 reconnect_for: float = 120.0) -> None:
        self.connection = connection
        self.http_base = http_base
        self.token = token
        self.ssl = ssl_context  # for the HTTP calls too (downloads, uploads)
        self.reconnects = 0
        self._calls: dict[tuple[str | None, str | None], asyncio.Queue] = defaultdict(
            asyncio.Queue)
        # Resuming after a dropped connection: how to connect again, and the last seq seen
        # of every thread this client used, so each can be subscribed again from there.
        self._reconnect = reconnect
        self._reconnect_for = reconnect_for
        self._seen: dict[str, int] = {}
        self._resume_acks: defaultdict[str, int] = defaultdict(int)
        self._connected = asyncio.Event()
        self._connected.set()
        self._closing = False
        self._failed: Exception | None = None
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, url: str, token: str, *, ssl: ssl.SSLContext | None = None,
                      **kwargs) -> GatewayClient:
        """``url`` like ``ws://127.0.0.1:8765/ws`` or ``wss://gw.example.com/ws``; ``ssl``: a
        client context for ``wss://`` (a private CA, a client certificate for mutual TLS),
        used for the HTTP calls as well. Without it the system's CAs are trusted."""
        parts = urllib.parse.urlsplit(url)
        secure = parts.scheme == "wss"
        if secure:
            kwargs["ssl"] = ssl or _default_context()
        reconnect = kwargs.pop("reconnect", True)

        async def open_connection() -> ClientConnection:
            return await connect(url, additional_headers={"Authorization": f"Bearer {token}"},
                                 max_size=None, compression=None, **kwargs)

        scheme = "https" if secure else "http"
        return cls(await open_connection(), f"{scheme}://{parts.netloc}", token,
                   kwargs.get("ssl") if secure else None,
                   reconnect=open_connection if reconnect else None)

    async def __aenter__(self) -> GatewayClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        self._closing = True
        self._reader.cancel()
        await self.connection.close()

    async def _read(self) -> None:
        while True:
            with contextlib.suppress(ConnectionClosed):
                async for message in self.connection:
                    self._deliver(orjson.loads(message))
            # Only a dropped connection (no close frame: 1006) is resumed; a close the gateway
            # chose (shutdown, revoked token, slow reader) is final.
            if self._closing or self._reconnect is None or self.connection.close_code != 1006:
                return
            try:
                await self._resume()
            except ConnectionClosed:
                continue  # dropped again while resubscribing: the loop resumes once more
            except Exception as exc:  # gave up: every waiter learns it instead of hanging
                self._failed = exc
                self._connected.set()
                for (thread_id, call_id), queue in self._calls.items():
                    queue.put_nowait({"stream_type": "code_execution", "thread_id": thread_id,
                                      "call_id": call_id, "chunk": {"type": "error", "content": {
                                          "code": "disconnected",
                                          "message": f"could not reconnect: {exc!r}"}}})
                return

    def _deliver(self, envelope: dict) -> None:
        # Any: a JSON value, as the gateway sent it (a string or null).
        thread_id: Any = envelope.get("thread_id")
        seq = envelope.get("seq")
        if isinstance(thread_id, str) and isinstance(seq, int) and not envelope.get("replayed"):
            if seq <= self._seen.get(thread_id, 0):
                return  # already had it before the connection dropped
            self._seen[thread_id] = seq
        chunk = envelope.get("chunk", {})
        if chunk.get("type") == "subscribed" and self._resume_acks.get(thread_id):
            self._resume_acks[thread_id] -= 1  # our own resume, not the caller's subscribe
            return
        self._calls[(thread_id, envelope.get("call_id"))].put_nowait(envelope)

    async def _resume(self) -> None:
        """Connect again (with backoff) and subscribe every known thread from its last seq:
        the gateway replays what was missed, or says what it can no longer replay (``gap``)."""
        self._connected.clear()
        self._resume_acks.clear()  # acks owed by a connection that died will never come
        deadline = asyncio.get_running_loop().time() + self._reconnect_for
        delay = 0.05
        while True:
            try:
                assert self._reconnect is not None
                self.connection = await self._reconnect()
                break
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                if isinstance(exc, InvalidStatus) and exc.response.status_code < 500:
                    raise  # refused (token, origin): asking again will not help
                if asyncio.get_running_loop().time() + delay > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.reconnects += 1
        for thread_id, seq in list(self._seen.items()):
            self._resume_acks[thread_id] += 1
            await self.connection.send(orjson.dumps(
                {"type": "subscribe", "thread_id": thread_id, "since_seq": seq}).decode())
        self._connected.set()

    async def send(self, message: dict) -> None:
        thread_id = message.get("thread_id")
        if isinstance(thread_id, str):
            self._seen.setdefault(thread_id, 0)
        text = orjson.dumps(message).decode()
        while True:
            await self._connected.wait()
            if self._failed is not None:
                raise self._failed
            connection = self.connection
            try:
                await connection.send(text)
                return
            except ConnectionClosed:
                if self._reconnect is None or self._closing:
                    raise
                # Not sent: once the reader has a new connection, send it again; when the
                # reader gave up or will not resume (a close the gateway chose), fail as before.
                while (self.connection is connection and self._failed is None
                       and not self._reader.done()):
                    await asyncio.sleep(0.02)
                if self.connection is connection:
                    raise

    async def next_envelope(self, thread_id: str | None, call_id: str | None,
                            timeout: float | None = None) -> dict:
        return await asyncio.wait_for(self._calls[(thread_id, call_id)].get(), timeout)

    def thread(self, thread_id: str, language: str | None = None) -> Thread:
        """A thread handle; ``language`` (``bash``, ...) is chosen by its first request."""
        return Thread(self, thread_id, language)

    def upload_http(self, thread_id: str, filename: str, source: bytes | str | os.PathLike,
                    call_id: str | None = None) -> dict:
        """Blocking HTTP PUT of a (large) file into the thread's working directory, streamed
        from disk when ``source`` is a path; returns the confirmation (run it in a thread
        from async code). Raises ``UploadError`` when the gateway refuses it. Uploads go to
        the websocket's own port."""
        url = (f"{self.http_base}/threads/"
               f"{urllib.parse.quote(thread_id, safe='')}/files/{urllib.parse.quote(filename)}")
        if call_id:
            url += f"?call_id={urllib.parse.quote(call_id, safe='')}"
        with contextlib.ExitStack() as stack:
            body: bytes | BinaryIO
            if isinstance(source, bytes):
                body, length = source, len(source)
            else:
                body = stack.enter_context(open(source, "rb"))
                length = os.fstat(body.fileno()).st_size
            request = urllib.request.Request(url, data=body, method="PUT", headers={
                "Authorization": f"Bearer {self.token}", "Content-Length": str(length),
                "Content-Type": "application/octet-stream"})
            try:
                with urllib.request.urlopen(request, timeout=600, context=self.ssl) as response:
                    return orjson.loads(response.read())
            except urllib.error.HTTPError as exc:
                error = orjson.loads(exc.read() or b"{}").get("error", {})
                raise UploadError(exc.code, error.get("code", "error"),
                                  error.get("message", str(exc))) from None

    def download(self, file_id: str) -> bytes:
        """Blocking HTTP GET of a stored file (run it in a thread from async code)."""
        request = urllib.request.Request(f"{self.http_base}/files/{file_id}",
                                         headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=60, context=self.ssl) as response:
            return response.read()

    def download_to(self, file_id: str, path: str | os.PathLike, *, resume: bool = False,
                    block: int = 2**20) -> int:
        """Blocking streamed GET of a stored file into ``path``, ``block`` bytes at a time (a
        file of any size, in bounded memory); ``resume`` continues a partial ``path`` with a
        ``Range`` request. Returns the file's size."""
        start = os.path.getsize(path) if resume and os.path.exists(path) else 0
        headers = {"Authorization": f"Bearer {self.token}"}
        if start:
            headers["Range"] = f"bytes={start}-"
        request = urllib.request.Request(f"{self.http_base}/files/{file_id}", headers=headers)
        try:
            response = urllib.request.urlopen(request, timeout=60, context=self.ssl)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and start:  # nothing left: the partial file is complete
                return start
            raise
        with response, open(path, "ab" if response.status == 206 else "wb") as sink:
            while data := response.read(block):
                sink.write(data)
            return sink.tell()


class Thread:
    def __init__(self, client: GatewayClient, thread_id: str,
                 language: str | None = None) -> None:
        self.client = client
        self.id = thread_id
        self.language = language  # sent with every execute and code delta (None: python)

    @staticmethod
    def new_call_id() -> str:
        return f"call_{next(_call_numbers)}"

    async def stream(self, call_id: str) -> AsyncIterator[dict]:
        """Envelopes of one call as they arrive, up to and including its final one."""
        while True:
            envelope = await self.client.next_envelope(self.id, call_id)
            yield envelope
            if is_final(envelope):
                return

    async def execute(self, code: str | None = None, *, call_id: str | None = None,
                      timeout: float | None = None, env: dict[str, str] | None = None,
                      egress_allow: list[str] | None = None) -> str:
        """Send an execute request; returns the call id to ``stream`` or ``collect``.
        ``env``: environment variables this cell alone sees; ``egress_allow``: host patterns
        this cell's egress is narrowed to."""
        call_id = call_id or self.new_call_id()
        message: dict = {"type": "execute", "thread_id": self.id, "call_id": call_id}
        if code is not None:
            message["code"] = code
        if timeout is not None:
            message["timeout"] = timeout
        if self.language is not None:
            message["language"] = self.language
        if env:
            message["env"] = env
        if egress_allow is not None:
            message["egress_allow"] = egress_allow
        await self.client.send(message)
        return call_id

    async def send_code(self, call_id: str, fragments: Iterable[str], fmt: str = "json") -> None:
        extra = {"language": self.language} if self.language is not None else {}
        for fragment in fragments:
            await self.client.send({"type": "code_delta", "thread_id": self.id,
                                    "call_id": call_id, "delta": fragment, "format": fmt,
                                    **extra})

    async def collect(self, call_id: str, timeout: float | None = None) -> Result:
        result = Result(call_id)

        async def gather() -> None:
            async for envelope in self.stream(call_id):
                result.envelopes.append(envelope)

        await asyncio.wait_for(gather(), timeout)
        return result

    async def run(self, code: str, *, timeout: float | None = None,
                  wait: float | None = 300, env: dict[str, str] | None = None,
                  egress_allow: list[str] | None = None) -> Result:
        """Execute and wait for the final status."""
        call_id = await self.execute(code, timeout=timeout, env=env, egress_allow=egress_allow)
        return await self.collect(call_id, wait)

    async def interrupt(self) -> None:
        await self.client.send({"type": "interrupt", "thread_id": self.id})

    async def restart(self) -> None:
        await self.client.send({"type": "restart", "thread_id": self.id})

    async def close(self) -> None:
        await self.client.send({"type": "close", "thread_id": self.id})

    async def subscribe(self) -> None:
        await self.client.send({"type": "subscribe", "thread_id": self.id})
        await self.client.next_envelope(self.id, None, timeout=30)

    async def upload(self, filename: str, data: bytes, call_id: str | None = None,
                     part_size: int = 8 * 2**20) -> dict:
        """Upload a file, in parts of ``part_size`` bytes; returns the final confirmation chunk
        (or the first error chunk)."""
        call_id = call_id or self.new_call_id()
        offset = 0
        while True:
            part = data[offset : offset + part_size]
            final = offset + len(part) >= len(data)
            await self.client.send({
                "type": "upload", "thread_id": self.id, "call_id": call_id,
                "filename": filename, "base64": base64.b64encode(part).decode(),
                "offset": offset, "final": final})
            envelope = await self.client.next_envelope(self.id, call_id, timeout=120)
            offset += len(part)
            if final or envelope["chunk"]["type"] == "error":
                return envelope["chunk"]


def _default_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def client_context(cafile: str | None = None, certfile: str | None = None,
                   keyfile: str | None = None) -> ssl.SSLContext:
    """A client TLS context trusting ``cafile`` (a private CA; the system's CAs without it),
    presenting ``certfile``/``keyfile`` when the gateway asks for a client certificate."""
    context = ssl.create_default_context(cafile=cafile)
    if certfile:
        context.load_cert_chain(certfile, keyfile)
    return context


async def admin_call(url: str, token: str, command: dict, timeout: float = 120,
                     ssl: ssl.SSLContext | None = None) -> object:
    """One admin command over ``/admin``; returns its result or raises ``AdminError``."""
    extra: dict[str, Any] = {"ssl": ssl or _default_context()} if url.startswith("wss:") else {}
    try:
        async with connect(url, additional_headers={"Authorization": f"Bearer {token}"},
                           max_size=None, compression=None, **extra) as connection:
            await connection.send(orjson.dumps(command).decode())
            answer = orjson.loads(await asyncio.wait_for(connection.recv(), timeout))
    except InvalidStatus as exc:  # refused before the websocket opened: say why, not how
        status = exc.response.status_code
        raise AdminError("unauthorized" if status == 401 else f"http_{status}",
                         f"HTTP {status}: " + ADMIN_REFUSALS.get(status, "the gateway refused "
                                                                 "the admin connection")) from exc
    if not answer.get("ok"):
        error = answer.get("error", {})
        raise AdminError(error.get("code", "error"), error.get("message", "admin command failed"))
    return answer["result"]


class UploadError(Exception):
    """The gateway refused an HTTP upload: HTTP status, error code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code


ADMIN_REFUSALS = {
    401: "the admin token was refused: it must be the server's admin token (its "
         "GATEWAY_ADMIN_TOKEN; a server started without one takes no admin commands), "
         "not a client token",
    403: "this origin may not use the admin endpoint",
}


class AdminError(Exception):
    """The server refused or failed an admin command."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
