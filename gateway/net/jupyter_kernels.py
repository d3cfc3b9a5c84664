"""Jupyter's kernel gateway REST API, over the gateway's threads.

``/api/kernelspecs``, ``/api/kernels`` and their sub-resources, the way Jupyter Server's
``--gateway-url`` client (and Jupyter Kernel Gateway's other clients) use them. A kernel is a
thread of the caller's identity: the ones the model used are listed too, so a person can open
them in JupyterLab. Requests and answers are built in ``gateway/wire/jupyter.py``; this module
looks threads up and acts on them. Another identity's kernel id is 404, like an unknown one.
"""

from __future__ import annotations

import re
import secrets
import time
import urllib.parse
import uuid
from typing import TYPE_CHECKING

from .. import auth
from ..errors import GatewayError
from ..wire import jupyter
from ..wire.jupyter import JupyterError
from ..wire.protocol import scoped_thread_id

if TYPE_CHECKING:
    from ..app import Gateway
    from ..threads.session import ThreadSession

KERNEL_PATH = re.compile(r"/api/kernels/([0-9a-f-]{36})(?:/(interrupt|restart))?")
SPEC_PATH = re.compile(r"/api/kernelspecs/([^/]+)")
RESOURCE_PATH = re.compile(r"/kernelspecs/([^/]+)/([^/]+)")
CHANNELS_PATH = re.compile(r"/api/kernels/([0-9a-f-]{36})/channels")


# The token as the first part of the path: ``--gateway-url http://host:8765/jupyter/T``.
# Jupyter Server's GatewayKernelClient (nbclient and papermill use it) opens its websocket
# with no headers at all, so the URL is all it can carry; like ``?token=``, it may be logged.
TOKEN_PREFIX = re.compile(r"/jupyter/([^/]+)(/.*)?")


def split_path(path: str) -> tuple[str | None, str]:
    """(token from the path or None, the API path)."""
    if match := TOKEN_PREFIX.fullmatch(path):
        return urllib.parse.unquote(match.group(1)), match.group(2) or "/"
    return None, path


def is_jupyter_path(path: str) -> bool:
    path = split_path(path)[1]
    return path == "/api" or path.startswith(("/api/", "/kernelspecs/"))


def token_of(authorization: str, target: str) -> str | None:
    """Jupyter's ``Authorization: token T``, ``Bearer T``, else the path's, else ``?token=T``."""
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() in ("token", "bearer") and value.strip():
        return value.strip()
    parts = urllib.parse.urlsplit(target)
    in_path = split_path(parts.path)[0]
    return in_path or urllib.parse.parse_qs(parts.query).get("token", [None])[0]


