"""The ``gateway`` command: a thin shell over the library (argument parsing and printing only)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from .. import config
from ..net import hidden_tokens

app = typer.Typer(help="Sandboxed, streaming code-interpreter gateway.", no_args_is_help=True)
config_app = typer.Typer(help="Settings.", no_args_is_help=True)
app.add_typer(config_app, name="config")
token_app = typer.Typer(help="Client tokens (stored hashed).", no_args_is_help=True)
app.add_typer(token_app, name="token")

Opt = typer.Option


def _show_version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"gateway {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, Opt("--version", callback=_show_version, is_eager=True,
                                 help="Print the version and exit.")] = False,
) -> None:
    """Sandboxed, streaming code-interpreter gateway."""


def _run_gateway(coroutine):
    """asyncio.run, but a gateway that cannot start at all (no kernel, no sandboxing tool, bad
    settings in the environment) ends with its one explanatory message instead of a traceback."""
    from ..errors import KernelUnavailable, SandboxUnavailable, SettingsError
    from ..ops.datadir import DataDirInUse

    try:
        return asyncio.run(coroutine)
    except (KernelUnavailable, SandboxUnavailable, DataDirInUse, SettingsError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


# Flags given as text, like --set: sizes and durations may carry a unit (512MiB, 15m).
TEXT_FLAGS = ("token", "allowed_origins", "allowed_hosts", "memory_limit", "disk_limit",
              "execution_timeout", "hibernate_after", "idle_timeout", "shutdown_grace")


def _read_settings(config_file: Path | None = None, assignments: list[str] | None = None,
                   **flags) -> config.Settings:
    """Settings from every source; raises ``SettingsError`` with every problem at once."""
    texts = {"tokens" if name == "token" else name: flags.pop(name) for name in TEXT_FLAGS
             if flags.get(name) is not None}
    for assignment in assignments or []:
        key, sep, value = assignment.partition("=")
        if not sep:
            raise typer.BadParameter(f"--set {assignment!r}: expected KEY=VALUE")
        texts[key.strip()] = value
    return config.from_environment(config_file=config_file, texts=texts, **flags)


def _settings(config_file: Path | None = None, assignments: list[str] | None = None,
              **flags) -> config.Settings:
    """``_read_settings``, or the command ends with the problems and exit code 2."""
    try:
        return _read_settings(config_file, assignments, **flags)
    except config.SettingsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def _setup_logging(settings: config.Settings) -> None:
    from ..ops import redact
    from ..ops.logs import configure

    configure(settings.log_level, settings.log_json)
    redact.install()


@app.command()
def serve(
    host: Annotated[str | None, Opt(help="Address to bind (127.0.0.1 by default).")] = None,
    port: Annotated[int | None, Opt(help="Port for websocket and HTTP.")] = None,
    token: Annotated[str | None, Opt(help="TOKEN or IDENTITY:TOKEN[,IDENTITY:TOKEN...]; "
                                             "prefer GATEWAY_TOKENS.")] = None,
    data_dir: Annotated[Path | None, Opt(help="Workdirs, file store, runtime.")] = None,
    pool_size: Annotated[int | None, Opt(help="Warm kernels kept ready.")] = None,
    max_kernels: Annotated[int | None, Opt(help="Maximum kernels in total (0: from the "
                                                "host's memory and cores).")] = None,
    execution_timeout: Annotated[str | None, Opt(help="Default time per cell: seconds, or "
                                                      "e.g. 90s, 15m.")] = None,
    hibernate_after: Annotated[str | None, Opt(help="Idle time before a thread is "
                                                    "hibernated: seconds, or e.g. 10m.")] = None,
    # Renamed: still accepted as a flag only to be refused with the new name (config.RENAMED).
    idle_timeout: Annotated[str | None, Opt(hidden=True)] = None,
    sandbox: Annotated[str | None, Opt(help="'bwrap' (default) or 'none' (unsafe).")] = None,
    memory_limit: Annotated[str | None, Opt(help="Memory per kernel: bytes, or e.g. "
                                                 "512MiB, 1GiB.")] = None,
    pids_limit: Annotated[int | None, Opt(help="Processes/threads per kernel.")] = None,
    cpu_limit: Annotated[float | None, Opt(help="CPU cores per kernel.")] = None,
    disk_limit: Annotated[str | None, Opt(help="Working directory per thread: bytes, or "
                                               "e.g. 512MiB.")] = None,
    max_output_chars: Annotated[int | None, Opt(help="Output cap per execution.")] = None,
    log_json: Annotated[bool | None, Opt(help="JSON log lines.")] = None,
    shutdown_grace: Annotated[str | None, Opt(help="Time running executions get to finish "
                                                   "on SIGTERM: seconds, or e.g. 2m.")] = None,
    tls_cert: Annotated[str | None, Opt(help="PEM certificate: serve https/wss.")] = None,
    tls_key: Annotated[str | None, Opt(help="PEM private key of --tls-cert.")] = None,
    tls_client_ca: Annotated[str | None, Opt(help="PEM CA: require client certificates "
                                                  "(mutual TLS).")] = None,
    insecure_http: Annotated[bool | None, Opt("--insecure-http", help="Allow plain HTTP on a "
                                              "non-loopback address (TLS proxy in front).")
                             ] = None,
    allowed_origins: Annotated[str | None, Opt(help="Browser origins allowed besides the "
                                                    "gateway's own page, comma-separated; "
                                                    "'*' for any.")] = None,
    allowed_hosts: Annotated[str | None, Opt(help="Host names served besides local ones "
                                                  "(DNS rebinding defence), comma-separated; "
                                                  "'*' for any.")] = None,
    config_file: Annotated[Path | None, Opt("--config", help="TOML file of settings.")] = None,
    assignments: Annotated[list[str] | None, Opt("--set", help="Any setting: KEY=VALUE "
                                                      "(repeatable).")] = None,
) -> None:
    """Run the gateway: websocket at /ws, live page at /, health, metrics, file downloads
    and HTTP uploads, all on one port, the only one it opens.

    Settings come from defaults, then --config, then GATEWAY_* variables, then flags.
    SIGHUP re-reads them all: tokens, admin token, origins, hosts and renewed TLS files take
    effect without a restart.
    """
    from ..net import tls

    flags = {k: v for k, v in locals().items() if k != "tls"}
    settings = _settings(**dict(flags))
    _setup_logging(settings)
    if not settings.tokens:
        typer.echo("error: no token configured (--token or GATEWAY_TOKENS)", err=True)
        raise typer.Exit(2)
    try:
        tls.check_exposure(settings)
    except (tls.InsecureExposure, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if token and hidden_tokens.has_clear_token(token):
        _reexec_without_clear_tokens(token)
    _run_gateway(_serve(settings, lambda: _read_settings(**dict(flags))))


def _reexec_without_clear_tokens(token: str) -> None:
    """The process list must not show a clear --token for the gateway's whole life."""
    typer.echo("note: --token is visible to every local user in the process list; restarting "
               "with it hashed in the environment (prefer the config file or GATEWAY_TOKENS)",
               err=True)
    env = {**os.environ, hidden_tokens.ENV: hidden_tokens.hashed_spec(token)}
    command = hidden_tokens.reexec_command(hidden_tokens.without_token_option(sys.argv[1:]))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], command, env)


