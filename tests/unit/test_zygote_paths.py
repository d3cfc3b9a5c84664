"""Kernels forked from the zygote: isolated from each other like exec'd ones, memory shared
only until written, and a dead zygote replaced. (The escape, sandbox, hostile-code and limits
suites run against forked kernels too: the suite's gateways fork Python kernels when root.)

The pure half; the gateway half is tests/kernel/test_zygote.py."""

from __future__ import annotations

from pathlib import Path

from support.host import needs_linux

pytestmark = needs_linux


def test_the_zygotes_view_of_its_files_lies_outside_every_host_path_it_binds(tmp_path):
    """bubblewrap makes the mount points of the zygote's program and startup scripts, which it
    cannot do inside a read-only bind of the host: the view must be outside every Python
    prefix, wherever the gateway is installed (README: a venv at /opt/gateway)."""
    from gateway.sandbox.forkserver import VIEW_DIR, zygote_argv

    for prefix in ("/opt/gateway", "/usr/local", "/root/.venv", "/srv/gateway/venv",
                   str(tmp_path / "venv")):
        argv = zygote_argv("bwrap", f"{prefix}/bin/python", Path("/pkg/zygote.py"),
                           Path("/pkg/startup"), None, tmp_path / "runtime",
                           (Path(prefix), Path("/usr")), {}, 3)
        targets = [argv[i + 2] for i, arg in enumerate(argv) if arg in ("--ro-bind", "--bind")]
        ours = [t for t in targets if t.startswith(VIEW_DIR + "/")]
        assert ours == [f"{VIEW_DIR}/startup", f"{VIEW_DIR}/zygote.py"]
        host = [t for t in targets if t not in ours]
        inside = [(t, h) for t in ours for h in host if t.startswith(h.rstrip("/") + "/")]
        assert not inside, f"installed at {prefix}: mount points inside host binds: {inside}"