class JupyterKernels:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.connections: dict[str, int] = {}  # thread key -> Jupyter websockets open on it
        # Threads a Jupyter start request created. Shutting one of these down closes the
        # thread; a thread it only attached to (the model's: KERNEL_THREAD_ID) goes on.
        self.started: set[str] = set()
        # A start naming a thread (KERNEL_THREAD_ID) gets an id of its own for it: JupyterLab
        # may start two kernels for one notebook and shut one down, which must not take the
        # other with it. alias -> (identity, thread key)
        self.aliases: dict[str, tuple[str, str]] = {}

    def identity(self, authorization: str, target: str) -> str | None:
        return auth.identity_for(self.gateway.settings.tokens, token_of(authorization, target))

    def sessions_of(self, identity: str) -> list[ThreadSession]:
        return [s for s in self.gateway.threads.values()
                if s.owner == identity and not s.closed and not s.unused]

    def find(self, identity: str, kernel_id: str) -> ThreadSession | None:
        if (alias := self.aliases.get(kernel_id)) is not None:
            session = self.gateway.threads.get(alias[1])
            if alias[0] != identity or session is None or session.closed:
                return None
            return session
        for session in self.sessions_of(identity):
            if jupyter.kernel_id(session.thread_id) == kernel_id:
                return session
        return None

    def model(self, session: ThreadSession, alias: str | None = None) -> dict:
        since = time.monotonic() - session.last_active
        state = "busy" if session.busy or session.queued else "idle"
        model = jupyter.kernel_model(session.thread_id, session.language or "python",
                                     time.time() - since, state,
                                     self.connections.get(session.thread_id, 0))
        if alias is not None:
            model["id"] = alias
        return model

    def models(self, identity: str) -> list[dict]:
        models = [self.model(s) for s in self.sessions_of(identity)]
        for alias, (owner, _) in list(self.aliases.items()):
            if owner == identity and (session := self.find(identity, alias)) is not None:
                models.append(self.model(session, alias))
        return models

    def available(self) -> list[str]:
        return [name for name in self.gateway.pools
                if name not in self.gateway.unavailable_languages]

    async def answer(self, method: str, path: str, identity: str,
                     body: bytes) -> tuple[int, object]:
        """(status, JSON body or None for 204) of one REST request."""
        try:
            return await self._route(method, path, identity, body)
        except JupyterError as exc:
            return exc.status, {"message": str(exc), "reason": None}
        except GatewayError as exc:  # a limit (identity share, pool) refused the thread
            return 503 if exc.code in ("pool_exhausted", "identity_limit") else 400, {
                "message": str(exc), "reason": exc.code}

    async def _route(self, method: str, path: str, identity: str,
                     body: bytes) -> tuple[int, object]:
        if path in ("/api", "/api/"):
            return _only(method, "GET"), {"version": jupyter.PROTOCOL_VERSION}
        if path == "/api/kernelspecs":
            return _only(method, "GET"), jupyter.kernelspecs(self.available())
        if match := SPEC_PATH.fullmatch(path):
            language = jupyter.language_of_spec(urllib.parse.unquote(match.group(1)))
            if language.name not in self.available():
                raise JupyterError(f"kernelspec {match.group(1)!r} cannot run here", 404)
            return _only(method, "GET"), jupyter.kernelspec(language)
        if RESOURCE_PATH.fullmatch(path):  # no logos: clients fall back to the name
            raise JupyterError("no such resource", 404)
        if path == "/api/kernels":
            if method == "GET":
                return 200, self.models(identity)
            _only(method, "POST")
            return 201, await self._start(identity, body)
        if match := KERNEL_PATH.fullmatch(path):
            session = self.find(identity, match.group(1))
            if session is None:
                raise JupyterError(f"no such kernel {match.group(1)}", 404)
            action = match.group(2)
            kid = match.group(1)
            alias = kid if kid in self.aliases else None
            if action is None and method == "DELETE":
                await self.shut_down(session, alias)
                return 204, None
            if action is None:
                return _only(method, "GET"), self.model(session, alias)
            _only(method, "POST")
            if action == "interrupt":
                await session.interrupt()
                return 204, None
            await session.restart()
            return 200, self.model(session, alias)
        raise JupyterError("not found", 404)

    async def shut_down(self, session: ThreadSession, alias: str | None = None) -> None:
        """A Jupyter client shuts its kernel down: the thread closes if a Jupyter client
        started it and no other start is attached to it; one it attached to (the model's)
        goes on."""
        self.aliases.pop(alias or "", None)
        if any(key == session.thread_id for _, key in self.aliases.values()):
            return
        if session.thread_id in self.started:
            self.started.discard(session.thread_id)
            await self.gateway.close_thread(session.client_thread_id, session.owner)

    async def _start(self, identity: str, body: bytes) -> dict:
        request = jupyter.start_request(
            body, lambda tid: jupyter.kernel_id(scoped_thread_id(identity, tid)))
        thread_id = request.thread_id or jupyter.THREAD_PREFIX + secrets.token_hex(8)
        if scoped_thread_id(identity, thread_id) not in self.gateway.threads:
            self.started.add(scoped_thread_id(identity, thread_id))
        session = self.gateway.thread(thread_id, identity, create=True)
        session.keep = True
        session.choose_language(request.language.name)
        if session.kernel is None and session.hibernated is None:
            await session.workdir()  # leases its kernel: started, as Jupyter means it
        if request.thread_id is None:
            return self.model(session)
        alias = str(uuid.uuid4())
        self.aliases[alias] = (identity, session.thread_id)
        return self.model(session, alias)


def _only(method: str, allowed: str) -> int:
    if method != allowed:
        raise JupyterError(f"use {allowed}", 405)
    return 200

