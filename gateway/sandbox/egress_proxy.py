"""The gateway's half of egress (docs/egress.md): an HTTP proxy on each kernel's unix socket.

A kernel has no network interface to the host. When the operator allows egress, its startup
code (kernels/startup/15-egress.py) listens on the sandbox's own loopback and carries each
connection, byte for byte, to ``egress.sock`` in the kernel's runtime directory, the one path
the sandbox shares with the gateway. Here, per connection: the request head (one ``CONNECT
host:port`` or one plain-HTTP request with an absolute URL) must arrive within
``egress_header_timeout``; the name is checked against the thread's policy, resolved here (the
kernel has no DNS), and every address checked again (gateway/egress_policy.py); then the bytes
are relayed, counted against the thread's ``egress_bytes_per_thread``, at most
``egress_connections_per_thread`` at a time. Refusals are HTTP answers whose reason phrase
names the rule, so the error the kernel's HTTP client raises says why. Logs name the thread,
the destination and the byte counts, never a header or a body.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import egress_policy
from ..egress_policy import Policy
from .egress_head import MAX_HEAD, HeadRequest, Refused, parse_head, refusal_response

if TYPE_CHECKING:
    from ..config import Settings
    from ..ops.metrics import Metrics

log = logging.getLogger(__name__)

SOCKET_NAME = "egress.sock"
PORT_IN_SANDBOX = 3128  # the sandbox's own loopback: nothing else listens there
CHUNK = 1 << 16
CONNECT_TIMEOUT = 10.0
Resolver = Callable[[str, int], Awaitable[list[str]]]


@dataclass
class CellUsage:
    """What one cell's egress reached: destination -> bytes, and what was refused."""

    hosts: dict[str, int] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)

    def report(self) -> dict[str, Any] | None:
        if not self.hosts and not self.refused:
            return None
        report: dict[str, Any] = {"hosts": [{"host": host, "bytes": count}
                                  for host, count in sorted(self.hosts.items())],
                        "bytes": sum(self.hosts.values())}
        if self.refused:
            report["refused"] = self.refused[:20]
        return report


