"""One typed settings object. CLI flags and ``GATEWAY_*`` environment variables fill it."""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

MiB = 2**20


def bundled_kernels_dir() -> Path:
    """The kernelspec and IPython startup shipped in the package as ``gateway.kernels``.

    pyproject maps the top-level ``kernels/`` to that name, so this is the wheel's copy in an
    installed gateway and the checkout's directory in an editable one.
    """
    try:
        return Path(str(resources.files("gateway.kernels")))
    except ModuleNotFoundError:
        # A bare checkout that was never installed has no such package. Name where an install
        # keeps it: the start-up check then says what is missing instead of this import failing.
        return Path(__file__).resolve().parent / "kernels"


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 8765
    # HTTP PUT uploads of large files (websockets' server takes no request bodies): 0 picks a
    # free port, announced in the log and /healthz; -1 turns them off.
    upload_port: int = 0
    # token -> identity. A thread belongs to the identity whose token created it.
    tokens: dict[str, str] = field(default_factory=dict)
    admin_token: str = ""  # for the admin API (/admin); empty disables it
    data_dir: Path = Path("/var/lib/code-interpreter-gateway")

    # Pool
    pool_size: int = 2  # warm kernels kept ready (the floor of the adaptive target)
    # Adaptive warm pool (gateway/pool/demand.py): the target rises above pool_size with the
    # rate of new threads (a moving average with this time constant, in seconds, kept warm
    # for pool_horizon seconds ahead) and with bursts (new threads in pool_burst_window s),
    # up to a ceiling from host memory, memory_limit and max_kernels.
    pool_adaptive: bool = True
    pool_rate_window: float = 120.0
    pool_burst_window: float = 30.0
    pool_horizon: float = 30.0
    bash_pool_size: int = 0  # warm bash kernels (gateway/languages); 0: started on demand
    javascript_pool_size: int = 0  # warm Deno kernels for JavaScript threads; 0: on demand
    typescript_pool_size: int = 0  # warm Deno kernels for TypeScript threads; 0: on demand
    r_pool_size: int = 0  # warm IRkernel kernels for R threads; 0: on demand
    max_kernels: int = 16  # leased + warm
    # Live threads one identity may hold at once (on this node, or the cluster's registry):
    # half the kernels, so one identity cannot take every kernel from the others.
    max_threads_per_identity: int = 8
    lease_wait: float = 10.0  # how long a new thread waits for a kernel when the pool is full
    idle_timeout: float = 1800.0  # a thread idle this long loses its kernel (files stay)
    kernel_start_timeout: float = 30.0

    # Execution
    execution_timeout: float = 60.0
    max_timeout: float = 3600.0
    shutdown_grace: float = 30.0  # on SIGTERM, running executions get this long to finish
    interrupt_grace: float = 3.0  # after an interrupt, wait this long before restarting the kernel
    max_queued_executions: int = 16
    # What a reconnecting client can catch up on: each thread's recent envelopes (bytes, age)
    # and every call's final status by id (age, bytes).
    replay_buffer_bytes: int = 8 * MiB
    replay_buffer_seconds: float = 600.0
    result_retention: float = 6 * 3600.0
    result_retention_bytes: int = 64 * MiB
    max_output_chars: int = 1_000_000
    # Rich display data (HTML, Markdown, JSON, SVG, ...) sent inline per execution; beyond it
    # a display names the MIME types it omits. Images travel as files and do not count.
    max_display_chars: int = 4_000_000

    # Sandbox
    sandbox: str = "bwrap"  # "bwrap" or "none" (explicit, loud)
    # "fork": Python kernels are forked from a zygote that imported the libraries once (needs
    # root; see gateway/zygote.py); "exec": each is a fresh interpreter under bubblewrap.
    kernel_start: str = "fork"
    memory_limit: int = 1024 * MiB
    pids_limit: int = 256
    cpu_limit: float = 1.0  # in cores
    disk_limit: int = 512 * MiB
    file_size_limit: int = 256 * MiB
    open_files_limit: int = 1024
    # Host uids for kernels when the gateway runs as root: one per working directory, from
    # this range (give each gateway on a host its own); 0 keeps kernels as root (reported).
    kernel_uid_base: int = 100_000
    kernel_uid_count: int = 10_000
    kernel_python: str = sys.executable
    kernels_dir: Path = field(default_factory=bundled_kernels_dir)

    # Files
    max_upload_bytes: int = 50 * MiB  # per upload message
    max_upload_total: int = 1024 * MiB  # per file sent in parts
    inline_file_limit: int = 10 * MiB  # larger generated files are announced with empty base64
    thread_file_quota: int = 1024 * MiB
    total_file_quota: int = 20 * 1024 * MiB
    # All files of one identity's threads: a quarter of the store, so one identity that fills
    # its share leaves room for the generated files and snapshots of at least three others.
    identity_file_quota: int = 5 * 1024 * MiB
    file_retention: float = 30 * 86400.0  # seconds; `gateway files gc` deletes older files

    # Namespace snapshots (gateway/threads/): taken in the kernel on idle release, shutdown,
    # `gateway thread snapshot`, and after a cell that changed a namespace estimated below
    # snapshot_every_cell_below bytes (0: never per cell); restored into the next new kernel.
    snapshots: bool = True
    snapshot_limit: int = 256 * MiB  # over it the largest names are skipped (and named)
    snapshot_every_cell_below: int = 8 * MiB
    snapshot_timeout: float = 120.0  # for taking or loading one

    # Clients
    projectdavid_compat: bool = False  # also emit the flat chunks the projectdavid SDK reads
    public_url: str = ""  # e.g. https://gw.example.com; gives compat file chunks a url

    # Websocket
    max_message_bytes: int = 64 * MiB
    log_level: str = "INFO"
    log_json: bool = False

    # Exposure: TLS, origins, hosts (see gateway/tls.py, gateway/origins.py, gateway/hosts.py)
    tls_cert: str = ""  # PEM certificate (chain) for the websocket/HTTP and upload listeners
    tls_key: str = ""  # PEM private key of tls_cert
    tls_client_ca: str = ""  # PEM CA bundle: clients must present a certificate it signed
    # Serve plain HTTP on a non-loopback address (a TLS-terminating proxy is in front).
    insecure_http: bool = False
    # Browser origins allowed besides the gateway's own page ("*": any).
    allowed_origins: tuple[str, ...] = ()
    # Host names accepted in requests besides loopback ones (and those of public_url and
    # advertise_url): checked when the gateway listens on a loopback address (DNS rebinding: a
    # page on evil.example resolved to 127.0.0.1), and on any address once set; "*": any.
    allowed_hosts: tuple[str, ...] = ()

    # Cluster (gateway/cluster/): all empty = one node, SQLite and local disk, no other server.
    registry_url: str = ""  # redis://host:port/db: nodes, thread ownership, file metadata
    store_url: str = ""  # s3://bucket/prefix: file bytes (needs registry_url)
    store_endpoint: str = ""  # S3 API endpoint (MinIO, Ceph, an emulator); empty: AWS
    store_region: str = "us-east-1"
    store_key_id: str = ""  # empty: the S3 client's usual credential chain
    store_key: str = ""
    node_id: str = ""  # unique per node; empty: host name and port
    advertise_url: str = ""  # how other nodes reach this one, e.g. ws://10.0.0.5:8765
    cluster_token: str = ""  # shared by the nodes: authenticates relayed connections
    node_lease: float = 10.0  # seconds a node or its thread claims live without a heartbeat

    def __post_init__(self) -> None:
        from . import auth, hosts, origins

        # Clear tokens are hashed at once: the settings never hold one (gateway/auth.py).
        self.tokens = auth.hashed_tokens(self.tokens)
        if self.admin_token:
            self.admin_token = auth.stored_form(self.admin_token)
        self.allowed_origins = origins.parse_list(self.allowed_origins)
        self.allowed_hosts = hosts.parse_list(self.allowed_hosts)
        if self.kernel_start not in ("fork", "exec"):
            raise ValueError(f"kernel_start must be 'fork' or 'exec', not {self.kernel_start!r}")

    def language_pool_size(self, language: str) -> int:
        """Warm kernels kept for ``language`` (Python's is ``pool_size``)."""
        return self.pool_size if language == "python" else getattr(self, f"{language}_pool_size")

    @property
    def clustered(self) -> bool:
        return bool(self.registry_url)

    @property
    def workdirs(self) -> Path:
        return self.data_dir / "workdirs"

    @property
    def runtime_dir(self) -> Path:
        return self.data_dir / "runtime"

    def masked(self) -> dict[str, Any]:
        """Effective settings as plain data, secrets masked (for ``config show`` and logs)."""
        data = dataclasses.asdict(self)
        data["tokens"] = sorted(self.tokens.values())  # identities only
        data["admin_token"] = "***" if self.admin_token else ""
        for secret in ("cluster_token", "store_key"):
            data[secret] = "***" if data[secret] else ""
        return {k: str(v) if isinstance(v, Path) else v for k, v in data.items()}


