"""Start-up fails fast with what to fix when no kernel can start; /readyz says why it waits.

The pure half; the gateway half is tests/kernel/test_readiness_gateway.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from gateway.config import bundled_kernels_dir
from gateway.errors import KernelUnavailable
from gateway.execution.readiness import check_kernel_setup, degraded_reason, not_ready_reason
from support.kernelspecs import SPEC, kernels_dir


def problems_of(kernels: Path, python: str = sys.executable) -> str:
    with pytest.raises(KernelUnavailable) as caught:
        check_kernel_setup(kernels, python)
    return str(caught.value)


def test_the_installed_setup_passes():
    check_kernel_setup(bundled_kernels_dir(), sys.executable)


def test_missing_kernel_files_say_where_and_how_to_fix(tmp_path):
    message = problems_of(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere" / "python3" / "kernel.json") in message
    assert str(tmp_path / "nowhere" / "startup") in message
    assert "reinstall" in message and "kernels_dir" in message
    root = kernels_dir(tmp_path / "no-startup", SPEC, startup=False)
    message = problems_of(root)
    assert str(root / "startup") in message and str(root / "python3") not in message


def test_a_spec_without_the_sandbox_provisioner_is_refused(tmp_path):
    bare = {k: v for k, v in SPEC.items() if k != "metadata"}
    assert "names no kernel_provisioner" in problems_of(kernels_dir(tmp_path / "a", bare))
    unknown = {**SPEC, "metadata": {"kernel_provisioner": {"provisioner_name": "no-such"}}}
    message = problems_of(kernels_dir(tmp_path / "b", unknown))
    assert "'no-such' is not registered" in message and "install" in message
    assert "not a valid kernelspec" in problems_of(kernels_dir(tmp_path / "c", "{argv"))


def test_a_kernel_interpreter_without_ipykernel_is_named(tmp_path):
    missing = str(tmp_path / "no-python")
    assert f"{missing} does not exist" in problems_of(bundled_kernels_dir(), missing)
    no_ipykernel = tmp_path / "python-without-ipykernel"
    no_ipykernel.write_text("#!/bin/sh\nexit 1\n")
    no_ipykernel.chmod(0o755)
    message = problems_of(bundled_kernels_dir(), str(no_ipykernel))
    assert "cannot import ipykernel" in message and "kernel_python" in message


def test_not_ready_reasons():
    pool = {"draining": False, "warm": 0, "target": 2, "starting": 1, "leased": 3,
            "max_kernels": 4, "start_failures": 0}
    assert not_ready_reason({**pool, "warm": 1}, None) is None
    assert not_ready_reason({**pool, "target": 0}, None) is None  # kernels start on demand
    assert not_ready_reason(pool, None) == "no warm kernel yet: 1 starting"
    assert not_ready_reason({**pool, "starting": 0}, None) == (
        "no warm kernel: 3 of 4 kernels are leased")
    failed = not_ready_reason({**pool, "start_failures": 5}, "kernel k1 failed to start: boom")
    assert failed.endswith("the last failed kernel start: kernel k1 failed to start: boom")
    assert not_ready_reason({**pool, "warm": 1, "draining": True}, None).startswith("draining")


def test_degraded_reasons():
    pool = {"failing_starts": 0, "last_start_error": None, "start_method_fallback": None}
    assert degraded_reason(pool, 3) is None
    assert degraded_reason({**pool, "failing_starts": 2}, 3) is None
    failing = degraded_reason({**pool, "failing_starts": 3, "last_start_error": "boom"}, 3)
    assert failing == "kernel starts keep failing: 3 in a row, the last with: boom"
    exec_d = degraded_reason({**pool, "start_method_fallback": "the zygote did not start"}, 3)
    assert exec_d.startswith("Python kernels are started as fresh interpreters, not forked (")
    assert "3x the memory per kernel" in exec_d
    assert exec_d.endswith("10x slower): the zygote did not start")
    both = degraded_reason({**pool, "failing_starts": 4, "last_start_error": "boom",
                            "start_method_fallback": "the zygote did not start"}, 3)
    assert both.startswith("kernel starts keep failing") and "; Python kernels" in both
