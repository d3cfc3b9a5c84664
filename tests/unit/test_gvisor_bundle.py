"""A kernel's OCI bundle for gVisor (gateway/sandbox/oci.py): pure, from the SandboxSpec."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import Settings
from gateway.errors import SettingsError
from gateway.sandbox.launch import SandboxSpec
from gateway.sandbox.limits import LimitValues
from gateway.sandbox.oci import (
    bundle_config,
    cgroups_path,
    delete_argv,
    kill_argv,
    list_argv,
    run_argv,
    runsc_global_args,
)

MiB = 2**20


def spec(uid: int | None = 100_007) -> SandboxSpec:
    return SandboxSpec(
        kernel_id="k0123456789ab",
        workdir=Path("/data/workdirs/abc"),
        runtime_dir=Path("/data/runtime/k0123456789ab"),
        startup_dir=Path("/pkg/kernels/startup"),
        python_roots=(Path("/opt/venv"), Path("/root/.pyenv/versions/3.11.7")),
        limits=LimitValues(memory=512 * MiB, pids=128, cpu=1.5, file_size=64 * MiB,
                           open_files=1024),
        uid=uid,
        environment=(("GATEWAY_SNAPSHOT_LIMIT", "123"),),
    )


def config(uid: int | None = 100_007, **kwargs) -> dict:
    return bundle_config(spec(uid), ["python", "-m", "ipykernel_launcher", "-f", "c.json"],
                         Path("/data/gvisor-root"), "/usr/bin/tini", **kwargs)


def mounts_by_destination(found: dict) -> dict[str, dict]:
    return {mount["destination"]: mount for mount in found["mounts"]}


def test_the_kernel_runs_as_its_uid_without_capabilities_or_new_privileges():
    process = config()["process"]
    assert process["user"] == {"uid": 100_007, "gid": 100_007}
    assert all(process["capabilities"][kind] == [] for kind in
               ("bounding", "effective", "inheritable", "permitted", "ambient"))
    assert process["noNewPrivileges"] is True
    assert process["cwd"] == "/mnt/data"
    # Under tini: the kernel is not pid 1, so its interrupt of its own group reaches it.
    assert process["args"][:6] == ["/usr/bin/tini", "-g", "--", "python", "-m",
                                   "ipykernel_launcher"]
    # kernel_uid_base = 0: root in gVisor's kernel, still without a capability.
    assert config(uid=None)["process"]["user"] == {"uid": 0, "gid": 0}


def test_the_environment_is_built_from_nothing():
    env = dict(item.split("=", 1) for item in config()["process"]["env"])
    assert env["HOME"] == "/mnt/data"
    assert env["GATEWAY_SNAPSHOT_LIMIT"] == "123"  # the spec's own variables
    assert "JPY_PARENT_PID" not in env  # would make ipykernel exit in a pid namespace
    assert not any("SECRET" in key for key in env)


def test_the_root_is_read_only_and_only_the_kernels_own_paths_are_writable():
    found = config(system_paths=["/usr", "/etc/ld.so.cache"])
    assert found["root"] == {"path": "/data/gvisor-root", "readonly": True}
    mounts = mounts_by_destination(found)
    writable = {dest for dest, mount in mounts.items()
                if mount["type"] == "bind" and "rw" in mount["options"]}
    assert writable == {"/data/runtime/k0123456789ab", "/mnt/data"}
    assert mounts["/mnt/data"]["source"] == "/data/workdirs/abc"
    for path in ("/usr", "/etc/ld.so.cache", "/opt/venv", "/root/.pyenv/versions/3.11.7",
                 "/tmp/ipython/profile_default/startup"):
        assert "ro" in mounts[path]["options"], path
    assert all("nosuid" in mount.get("options", ["nosuid"]) for mount in found["mounts"])
    assert mounts["/tmp"]["type"] == "tmpfs"
    # Nothing of the host that was not asked for.
    assert "/etc" not in mounts and "/" not in mounts and "/var" not in mounts


def test_parents_are_mounted_before_their_children():
    destinations = [mount["destination"] for mount in config()["mounts"]]
    for index, path in enumerate(destinations):
        for parent in destinations[index + 1:]:
            assert not path.startswith(parent.rstrip("/") + "/"), (path, parent)


def test_matplotlibs_font_cache_is_bound_read_only_into_its_writable_directory():
    mounts = mounts_by_destination(config(mpl_cache_files=[Path("/cache/fontlist-v390.json")]))
    assert mounts["/tmp/matplotlib"]["type"] == "tmpfs"
    cache = mounts["/tmp/matplotlib/fontlist-v390.json"]
    assert cache["source"] == "/cache/fontlist-v390.json" and "ro" in cache["options"]


def test_limits_are_rlimits_in_gvisors_kernel_and_a_host_cgroup_for_the_sandbox():
    found = config()
    rlimits = {item["type"]: (item["soft"], item["hard"]) for item in found["process"]["rlimits"]}
    assert rlimits == {"RLIMIT_FSIZE": (64 * MiB,) * 2, "RLIMIT_NOFILE": (1024, 1024),
                       "RLIMIT_CORE": (0, 0), "RLIMIT_NPROC": (128, 128)}
    linux = found["linux"]
    assert linux["resources"]["memory"] == {"limit": 512 * MiB, "swap": 512 * MiB}
    assert linux["resources"]["cpu"] == {"quota": 150_000, "period": 100_000}
    # The host's pids cgroup also counts gVisor's own threads: a backstop above the limit.
    assert linux["resources"]["pids"]["limit"] > 128
    assert linux["cgroupsPath"] == cgroups_path("k0123456789ab")
    assert cgroups_path("k0123456789ab") == "/code-interpreter-gateway/k0123456789ab"
    assert {ns["type"] for ns in linux["namespaces"]} == {
        "pid", "network", "ipc", "uts", "mount"}


def test_runsc_commands_share_the_gateways_state_directory_and_platform():
    common = runsc_global_args("/usr/bin/runsc", Path("/data/gvisor"), "ptrace")
    assert common == ["/usr/bin/runsc", "--root=/data/gvisor", "--network=none",
                      "--host-uds=create", "--platform=ptrace"]
    assert run_argv(common, Path("/b"), "k1")[-4:] == ["run", "--bundle", "/b", "k1"]
    assert kill_argv(common, "k1", "INT")[-3:] == ["kill", "k1", "INT"]
    assert delete_argv(common, "k1")[-3:] == ["delete", "-force", "k1"]
    assert list_argv(common)[-2:] == ["list", "-quiet"]


def test_the_sandbox_and_platform_settings_are_validated():
    assert Settings(sandbox="gvisor").gvisor_platform == "ptrace"
    assert Settings(sandbox="gvisor", gvisor_platform="kvm").gvisor_platform == "kvm"
    with pytest.raises(SettingsError, match="gvisor_platform"):
        Settings(gvisor_platform="vm")
    with pytest.raises(SettingsError, match="sandbox"):
        Settings(sandbox="firecracker")


def test_the_report_says_what_gvisor_enforces_and_what_it_cannot():
    from gateway.sandbox.gvisor import gvisor_report

    report = gvisor_report("ptrace", "0.0~20221219.0", None, drop_uid=False)
    assert report.enforced["isolation"].startswith("gVisor 0.0~20221219.0, platform ptrace")
    assert "RLIMIT_NPROC" in report.enforced["processes"]
    # Without root there is no cgroup (and no gVisor gateway: check() refuses it), said so.
    assert report.missing["memory"] == report.missing["cpu"] == "cgroups need root"
    assert "kernel_uid_base = 0" in report.missing["unprivileged_uid"]
    assert "memory" not in report.enforced