async def _serve(settings: config.Settings, reread) -> None:
    from ..embed import start_embedded

    embedded = await start_embedded(settings)
    server = embedded.server
    print(f"gateway listening on {embedded.http}/ (websocket {embedded.url})", flush=True)
    print(f"HTTP uploads: PUT {embedded.http}/threads/THREAD/files/NAME", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _reload, server, reread)
    await stop.wait()
    log = logging.getLogger("gateway")
    log.info("shutting down: letting running executions finish (up to %.0f s)",
             settings.shutdown_grace)
    summary = await server.shutdown(settings.shutdown_grace)
    log.info("shut down: %s", summary)


def _reload(server, reread) -> None:
    """SIGHUP: re-read every source of settings; a bad file leaves the running ones in place."""
    log = logging.getLogger("gateway")
    try:
        server.reload(reread())
    except Exception as exc:  # the gateway keeps serving with what it had
        log.error("reload failed, settings unchanged: %s", exc)


@token_app.command("new")
def token_new(identity: Annotated[str, typer.Argument(help="Who the token is for.")]) -> None:
    """Make a token for IDENTITY: prints it once (hand it to the client; it is not stored) and
    the entry for the tokens setting, which holds only its SHA-256."""
    from .. import auth

    token = auth.new_token()
    try:
        line = auth.config_line(identity, token)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(f"token:  {token}")
    typer.echo(f"config: {line}")
    typer.echo("Add the config entry to the tokens setting (comma-separated), e.g. in the TOML "
               f'file: tokens = "{line}", then send SIGHUP to the gateway. The token is shown '
               "only now.", err=True)