class ThreadEgress:
    """One thread's egress: its policy, its counters, and the socket of its current kernel."""

    def __init__(self, proxy: EgressProxy, thread_id: str, policy: Policy) -> None:
        self.proxy = proxy
        self.thread_id = thread_id
        self.policy = policy
        self.narrowing: tuple[egress_policy.Rule, ...] | None = None
        self.bytes = 0
        self.open: set[asyncio.StreamWriter] = set()
        self.cell = CellUsage()
        self._server: asyncio.AbstractServer | None = None
        self._path: Path | None = None

    @property
    def socket_path(self) -> Path | None:
        """Where the thread's current kernel reaches the proxy; None while it holds none."""
        return self._path

    def attach(self, runtime_dir: Path, uid: int | None) -> None:
        """Serve the kernel whose runtime directory this is (one kernel at a time)."""
        self.detach()
        path = runtime_dir / SOCKET_NAME
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(path))
            if uid is not None and os.geteuid() == 0:
                os.chown(path, uid, uid)
            os.chmod(path, 0o600)  # the kernel's uid alone (and root)
            sock.listen(64)
            sock.setblocking(False)
        except OSError as exc:
            # The thread still runs, without egress: its connections get the forwarder's 503.
            sock.close()
            log.warning("thread %s: no egress socket at %s: %s", self.thread_id, path, exc)
            return
        self._path = path
        task = asyncio.ensure_future(asyncio.start_unix_server(
            lambda r, w: self.proxy.handle(self, r, w), sock=sock, limit=MAX_HEAD))
        task.add_done_callback(lambda done: self._started(done, path))

    def _started(self, task: asyncio.Task[asyncio.Server], path: Path) -> None:
        if task.cancelled() or task.exception() is not None:
            log.warning("thread %s: egress socket not served: %r", self.thread_id,
                        None if task.cancelled() else task.exception())
            return
        server = task.result()
        if self._path != path:  # detached (or moved to another kernel) before it started
            server.close()
        else:
            self._server = server

    def detach(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._path is not None:
            with contextlib.suppress(OSError):
                self._path.unlink()
            self._path = None
        for writer in list(self.open):
            writer.close()

    def begin_cell(self, narrowing: tuple[egress_policy.Rule, ...] | None) -> None:
        self.narrowing = narrowing
        self.cell = CellUsage()

    def end_cell(self) -> dict[str, Any] | None:
        self.narrowing = None
        report = self.cell.report()
        if report is not None:
            report["thread_bytes"] = self.bytes
        self.cell = CellUsage()
        return report

    def current_policy(self) -> Policy:
        return self.policy.narrowed(self.narrowing)


class EgressProxy:
    """Every thread's egress, with one resolver and the operator's limits."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        # Replaced only by tests, to give test names loopback addresses.
        self.resolve: Resolver = system_resolve
        self.headers = [(egress_policy.parse_rule(pattern, "egress_headers"),
                         egress_policy.parse_headers(lines))
                        for pattern, lines in settings.egress_headers.items()]

    def added_headers(self, host: str, port: int) -> list[tuple[str, str]]:
        """The operator's headers for a plain-HTTP request to ``host:port`` (secrets)."""
        address = egress_policy.as_address(host)
        return [header for rule, headers in self.headers
                if (rule.matches_address(address, port) if address is not None
                    else rule.matches_name(host, port))
                for header in headers]

    def for_thread(self, thread_id: str, identity: str) -> ThreadEgress:
        s = self.settings
        policy = egress_policy.identity_policy(s.egress_allow, s.egress_deny, identity,
                                               s.identity_egress_allow, s.identity_egress_deny)
        return ThreadEgress(self, thread_id, policy)

    async def handle(self, thread: ThreadEgress, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        s = self.settings
        thread.open.add(writer)
        target = "?"
        try:
            if len(thread.open) > s.egress_connections_per_thread:
                raise Refused(429, f"more than egress_connections_per_thread "
                              f"({s.egress_connections_per_thread}) connections at once")
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"),
                                              s.egress_header_timeout)
            except TimeoutError:
                raise Refused(408, f"no complete request head within egress_header_timeout "
                              f"({s.egress_header_timeout:g} s)", "timeout") from None
            except asyncio.LimitOverrunError:
                raise Refused(431, "request head too large", "bad_request") from None
            except asyncio.IncompleteReadError:
                return  # the client left
            request = parse_head(head)
            target = f"{request.host}:{request.port}"
            if thread.bytes >= s.egress_bytes_per_thread:
                raise Refused(403, f"the thread used its egress_bytes_per_thread "
                              f"({s.egress_bytes_per_thread} bytes)")
            upstream_reader, upstream_writer, address = await self._open(thread, request)
        except Refused as refusal:
            self._refuse(thread, target, refusal)
            with contextlib.suppress(ConnectionError, OSError):
                writer.write(refusal_response(refusal))
                await writer.drain()
            thread.open.discard(writer)
            writer.close()
            return
        except BaseException:
            thread.open.discard(writer)
            writer.close()
            raise
        self.metrics.egress_request("allowed")
        plain = request.method != "CONNECT"  # inside a tunnel, nothing can be added
        added = self.added_headers(request.host, request.port) if plain else []
        log.info("thread %s: egress %s %s (%s) allowed%s", thread.thread_id, request.method,
                 target, address, f", {len(added)} configured header(s) added" if added else "",
                 extra={"thread_id": thread.thread_id, "egress": target})
        relay = Relay(time.monotonic(), (writer, upstream_writer))
        try:
            if request.method == "CONNECT":
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                upstream_writer.write(request.forwarded_head(added))
            await asyncio.gather(self._pump(thread, target, reader, upstream_writer, relay, True),
                                 self._pump(thread, target, upstream_reader, writer, relay,
                                            False))
        finally:
            thread.open.discard(writer)
            relay.close()
            log.info("thread %s: egress %s closed, %d bytes in %.1f s", thread.thread_id,
                     target, relay.bytes, time.monotonic() - relay.began,
                     extra={"thread_id": thread.thread_id, "egress": target})

    async def _open(self, thread: ThreadEgress, request: HeadRequest
                    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
        policy = thread.current_policy()
        decision = egress_policy.check_name(policy, request.host, request.port)
        if not decision.allowed:
            raise Refused(403, decision.reason)
        if egress_policy.as_address(request.host) is not None:
            addresses = [request.host]
        else:
            try:
                addresses = await asyncio.wait_for(self.resolve(request.host, request.port),
                                                   CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as exc:
                raise Refused(502, f"{request.host} does not resolve ({exc})", "failed") from None
        refusal = Refused(502, f"{request.host} has no address", "failed")
        for text in addresses:
            address = egress_policy.as_address(text)
            if address is None:
                continue
            decision = egress_policy.check_address(policy, request.host, address, request.port)
            if not decision.allowed:
                refusal = Refused(403, decision.reason)
                continue
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(str(address), request.port, limit=CHUNK),
                    CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as exc:
                refusal = Refused(502, f"{request.host} ({address}:{request.port}): "
                                  f"{exc or type(exc).__name__}", "failed")
                continue
            return reader, writer, str(address)
        raise refusal

    async def _pump(self, thread: ThreadEgress, target: str, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter, relay: Relay, outbound: bool) -> None:
        """One direction. The kernel's end of file is passed on as a half-close (the answer
        still comes back); the server's, the byte limit, an error or both directions idle
        close the whole relay, so a client that keeps its end open holds no slot."""
        s = self.settings
        try:
            while True:
                try:
                    data = await asyncio.wait_for(reader.read(CHUNK), s.egress_idle_timeout)
                except TimeoutError:
                    if time.monotonic() - relay.last >= s.egress_idle_timeout:
                        break  # nothing either way for that long
                    continue  # the other direction is busy (a long download, say)
                if not data:
                    if outbound and writer.can_write_eof() and not writer.is_closing():
                        writer.write_eof()
                        return
                    break
                relay.last = time.monotonic()
                thread.bytes += len(data)
                relay.bytes += len(data)
                thread.cell.hosts[target] = thread.cell.hosts.get(target, 0) + len(data)
                self.metrics.egress_bytes(len(data))
                if thread.bytes > s.egress_bytes_per_thread:
                    self._refuse(thread, target, Refused(
                        403, f"the thread went over egress_bytes_per_thread "
                        f"({s.egress_bytes_per_thread} bytes): connection closed"))
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        relay.close()

    def _refuse(self, thread: ThreadEgress, target: str, refusal: Refused) -> None:
        self.metrics.egress_request(refusal.outcome)
        thread.cell.refused.append(f"{target}: {refusal.reason}")
        log.info("thread %s: egress %s refused: %s", thread.thread_id, target, refusal.reason,
                 extra={"thread_id": thread.thread_id, "egress": target})


@dataclass
class Relay:
    """One allowed connection's two directions."""

    began: float
    writers: tuple[asyncio.StreamWriter, asyncio.StreamWriter]
    last: float = 0.0  # when a byte last moved, either way
    bytes: int = 0

    def __post_init__(self) -> None:
        self.last = self.began

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


def egress_environment(settings: Settings, runtime_dir: Path) -> dict[str, str]:
    """What the kernel-side forwarder reads; nothing when no thread may have egress."""
    if not settings.egress:
        return {}
    return {"KERNEL_EGRESS_SOCKET": str(runtime_dir / SOCKET_NAME),
            "KERNEL_EGRESS_PORT": str(PORT_IN_SANDBOX),
            "KERNEL_EGRESS_PIP_INDEX": settings.egress_pip_index}


async def system_resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))
