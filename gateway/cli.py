"""The ``gateway`` command: a thin shell over the library (argument parsing and printing only)."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import config

app = typer.Typer(help="Sandboxed, streaming code-interpreter gateway.", no_args_is_help=True)
config_app = typer.Typer(help="Settings.", no_args_is_help=True)
app.add_typer(config_app, name="config")

Opt = typer.Option


def _settings(**flags) -> config.Settings:
    tokens = flags.pop("token", None)
    if tokens:
        flags["tokens"] = config.parse_tokens(tokens)
    return config.from_environment(**flags)


def _setup_logging(settings: config.Settings) -> None:
    from .logs import configure

    configure(settings.log_level, settings.log_json)


@app.command()
def serve(
    host: Annotated[Optional[str], Opt(help="Address to bind (127.0.0.1 by default).")] = None,
    port: Annotated[Optional[int], Opt(help="Port for websocket and HTTP.")] = None,
    token: Annotated[Optional[str], Opt(help="TOKEN or IDENTITY:TOKEN[,IDENTITY:TOKEN...]; "
                                             "prefer GATEWAY_TOKENS.")] = None,
    data_dir: Annotated[Optional[Path], Opt(help="Workdirs, file store, runtime.")] = None,
    pool_size: Annotated[Optional[int], Opt(help="Warm kernels kept ready.")] = None,
    max_kernels: Annotated[Optional[int], Opt(help="Maximum kernels in total.")] = None,
    execution_timeout: Annotated[Optional[float], Opt(help="Default seconds per cell.")] = None,
    idle_timeout: Annotated[Optional[float], Opt(help="Idle seconds before a thread's kernel "
                                                      "is released.")] = None,
    sandbox: Annotated[Optional[str], Opt(help="'bwrap' (default) or 'none' (unsafe).")] = None,
    memory_limit: Annotated[Optional[int], Opt(help="Bytes of memory per kernel.")] = None,
    pids_limit: Annotated[Optional[int], Opt(help="Processes/threads per kernel.")] = None,
    cpu_limit: Annotated[Optional[float], Opt(help="CPU cores per kernel.")] = None,
    disk_limit: Annotated[Optional[int], Opt(help="Bytes of working directory per thread.")] = None,
    max_output_chars: Annotated[Optional[int], Opt(help="Output cap per execution.")] = None,
    log_json: Annotated[Optional[bool], Opt(help="JSON log lines.")] = None,
) -> None:
    """Run the gateway: websocket at /ws, live page at /, health, metrics, file downloads."""
    settings = _settings(**{k: v for k, v in locals().items()})
    _setup_logging(settings)
    if not settings.tokens:
        typer.echo("error: no token configured (--token or GATEWAY_TOKENS)", err=True)
        raise typer.Exit(2)
    asyncio.run(_serve(settings))


async def _serve(settings: config.Settings) -> None:
    from .app import Gateway
    from .server import GatewayServer

    gateway = Gateway(settings)
    await gateway.start()
    server = GatewayServer(gateway)
    await server.start()
    print(f"gateway listening on http://{settings.host}:{server.port}/ "
          f"(websocket ws://{settings.host}:{server.port}/ws)", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    logging.getLogger("gateway").info("shutting down")
    await server.close()
    await gateway.close()


@config_app.command("show")
def config_show(as_json: Annotated[bool, Opt("--json", help="JSON output.")] = False) -> None:
    """Print the effective settings (environment + defaults), secrets masked."""
    data = config.from_environment().masked()
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    for key, value in data.items():
        typer.echo(f"{key:24} {value}")


def main() -> None:  # pragma: no cover
    sys.exit(app())
