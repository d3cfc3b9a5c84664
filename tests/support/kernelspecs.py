"""Kernel directories like the bundled one, with a kernel.json of the test's choosing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from gateway.config import bundled_kernels_dir

SPEC = json.loads((bundled_kernels_dir() / "python3" / "kernel.json").read_text())


def kernels_dir(root: Path, spec: dict | str | None = None, startup: bool = True) -> Path:
    """A kernels_dir like the bundled one, with ``spec`` as its kernel.json (None: none)."""
    root.mkdir(parents=True, exist_ok=True)
    if spec is not None:
        (root / "python3").mkdir()
        text = spec if isinstance(spec, str) else json.dumps(spec)
        (root / "python3" / "kernel.json").write_text(text)
    if startup:
        shutil.copytree(bundled_kernels_dir() / "startup", root / "startup")
    return root
