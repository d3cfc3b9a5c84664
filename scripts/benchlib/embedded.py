"""A gateway in this process (gateway.embed), with the settings the in-process benchmarks share:
alice's and bob's tokens, 127.0.0.1 on a free port, a small fixed pool (as the tests have it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.app import Gateway
from gateway.client import GatewayClient
from gateway.config import MiB, Settings
from gateway.embed import Embedded, start_embedded
from gateway.wire.protocol import scoped_thread_id

TOKENS = {"tok-alice": "alice", "tok-bob": "bob"}


def local_settings(data_dir: Path, **overrides) -> Settings:
    values = dict(
        host="127.0.0.1",
        port=0,
        tokens=TOKENS,
        data_dir=data_dir,
        pool_size=2,
        max_kernels=24,
        execution_timeout=60.0,
        interrupt_grace=2.0,
        memory_limit=512 * MiB,
        pids_limit=128,
        disk_limit=64 * MiB,
        hibernate_after=3600.0,
        kernel_start_timeout=120.0,
        pool_adaptive=False,  # a fixed pool: start counts stay exact
        max_threads_per_identity=24,
    )
    values.update(overrides)
    return Settings(**values)


@dataclass
class Local:
    """A started in-process gateway, with a client factory."""

    embedded: Embedded

    @property
    def gateway(self) -> Gateway:
        return self.embedded.gateway

    async def client(self, token: str = "tok-alice") -> GatewayClient:
        return await GatewayClient.connect(self.embedded.url, token)

    async def close(self) -> None:
        await self.embedded.close()


async def start_local(settings: Settings) -> Local:
    return Local(await start_embedded(settings))


def session_of(gateway: Gateway, thread_id: str, identity: str = "alice"):
    """``identity``'s live session of ``thread_id`` on ``gateway``."""
    return gateway.threads[scoped_thread_id(identity, thread_id)]
