"""The live page's client, gateway/static/gateway-client.js, is committed so that `make run`
needs no node: it must be what a fresh build of clients/js gives (npm test checks the same)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
JS = ROOT / "clients" / "js"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
@pytest.mark.skipif(not (JS / "node_modules" / "esbuild").is_dir(),
                    reason="clients/js has no node_modules yet (npm ci there; .ci/run does)")
def test_the_committed_bundle_is_a_fresh_build(tmp_path) -> None:
    fresh = tmp_path / "gateway-client.js"
    subprocess.run(["node", "scripts/bundle.mjs", str(fresh)], cwd=JS, check=True, timeout=300)
    committed = ROOT / "gateway" / "static" / "gateway-client.js"
    assert committed.read_bytes() == fresh.read_bytes(), (
        "gateway/static/gateway-client.js is stale: cd clients/js && npm run build && "
        "cp dist/gateway-client.js ../../gateway/static/")
