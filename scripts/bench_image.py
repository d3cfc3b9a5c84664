"""What the kernel image costs: pool kernel start time and idle memory with two interpreters,
in one run, plus each package's import time inside the sandbox.

    python -m scripts.bench_image --before /tmp/img-before/bin/python \\
        --after /tmp/img-after/bin/python --kernels 4 --rounds 3

Each interpreter is a venv with ipykernel (``--before``: the old five packages; ``--after``: the
`kernel` extra). Kernels start exactly as the pool starts them (bubblewrap, limits, the startup
scripts, the warm-up cell), alternating between the two images so drift hits both alike; PSS
is summed over each kernel's process tree after it settles. Needs root (cgroups, uids).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gateway.execution.kernel import Kernel
from gateway.sandbox.launch import HostSandbox, SandboxSpec, prepare_matplotlib_cache
from gateway.sandbox.limits import LimitValues
from scripts.benchlib.procs import descendants

ROOT = Path(__file__).resolve().parent.parent
KERNELS = ROOT / "kernels"
MiB = 2**20
IMPORTS = ["scipy", "scipy.stats", "scipy.optimize", "sklearn", "sklearn.linear_model", "seaborn",
           "statsmodels.api", "sympy", "plotly", "plotly.express", "networkx", "tqdm", "PIL",
           "pyarrow", "xlsxwriter", "xlrd", "pptx", "reportlab.pdfgen.canvas", "pypdf",
           "pdfplumber", "bs4", "lxml.etree", "tabulate", "docx", "openpyxl"]
IMPORT_CELL = """
import importlib, json, sys, time
times = {}
for name in %r:
    began = time.perf_counter()
    try:
        importlib.import_module(name)
    except ImportError:
        times[name] = None  # not in this image
        continue
    times[name] = round((time.perf_counter() - began) * 1000, 1)
print(json.dumps(times))
"""


def tree_pss(pid: int) -> int:
    total = 0
    for proc in [pid, *descendants(pid)]:
        try:
            for line in Path(f"/proc/{proc}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def prefixes(python: str) -> tuple[Path, ...]:
    out = subprocess.run([python, "-c", "import sys; print(sys.prefix); print(sys.base_prefix)"],
                         capture_output=True, text=True, check=True).stdout.split()
    return tuple(sorted({Path(p) for p in out}))


def venv_size(python: str) -> int:
    """Bytes under the venv's own prefix (the shared Python install is the same for both)."""
    prefix = subprocess.run([python, "-c", "import sys; print(sys.prefix)"], capture_output=True,
                            text=True, check=True).stdout.strip()
    out = subprocess.run(["du", "-sb", prefix], capture_output=True, text=True).stdout
    return int(out.split()[0])


class Image:
    def __init__(self, label: str, python: str, tmp: Path, host: HostSandbox) -> None:
        self.label, self.python, self.host = label, python, host
        self.roots = prefixes(python)
        self.tmp = tmp / label
        self.mpl = prepare_matplotlib_cache(python, self.tmp / "matplotlib")
        self.starts: list[float] = []
        self.pss: list[int] = []

    def spec(self) -> SandboxSpec:
        kernel_id = "b" + secrets.token_hex(5)
        runtime, workdir = self.tmp / "run" / kernel_id, self.tmp / "work" / kernel_id
        runtime.mkdir(parents=True, mode=0o700)
        workdir.mkdir(parents=True)
        return SandboxSpec(kernel_id=kernel_id, workdir=workdir, runtime_dir=runtime,
                           startup_dir=KERNELS / "startup", python_roots=self.roots,
                           limits=LimitValues(1024 * MiB, 256, 1.0, 256 * MiB, 1024),
                           mpl_cache=self.mpl, enabled=True, uid=None)

    async def start(self) -> Kernel:
        kernel = Kernel(self.spec(), self.host, KERNELS, self.python)
        began = time.monotonic()
        await kernel.start(180)
        self.starts.append(time.monotonic() - began)
        return kernel


async def import_times(image: Image) -> dict[str, float]:
    kernel = await image.start()
    out: list[str] = []

    def collect(msg: dict) -> None:
        if msg["header"]["msg_type"] == "stream":
            out.append(msg["content"]["text"])
    try:
        result = await kernel.run(IMPORT_CELL % (IMPORTS,), collect, 300, 2)
        if result.state != "complete":
            raise RuntimeError(f"import cell {result.state}: {''.join(out)[-2000:]}")
        return json.loads("".join(out).strip().splitlines()[-1])
    finally:
        await kernel.shutdown()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="python of the image without extras")
    parser.add_argument("--after", required=True, help="python of the full image")
    parser.add_argument("--kernels", type=int, default=4, help="kernels alive at once per image")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds before PSS is read")
    opts = parser.parse_args()
    host = HostSandbox(enabled=True, drop_uid=False)
    host.check()
    tmp = Path(tempfile.mkdtemp(prefix="bench-image-"))
    try:
        images = [Image("before", opts.before, tmp, host), Image("after", opts.after, tmp, host)]
        for _ in range(opts.rounds):
            for image in images:  # one image at a time alive, so PSS shares only within it
                kernels = [await image.start() for _ in range(opts.kernels)]
                await asyncio.sleep(opts.settle)
                image.pss += [tree_pss(k.pid) for k in kernels if k.pid]
                await asyncio.gather(*(k.shutdown() for k in kernels))
        report: dict = {}
        for image in images:
            report[image.label] = {
                "python": image.python,
                "venv_mib": round(venv_size(image.python) / MiB),
                "start_s_median": round(statistics.median(image.starts), 3),
                "idle_pss_mib_median": round(statistics.median(image.pss) / MiB, 1),
                "kernels_measured": len(image.pss),
            }
        before, after = report["before"], report["after"]
        report["ratios_after_over_before"] = {
            key: round(after[key] / before[key], 3)
            for key in ("venv_mib", "start_s_median", "idle_pss_mib_median")}
        print(json.dumps(report, indent=2), flush=True)
        imports = await import_times(images[1])
        print(json.dumps({"import_ms_in_sandbox_after": imports}, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("run as root: the sandbox needs cgroups")
    asyncio.run(main())