@token_app.command("mint")
def token_mint(
    identity: Annotated[str, Opt("--identity", help="The identity the token speaks for.")],
    threads: Annotated[list[str] | None, Opt("--thread", help="Only this thread "
                                                              "(repeatable); none: all.")] = None,
    ttl: Annotated[str, Opt(help="Lifetime: seconds, or e.g. 15m, 1h (at most 24h).")] = "15m",
    data_dir: Annotated[Path | None, Opt(help="The gateway's data dir (its signing key).")] = None,
    config_file: Annotated[Path | None, Opt("--config", help="TOML file of settings.")] = None,
) -> None:
    """Print a signed, short-lived token for a browser: one identity, maybe named threads only.
    Signed with the gateway's key (token_signing_key, or DATA_DIR/token-signing-key)."""
    from ..signed_tokens import mint, signing_key
    from ..units import parse_duration

    settings = _settings(config_file=config_file, data_dir=data_dir)
    try:
        key = signing_key(settings.token_signing_key, settings.data_dir)
        typer.echo(mint(key, identity, parse_duration(ttl), threads or ()))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


@token_app.command("rotate")
def token_rotate(
    data_dir: Annotated[Path | None, Opt(help="The gateway's data dir.")] = None,
    config_file: Annotated[Path | None, Opt("--config", help="TOML file of settings.")] = None,
) -> None:
    """A new signing key in the data dir: every signed token is invalid at once (a running
    gateway sees the new file at the next token; open connections close at the next SIGHUP)."""
    from ..signed_tokens import key_file, rotate_key

    settings = _settings(config_file=config_file, data_dir=data_dir)
    if settings.token_signing_key:
        raise typer.BadParameter("token_signing_key is set: change that setting instead")
    rotate_key(settings.data_dir)
    typer.echo(f"rotated: {key_file(settings.data_dir)}")


@config_app.command("show")
def config_show(
    config_file: Annotated[Path | None, Opt("--config", help="TOML file of settings.")] = None,
    as_json: Annotated[bool, Opt("--json", help="JSON output.")] = False,
) -> None:
    """Print the effective settings (defaults, file, environment), secrets masked."""
    data = _settings(config_file=config_file).masked()
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    for key, value in data.items():
        typer.echo(f"{key:24} {value}")


def main() -> None:  # pragma: no cover
    sys.exit(app())


# -- admin commands: talk to a running server ------------------------------------------------
pool_app = typer.Typer(help="Inspect and steer the kernel pool of a running gateway.",
                       no_args_is_help=True)
thread_app = typer.Typer(help="Manage threads of a running gateway.", no_args_is_help=True)
files_app = typer.Typer(help="The file store of a running gateway.", no_args_is_help=True)
app.add_typer(pool_app, name="pool")
app.add_typer(thread_app, name="thread")
app.add_typer(files_app, name="files")
node_app = typer.Typer(help="The nodes of a cluster (through its Redis registry).",
                       no_args_is_help=True)
app.add_typer(node_app, name="node")

UrlOpt = Annotated[str, Opt("--url", envvar="GATEWAY_ADMIN_URL",
                            help="Admin endpoint of the running gateway.")]
AdminTokenOpt = Annotated[str, Opt("--admin-token", envvar="GATEWAY_ADMIN_TOKEN",
                                   help="The server's admin token.")]
JsonOpt = Annotated[bool, Opt("--json", help="Print JSON instead of a table.")]
DEFAULT_ADMIN_URL = "ws://127.0.0.1:8765/admin"
NodeOpt = Annotated[str, Opt("--node", help="A cluster node's id: its admin endpoint is found "
                                            "in the registry (instead of --url).")]
RegistryOpt = Annotated[str, Opt("--registry", envvar="GATEWAY_REGISTRY_URL",
                                 help="The cluster's Redis, e.g. redis://127.0.0.1:6379/0.")]