def parse_tokens(spec: str) -> dict[str, str]:
    """``"alice:T1,bob:T2"`` or a bare ``"T"`` (identity ``default``) -> {token: identity}."""
    tokens: dict[str, str] = {}
    for number, item in enumerate(filter(None, (p.strip() for p in spec.split(","))), 1):
        identity, sep, token = item.partition(":")
        if not sep:
            identity, token = "default", item
        if not token or not identity:  # the entry is not quoted: it may hold a token
            raise ValueError(f"bad entry {number} in the tokens setting: expected "
                             "IDENTITY:TOKEN, IDENTITY:sha256:HEX or TOKEN")
        tokens[token] = identity
    return tokens


FIELDS = {f.name for f in dataclasses.fields(Settings)}


def from_environment(
    environ: dict[str, str] | None = None,
    config_file: Path | None = None,
    **overrides: Any,
) -> Settings:
    """Defaults, then a TOML file, then ``GATEWAY_<FIELD>`` variables, then explicit overrides."""
    environ = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    if config_file is not None:
        values.update(read_config_file(config_file))
    for name in FIELDS:
        raw = environ.get(f"GATEWAY_{name.upper()}")
        if raw is not None:
            values[name] = coerce(name, raw)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)


def read_config_file(path: Path) -> dict[str, Any]:
    """A TOML file of settings (top-level keys named like the fields); unknown keys are errors."""
    import tomllib

    with open(path, "rb") as handle:
        data = tomllib.load(handle)
    unknown = set(data) - FIELDS
    if unknown:
        raise ValueError(f"{path}: unknown settings {sorted(unknown)}")
    return {name: coerce(name, value) if isinstance(value, str) else value
            for name, value in data.items()}


def coerce(name: str, raw: Any) -> Any:
    """A setting's value from text (environment, ``--set KEY=VALUE``), checked against its type."""
    if name not in FIELDS:
        raise ValueError(f"unknown setting {name!r}")
    default = getattr(Settings(), name)
    if name == "tokens":
        return parse_tokens(raw) if isinstance(raw, str) else dict(raw)
    if isinstance(default, bool):
        return raw.lower() in {"1", "true", "yes", "on"}
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    if isinstance(default, Path):
        return Path(raw)
    if isinstance(default, tuple):  # comma-separated list
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    return str(raw)
