"""Settings refuse what they cannot mean: every field's declared constraint, the rules between
fields, text with units and strict bools, and every problem of every source at once."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gateway import config, constraints
from gateway.config import FIELDS, MiB, Settings, SettingsError, coerce, from_environment
from gateway.errors import GatewayError
from support.gateways import test_settings

GiB = 1024 * MiB
CLUSTER = dict(registry_url="redis://127.0.0.1:6379/0", store_url="s3://bucket/files",
               cluster_token="shared")


def problems_of(**values) -> list[tuple[str, str]]:
    with pytest.raises(SettingsError) as caught:
        Settings(**values)
    return caught.value.problems


def test_defaults_and_the_tests_settings_are_valid(tmp_path):
    assert constraints.problems(Settings(), config.RULES) == []
    assert constraints.problems(test_settings(tmp_path), config.RULES) == []
    Settings(**CLUSTER, store_endpoint="http://127.0.0.1:9000", store_key_id="k", store_key="s",
             node_id="n1", advertise_url="ws://10.0.0.5:8765")


def test_an_unknown_sandbox_is_refused_by_name():
    with pytest.raises(SettingsError) as caught:
        Settings(sandbox="banana")
    assert str(caught.value) == ("invalid settings: sandbox: 'banana' is not one of 'bwrap', "
                                 "'gvisor', 'none'")
    assert isinstance(caught.value, GatewayError) and isinstance(caught.value, ValueError)
    assert problems_of(sandbox="firecracker") == [
        ("sandbox", "'firecracker' is not one of 'bwrap', 'gvisor', 'none'")]


@pytest.mark.parametrize(("values", "problem"), [
    (dict(kernel_start="spawn"), ("kernel_start", "'spawn' is not one of 'fork', 'exec'")),
    (dict(log_level="loud"), ("log_level", "'loud' is not one of 'DEBUG', 'INFO', 'WARNING', "
                                           "'ERROR', 'CRITICAL'")),
    (dict(port=65536), ("port", "65536 is out of range: 0..65535")),
    (dict(port=-1), ("port", "-1 is out of range: 0..65535")),
    (dict(pool_size=-1), ("pool_size", "-1 is out of range: at least 0")),
    (dict(max_kernels=-1), ("max_kernels", "-1 is out of range: 0 (from the host) or at least 1")),
    (dict(max_queued_executions=0), ("max_queued_executions", "0 is out of range: at least 1")),
    (dict(hibernate_after=0), ("hibernate_after", "0.0 is out of range: more than 0 seconds")),
    (dict(lease_wait=-1), ("lease_wait", "-1.0 is out of range: at least 0 seconds")),
    (dict(execution_timeout=float("inf")), ("execution_timeout", "inf is not a finite number")),
    (dict(cpu_limit=0), ("cpu_limit", "0.0 is out of range: more than 0")),
    (dict(memory_limit=0), ("memory_limit", "0 is out of range: more than 0 bytes")),
    (dict(replay_buffer_bytes=-1), ("replay_buffer_bytes",
                                    "-1 is out of range: at least 0 bytes")),
    (dict(kernel_uid_base=500), ("kernel_uid_base", "500 is out of range: 0 (kernels stay "
                                                    "root) or 1000..4294967293")),
    (dict(kernel_uid_count=0), ("kernel_uid_count", "0 is out of range: at least 1")),
    (dict(host=""), ("host", "'' is empty")),
    (dict(public_url="gw.example.com"), ("public_url", "'gw.example.com' is not a http:// or "
                                                       "https:// URL")),
    (dict(advertise_url="10.0.0.5:8765", **CLUSTER),
     ("advertise_url", "'10.0.0.5:8765' is not a ws:// or wss:// URL")),
    (dict(registry_url="redis:", store_url="s3://b", cluster_token="t"),
     ("registry_url", "the value given is not a redis://, rediss:// or unix:// URL")),
    (dict(registry_url="unix:///run/redis.sock", store_url="s3:///prefix", cluster_token="t"),
     ("store_url", "'s3:///prefix' is not a s3:// URL")),
    (dict(memory_limit="512MiB"), ("memory_limit", "'512MiB' is not a whole number of bytes")),
    (dict(pool_size=2.0), ("pool_size", "2.0 is not a whole number")),
    (dict(snapshots="false"), ("snapshots", "'false' is not true or false")),
    (dict(sandbox=None), ("sandbox", "None is not text")),
    (dict(admin_token=1234), ("admin_token", "the value given is not text")),
    (dict(allowed_origins=("app.example.com",)),
     ("allowed_origins", "bad origin 'app.example.com': expected scheme://host[:port] or *")),
])
def test_each_field_refuses_what_it_cannot_mean(values, problem):
    assert problem in problems_of(**values)


@pytest.mark.parametrize("name", sorted(config.FIELDS))
def test_a_value_of_no_use_to_any_field_is_a_problem_not_a_crash(name):
    assert [problem for problem, _ in problems_of(**{name: object()})] == [name]
    assert [problem for problem, _ in problems_of(**{name: None})] == [name]


@pytest.mark.parametrize(("values", "problem"), [
    (dict(tls_cert="c.pem"),
     ("tls_cert", "tls_cert and tls_key go together: set both (PEM files) or neither")),
    (dict(tls_key="k.pem"),
     ("tls_cert", "tls_cert and tls_key go together: set both (PEM files) or neither")),
    (dict(tls_client_ca="ca.pem"),
     ("tls_client_ca", "mutual TLS needs tls_cert and tls_key: the gateway must serve TLS "
                       "itself")),
    (dict(store_url="s3://bucket/files"),
     ("store_url", "needs registry_url: only several nodes (a cluster) use it")),
    (dict(registry_url="redis://r", cluster_token="t"),
     ("registry_url", "needs store_url too: the nodes must share files")),
    (dict(registry_url="redis://r", store_url="s3://b"),
     ("registry_url", "needs cluster_token: the nodes authenticate the connections they relay "
                      "to each other with it")),
    (dict(node_id="n1"), ("node_id", "needs registry_url: only several nodes (a cluster) use it")),
    (dict(cluster_token="t"),
     ("cluster_token", "needs registry_url: only several nodes (a cluster) use it")),
    (dict(store_key="s", **CLUSTER),
     ("store_key_id", "store_key_id and store_key go together: set both or neither (the S3 "
                      "client's credential chain)")),
    (dict(thread_file_quota=6 * GiB, identity_file_quota=5 * GiB),
     ("thread_file_quota", "6 GiB is more than identity_file_quota (5 GiB): one thread's files "
                           "count in its identity's quota")),
    (dict(identity_file_quota=30 * GiB),
     ("identity_file_quota", "30 GiB is more than total_file_quota (20 GiB): one identity's "
                             "files count in the store's quota")),
    (dict(max_upload_total=10 * MiB),
     ("max_upload_bytes", "50 MiB is more than max_upload_total (10 MiB): no file sent in one "
                          "message can be larger than a file sent in parts")),
    (dict(pool_size=17, max_kernels=16),
     ("pool_size", "the warm pools of every language (17) are more than max_kernels (16), "
                   "which bounds them together")),
    (dict(pool_size=10, bash_pool_size=4, r_pool_size=3, max_kernels=16),
     ("pool_size", "the warm pools of every language (17) are more than max_kernels (16), "
                   "which bounds them together")),
    (dict(execution_timeout=7200),
     ("execution_timeout", "7200 s is more than max_timeout (3600 s), the longest a request "
                           "may ask for")),
    (dict(kernel_uid_base=2**32 - 10, kernel_uid_count=20),
     ("kernel_uid_count", "20 uids from kernel_uid_base 4294967286 go beyond 4294967293, the "
                          "last usable uid")),
])
def test_settings_that_contradict_each_other(values, problem):
    assert problems_of(**values) == [problem]


def test_what_the_rules_allow():
    Settings(port=0)  # a free port, picked by the system
    Settings(tls_cert="c.pem", tls_key="k.pem", tls_client_ca="ca.pem")
    Settings(kernel_uid_base=0, kernel_uid_count=1)
    Settings(registry_url="unix:///run/redis.sock", store_url="s3://b", cluster_token="t")
    Settings(pool_size=16, max_kernels=16, execution_timeout=3600, thread_file_quota=5 * GiB)


def test_every_problem_at_once_in_one_message():
    with pytest.raises(SettingsError) as caught:
        Settings(sandbox="banana", port=70000, hibernate_after=-5, tls_cert="c.pem",
                 log_level="loud")
    assert [name for name, _ in caught.value.problems] == [
        "port", "hibernate_after", "sandbox", "log_level", "tls_cert"]
    assert str(caught.value) == (
        "invalid settings:\n"
        "  port: 70000 is out of range: 0..65535\n"
        "  hibernate_after: -5.0 is out of range: more than 0 seconds\n"
        "  sandbox: 'banana' is not one of 'bwrap', 'gvisor', 'none'\n"
        "  log_level: 'loud' is not one of 'DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL'\n"
        "  tls_cert: tls_cert and tls_key go together: set both (PEM files) or neither")


def test_lenient_only_where_unambiguous():
    settings = Settings(hibernate_after=90, log_level="debug", data_dir="/srv/gw",
                        allowed_hosts=["gw.example"])
    assert settings.hibernate_after == 90.0 and type(settings.hibernate_after) is float
    assert settings.data_dir == Path("/srv/gw") and settings.allowed_hosts == ("gw.example",)


# -- text: --set, GATEWAY_* and TOML strings ---------------------------------------------------

SIZES = {"memory_limit", "disk_limit", "file_size_limit", "replay_buffer_bytes",
         "result_retention_bytes", "max_upload_bytes", "max_upload_total", "inline_file_limit",
         "thread_file_quota", "total_file_quota", "identity_file_quota", "snapshot_limit",
         "snapshot_every_cell_below", "max_message_bytes", "memory_floor",
         "egress_bytes_per_thread"}
DURATIONS = {"pool_rate_window", "pool_burst_window", "pool_horizon", "lease_wait",
             "hibernate_after", "kernel_start_timeout", "execution_timeout", "max_timeout",
             "shutdown_grace", "interrupt_grace", "replay_buffer_seconds", "result_retention",
             "file_retention", "snapshot_timeout", "node_lease", "egress_header_timeout",
             "egress_idle_timeout"}


def test_sizes_and_durations_are_declared_not_guessed():
    declared = {f.name: constraints.constraint_of(f).unit for f in dataclasses.fields(Settings)}
    assert {name for name, unit in declared.items() if unit == constraints.SIZE} == SIZES
    assert {name for name, unit in declared.items() if unit == constraints.DURATION} == DURATIONS
    # Every float of seconds is a duration; cpu_limit (cores) is the one other float.
    floats = {name for name, kind in constraints.kinds(Settings).items() if kind is float}
    assert floats == DURATIONS | {"cpu_limit"}


@pytest.mark.parametrize(("name", "text", "value"), [
    ("memory_limit", "512MiB", 512 * MiB), ("disk_limit", "1GiB", GiB),
    ("max_message_bytes", "10MB", 10**7), ("thread_file_quota", "1073741824", GiB),
    ("hibernate_after", "15m", 900.0), ("file_retention", "30d", 30 * 86400.0),
    ("execution_timeout", "90s", 90.0), ("result_retention", "2h", 7200.0),
    ("lease_wait", "0.5", 0.5), ("cpu_limit", "1.5", 1.5), ("pool_size", "3", 3),
    ("port", "0", 0), ("allowed_hosts", "a.example, b.example", ("a.example",
                                                                          "b.example")),
    ("data_dir", "/srv/gw", Path("/srv/gw")), ("sandbox", "none", "none"),
])
def test_text_is_read_by_the_fields_type_and_unit(name, text, value):
    assert coerce(name, text) == value


@pytest.mark.parametrize(("name", "text", "message"), [
    ("memory_limit", "12 parsecs", "'12 parsecs' is not a size: bytes, or a whole number"),
    ("memory_limit", "1.5GiB", "'1.5GiB' is not a size"),
    ("memory_limit", "-5", "'-5' is not a size"),
    ("hibernate_after", "-5s", "'-5s' is not a duration: seconds, or a number with ms, s, m, h"),
    ("hibernate_after", "soon", "'soon' is not a duration"),
    ("pool_size", "5MiB", "'5MiB' is not a whole number"),  # a count, not a size
    ("max_output_chars", "1MiB", "'1MiB' is not a whole number"),
    ("cpu_limit", "2 cores", "'2 cores' is not a number"),
    ("snapshots", "banana", "'banana' is not a bool: use true/false, yes/no, on/off or 1/0"),
    ("snapshots", "", "'' is not a bool"),
])
def test_text_that_means_nothing_is_an_error(name, text, message):
    with pytest.raises(ValueError) as caught:
        coerce(name, text)
    assert str(caught.value).startswith(message)


def test_an_unknown_name_is_an_error_with_the_closest_one():
    for name, message in (("sandbx", "no such setting (did you mean 'sandbox'?)"),
                          ("zzz", "no such setting"),
                          # The separate upload port is gone: uploads use the main port.
                          ("upload_port", "no such setting")):
        with pytest.raises(ValueError) as caught:
            coerce(name, "1")
        assert str(caught.value) == message


def test_a_renamed_setting_is_refused_with_its_new_name_from_every_source(tmp_path):
    # idle_timeout now means hibernation (hibernate_after): silently ignoring the old name
    # would run a deployment on a default it never chose.
    file = tmp_path / "gateway.toml"
    file.write_text('idle_timeout = "30m"\n')
    with pytest.raises(SettingsError) as caught:
        from_environment({"GATEWAY_IDLE_TIMEOUT": "1h"}, config_file=file,
                         texts={"idle_timeout": "5m"})
    message = "renamed to 'hibernate_after': set that instead"
    assert sorted(caught.value.problems) == sorted([
        ("idle_timeout", f"{message} [in {file}]"),
        ("idle_timeout", f"{message} [from GATEWAY_IDLE_TIMEOUT]"),
        ("idle_timeout", f"{message} [on the command line]"),
    ])
    assert "idle_timeout" not in FIELDS


@pytest.mark.parametrize(("text", "value"), [
    ("true", True), ("TRUE", True), ("1", True), ("yes", True), ("On", True),
    ("false", False), ("0", False), ("no", False), ("off", False), (" False ", False),
])
def test_bools_from_text_are_strict(text, value):
    assert coerce("snapshots", text) is value


def test_a_bad_token_entry_never_shows_the_token():
    with pytest.raises(ValueError) as caught:
        coerce("tokens", "alice:,s3cr3t-token")
    assert "s3cr3t" not in str(caught.value)


def test_every_source_at_once_and_where_each_value_came_from(tmp_path):
    file = tmp_path / "gateway.toml"
    file.write_text('pool_size = "abc"\nmax_kernels = 1.5\nsandbox = 3\nsandbx = "none"\n'
                    'memory_limit = "512MiB"\nhibernate_after = "15m"\nsnapshots = "banana"\n')
    with pytest.raises(SettingsError) as caught:
        from_environment({"GATEWAY_LOG_JSON": "banana", "GATEWAY_PORT": "99999"},
                         config_file=file, texts={"kernel_start": "spawn", "disk_limit": "1pb"},
                         execution_timeout=-1.0)
    where = f"[in {file}]"
    assert sorted(caught.value.problems) == sorted([
        ("pool_size", f"'abc' is not a whole number {where}"),
        ("sandbx", f"no such setting (did you mean 'sandbox'?) {where}"),
        ("snapshots", f"'banana' is not a bool: use true/false, yes/no, on/off or 1/0 {where}"),
        ("log_json", "'banana' is not a bool: use true/false, yes/no, on/off or 1/0 "
                     "[from GATEWAY_LOG_JSON]"),
        ("disk_limit", "'1pb' is not a size: bytes, or a whole number with B, kB, MB, GB, TB, "
                       "KiB, MiB, GiB or TiB (e.g. 512MiB) [on the command line]"),
        ("port", "99999 is out of range: 0..65535 [from GATEWAY_PORT]"),
        ("max_kernels", f"1.5 is not a whole number {where}"),
        ("execution_timeout", "-1.0 is out of range: more than 0 seconds"),
        ("sandbox", f"3 is not text {where}"),
        ("kernel_start", "'spawn' is not one of 'fork', 'exec' [on the command line]"),
    ])


def test_units_in_every_source(tmp_path):
    file = tmp_path / "gateway.toml"
    file.write_text('memory_limit = "512MiB"\nhibernate_after = "15m"\nfile_retention = 86400\n'
                    'snapshots = "off"\n')
    settings = from_environment({"GATEWAY_DISK_LIMIT": "1GiB", "GATEWAY_LEASE_WAIT": "2s"},
                                config_file=file, texts={"execution_timeout": "2m"})
    assert (settings.memory_limit, settings.hibernate_after, settings.file_retention) == (
        512 * MiB, 900.0, 86400.0)
    assert settings.snapshots is False
    assert (settings.disk_limit, settings.lease_wait, settings.execution_timeout) == (
        GiB, 2.0, 120.0)


def test_a_config_file_that_cannot_be_read_is_a_problem_too(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text('tokens = "alice:sha256:not-closed\n')
    with pytest.raises(SettingsError, match=f"config: cannot read {broken}: "):
        from_environment({}, config_file=broken)
    with pytest.raises(SettingsError, match="config: cannot read .*missing.toml"):
        from_environment({}, config_file=tmp_path / "missing.toml")
    with pytest.raises(SettingsError) as caught:
        config.read_config_file(_written(tmp_path / "bad.toml", 'pool_size = "x"\nfoo = 1\n'))
    assert [name for name, _ in caught.value.problems] == ["pool_size", "foo"]


def _written(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