def _registry_call(registry: str, call):
    from redis.exceptions import RedisError

    if not registry:
        typer.echo("error: no registry (--registry or GATEWAY_REGISTRY_URL)", err=True)
        raise typer.Exit(2)
    try:
        return asyncio.run(call(registry))
    except (RedisError, OSError) as exc:
        typer.echo(f"error: cannot reach the registry at {registry}: {exc}", err=True)
        raise typer.Exit(1) from exc
    except LookupError as exc:
        typer.echo(f"error: {exc.args[0]}", err=True)
        raise typer.Exit(1) from exc


def _node_admin_url(url: str, node: str, registry: str) -> str:
    if not node:
        return url
    from ..cluster.node_status import admin_url_of

    return _registry_call(registry, lambda r: admin_url_of(r, node))


def _admin(url: str, token: str, command: dict) -> object:
    from ..client import AdminError, admin_call

    if not token:
        typer.echo("error: no admin token (--admin-token or GATEWAY_ADMIN_TOKEN)", err=True)
        raise typer.Exit(2)
    try:
        return asyncio.run(admin_call(url, token, command))
    except AdminError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    except OSError as exc:
        typer.echo(f"error: cannot reach the gateway at {url}: {exc}", err=True)
        raise typer.Exit(1) from exc


def _print(result: object, as_json: bool, columns: list[str] | None = None) -> None:
    from .display import print_result

    print_result(result, as_json, columns)


@pool_app.command("ls")
def pool_ls(url: UrlOpt = DEFAULT_ADMIN_URL, admin_token: AdminTokenOpt = "",
            as_json: JsonOpt = False, node: NodeOpt = "", registry: RegistryOpt = "") -> None:
    """Every kernel: language, thread, owner, state, pid, age, idle time, memory, executions."""
    url = _node_admin_url(url, node, registry)
    _print(_admin(url, admin_token, {"op": "pool.ls"}), as_json,
           ["kernel", "language", "thread", "owner", "state", "pid", "age_seconds", "idle_seconds",
            "rss_bytes", "executions"])


@pool_app.command("stats")
def pool_stats(url: UrlOpt = DEFAULT_ADMIN_URL, admin_token: AdminTokenOpt = "",
               as_json: JsonOpt = False, node: NodeOpt = "", registry: RegistryOpt = "") -> None:
    """Pool sizes, warm count, waits, restarts, deaths; hibernated threads, hibernations per
    reason, restores and their time."""
    url = _node_admin_url(url, node, registry)
    _print(_admin(url, admin_token, {"op": "pool.stats"}), as_json)


@pool_app.command("resize")
def pool_resize(size: int, url: UrlOpt = DEFAULT_ADMIN_URL, admin_token: AdminTokenOpt = "",
                as_json: JsonOpt = False, node: NodeOpt = "", registry: RegistryOpt = "") -> None:
    """Keep SIZE warm kernels ready."""
    url = _node_admin_url(url, node, registry)
    _print(_admin(url, admin_token, {"op": "pool.resize", "size": size}), as_json)


@pool_app.command("drain")
def pool_drain(timeout: Annotated[float, Opt(help="Seconds to let executions finish.")] = 60,
               url: UrlOpt = DEFAULT_ADMIN_URL, admin_token: AdminTokenOpt = "",
               as_json: JsonOpt = False, node: NodeOpt = "", registry: RegistryOpt = "") -> None:
    """No new threads; running executions finish; then every kernel is shut down."""
    from .display import progress

    url = _node_admin_url(url, node, registry)
    with progress("draining the pool"):
        result = _admin(url, admin_token, {"op": "pool.drain", "timeout": timeout})
    _print(result, as_json)


@node_app.command("ls")
def node_ls(registry: RegistryOpt = "", as_json: JsonOpt = False) -> None:
    """The cluster's live nodes: heartbeat age, kernels, threads, load, draining."""
    from ..cluster.node_status import node_rows

    _print(_registry_call(registry, node_rows), as_json,
           ["node", "advertise_url", "heartbeat_age_seconds", "kernels", "threads", "load",
            "draining"])


