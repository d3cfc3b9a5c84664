"""Render the settings table of docs/configuration.md from ``gateway.config.Settings``.

    python -m scripts.settings_doc          # rewrite the table between the markers
    python -m scripts.settings_doc --check  # exit 1 if the page differs from what it renders

Defaults, units, choices and ranges come from the dataclass and its declared constraints
(gateway/constraints.py), the ``gateway serve`` flags from the command's signature, and what is
reloaded on SIGHUP from ``gateway.net.server.RELOADABLE``. Only the descriptions are written here,
one per field: a field without one stops the script (and tests/unit/test_docs.py), so a new setting
cannot go undocumented.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import sys
from pathlib import Path
from typing import Any

from gateway import config, units
from gateway.cli import main as cli
from gateway.constraints import DURATION, SIZE, Constraint, constraint_of, kinds
from gateway.net.server import RELOADABLE

PAGE = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
START, END = "<!-- settings:start -->", "<!-- settings:end -->"

# Defaults that depend on the machine or the install: shown as what they mean.
DEFAULT_SHOWN = {
    "kernel_python": "the gateway's interpreter (`sys.executable`)",
    "kernels_dir": "the package's own (`gateway.kernels`)",
}
# `gateway serve` flags whose parameter is not named like the setting.
FLAG_SETTING = {"token": "tokens"}

GROUPS: list[tuple[str, dict[str, str]]] = [
    ("Listening and access", {
        "host": "where to listen; a non-loopback `host` needs TLS (`tls_cert`) or "
                "`insecure_http`",
        "port": "the one port for the websocket, the live page, health, metrics, downloads and "
                "HTTP uploads; 0: any free port",
        "tokens": "`alice:sha256:<hex>,bob:sha256:<hex>` (from `gateway token new`), or clear "
                  "`TOKEN` / `alice:T1` (hashed on reading); thread ids are scoped per "
                  "identity (alice's `t1` and bob's `t1` are two threads)",
        "admin_token": "enables the admin API at `/admin` used by `gateway pool ...`; "
                       "`sha256:<hex>` or clear; empty: no admin API",
        "token_signing_key": "signs short-lived browser tokens (`gateway token mint`, "
                             "`GET /admin/token`); empty: a random key in "
                             "`DATA_DIR/token-signing-key`; changing it (or `gateway token "
                             "rotate`) invalidates every such token "
                             "(see [Clients](clients.md#browser-tokens))",
        "data_dir": "workdirs, file store, runtime sockets; one gateway per data directory "
                    "(see [Operations](operations.md))",
    }),
    ("Kernel pool", {
        "pool_size": "warm Python kernels kept ready at least (the adaptive target's floor)",
        "pool_adaptive": "the warm target follows demand (see [Benchmarks](benchmarks.md"
                         "#bursts-of-new-threads-the-adaptive-pool-and-kernel-starts)); false "
                         "keeps exactly `pool_size` warm",
        "pool_rate_window": "the new-thread rate is a moving average with this time constant",
        "pool_horizon": "the pool keeps this many seconds of the new-thread rate warm",
        "pool_burst_window": "a burst is the new threads of this last window, plus those "
                             "waiting for a kernel",
        "bash_pool_size": "warm bash kernels (0: a bash thread's kernel starts on demand)",
        "javascript_pool_size": "warm Deno kernels for JavaScript (0: started on demand)",
        "typescript_pool_size": "warm Deno kernels for TypeScript (0: started on demand)",
        "r_pool_size": "warm R kernels, IRkernel (0: started on demand)",
        "max_kernels": "kernels in total, leased and warm, every language together; the warm "
                       "pools of all languages must fit in it. 0: as many idle kernels (64 MiB "
                       "each) as fit in memory above `memory_floor`, at most 256 per core "
                       "([capacity](operations.md#capacity-kernels-and-memory))",
        "memory_floor": "host memory kept available: a new kernel starts only while what the "
                        "host has left (kernels counted at what they use, not at "
                        "`memory_limit`) stays above it; below it, or under memory pressure, "
                        "idle threads give back their kernels. 0: 1/16 of memory, 256 MiB to "
                        "4 GiB",
        "max_threads_per_identity": "live threads (holding a kernel or with work queued) of "
                                    "one identity on a node; at the share its least recently "
                                    "used idle thread is hibernated for the next, and a thread "
                                    "is refused with `identity_limit` only when all of them "
                                    "work. 0: half of `max_kernels` with several identities, "
                                    "all of them with one",
        "lease_wait": "how long a new thread waits for a kernel when all are in use and no "
                      "idle thread can be hibernated for it (0: not at all)",
        "hibernate_after": "an idle thread is hibernated: variables, files, cwd, environment "
                           "and execution count are stored and its kernel stops; its next "
                           "request restores them. Renamed from `idle_timeout`, which is "
                           "refused",
        "kernel_start_timeout": "how long one kernel start may take; a new thread waits this "
                                "long for a kernel already starting, even past `lease_wait`",
    }),
    ("Execution", {
        "execution_timeout": "per cell, unless the request asks for its own `timeout`",
        "max_timeout": "the longest `timeout` a request may ask for",
        "interrupt_grace": "after a timeout's interrupt, wait this long, then restart the "
                           "kernel",
        "shutdown_grace": "on SIGTERM, running executions get this long to finish",
        "max_queued_executions": "per thread; more is refused with `queue_full`",
        "max_output_chars": "text output per execution; a note says how much was dropped",
        "max_display_chars": "rich display data (`display` chunks) sent inline per execution; "
                             "images travel as files and do not count",
        "replay_buffer_bytes": "per thread: how much of its recent envelopes a reconnecting "
                               "client can be sent again",
        "replay_buffer_seconds": "per thread: how old those envelopes may be",
        "result_retention": "how long finished calls' final statuses stay available by id",
        "result_retention_bytes": "and how much memory they may hold (oldest go first; "
                                  "`/metrics`: `gateway_retained_result_bytes`)",
    }),
    ("Sandbox and limits", {
        "sandbox": "`bwrap`: bubblewrap, seccomp and a uid per kernel; `gvisor`: each kernel "
                   "in a gVisor sandbox of its own (root, `runsc`; see [gVisor](gvisor.md)); "
                   "`none` runs kernels unisolated (logged loudly, shown on `/healthz`)",
        "gvisor_platform": "how gVisor catches a kernel's syscalls: `ptrace` works everywhere; "
                           "`kvm` (needs `/dev/kvm`) and `systrap` (newer `runsc`) are faster",
        "kernel_start": "`fork`: Python kernels are forked from a zygote that imported the "
                        "libraries once (needs root; otherwise, or with `exec`, each kernel is "
                        "a fresh interpreter under bubblewrap); see [Security model]"
                        "(security.md#forked-python-kernels)",
        "memory_limit": "per kernel (a cgroup as root; without root an address-space rlimit)",
        "pids_limit": "processes and threads per kernel",
        "cpu_limit": "CPU cores per kernel",
        "disk_limit": "per thread: the size of its working directory (a size-capped tmpfs)",
        "file_size_limit": "largest file a kernel may write (rlimit)",
        "open_files_limit": "open files per kernel (rlimit)",
        "kernel_uid_base": "host uids for kernels (as root), one per working directory; 0 "
                           "keeps kernels as host root (reported)",
        "kernel_uid_count": "how many uids from `kernel_uid_base` the gateway may use",
        "kernel_python": "the kernels' Python (needs ipykernel); checked at start-up",
        "kernels_dir": "kernelspecs (`python3/kernel.json`, ...) and IPython `startup/`; "
                       "checked at start-up",
    }),
    ("Egress (see [Egress](egress.md))", {
        "egress_allow": "host patterns threads may reach through the egress proxy: "
                        "`pypi.org`, `mirror.internal:3141`, `*.example.org:*`, "
                        "`10.0.0.0/8:3141`; no port: 80 and 443; empty: no egress at all",
        "egress_deny": "patterns refused whatever allows them (no port: every port)",
        "identity_egress_allow": "per identity, e.g. `{ci = \"pypi.org\"}` or "
                                 "`ci=pypi.org;guest=`: replaces `egress_allow` for its "
                                 "threads (`\"\"`: none)",
        "identity_egress_deny": "per identity: added to `egress_deny`",
        "egress_bytes_per_thread": "bytes a thread may move through the proxy over its life, "
                                   "both directions; past it its connections are closed",
        "egress_connections_per_thread": "proxy connections one thread may hold open at once",
        "egress_header_timeout": "a client must send its whole request head within this "
                                 "(slow-loris clients hold nothing)",
        "egress_idle_timeout": "a proxied connection with no byte either way this long is "
                               "closed",
        "egress_pip_index": "the index `pip install` uses in kernels (an `http://` one is "
                            "trusted); empty: pip's own (pypi.org)",
        "egress_headers": "headers the proxy adds to plain-HTTP requests to a host pattern, "
                          "e.g. `{\"api.internal:8080\" = \"Authorization: Bearer ...\"}`: "
                          "secrets no kernel holds; never added inside HTTPS tunnels",
    }),
    ("Files", {
        "max_upload_bytes": "largest file in one `upload` message; a larger one goes in parts",
        "max_upload_total": "largest file sent in parts (the thread's `disk_limit` bounds it "
                            "too)",
        "inline_file_limit": "larger generated files are announced with an empty `base64`; "
                             "fetch them by id",
        "thread_file_quota": "stored files of one thread",
        "identity_file_quota": "all files of one identity's threads. 0: a quarter of "
                               "`total_file_quota` with several identities, all of it with one",
        "total_file_quota": "the whole file store",
        "file_retention": "`gateway files gc` deletes files older than this",
    }),
    ("Snapshots", {
        "snapshots": "namespace snapshots restored into a thread's next new kernel (false: "
                     "variables go with the kernel)",
        "snapshot_limit": "largest snapshot; over it the largest variables are skipped and "
                          "named",
        "snapshot_every_cell_below": "snapshot after a cell that changed the namespace when it "
                                     "is estimated below this (0: only on release, shutdown "
                                     "and request)",
        "snapshot_timeout": "for taking or loading one snapshot",
    }),
    ("Clients", {
        "projectdavid_compat": "also emit the flat chunks the projectdavid SDK reads (see "
                               "[Clients](clients.md#projectdavid-sdk))",
        "public_url": "e.g. `https://gw.example.com`: gives those flat file chunks a `url`; "
                      "its host is accepted in `Host`",
        "max_message_bytes": "largest websocket message a client may send",
    }),
    ("Logs", {
        "log_level": "the log's threshold",
        "log_json": "JSON log lines, carrying `thread_id`, `identity`, `call_id`, "
                    "`kernel_id`; code and file contents are never logged at info",
    }),
    ("Exposure: TLS, origins, hosts", {
        "tls_cert": "PEM certificate chain: the port serves `https`/`wss`",
        "tls_key": "PEM private key of `tls_cert`",
        "tls_client_ca": "PEM CA bundle: clients must present a certificate it signed "
                         "(mutual TLS)",
        "insecure_http": "serve plain HTTP on a non-loopback address (a TLS-terminating proxy "
                         "in front)",
        "allowed_origins": "browser origins allowed to open websockets besides the gateway's "
                           "own page, comma-separated; `*` for any",
        "allowed_hosts": "`Host` names the gateway answers besides `localhost`, 127.0.0.0/8, "
                         "`[::1]` and the hosts of `public_url`/`advertise_url`, "
                         "comma-separated, without port (`gw.example.com,10.0.0.5`); `*` for "
                         "any. Checked on a loopback `host` always, on other addresses once "
                         "set (DNS rebinding, see [Security model](security.md#dns-rebinding))",
    }),
    ("Cluster (several nodes)", {
        "registry_url": "`redis://host:port/db`: turns cluster mode on (empty: one node)",
        "store_url": "`s3://bucket/prefix` for file bytes (required with `registry_url`; the "
                     "bucket is created if missing)",
        "store_endpoint": "the S3 API endpoint (MinIO, Ceph, an emulator); empty: AWS",
        "store_region": "the bucket's region",
        "store_key_id": "with `store_key`; empty: the S3 client's credential chain",
        "store_key": "the secret key of `store_key_id`",
        "node_id": "unique per node; a restarted node may keep its id; empty: host name and "
                   "port",
        "advertise_url": "how other nodes reach this one (its internal relay endpoint), e.g. "
                         "`ws://10.0.0.5:8765`; empty: `ws://127.0.0.1:PORT`",
        "cluster_token": "shared by the nodes; authenticates `/internal` (never sent to "
                         "kernels or clients)",
        "node_lease": "node and claim lease; failover takes up to this + 2 s",
    }),
]


def flags() -> dict[str, str]:
    """Setting -> its ``gateway serve`` flag."""
    found = {}
    for name in inspect.signature(cli.serve).parameters:
        setting = FLAG_SETTING.get(name, name)
        if setting in config.FIELDS:
            found[setting] = "--" + name.replace("_", "-")
    return found


def number(value: float) -> str:
    """``2592000.0`` -> ``2592000``; ``0.5`` stays."""
    return str(int(value)) if float(value).is_integer() else str(value)


def duration(seconds: float) -> str:
    shown = f"{number(seconds)} s"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{shown} ({number(seconds / size)}{unit})"
    return shown


def shown_default(field: dataclasses.Field, kind: type, rule: Constraint) -> str:
    if field.name in DEFAULT_SHOWN:
        return DEFAULT_SHOWN[field.name]
    if field.default is dataclasses.MISSING:
        value: Any = field.default_factory()  # type: ignore[misc]
    else:
        value = field.default
    if kind is bool:
        return f"`{str(value).lower()}`"
    if kind in (dict, tuple) and not value:
        return "(none)"
    if kind is str and not value:
        return "(empty)"
    if rule.unit == SIZE:
        return units.describe_size(value) if value else "0"
    if rule.unit == DURATION:
        return duration(value)
    if kind in (int, float):
        return f"{value:,}" if abs(value) >= 10_000 else number(value)
    return f"`{value}`"


def accepts(kind: type, rule: Constraint) -> str:
    """What the setting takes, in a few words."""
    words = {SIZE: "size", DURATION: "duration"}.get(rule.unit or "") or {
        bool: "bool", int: "integer", float: "number", str: "text", Path: "path",
        tuple: "list", dict: "list"}[kind]
    if rule.choices:
        words = ", ".join(f"`{choice}`" for choice in rule.choices)
    bounds = []
    if rule.minimum is not None and rule.maximum is not None:
        bounds.append(f"{number(rule.minimum)}..{number(rule.maximum)}")
    else:
        if rule.minimum is not None:
            bounds.append(f"≥ {number(rule.minimum)}")
        if rule.above is not None:
            bounds.append(f"> {number(rule.above)}")
        if rule.maximum is not None:
            bounds.append(f"≤ {number(rule.maximum)}")
    bounds += [f"{number(value)}: {meaning}" for value, meaning in rule.special]
    if rule.secret:
        bounds.append("secret")
    return "; ".join([words, *bounds])


def render() -> str:
    """The Markdown between the markers: one table per group of settings."""
    fields = {field.name: field for field in dataclasses.fields(config.Settings)}
    described = [name for _, group in GROUPS for name in group]
    missing = sorted(set(fields) - set(described))
    if missing:
        raise SystemExit(f"settings without a description in {__file__}: {', '.join(missing)}")
    unknown = sorted(set(described) - set(fields))
    if unknown or len(described) != len(set(described)):
        raise SystemExit(f"descriptions of no setting, or twice: {unknown or described}")
    kind_of, flag_of = kinds(config.Settings), flags()
    out = []
    for heading, group in GROUPS:
        out += [f"### {heading}", "", "| setting | default | accepts | meaning |",
                "|---|---|---|---|"]
        for name, meaning in group.items():
            field, rule = fields[name], constraint_of(fields[name])
            setting = f"`{name}`" + (f"<br>`{flag_of[name]}`" if name in flag_of else "")
            if name in RELOADABLE:
                meaning += "; reloaded on SIGHUP"
            out.append(f"| {setting} | {shown_default(field, kind_of[name], rule)} | "
                       f"{accepts(kind_of[name], rule)} | {meaning} |")
        out.append("")
    return "\n".join(out)


def replaced(page: str, table: str) -> str:
    """``page`` with the text between the markers replaced by ``table``."""
    head, start, rest = page.partition(START)
    _, end, tail = rest.partition(END)
    if not start or not end:
        raise SystemExit(f"{PAGE} lacks the markers {START} ... {END}")
    return f"{head}{START}\n{table}{END}{tail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the page's table differs from the rendered one")
    args = parser.parse_args()
    page = PAGE.read_text()
    new = replaced(page, render())
    if args.check:
        if new != page:
            print(f"{PAGE} is out of date: run python -m scripts.settings_doc", file=sys.stderr)
            return 1
        return 0
    if new != page:
        PAGE.write_text(new)
        print(f"rewrote the settings table of {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
