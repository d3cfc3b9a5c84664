"""The websocket server: auth at the handshake, routing of requests, HTTP on the same port.

Everything here moves messages between sockets and the ``Gateway``; no execution logic lives here.
One port serves it all: ``gateway/net/front.py`` gives each connection to websockets (handshakes and
small GETs, answered by ``_process_request``) or to ``gateway/net/http_handler.py`` (streamed
downloads, uploads).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import http
import logging
import mimetypes
import re
import ssl
import urllib.parse
from collections.abc import Awaitable
from pathlib import Path

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol

from .. import auth, hosts, origins
from ..app import Gateway
from ..cluster.routing import Relays
from ..config import Settings
from ..errors import GatewayError, NotAllowed
from ..signed_tokens import Access
from ..wire import envelopes, jupyter, protocol
from . import probes, tls
from .admin import error_answer, execute_admin
from .front import FrontProtocol
from .http_handler import HttpHandler
from .http_upload import PATH as UPLOAD_PATH
from .http_upload import error_body
from .jupyter_channels import JupyterChannels
from .jupyter_kernels import CHANNELS_PATH, split_path

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent.parent / "static"
CALL_PATH = re.compile(r"/threads/([^/]+)/calls/([^/]+)")
# The page's own files, and the renderers scripts/vendor-static.sh put under vendor/ (one
# directory level of plain names, so no path can climb out).
STATIC_PATH = re.compile(r"/static/((?:vendor/[a-z]+/(?:fonts/)?)?"
                         r"[A-Za-z0-9_-][A-Za-z0-9_.-]*\.(?:html|js|mjs|css|png|svg|ico|woff2))")
# frame-ancestors only works as a header; the page's meta tag carries the rest too.
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
            "font-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'")
OUTBOUND_BUFFER_BYTES = 64 * 2**20  # a client that reads slower than this is disconnected
# What a SIGHUP reload changes in a running gateway; everything else needs a restart.
RELOADABLE = ("tokens", "admin_token", "allowed_origins", "allowed_hosts", "tls_cert", "tls_key",
              "tls_client_ca", "token_signing_key")
CLOSE_TOKEN_REVOKED = 1008  # policy violation: the token this connection opened with is gone


def _bearer(request: Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        return auth[len("Bearer "):].strip()
    query = urllib.parse.urlsplit(request.path).query
    return urllib.parse.parse_qs(query).get("token", [None])[0]


def _response(status: int, body: bytes, content_type: str, **headers: str) -> Response:
    h = Headers({"Content-Type": content_type, "Content-Length": str(len(body)),
                 "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})
    for key, value in headers.items():
        h[key.replace("_", "-")] = value
    return Response(status, http.HTTPStatus(status).phrase, h, body)


def _jupyter_subprotocol(offered) -> str | None:
    return jupyter.V1_SUBPROTOCOL if jupyter.V1_SUBPROTOCOL in offered else None


def _json(status: int, data: object) -> Response:
    return _response(status, orjson.dumps(data), "application/json")


def _minted(gateway, query: dict[str, list[str]]) -> Response:
    """``GET /admin/token?identity=ID[&thread=T...][&ttl=15m]``: a signed short-lived token for
    a browser (never logged; ``no-store`` like every answer here)."""
    from ..signed_tokens import mint
    from ..units import parse_duration

    try:
        identity = query.get("identity", [""])[0]
        ttl = parse_duration(query.get("ttl", ["15m"])[0])
        token = mint(gateway.signing_key(), identity, ttl, query.get("thread", []))
    except ValueError as exc:
        return _json(400, {"error": str(exc)})
    threads = sorted(set(query.get("thread", []))) or None
    return _json(200, {"token": token, "identity": identity, "threads": threads,
                       "expires_in": ttl})


def _routing_of(message: str | bytes) -> tuple[str | None, str | None]:
    """Best effort: route an error for a rejected request to its thread and call, if valid."""
    try:
        data = orjson.loads(message)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    ids: list[str | None] = []
    for key in ("thread_id", "call_id"):
        try:
            ids.append(protocol.validate_id(data.get(key), key))
        except GatewayError:
            ids.append(None)
    return ids[0], ids[1]


class Client:
    """One websocket connection: a bounded outbound buffer drained by a writer task."""

    def __init__(self, connection: ServerConnection, identity: str,
                 token_digest: str | None = None, internal: bool = False) -> None:
        self.connection = connection
        self.identity = identity
        self.token_digest = token_digest  # which token opened it: a reload may revoke it
        self.internal = internal  # another node relaying its client's requests (cluster)
        # A signed token's scope (threads it may touch) and the token, which a reload checks
        # again (a rotated key revokes it); None for configured tokens.
        self.access: Access | None = None
        self.signed_token: str | None = None
        self.relays = Relays()
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._buffered = 0
        self.dropped = False

    def send(self, message: dict) -> None:
        if not self.dropped:
            self.send_text(envelopes.dumps(message))

    def send_text(self, text: str) -> None:
        """An envelope already serialised (relayed from another node: sent unchanged)."""
        if self.dropped:
            return
        self._buffered += len(text)
        if self._buffered > OUTBOUND_BUFFER_BYTES:
            # A close frame would queue behind the backlog the client is not reading: cut the
            # connection at once and free the buffer.
            self.dropped = True
            log.warning("client %s reads too slowly: disconnecting", self.identity)
            while not self._queue.empty():
                self._queue.get_nowait()
            self._buffered = 0
            self.connection.transport.abort()
            return
        self._queue.put_nowait(text)

    async def write(self) -> None:
        while True:
            text = await self._queue.get()
            self._buffered -= len(text)
            await self.connection.send(text)


class GatewayServer:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.server: Server | None = None
        self.ssl: ssl.SSLContext | None = None
        self._tasks: set[asyncio.Task] = set()
        self._clients: set[Client] = set()
        self._admins: set[ServerConnection] = set()
        self.http = HttpHandler(gateway)
        self._http_tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        s = self.gateway.settings
        tls.check_exposure(s)
        self.ssl = tls.server_context(s)
        self.server = await serve(
            self._handle, s.host, s.port,
            process_request=self._process_request,
            max_size=s.max_message_bytes,
            compression=None,  # outputs are small text or base64: deflate only adds latency
            server_header=None,
            ssl=self.ssl,
            # websockets calls this as create_connection(protocol, server, **options) and uses
            # what it returns as the asyncio protocol; its annotation asks for a class.
            create_connection=self._front,  # type: ignore[arg-type]
        )

    def _front(self, protocol: ServerProtocol, server: Server, **options) -> FrontProtocol:
        """websockets builds a connection per accepted socket through this hook; the front
        decides, on the first request line, whether websockets gets it at all."""
        # JupyterLab's kernel protocol when offered; our clients ask for none. (Set here:
        # serve()'s own hook expects the connection it made, not the front.)
        protocol.select_subprotocol = _jupyter_subprotocol  # type: ignore[method-assign, assignment]
        return FrontProtocol(lambda: ServerConnection(protocol, server, **options),
                             self.http.serve, self._http_tasks)

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    def reload(self, new: Settings) -> dict:
        """Apply the reloadable settings of ``new`` (tokens, admin token, origins, renewed TLS
        files) to the running gateway, without dropping connections, except those opened with
        a token that is gone: they are closed, while their identity's threads keep running.
        Returns what changed (names and counts, never secrets)."""
        current = self.gateway.settings
        changed = [name for name in RELOADABLE if getattr(current, name) != getattr(new, name)]
        needs_restart = [f.name for f in dataclasses.fields(Settings)
                         if f.name not in RELOADABLE
                         and getattr(current, f.name) != getattr(new, f.name)]
        if tls.enabled(new) != (self.ssl is not None):
            raise ValueError("TLS cannot be turned on or off by a reload; restart the gateway")
        if self.ssl is not None:
            tls.reload(self.ssl, new)  # first: a bad certificate leaves everything as it was
        for name in RELOADABLE:
            setattr(current, name, getattr(new, name))
        # Relays from other nodes carry no client token (cluster_token is not reloadable).
        revoked = [c for c in self._clients if not c.internal and (
            current.tokens.get(c.token_digest or "") != c.identity if c.signed_token is None
            else self.gateway.access_for(c.signed_token) is None)]
        for client in revoked:
            self._spawn(client.connection.close(CLOSE_TOKEN_REVOKED, "token revoked"))
        if "admin_token" in changed:
            for connection in list(self._admins):
                self._spawn(connection.close(CLOSE_TOKEN_REVOKED, "token revoked"))
        summary = {"changed": changed, "needs_restart": needs_restart,
                   "identities": len(set(current.tokens.values())),
                   "connections_closed": len(revoked)}
        log.info("settings reloaded: %s", summary)
        if needs_restart:
            log.warning("settings reloaded; these take effect only after a restart: %s",
                        ", ".join(needs_restart))
        return summary

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.http.close()
            await self.server.wait_closed()

    async def shutdown(self, grace: float) -> dict:
        """Graceful stop: accept nothing new, let executions end (bounded) and report their
        final status to still-connected clients, then close connections and every kernel."""
        assert self.server is not None
        self.server.close(close_connections=False)
        summary = await self.gateway.drain(timeout=grace)
        await asyncio.sleep(0.1)  # let writers flush the last statuses
        self.server.close(close_connections=True)
        self.http.close()
        await self.server.wait_closed()
        await self.gateway.close()
        return summary

    # -- HTTP -------------------------------------------------------------------------------
    def _process_request(self, connection: ServerConnection,
                         request: Request) -> Response | Awaitable[Response] | None:
        path = urllib.parse.urlsplit(request.path).path
        gw = self.gateway
        if not self.http.host_allowed(request.headers.get_all("Host")):
            # First of all: a page that rebound its name to this address gets nothing.
            return _json(hosts.REFUSAL_STATUS, hosts.REFUSAL)
        if path in ("/ws", "/admin", "/admin/token") and not self._origin_allowed(request):
            # Before the token is looked at: a hijacking page learns nothing about it.
            return _json(403, {"error": "origin not allowed"})
        if path == "/ws":
            token = _bearer(request)
            access = gw.access_for(token)
            if access is None:
                return _json(401, {"error": "missing or invalid token"})
            connection.identity = access.identity  # type: ignore[attr-defined]
            connection.token_digest = auth.digest(token or "")  # type: ignore[attr-defined]
            connection.access = access  # type: ignore[attr-defined]
            connection.signed_token = token if access.signed else None  # type: ignore[attr-defined]
            return None
        if match := CHANNELS_PATH.fullmatch(split_path(path)[1]):
            return self._jupyter_channels(connection, request, match.group(1))
        if path == "/internal":
            identity = self._internal_identity(request)
            if identity is None:
                return _json(401, {"error": "not a node of this cluster"})
            connection.identity = identity  # type: ignore[attr-defined]
            connection.token_digest = None  # type: ignore[attr-defined]
            connection.internal = True  # type: ignore[attr-defined]
            return None
        if path == "/admin":
            if not auth.matches(gw.settings.admin_token, _bearer(request)):
                return _json(401, {"error": "missing or invalid admin token"})
            connection.identity = None  # type: ignore[attr-defined]
            return None
        if path == "/admin/token":
            if not auth.matches(gw.settings.admin_token, _bearer(request)):
                return _json(401, {"error": "missing or invalid admin token"})
            return _minted(gw, urllib.parse.parse_qs(urllib.parse.urlsplit(request.path).query))
        if match := CALL_PATH.fullmatch(path):
            return self._call_result(request, *match.groups())
        if path == "/healthz":
            detailed = probes.may_see_details(gw.settings, _bearer(request))
            return _json(200, probes.health(gw.health(), detailed))
        if path == "/readyz":
            readiness = gw.readiness()
            detailed = probes.may_see_details(gw.settings, _bearer(request))
            return _json(200 if readiness["ready"] else 503,
                         probes.readiness(readiness, detailed))
        if path == "/metrics":
            if not probes.may_see_details(gw.settings, _bearer(request)):
                return _json(401, probes.TOKEN_NEEDED)
            return _response(200, gw.metrics.render(), "text/plain; version=0.0.4")
        # GET /files/... never gets here: the front gives it to the HTTP handler.
        if path == "/":
            path = "/static/index.html"
        if match := STATIC_PATH.fullmatch(path):
            return self._static(match.group(1))
        if UPLOAD_PATH.fullmatch(path):  # a GET where a PUT belongs: say so, as for a POST
            return _response(405, orjson.dumps(error_body("method_not_allowed", "use PUT")),
                             "application/json", Allow="PUT")
        return _json(404, {"error": "not found"})

    def _jupyter_channels(self, connection: ServerConnection, request: Request,
                          kernel_id: str) -> Response | None:
        """A Jupyter client's kernel websocket: its token, then the kernel among its threads
        (another identity's id is as unknown as a made-up one)."""
        if not self._origin_allowed(request):
            return _json(403, {"message": "origin not allowed"})
        kernels = self.http.jupyter
        identity = kernels.identity(request.headers.get("Authorization", ""), request.path)
        if identity is None:
            return _json(401, {"message": "missing or invalid token"})
        session = kernels.find(identity, kernel_id)
        if session is None:
            return _json(404, {"message": f"no such kernel {kernel_id}"})
        connection.identity = identity  # type: ignore[attr-defined]
        connection.jupyter = (session, kernel_id)  # type: ignore[attr-defined]
        return None

    def _internal_identity(self, request: Request) -> str | None:
        """The identity another node relays for, if the request carries the cluster secret."""
        from ..cluster.relay import IDENTITY_HEADER, SECRET_HEADER

        secret = self.gateway.settings.cluster_token
        if self.gateway.cluster is None or not secret:
            return None
        offered = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(offered.encode(), secret.encode()):
            return None
        return request.headers.get(IDENTITY_HEADER) or None

    async def _call_result(self, request: Request, thread_id: str, call_id: str) -> Response:
        """``GET /threads/{thread}/calls/{call}``: a finished call's final status and files,
        for the owner only; anything else is 404 exactly like an unknown call."""
        access = self.gateway.access_for(_bearer(request))
        if access is None:
            return _json(401, {"error": "missing or invalid token"})
        thread_id, call_id = urllib.parse.unquote(thread_id), urllib.parse.unquote(call_id)
        if not access.allows(thread_id):
            return _json(404, {"error": "not found"})
        finished = await self.gateway.finished_call(thread_id, call_id, access.identity)
        if finished is None:
            return _json(404, {"error": "not found"})
        return _json(200, {"thread_id": thread_id, "call_id": call_id,
                           "seq": finished.status.get("seq"),
                           "status": finished.status["chunk"]["content"],
                           "files": finished.files})

    def _origin_allowed(self, request: Request) -> bool:
        s = self.gateway.settings
        return origins.allowed(request.headers.get("Origin"), request.headers.get("Host"),
                               s.allowed_origins, tls=self.ssl is not None)

    def _static(self, name: str) -> Response:
        page = STATIC_DIR / name
        if not page.is_file():
            return _json(404, {"error": "not found"})
        mime = ("text/javascript" if name.endswith(".mjs")
                else mimetypes.guess_type(name)[0] or "application/octet-stream")
        if mime.startswith("text/") or mime.endswith("javascript"):
            mime += "; charset=utf-8"
        if name.endswith(".html"):
            return _response(200, page.read_bytes(), mime, Content_Security_Policy=PAGE_CSP,
                             Referrer_Policy="no-referrer")
        return _response(200, page.read_bytes(), mime)

    # -- websocket --------------------------------------------------------------------------
    async def _handle(self, connection: ServerConnection) -> None:
        if (jupyter_kernel := getattr(connection, "jupyter", None)) is not None:
            session, kernel_id = jupyter_kernel
            await JupyterChannels(connection, session, self.gateway, self.http.jupyter,
                                  kernel_id).serve()
            return
        if connection.identity is None:  # type: ignore[attr-defined]
            self._admins.add(connection)
            try:
                await self._handle_admin(connection)
            finally:
                self._admins.discard(connection)
            return
        client = Client(connection, connection.identity,  # type: ignore[attr-defined]
                        connection.token_digest,  # type: ignore[attr-defined]
                        getattr(connection, "internal", False))
        client.access = getattr(connection, "access", None)
        client.signed_token = getattr(connection, "signed_token", None)
        self._clients.add(client)
        writer = asyncio.create_task(client.write())
        self.gateway.metrics.connections.inc()
        try:
            async for message in connection:
                if client.dropped:
                    break
                await self._dispatch(client, message)
        except ConnectionClosed:
            pass
        finally:
            self._clients.discard(client)
            self.gateway.metrics.connections.dec()
            self.gateway.detach(client)
            writer.cancel()
            await client.relays.close()

    async def _handle_admin(self, connection: ServerConnection) -> None:
        async for message in connection:
            try:
                command = orjson.loads(message)
                if not isinstance(command, dict):
                    raise protocol.ProtocolError("admin command must be a JSON object")
                answer = {"ok": True, "result": await execute_admin(self.gateway, command)}
            except orjson.JSONDecodeError as exc:
                answer = error_answer(protocol.ProtocolError(f"invalid JSON: {exc}"))
            except GatewayError as exc:
                answer = error_answer(exc)
            await connection.send(orjson.dumps(answer, default=str).decode())

    async def _dispatch(self, client: Client, message: str | bytes) -> None:
        thread_id = call_id = None
        try:
            if isinstance(message, bytes):
                raise protocol.ProtocolError("binary frames are not supported; send JSON text")
            s = self.gateway.settings
            request = protocol.parse_request(message, max_timeout=s.max_timeout,
                                             max_upload_bytes=s.max_upload_bytes)
            thread_id = request.thread_id
            call_id = getattr(request, "call_id", None)
            if client.access is not None and not client.access.allows(thread_id):
                # What a thread of no one's gets: the token learns nothing about the others.
                raise NotAllowed(f"unknown thread {thread_id!r}")
            if self.gateway.cluster is not None and await client.relays.relayed(
                    self.gateway.cluster, client, request, message):
                return
            await self._route(client, request)
        except GatewayError as exc:
            if thread_id is None:
                thread_id, call_id = _routing_of(message)
            self._send_error(client, exc.code, str(exc), thread_id, call_id)

    def _send_error(self, client: Client, code: str, message: str, thread_id: str | None,
                    call_id: str | None) -> None:
        chunk = envelopes.error(code, message)
        settings = self.gateway.settings
        if settings.projectdavid_compat:
            chunk = envelopes.projectdavid_compatible(chunk, settings.public_url)[0]
        client.send(envelopes.envelope(chunk, thread_id, call_id))

    async def _route(self, client: Client, request: protocol.Request) -> None:
        gw = self.gateway
        identity = client.identity
        match request:
            case protocol.CodeDelta():
                session = gw.attach(request.thread_id, identity, client)
                session.choose_language(request.language)
                session.code_delta(request.call_id, request.delta, request.format)
            case protocol.Execute():
                session = gw.attach(request.thread_id, identity, client)
                finished = gw.result(request.thread_id, request.call_id, identity)
                if finished is not None:  # a retry after a dropped connection: idempotent
                    client.send({**finished, "replayed": True})
                elif session.in_flight(request.call_id):
                    pass  # retried while it runs: this connection now gets its status
                elif (earlier := await gw.begin_call(session, request.call_id)) is not None:
                    client.send({**earlier, "replayed": True})  # ran on another node
                elif not session.in_flight(request.call_id):
                    try:
                        session.choose_language(request.language)
                        session.submit(request.call_id, request.code, request.timeout,
                                       request.env, request.egress_rules())
                    except GatewayError as exc:
                        if exc.code != "call_executed":
                            gw.call_refused(session, request.call_id)
                        raise
            case protocol.Subscribe():
                session = gw.thread(request.thread_id, identity, create=True)
                client.send(envelopes.envelope(
                    {"type": "subscribed", "content": {"thread_id": request.thread_id,
                                                       "last_seq": session.replay.last_seq}},
                    request.thread_id, None))
                gw.attach(request.thread_id, identity, client, request.since_seq)
            case protocol.Result():
                # No session needed: results outlive closed threads; the owner check is the
                # store's (another identity's call is as unknown as a made-up one).
                finished_call = await gw.finished_call(request.thread_id, request.call_id,
                                                       identity)
                if finished_call is None:
                    raise protocol.ProtocolError(
                        f"no finished call {request.call_id!r} on this thread (unknown, still "
                        "running, or older than result_retention)", code="unknown_call")
                client.send({**finished_call.status, "replayed": True})
            case protocol.Interrupt():
                await gw.thread(request.thread_id, identity, create=False).interrupt()
            case protocol.Restart():
                session = gw.attach(request.thread_id, identity, client)
                self._background(session.restart(), client, request.thread_id)
            case protocol.Close():
                gw.thread(request.thread_id, identity, create=False)  # ownership check now
                self._background(gw.close_thread(request.thread_id, identity), client,
                                 request.thread_id)
            case protocol.Upload():
                session = gw.attach(request.thread_id, identity, client)
                self._background(self._upload(session, request), client, request.thread_id,
                                 request.call_id)

    async def _upload(self, session, request: protocol.Upload) -> None:
        result = await self.gateway.upload(session, request)
        session.emit({"type": "file_uploaded", "content": result}, request.call_id)

    def _background(self, coro, client: Client, thread_id: str, call_id: str | None = None):
        """Slow requests (restart, close, upload) must not stall this connection's other threads."""

        async def run() -> None:
            try:
                await coro
            except GatewayError as exc:
                self._send_error(client, exc.code, str(exc), thread_id, call_id)
            except Exception:
                log.exception("request on thread %s failed", thread_id)
                self._send_error(client, "internal_error", "the gateway failed to do this",
                                 thread_id, call_id)

        self._spawn(run())