@node_app.command("drain")
def node_drain(node: Annotated[str, typer.Argument(help="The node's id.")],
               registry: RegistryOpt = "",
               wait: Annotated[float, Opt(help="Seconds to wait until its threads are "
                                               "released (0: do not wait).")] = 600,
               as_json: JsonOpt = False) -> None:
    """Stop new claims on NODE, let its running cells finish, release its threads (their
    files are in the store): the next request for each lands on another node."""
    from ..cluster.node_status import drain_node
    from .display import progress

    with progress(f"draining node {node}"):
        result = _registry_call(registry, lambda r: drain_node(r, node, wait))
    _print(result, as_json)


@thread_app.command("ls")
def thread_ls(url: UrlOpt = DEFAULT_ADMIN_URL, admin_token: AdminTokenOpt = "",
              as_json: JsonOpt = False) -> None:
    """Threads with their owner, kernel, queue and idle time."""
    _print(_admin(url, admin_token, {"op": "thread.ls"}), as_json)


@thread_app.command("restart")
def thread_restart(thread_id: str, url: UrlOpt = DEFAULT_ADMIN_URL,
                   admin_token: AdminTokenOpt = "", as_json: JsonOpt = False) -> None:
    """Give THREAD_ID a fresh kernel (its working directory is kept); name it OWNER/THREAD_ID
    when several identities have a thread of that id."""
    _print(_admin(url, admin_token, {"op": "thread.restart", "thread_id": thread_id}), as_json)


@thread_app.command("kill")
def thread_kill(thread_id: str, url: UrlOpt = DEFAULT_ADMIN_URL,
                admin_token: AdminTokenOpt = "", as_json: JsonOpt = False) -> None:
    """Close THREAD_ID and shut its kernel down (its files stay downloadable)."""
    _print(_admin(url, admin_token, {"op": "thread.kill", "thread_id": thread_id}), as_json)


@thread_app.command("snapshot")
def thread_snapshot(thread_id: str, url: UrlOpt = DEFAULT_ADMIN_URL,
                    admin_token: AdminTokenOpt = "", as_json: JsonOpt = False) -> None:
    """Snapshot THREAD_ID's variables now (its next new kernel restores them)."""
    _print(_admin(url, admin_token, {"op": "thread.snapshot", "thread_id": thread_id}),
           as_json)


@thread_app.command("hibernate")
def thread_hibernate(thread_id: str, url: UrlOpt = DEFAULT_ADMIN_URL,
                     admin_token: AdminTokenOpt = "", as_json: JsonOpt = False) -> None:
    """Hibernate THREAD_ID now, after its running cell: variables, files, cwd and environment
    are stored and its kernel stops; its next request restores it."""
    _print(_admin(url, admin_token, {"op": "thread.hibernate", "thread_id": thread_id}),
           as_json)


@thread_app.command("export")
def thread_export(
    thread_id: str,
    output: Annotated[Path, Opt("-o", "--output", help="Where to write the .ipynb.")],
    url: Annotated[str, Opt("--url", envvar="GATEWAY_URL",
                            help="The gateway's HTTP address.")] = "http://127.0.0.1:8765",
    token: Annotated[str, Opt("--token", envvar="GATEWAY_CLIENT_TOKEN",
                              help="The thread owner's token (prefer the variable).")] = "",
) -> None:
    """Write THREAD_ID's executed cells, with their outputs, as a Jupyter notebook."""
    from ..threads.export import download_notebook

    if not token:
        typer.echo("error: no token (--token or GATEWAY_CLIENT_TOKEN)", err=True)
        raise typer.Exit(2)
    try:
        body = download_notebook(url, token, thread_id)
    except LookupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    except OSError as exc:
        typer.echo(f"error: cannot fetch the notebook from {url}: {exc}", err=True)
        raise typer.Exit(1) from exc
    output.write_bytes(body)
    typer.echo(f"{output}: {len(body)} bytes")


@files_app.command("ls")
def files_ls(thread_id: Annotated[str | None, Opt("--thread")] = None,
             everything: Annotated[bool, Opt("--all", help="Also the gateway's own files of "
                                             "threads (snapshots, cell records).")] = False,
             url: UrlOpt = DEFAULT_ADMIN_URL, admin_token: AdminTokenOpt = "",
             as_json: JsonOpt = False) -> None:
    """Stored files (all, or of one thread)."""
    _print(_admin(url, admin_token, {"op": "files.ls", "thread_id": thread_id,
                                     "all": everything}), as_json,
           ["id", "thread_id", "owner", "name", "mime_type", "size"])


