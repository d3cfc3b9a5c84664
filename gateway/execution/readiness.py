"""Can this gateway start kernels at all, and is it ready for a new thread?

A broken installation (no kernelspec, a kernel interpreter without ipykernel, an unregistered
provisioner) used to show up as one failed kernel start after another, forever. The start-up
check turns it into one error that says what is missing and how to fix it; when kernels fail
for a reason only a launch reveals, start-up gives up after a few attempts instead of retrying
forever; ``not_ready_reason`` tells /readyz why a new thread would have to wait, and
``degraded_reason`` tells /healthz what works worse than it should.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import KernelUnavailable
from ..sandbox.forkserver import EXEC_COST
from ..sandbox.kernelspec import KERNEL_NAME

if TYPE_CHECKING:
    from .pool import KernelPool

PROVISIONER_GROUP = "jupyter_client.kernel_provisioners"
# One failure can be bad luck (a slow machine); two in a row with no success is a broken setup.
FAILED_STARTS_BEFORE_GIVING_UP = 2
WATCH_INTERVAL = 0.1  # seconds between looks at the pool's counters while it fills
# Run the way the sandbox runs the kernel: no PYTHONPATH, no user site-packages.
FIND_IPYKERNEL = ["-I", "-c", "import importlib.util as u, sys; "
                  "sys.exit(u.find_spec('ipykernel_launcher') is None)"]
REINSTALL = ("reinstall the gateway (pip install --force-reinstall code-interpreter-gateway) or "
             "set kernels_dir to a directory holding python3/kernel.json and startup/")


def check_kernel_setup(kernels_dir: Path, python: str) -> None:
    """Raise ``KernelUnavailable`` naming every problem that would stop any kernel from starting."""
    problems = [*kernelspec_problems(kernels_dir), *interpreter_problems(python)]
    if problems:
        raise KernelUnavailable("no kernel can start:\n" + "\n".join(f"  - {p}" for p in problems))


def kernelspec_problems(kernels_dir: Path) -> list[str]:
    """What is wrong with the kernelspec and startup files under ``kernels_dir``."""
    spec_file = kernels_dir / KERNEL_NAME / "kernel.json"
    startup_dir = kernels_dir / "startup"
    problems = []
    missing = [str(path) for path in (spec_file, startup_dir) if not path.exists()]
    if missing:
        problems.append(f"the gateway's kernel files are missing ({', '.join(missing)}): "
                        f"{REINSTALL}")
        if not spec_file.exists():
            return problems
    try:
        spec = json.loads(spec_file.read_text())
        if not (isinstance(spec, dict) and isinstance(spec.get("argv"), list) and spec["argv"]):
            raise ValueError("no argv list")
    except (OSError, ValueError) as exc:
        return [*problems, f"{spec_file} is not a valid kernelspec ({exc}): {REINSTALL}"]
    provisioner = (spec.get("metadata") or {}).get("kernel_provisioner", {}).get(
        "provisioner_name")
    if not provisioner:
        # jupyter_client would use its plain local provisioner: no sandbox at all.
        problems.append(f"{spec_file} names no kernel_provisioner, so kernels would start "
                        f"outside the sandbox launcher: {REINSTALL}")
    elif not metadata.entry_points(group=PROVISIONER_GROUP, name=provisioner):
        problems.append(
            f"the kernel provisioner {provisioner!r} is not registered (entry points "
            f"{PROVISIONER_GROUP}): the gateway runs from files that were never installed; "
            "install it (pip install code-interpreter-gateway, or pip install -e . in a checkout)")
    return problems


def interpreter_problems(python: str) -> list[str]:
    """What stops ``python`` (the kernels' interpreter) from running ipykernel."""
    fix = (f"install ipykernel there ({python} -m pip install ipykernel) or set kernel_python "
           "(GATEWAY_KERNEL_PYTHON) to a Python that has it")
    if not os.access(python, os.X_OK):
        return [f"the kernel interpreter {python} does not exist or is not executable: {fix}"]
    try:
        result = subprocess.run([python, *FIND_IPYKERNEL], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [f"the kernel interpreter {python} does not run ({exc}): {fix}"]
    if result.returncode != 0:
        return [f"the kernel interpreter {python} cannot import ipykernel: {fix}"]
    return []


class LastStartFailure(logging.Handler):
    """The last kernel start failure the pool logged: the reason in start-up errors and /readyz.

    The pool reports a failed start only as an ERROR line of its logger, so this reads it there.
    Gateways in one process share that logger: with several, the text may be another's.
    """

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.message: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.message = record.getMessage()


async def fill_pool_or_give_up(pool: KernelPool, failures: LastStartFailure) -> None:
    """``pool.start()``, except that when kernel starts keep failing and none has succeeded,
    raise ``KernelUnavailable`` with the last failure instead of retrying forever."""
    filling = asyncio.ensure_future(pool.start())
    try:
        while not filling.done():
            await asyncio.wait({filling}, timeout=WATCH_INTERVAL)
            stats = pool.stats
            if (not filling.done() and stats.start_failures >= FAILED_STARTS_BEFORE_GIVING_UP
                    and not stats.start_seconds):
                raise KernelUnavailable(
                    f"no kernel can start: {stats.start_failures} attempts failed, the last "
                    f"with: {failures.message or 'no reason logged'}. To tell a sandbox "
                    "failure from a kernel one, try once with GATEWAY_SANDBOX=none")
        filling.result()
    finally:
        filling.cancel()


def not_ready_reason(pool: dict, last_start_failure: str | None) -> str | None:
    """Why a new thread would not get a warm kernel at once (None: ready), from a pool snapshot."""
    if pool["draining"]:
        return "draining: the gateway takes no new threads"
    if pool["warm"] > 0 or pool["target"] == 0:
        return None
    if pool["starting"]:
        reason = f"no warm kernel yet: {pool['starting']} starting"
    else:
        reason = f"no warm kernel: {pool['leased']} of {pool['max_kernels']} kernels are leased"
    if pool["start_failures"] and last_start_failure:
        reason += f"; the last failed kernel start: {last_start_failure}"
    return reason


def degraded_reason(pool: dict, failing_starts_reported: int) -> str | None:
    """Why the gateway works worse than it should (None: it does not), from a pool snapshot:
    kernel starts that keep failing, or Python kernels exec'd because the zygote cannot start
    (as confined as forked ones, and still ready for new threads, but at a cost)."""
    reasons = []
    if pool["failing_starts"] >= failing_starts_reported:
        reasons.append(f"kernel starts keep failing: {pool['failing_starts']} in a row, the "
                       f"last with: {pool['last_start_error']}")
    if pool["start_method_fallback"]:
        reasons.append(f"Python kernels are started as fresh interpreters, not forked "
                       f"({EXEC_COST}): {pool['start_method_fallback']}")
    return "; ".join(reasons) or None
