"""Can this installation run a language? Probed once at start; the answer goes to /healthz."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ...wire.languages import Language


def unavailable_reason(language: Language, kernels_dir: Path, python: str) -> str | None:
    """Why this installation cannot start ``language``'s kernels (None: it can). Blocking:
    it runs the kernel interpreter once."""
    spec_file = kernels_dir / language.kernel_name / "kernel.json"
    if not spec_file.is_file():
        return f"its kernelspec {spec_file} is missing"
    if language.program and shutil.which(language.program) is None:
        return f"the program {language.program!r} is not installed"
    if language.check:
        try:
            checked = subprocess.run(list(language.check), capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{language.check[0]} could not be run: {exc}"
        if checked.returncode != 0:
            return language.check_hint or f"{' '.join(language.check)} failed"
    if language.module:
        try:
            found = subprocess.run(
                [python, "-c", "import importlib.util, sys; sys.exit("
                 f"importlib.util.find_spec({language.module!r}) is None)"],
                capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"the kernel interpreter {python} could not be run: {exc}"
        if found.returncode != 0:
            return (f"the Python module {language.module!r} is not installed for the kernel "
                    f"interpreter {python} (pip install {language.module.replace('_', '-')})")
    return None
