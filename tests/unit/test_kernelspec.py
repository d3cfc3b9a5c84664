"""The gateway's kernelspec: shipped in the package, found by path, never a host fallback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jupyter_client.kernelspec import NoSuchKernel

from gateway.config import Settings, bundled_kernels_dir
from gateway.sandbox.kernelspec import KERNEL_NAME, PinnedKernelSpecs

CHECKOUT_KERNELS = Path(__file__).resolve().parents[2] / "kernels"


def test_the_bundled_kernels_are_the_checkouts_kernels_directory():
    # An editable install maps gateway.kernels to the top-level kernels/; a wheel holds a copy.
    kernels = bundled_kernels_dir()
    assert kernels.resolve() == CHECKOUT_KERNELS.resolve()
    assert (kernels / KERNEL_NAME / "kernel.json").is_file()
    assert (kernels / "startup" / "00-gateway.py").is_file()
    assert Settings().kernels_dir == kernels


def test_our_kernelspec_names_the_sandbox_provisioner():
    spec = PinnedKernelSpecs(bundled_kernels_dir() / KERNEL_NAME).get_kernel_spec(KERNEL_NAME)
    assert spec.metadata["kernel_provisioner"]["provisioner_name"] == "gateway-sandbox"
    assert spec.interrupt_mode == "message"
    assert Path(spec.resource_dir) == bundled_kernels_dir() / KERNEL_NAME


def test_a_missing_kernelspec_is_never_replaced_by_the_hosts_python3(tmp_path):
    # A plain KernelSpecManager falls back to ipykernel's own python3 spec (no provisioner:
    # kernels outside the sandbox launcher). Ours raises instead.
    specs = PinnedKernelSpecs(tmp_path / KERNEL_NAME)
    with pytest.raises(NoSuchKernel):
        specs.get_kernel_spec(KERNEL_NAME)
    assert specs.find_kernel_specs() == {}


def test_only_the_pinned_name_is_known(tmp_path):
    spec_dir = tmp_path / KERNEL_NAME
    spec_dir.mkdir()
    (spec_dir / "kernel.json").write_text(json.dumps(
        {"argv": ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
         "display_name": "pinned", "language": "python"}))
    specs = PinnedKernelSpecs(spec_dir)
    assert specs.get_kernel_spec(KERNEL_NAME).display_name == "pinned"
    assert specs.find_kernel_specs() == {KERNEL_NAME: str(spec_dir)}
    with pytest.raises(NoSuchKernel):
        specs.get_kernel_spec("python3-other")
