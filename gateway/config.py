"""One typed settings object. CLI flags, ``GATEWAY_*`` environment variables and a TOML file
fill it; each field declares what it accepts (gateway/constraints.py), and settings that cannot
mean anything are refused when they are made, every problem at once (``SettingsError``)."""

from __future__ import annotations

import dataclasses
import difflib
import os
import sys
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from . import egress_policy, host_memory, units
from .constraints import DURATION, SIZE, Problem, Rule, constraint_of, kinds, setting
from .errors import SettingsError

MiB = 2**20
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
UID_LIMIT = 2**32 - 2  # kernel_uid_base + kernel_uid_count may reach it (gateway/sandbox/uids.py)


def _not_empty(value: str) -> str | None:
    return None if value.strip() else "is empty"


def _url(*schemes: str) -> Callable[[str], str | None]:
    """A check for an optional URL: empty, or one of ``schemes`` with a host (``unix://``: a
    socket's path)."""

    def check(value: str) -> str | None:
        parts = urllib.parse.urlsplit(value)
        where = parts.path.strip("/") if parts.scheme == "unix" else parts.netloc
        if not value or (parts.scheme in schemes and where):
            return None
        names = [f"{scheme}://" for scheme in schemes]
        listed = ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]
        return f"is not a {listed} URL"

    return check


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
    host: str = setting("127.0.0.1", check=_not_empty)
    port: int = setting(8765, minimum=0, maximum=65535)  # 0: any free port
    # token -> identity. A thread belongs to the identity whose token created it.
    tokens: dict[str, str] = setting(factory=dict, secret=True)
    admin_token: str = setting("", secret=True)  # for the admin API (/admin); empty disables it
    # Signs short-lived browser tokens (gateway token mint, GET /admin/token); empty: a random
    # key in DATA_DIR/token-signing-key. Changing or rotating it invalidates every such token.
    token_signing_key: str = setting("", secret=True)
    data_dir: Path = Path("/var/lib/code-interpreter-gateway")

    # Pool
    # Warm kernels kept ready (the floor of the adaptive target); with the other languages'
    # pools, at most max_kernels.
    pool_size: int = setting(2, minimum=0)
    # Adaptive warm pool (gateway/pool/demand.py): the target rises above pool_size with the
    # rate of new threads (a moving average with this time constant, in seconds, kept warm
    # for pool_horizon seconds ahead) and with bursts (new threads in pool_burst_window s),
    # up to the kernel limit (max_kernels) and what host memory admits.
    pool_adaptive: bool = True
    pool_rate_window: float = setting(120.0, unit=DURATION, above=0)
    pool_burst_window: float = setting(30.0, unit=DURATION, above=0)
    pool_horizon: float = setting(30.0, unit=DURATION, minimum=0)
    # Warm kernels of the other languages (gateway/languages); 0: started on demand.
    bash_pool_size: int = setting(0, minimum=0)
    javascript_pool_size: int = setting(0, minimum=0)  # Deno
    typescript_pool_size: int = setting(0, minimum=0)  # Deno
    r_pool_size: int = setting(0, minimum=0)  # IRkernel
    # Leased + warm, every language together. 0: from the host's memory and cores
    # (host_memory.default_kernel_limit; Settings.kernel_limit has the number in force).
    max_kernels: int = setting(0, minimum=1, special=((0, "from the host"),))
    # New kernels start only while the host's available memory stays above this (what kernels
    # really use counts, not their memory_limit); below it, or under memory pressure, idle
    # threads give their kernels back. 0: 1/16 of memory, 256 MiB to 4 GiB.
    memory_floor: int = setting(0, unit=SIZE, minimum=1, special=((0, "from the host"),))
    # Live threads (holding a kernel or with work queued) one identity may hold on a node; at
    # the share, its own least recently used idle thread is hibernated for the next one.
    # 0: half of max_kernels when several identities are configured, so no identity can take
    # every kernel from the others; all of them when there is only one.
    max_threads_per_identity: int = setting(0, minimum=0)
    # How long a new thread waits for a kernel when the pool is full (0: not at all).
    lease_wait: float = setting(10.0, unit=DURATION, minimum=0)
    # A thread idle this long is hibernated: variables, files and state are stored, its kernel
    # stops, its next request restores it. Minutes, not half an hour: an idle kernel holds
    # memory and a place under max_kernels that a live conversation could use, and a restore
    # costs about a kernel start plus loading the snapshot. A thread is hibernated sooner when
    # a new one needs its place (the least recently used idle thread first).
    hibernate_after: float = setting(600.0, unit=DURATION, above=0)
    kernel_start_timeout: float = setting(30.0, unit=DURATION, above=0)

    # Execution
    execution_timeout: float = setting(60.0, unit=DURATION, above=0)  # at most max_timeout
    max_timeout: float = setting(3600.0, unit=DURATION, above=0)
    # On SIGTERM, running executions get this long to finish.
    shutdown_grace: float = setting(30.0, unit=DURATION, minimum=0)
    # After an interrupt, wait this long before restarting the kernel.
    interrupt_grace: float = setting(3.0, unit=DURATION, minimum=0)
    # Per thread; at least 1 (an asyncio queue of size 0 would hold any number).
    max_queued_executions: int = setting(16, minimum=1)
    # What a reconnecting client can catch up on: each thread's recent envelopes (bytes, age)
    # and every call's final status by id (age, bytes).
    replay_buffer_bytes: int = setting(8 * MiB, unit=SIZE, minimum=0)
    replay_buffer_seconds: float = setting(600.0, unit=DURATION, minimum=0)
    result_retention: float = setting(6 * 3600.0, unit=DURATION, minimum=0)
    result_retention_bytes: int = setting(64 * MiB, unit=SIZE, minimum=0)
    max_output_chars: int = setting(1_000_000, minimum=1)
    # Rich display data (HTML, Markdown, JSON, SVG, ...) sent inline per execution; beyond it
    # a display names the MIME types it omits. Images travel as files and do not count.
    max_display_chars: int = setting(4_000_000, minimum=0)

    # Sandbox
    # "gvisor": each kernel in a gVisor sandbox of its own (runsc, root; docs/security.md),
    # for the whole gateway. "none": explicit, loud.
    sandbox: str = setting("bwrap", choices=("bwrap", "gvisor", "none"))
    # gVisor's way of catching a kernel's syscalls: ptrace works everywhere; kvm (needs
    # /dev/kvm, not under nested virtualisation here) and systrap (newer runsc) are faster.
    gvisor_platform: str = setting("ptrace", choices=("ptrace", "kvm", "systrap"))
    # "fork": Python kernels are forked from a zygote that imported the libraries once (needs
    # root; see gateway/sandbox/forkserver.py); "exec": each is a fresh interpreter under
    # bubblewrap.
    kernel_start: str = setting("fork", choices=("fork", "exec"))
    memory_limit: int = setting(1024 * MiB, unit=SIZE, above=0)
    pids_limit: int = setting(256, minimum=1)
    cpu_limit: float = setting(1.0, above=0)  # in cores
    disk_limit: int = setting(512 * MiB, unit=SIZE, above=0)
    file_size_limit: int = setting(256 * MiB, unit=SIZE, above=0)
    open_files_limit: int = setting(1024, minimum=1)
    # Host uids for kernels when the gateway runs as root: one per working directory, from
    # this range (give each gateway on a host its own); 0 keeps kernels as root (reported).
    # Above the system's users, below 2**32 - 2 (gateway/sandbox/uids.py).
    kernel_uid_base: int = setting(100_000, minimum=1000, maximum=UID_LIMIT - 1,
                                   special=((0, "kernels stay root"),))
    kernel_uid_count: int = setting(10_000, minimum=1)
    kernel_python: str = setting(sys.executable, check=_not_empty)
    kernels_dir: Path = setting(factory=bundled_kernels_dir)

    # Egress (docs/egress.md): off while egress_allow is empty. Host patterns with optional
    # ports (pypi.internal:443, *.example.org, 10.0.0.0/8:3141); no port: 80 and 443 (in
    # egress_deny: every port). Deny wins; private addresses need an address rule.
    egress_allow: tuple[str, ...] = ()
    egress_deny: tuple[str, ...] = ()
    # Per identity, e.g. {alice = "pypi.internal:443"}: an identity's allow list replaces
    # egress_allow (empty: none for it), its deny list adds to egress_deny.
    identity_egress_allow: dict[str, str] = setting(factory=dict)
    identity_egress_deny: dict[str, str] = setting(factory=dict)
    egress_bytes_per_thread: int = setting(1024 * MiB, unit=SIZE, above=0)  # both directions
    egress_connections_per_thread: int = setting(16, minimum=1)  # open at once
    # A client must send its whole request head within this (slow clients hold no slot).
    egress_header_timeout: float = setting(10.0, unit=DURATION, above=0)
    egress_idle_timeout: float = setting(120.0, unit=DURATION, above=0)  # per connection
    # The index `pip install` uses in kernels (empty: pip's own, pypi.org).
    egress_pip_index: str = setting("", check=_url("http", "https"))
    # Headers the proxy adds to plain-HTTP requests to a host pattern, e.g.
    # {"api.internal:8080" = "Authorization: Bearer ..."}: secrets no kernel ever holds.
    egress_headers: dict[str, str] = setting(factory=dict, secret=True)

    # Files
    max_upload_bytes: int = setting(50 * MiB, unit=SIZE, above=0)  # per upload message
    max_upload_total: int = setting(1024 * MiB, unit=SIZE, above=0)  # per file sent in parts
    # Larger generated files are announced with empty base64.
    inline_file_limit: int = setting(10 * MiB, unit=SIZE, minimum=0)
    # thread_file_quota <= identity_file_quota <= total_file_quota
    thread_file_quota: int = setting(1024 * MiB, unit=SIZE, above=0)
    total_file_quota: int = setting(20 * 1024 * MiB, unit=SIZE, above=0)
    # All files of one identity's threads. 0: a quarter of total_file_quota when several
    # identities are configured (one that fills its share leaves room for the generated files
    # and snapshots of at least three others); the whole store when there is only one.
    identity_file_quota: int = setting(0, unit=SIZE, minimum=0)
    # `gateway files gc` deletes older files.
    file_retention: float = setting(30 * 86400.0, unit=DURATION, above=0)

    # Namespace snapshots (gateway/threads/): taken in the kernel on hibernation, shutdown,
    # `gateway thread snapshot`, and after a cell that changed a namespace estimated below
    # snapshot_every_cell_below bytes (0: never per cell); restored into the next new kernel.
    snapshots: bool = True
    # Over it the largest names are skipped (and named).
    snapshot_limit: int = setting(256 * MiB, unit=SIZE, above=0)
    snapshot_every_cell_below: int = setting(8 * MiB, unit=SIZE, minimum=0)
    snapshot_timeout: float = setting(120.0, unit=DURATION, above=0)  # to take or load one

    # Clients
    projectdavid_compat: bool = False  # also emit the flat chunks the projectdavid SDK reads
    # e.g. https://gw.example.com; gives compat file chunks a url
    public_url: str = setting("", check=_url("http", "https"))

    # Websocket
    max_message_bytes: int = setting(64 * MiB, unit=SIZE, above=0)
    log_level: str = setting("INFO", choices=LOG_LEVELS, ignore_case=True)
    log_json: bool = False

    # Exposure: TLS, origins, hosts (gateway/net/tls.py, origins.py, hosts.py)
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
    # Cluster settings need registry_url, and registry_url needs store_url and cluster_token.
    # redis://host:port/db: nodes, thread ownership, file metadata
    registry_url: str = setting("", check=_url("redis", "rediss", "unix"), secret=True)
    store_url: str = setting("", check=_url("s3"))  # s3://bucket/prefix: file bytes
    # S3 API endpoint (MinIO, Ceph, an emulator); empty: AWS
    store_endpoint: str = setting("", check=_url("http", "https"))
    store_region: str = "us-east-1"
    store_key_id: str = ""  # with store_key; empty: the S3 client's usual credential chain
    store_key: str = setting("", secret=True)
    node_id: str = ""  # unique per node; empty: host name and port
    # How other nodes reach this one, e.g. ws://10.0.0.5:8765
    advertise_url: str = setting("", check=_url("ws", "wss"))
    # Shared by the nodes: authenticates relayed connections.
    cluster_token: str = setting("", secret=True)
    # How long a node or its thread claims live without a heartbeat.
    node_lease: float = setting(10.0, unit=DURATION, above=0)

    def __post_init__(self) -> None:
        from . import auth, constraints, hosts, origins

        constraints.normalize(self)
        found = constraints.problems(self, RULES)
        found += egress_problems(self)
        for name, parse in (("allowed_origins", origins.parse_list),
                            ("allowed_hosts", hosts.parse_list)):
            if not any(problem == name for problem, _ in found):
                try:
                    setattr(self, name, parse(getattr(self, name)))
                except ValueError as exc:
                    found.append((name, str(exc)))
        if found:
            raise SettingsError(found)
        # Clear tokens are hashed at once: the settings never hold one (gateway/net/auth.py).
        self.tokens = auth.hashed_tokens(self.tokens)
        if self.admin_token:
            self.admin_token = auth.stored_form(self.admin_token)

    @property
    def egress(self) -> bool:
        """Whether any thread may have egress: kernels then get the proxy's settings."""
        return bool(self.egress_allow) or any(
            egress_policy.split_list(v) for v in self.identity_egress_allow.values())

    def language_pool_size(self, language: str) -> int:
        """Warm kernels kept for ``language`` (Python's is ``pool_size``)."""
        return self.pool_size if language == "python" else getattr(self, f"{language}_pool_size")

    @property
    def kernel_limit(self) -> int:
        """``max_kernels`` in force (its 0 resolved from the host's size)."""
        if self.max_kernels > 0:
            return self.max_kernels
        return host_memory.default_kernel_limit(host_memory.host_size(), self.memory_floor_limit)

    @property
    def memory_floor_limit(self) -> int:
        """``memory_floor`` in force (its 0 resolved from the host's memory)."""
        if self.memory_floor > 0:
            return self.memory_floor
        return host_memory.default_memory_floor(host_memory.host_size())

    @property
    def identity_thread_limit(self) -> int:
        """``max_threads_per_identity`` in force (its 0 resolved from the identities)."""
        if self.max_threads_per_identity > 0:
            return self.max_threads_per_identity
        shared = len(set(self.tokens.values())) > 1
        return max(1, self.kernel_limit // 2) if shared else self.kernel_limit

    @property
    def identity_file_limit(self) -> int:
        """``identity_file_quota`` in force (its 0 resolved from the identities)."""
        if self.identity_file_quota > 0:
            return self.identity_file_quota
        shared = len(set(self.tokens.values())) > 1
        return self.total_file_quota // 4 if shared else self.total_file_quota

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
        for secret in ("cluster_token", "store_key", "token_signing_key"):
            data[secret] = "***" if data[secret] else ""
        data["egress_headers"] = {host: "***" for host in self.egress_headers}
        return {k: str(v) if isinstance(v, Path) else v for k, v in data.items()}


def egress_problems(s: Settings) -> list[Problem]:
    """Every bad pattern of the egress lists, named by setting (and identity)."""
    found: list[Problem] = []
    for name in ("egress_allow", "egress_deny"):
        value = getattr(s, name)
        if isinstance(value, tuple) and all(isinstance(v, str) for v in value):
            try:
                egress_policy.parse_rules(value, name)
            except ValueError as exc:
                found.append((name, str(exc)))
    if isinstance(s.egress_headers, dict):
        bad = []
        for pattern, headers in s.egress_headers.items():
            try:
                egress_policy.parse_rule(pattern, "egress_headers")
                egress_policy.parse_headers(headers if isinstance(headers, str) else "")
            except ValueError as exc:  # the message never holds a header's value
                bad.append(f"entry {pattern!r}: {exc}")
        if bad:
            found.append(("egress_headers", "; ".join(bad)))
    for name in ("identity_egress_allow", "identity_egress_deny"):
        value = getattr(s, name)
        if not isinstance(value, dict):
            continue
        bad = []
        for identity, patterns in value.items():
            if not isinstance(patterns, str):
                continue  # the type check says so
            try:
                egress_policy.parse_rules(egress_policy.split_list(patterns), name)
            except ValueError as exc:
                bad.append(f"identity {identity}: {exc}")
        if bad:
            found.append((name, "; ".join(bad)))
    if s.sandbox == "gvisor" and not found:
        try:
            wanted = s.egress
        except (TypeError, AttributeError, ValueError):  # a bad type, said by its own check
            wanted = False
        if wanted:
            found.append(("egress_allow", "egress needs sandbox = bwrap: a gVisor sandbox "
                          "cannot connect to the host's unix socket the egress proxy serves"))
    return found


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


POOL_SIZES = ("pool_size", "bash_pool_size", "javascript_pool_size", "typescript_pool_size",
              "r_pool_size")


def _warm_pools(s: Settings) -> int:
    return sum(getattr(s, name) for name in POOL_SIZES)


def _kernel_limit(s: Settings) -> str:
    return str(s.max_kernels) if s.max_kernels else f"{s.kernel_limit}, from this host's size"


def _needs_cluster(name: str) -> Rule:
    return Rule((name, "registry_url"), lambda s: not getattr(s, name) or bool(s.registry_url),
                lambda s: "needs registry_url: only several nodes (a cluster) use it")


def _at_most(smaller: str, larger: str, why: str) -> Rule:
    """``smaller`` <= ``larger``; a 0 in ``identity_file_quota`` is resolved later, never
    too large or too small."""
    def explain(s: Settings) -> str:
        return (f"{units.describe_size(getattr(s, smaller))} is more than {larger} "
                f"({units.describe_size(getattr(s, larger))}): {why}")

    def holds(s: Settings) -> bool:
        automatic = "identity_file_quota" in (smaller, larger) and not s.identity_file_quota
        return automatic or getattr(s, smaller) <= getattr(s, larger)

    return Rule((smaller, larger), holds, explain)


# What no single field can say: settings that contradict each other or mean nothing together.
RULES: tuple[Rule, ...] = (
    Rule((*POOL_SIZES, "max_kernels", "memory_floor"), lambda s: _warm_pools(s) <= s.kernel_limit,
         lambda s: f"the warm pools of every language ({_warm_pools(s)}) are more than "
                   f"max_kernels ({_kernel_limit(s)}), which bounds them together"),
    Rule(("memory_floor",), lambda s: s.memory_floor < host_memory.host_size().memory,
         lambda s: f"{units.describe_size(s.memory_floor)} is not less than this host's "
                   f"memory ({units.describe_size(host_memory.host_size().memory)}): no "
                   "kernel could ever start"),
    Rule(("execution_timeout", "max_timeout"), lambda s: s.execution_timeout <= s.max_timeout,
         lambda s: f"{s.execution_timeout:g} s is more than max_timeout "
                   f"({s.max_timeout:g} s), the longest a request may ask for"),
    Rule(("kernel_uid_count", "kernel_uid_base"),
         lambda s: s.kernel_uid_base == 0 or s.kernel_uid_base + s.kernel_uid_count <= UID_LIMIT,
         lambda s: f"{s.kernel_uid_count} uids from kernel_uid_base {s.kernel_uid_base} go "
                   f"beyond {UID_LIMIT - 1}, the last usable uid"),
    _at_most("thread_file_quota", "identity_file_quota", "one thread's files count in its "
             "identity's quota"),
    _at_most("identity_file_quota", "total_file_quota", "one identity's files count in the "
             "store's quota"),
    _at_most("max_upload_bytes", "max_upload_total", "no file sent in one message can be "
             "larger than a file sent in parts"),
    Rule(("tls_cert", "tls_key"), lambda s: bool(s.tls_cert) == bool(s.tls_key),
         lambda s: "tls_cert and tls_key go together: set both (PEM files) or neither"),
    Rule(("tls_client_ca", "tls_cert"), lambda s: not s.tls_client_ca or bool(s.tls_cert),
         lambda s: "mutual TLS needs tls_cert and tls_key: the gateway must serve TLS itself"),
    Rule(("registry_url", "store_url"), lambda s: not s.registry_url or bool(s.store_url),
         lambda s: "needs store_url too: the nodes must share files"),
    Rule(("registry_url", "cluster_token"), lambda s: not s.registry_url or bool(s.cluster_token),
         lambda s: "needs cluster_token: the nodes authenticate the connections they relay "
                   "to each other with it"),
    *(_needs_cluster(name) for name in ("store_url", "store_endpoint", "store_key_id",
                                        "store_key", "node_id", "advertise_url",
                                        "cluster_token")),
    Rule(("store_key_id", "store_key"), lambda s: bool(s.store_key_id) == bool(s.store_key),
         lambda s: "store_key_id and store_key go together: set both or neither (the S3 "
                   "client's credential chain)"),
)

FIELDS = {f.name for f in dataclasses.fields(Settings)}
# Settings that were renamed: the old name is refused with the new one, never ignored, so a
# deployment that still sets it learns its value no longer applies.
RENAMED = {"idle_timeout": "hibernate_after"}
_CONSTRAINTS = {f.name: constraint_of(f) for f in dataclasses.fields(Settings)}
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def from_environment(
    environ: Mapping[str, str] | None = None,
    config_file: Path | None = None,
    texts: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Defaults, then a TOML file, then ``GATEWAY_<FIELD>`` variables, then ``overrides``
    (typed values) and ``texts`` (``KEY=VALUE`` text from the command line). Whatever cannot
    mean anything, from any source, is raised at once in one ``SettingsError`` whose problems
    say where each value came from."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    found: list[Problem] = []

    def take(name: str, raw: Any, source: str) -> None:
        try:
            values[name] = coerce(name, raw)
            sources[name] = source
        except ValueError as exc:
            found.append((name, f"{exc} [{source}]"))

    if config_file is not None:
        try:
            for name, raw in _load_toml(config_file).items():
                take(name, raw, f"in {config_file}")
        except (OSError, ValueError) as exc:  # missing, unreadable, not TOML
            found.append(("config", f"cannot read {config_file}: {exc}"))
    for name in sorted(FIELDS | RENAMED.keys()):
        raw = environ.get(f"GATEWAY_{name.upper()}")
        if raw is not None:
            take(name, raw, f"from GATEWAY_{name.upper()}")
    for name, value in overrides.items():
        if value is not None:
            values[name] = value
            sources.pop(name, None)
    for name, raw in (texts or {}).items():
        take(name, raw, "on the command line")
    try:
        settings = Settings(**values)
    except SettingsError as exc:
        found += [(name, f"{message} [{sources[name]}]" if name in sources else message)
                  for name, message in exc.problems]
        raise SettingsError(found) from None
    if found:
        raise SettingsError(found)
    return settings


def read_config_file(path: Path) -> dict[str, Any]:
    """A TOML file of settings (top-level keys named like the fields), its text values
    converted like the environment's; unknown keys and bad values are one ``SettingsError``."""
    values: dict[str, Any] = {}
    found: list[Problem] = []
    for name, raw in _load_toml(path).items():
        try:
            values[name] = coerce(name, raw)
        except ValueError as exc:
            found.append((name, f"{exc} [in {path}]"))
    if found:
        raise SettingsError(found)
    return values


def _load_toml(path: Path) -> dict[str, Any]:
    import tomllib

    with open(path, "rb") as handle:
        return tomllib.load(handle)


def coerce(name: str, raw: Any) -> Any:
    """A setting's value from text (environment, ``--set KEY=VALUE``, a TOML string): a size
    or a duration may carry a unit (``512MiB``, ``15m``), a bool is one of true/false, yes/no,
    on/off, 1/0. Other values (a TOML number, a table) pass as they are: ``Settings`` checks
    their types. Raises ValueError saying what is allowed."""
    if name in RENAMED:
        raise ValueError(f"renamed to {RENAMED[name]!r}: set that instead")
    if name not in FIELDS:
        close = difflib.get_close_matches(name, FIELDS, n=1)
        raise ValueError("no such setting" + (f" (did you mean {close[0]!r}?)" if close else ""))
    if not isinstance(raw, str):
        return raw
    kind, unit = kinds(Settings)[name], _CONSTRAINTS[name].unit
    if name == "tokens":
        return parse_tokens(raw)
    if name in ("identity_egress_allow", "identity_egress_deny"):
        return egress_policy.parse_identity_lists(raw)
    if name == "egress_headers":
        try:
            return egress_policy.parse_identity_lists(raw)
        except ValueError:  # its message would quote the text, which holds secrets
            raise ValueError("expected HOST=Name: value, entries separated by ;") from None
    if unit == SIZE:
        return units.parse_size(raw)
    if unit == DURATION:
        return units.parse_duration(raw)
    if kind is bool:
        return parse_bool(raw)
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{raw!r} is not a whole number") from None
    if kind is float:
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"{raw!r} is not a number") from None
    if kind is Path:
        return Path(raw)
    if kind is tuple:  # comma-separated list
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    return raw


def parse_bool(raw: str) -> bool:
    """Strictly: anything but true/false, yes/no, on/off, 1/0 (any case) is an error."""
    word = raw.strip().lower()
    if word in TRUE or word in FALSE:
        return word in TRUE
    raise ValueError(f"{raw!r} is not a bool: use true/false, yes/no, on/off or 1/0")
