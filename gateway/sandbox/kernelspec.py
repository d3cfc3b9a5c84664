"""The gateway's own kernelspec, shipped in the package and launched by path.

jupyter_client finds kernelspecs by name on the host's Jupyter paths and, for ``python3``, falls
back to ipykernel's built-in one. That spec names no provisioner, so a gateway whose own spec
went missing would quietly launch kernels with the plain local provisioner (the sandbox's launch
arguments then reach ``Popen``). ``PinnedKernelSpecs`` knows one directory and nothing else.
"""

from __future__ import annotations

from pathlib import Path

from jupyter_client.kernelspec import KernelSpec, KernelSpecManager, NoSuchKernel

KERNEL_NAME = "python3"  # the kernelspec directory under Settings.kernels_dir


class PinnedKernelSpecs(KernelSpecManager):
    """A kernelspec manager that knows exactly one kernelspec directory, by path.

    Asked for any other name, or when the directory has no ``kernel.json``, it raises
    ``NoSuchKernel``: never a spec found elsewhere on the host.
    """

    def __init__(self, spec_dir: Path) -> None:
        super().__init__(kernel_dirs=[str(spec_dir.parent)], ensure_native_kernel=False)
        self.spec_dir = spec_dir

    def find_kernel_specs(self) -> dict[str, str]:
        if (self.spec_dir / "kernel.json").is_file():
            return {self.spec_dir.name: str(self.spec_dir)}
        return {}

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        if kernel_name != self.spec_dir.name or not (self.spec_dir / "kernel.json").is_file():
            raise NoSuchKernel(f"{kernel_name} (looked only in {self.spec_dir})")
        return KernelSpec.from_resource_dir(str(self.spec_dir))