@files_app.command("usage")
def files_usage(url: UrlOpt = DEFAULT_ADMIN_URL, admin_token: AdminTokenOpt = "",
                as_json: JsonOpt = False) -> None:
    """Per identity: stored bytes and live threads, against their quotas."""
    _print(_admin(url, admin_token, {"op": "files.usage"}), as_json,
           ["identity", "file_bytes", "file_quota", "live_threads", "max_threads"])


@files_app.command("gc")
def files_gc(older_than: Annotated[float | None, Opt(help="Seconds; default: the "
                                                              "server's file_retention.")] = None,
             url: UrlOpt = DEFAULT_ADMIN_URL, admin_token: AdminTokenOpt = "",
             as_json: JsonOpt = False) -> None:
    """Delete stored files older than the retention period."""
    command: dict = {"op": "files.gc"}
    if older_than is not None:
        command["older_than"] = older_than
    _print(_admin(url, admin_token, command), as_json)


@app.command("mcp")
def mcp_server(
    transport: Annotated[str, Opt(help="'stdio' (desktop agents) or 'http' (Streamable "
                                       "HTTP, bearer tokens).")] = "stdio",
    url: Annotated[str | None, Opt(envvar="GATEWAY_URL", help="A running gateway's ws URL; "
                                   "default: start an embedded one.")] = None,
    token: Annotated[str | None, Opt(envvar="GATEWAY_TOKEN", help="Gateway token for stdio "
                                     "(HTTP clients send their own).")] = None,
    host: Annotated[str, Opt(help="HTTP: address to bind.")] = "127.0.0.1",
    port: Annotated[int, Opt(help="HTTP: port (0: any free one).")] = 8770,
    path: Annotated[str, Opt(help="HTTP: the MCP endpoint's path.")] = "/mcp",
    public_url: Annotated[str | None, Opt(help="Base URL clients download files from "
                                          "(default: the gateway's).")] = None,
    allow_local_paths: Annotated[bool | None, Opt(help="Let upload_file read files on this "
                                                  "machine (default: stdio only).")] = None,
    insecure_http: Annotated[bool, Opt("--insecure-http", help="HTTP on a non-loopback "
                                       "address (a TLS proxy in front).")] = False,
) -> None:
    """Serve the gateway as an MCP server: tools run_code, upload_file, list_files, read_file
    and restart; one MCP session is one stateful thread."""
    from ..integrations.mcp_server.run import McpOptions, serve

    if transport not in ("stdio", "http"):
        raise typer.BadParameter(f"--transport {transport!r}: expected 'stdio' or 'http'")
    if transport == "stdio" and url and not token:
        typer.echo("error: no gateway token (--token or GATEWAY_TOKEN)", err=True)
        raise typer.Exit(2)
    if transport == "http" and host not in ("127.0.0.1", "::1", "localhost") and not insecure_http:
        typer.echo(f"error: refusing plain HTTP on {host!r}: bearer tokens would cross the "
                   "network in clear text; bind 127.0.0.1 behind a TLS proxy, or pass "
                   "--insecure-http", err=True)
        raise typer.Exit(2)
    options = McpOptions(transport=transport, url=url, token=token, host=host,  # type: ignore[arg-type]
                         port=port, path=path, public_url=public_url,
                         allow_local_paths=allow_local_paths)
    # stdout is the stdio transport's channel: say everything else on stderr.
    _run_gateway(serve(options, lambda where: typer.echo(f"MCP endpoint: {where}", err=True)))


@app.command("exec")
def exec_code(
    code: Annotated[str, typer.Argument(help="Python code, or - to read it from stdin.")],
    url: Annotated[str | None, Opt(help="A running gateway's ws URL; default: start a "
                                           "throwaway one.")] = None,
    token: Annotated[str | None, Opt(envvar="GATEWAY_TOKEN")] = None,
    timeout: Annotated[float, Opt(help="Seconds for the cell.")] = 60,
    as_json: JsonOpt = False,
) -> None:
    """Run CODE once in a fresh sandboxed kernel and print the envelopes as they stream."""
    from .one_cell import run_exec

    source = sys.stdin.read() if code == "-" else code
    state = _run_gateway(run_exec(source, url, token, timeout, as_json))
    raise typer.Exit(0 if state == "complete" else 1)
