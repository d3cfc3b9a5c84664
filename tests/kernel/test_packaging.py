"""The slow packaging check: the wheel alone is a working gateway.

Builds the sdist and the wheel (``python -m build``, the wheel from the sdist), installs the
wheel into a fresh venv outside the checkout, and from a temporary directory runs the same cell
with that venv's ``gateway exec`` and with the checkout's: the envelopes must match.
``-m "not packaging"`` skips it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import gateway
from support.host import needs_linux

pytestmark = [pytest.mark.packaging, pytest.mark.kernel, needs_linux]

ROOT = Path(__file__).resolve().parents[2]
CHECKOUT_GATEWAY = Path(sys.executable).parent / "gateway"
# Not part of a source tree: never copied into the build.
NOT_SOURCE = (".git", ".venv", ".data", "build", "dist", "*.egg-info", "__pycache__",
              ".pytest_cache", ".hypothesis", ".ruff_cache", "test-artifacts", "bench-results")
CELL = """\
import pandas as pd
import matplotlib.pyplot as plt

frame = pd.DataFrame({"x": [1, 2, 3], "y": [2, 4, 8]})
frame.to_csv("table.csv", index=False)
frame.plot(x="x", y="y")
plt.show()
print(frame.y.sum())
"""
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Where README's "Install as a package" puts the venv; the marker says the venv is this test's.
README_VENV = Path("/opt/gateway")
OURS = ".made-by-test_packaging"


def run(*args: str | Path, cwd: Path | None = None, timeout: float = 900) -> str:
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=clean_environment(),
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{args}: {result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result.stdout


def clean_environment() -> dict[str, str]:
    """This process's environment without what would point a child back at the checkout."""
    return {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")
            and k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}}


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict[str, Path]:
    # Build from a copy, so the checkout gets no build/ or egg-info of this test's making.
    source = tmp_path_factory.mktemp("source") / "code-interpreter-gateway"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--outdir", out, source)
    return {"sdist": next(out.glob("*.tar.gz")), "wheel": next(out.glob("*.whl"))}


@pytest.fixture(scope="module")
def installed(dists, tmp_path_factory) -> dict:
    """A fresh venv (no system site-packages) with the wheel and its ``kernel`` extra."""
    venv = tmp_path_factory.mktemp("venv") / "v"
    run(sys.executable, "-m", "venv", venv)
    began = time.monotonic()
    run(venv / "bin" / "pip", "install", "--quiet", f"{dists['wheel']}[kernel]")
    return {"venv": venv, "began": began, "install_seconds": time.monotonic() - began,
            "wheel_bytes": dists["wheel"].stat().st_size}


@pytest.fixture(scope="module")
def installed_as_the_readme_says(dists) -> Iterator[Path]:
    """The wheel and its ``kernel`` extra in a venv at /opt/gateway, as the README installs it
    (a path of its own kind: the venv is bound into every sandbox there). Removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("installing into /opt and forking kernels need root")
    if (README_VENV / OURS).exists():
        shutil.rmtree(README_VENV)  # this test's, left by a run that was killed
    try:
        README_VENV.mkdir()
    except FileExistsError:
        pytest.skip(f"{README_VENV} exists and is not this test's: left alone")
    try:
        (README_VENV / OURS).touch()
        run(sys.executable, "-m", "venv", README_VENV)
        run(README_VENV / "bin" / "pip", "install", "--quiet", f"{dists['wheel']}[kernel]")
        yield README_VENV
    finally:
        shutil.rmtree(README_VENV)


def exec_envelopes(gateway_command: Path, cwd: Path) -> tuple[list[dict], float]:
    """``gateway exec --json CELL`` run from ``cwd``: its envelopes, and when the first output
    arrived (a monotonic time)."""
    cwd.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen([str(gateway_command), "exec", "--json", CELL], cwd=cwd,
                               env=clean_environment(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    envelopes, first_output = [], None
    for line in process.stdout:
        if line.startswith("{"):
            envelopes.append(json.loads(line))
            if first_output is None and envelopes[-1]["chunk"]["type"] == "hot_code_output":
                first_output = time.monotonic()
    stderr = process.stderr.read()
    assert process.wait(timeout=300) == 0, stderr
    assert first_output is not None, (envelopes, stderr)
    return envelopes, first_output


def shape(envelopes: list[dict]) -> list[tuple]:
    """What must be equal wherever the gateway runs: ids, durations and png bytes may differ."""
    shaped = []
    for envelope in envelopes:
        kind, content = envelope["chunk"]["type"], envelope["chunk"]["content"]
        if kind == "code_interpreter_stream":
            data = base64.b64decode(content["base64"])
            if content["mime_type"] == "image/png":
                assert data.startswith(PNG_SIGNATURE)
                data = data[16:24]  # width and height: matplotlib's bytes vary by version
            shaped.append((kind, content["filename"], content["mime_type"], data))
        elif kind == "status":
            shaped.append((kind, {k: v for k, v in content.items() if k != "duration_ms"}))
        elif kind == "display":  # the files it names have ids of their own run
            files = {mime: {k: v for k, v in f.items() if k != "file_id"}
                     for mime, f in content.get("files", {}).items()}
            shaped.append((kind, {**content, "files": files}))
        else:
            shaped.append((kind, content))
    return shaped


def test_the_sdist_holds_tests_kernels_and_build_files(dists):
    with tarfile.open(dists["sdist"]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "Makefile", ".ci/run",
            "kernels/__init__.py", "kernels/python3/kernel.json",
            "kernels/startup/00-gateway.py", "tests/conftest.py", "tests/kernel/test_packaging.py",
            "scripts/setup-system.sh", "gateway/static/index.html",
            "clients/js/package.json", "clients/js/package-lock.json",
            "clients/js/src/client.ts"} <= names
    assert not any("node_modules" in name for name in names)
    assert not any("__pycache__" in name for name in names)


def test_the_wheel_holds_the_kernels_inside_the_package(dists):
    with zipfile.ZipFile(dists["wheel"]) as wheel:
        names = set(wheel.namelist())
        metadata = next(wheel.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    assert {"gateway/kernels/python3/kernel.json", "gateway/kernels/bash/kernel.json",
            "gateway/kernels/deno/kernel.json", "gateway/kernels/ir/kernel.json",
            "gateway/execution/languages/tcp_bridge.py",
            "gateway/wire/languages.py", "gateway/kernels/startup/00-gateway.py",
            "gateway/static/index.html", "gateway/py.typed",
            # The live page's client (built from clients/js) and the protocol's schema.
            "gateway/static/gateway-client.js", "gateway/wire/schema/request.v1.json",
            "gateway/wire/schema/envelope.v1.json"} <= names
    # The live page's vendored renderers (scripts/vendor-static.sh): no CDN, so they must ship.
    assert {"gateway/static/rich.js", "gateway/static/vendor/VERSIONS",
            "gateway/static/vendor/katex/katex.min.js", "gateway/static/vendor/katex/katex.min.css",
            "gateway/static/vendor/katex/fonts/KaTeX_Main-Regular.woff2",
            "gateway/static/vendor/dompurify/purify.es.mjs",
            "gateway/static/vendor/marked/marked.esm.js"} <= names
    assert not any(name.startswith(("kernels/", "tests/")) for name in names)
    assert f"Version: {gateway.__version__}" in metadata
    assert "License-Expression: MIT" in metadata and "Project-URL: Source" in metadata
    assert "Description-Content-Type: text/markdown" in metadata
    assert "Provides-Extra: kernel" in metadata


def test_the_installed_wheel_runs_the_cell_like_the_checkout(installed, tmp_path,
                                                             record_property):
    venv_gateway = installed["venv"] / "bin" / "gateway"
    from_wheel, first_output = exec_envelopes(venv_gateway, tmp_path / "elsewhere")
    from_checkout, _ = exec_envelopes(CHECKOUT_GATEWAY, tmp_path / "checkout")
    assert shape(from_wheel) == shape(from_checkout)
    kinds = [e["chunk"]["type"] for e in from_wheel]
    assert kinds.count("code_interpreter_stream") == 2 and kinds[-1] == "status"
    assert shape(from_wheel)[-1][1]["state"] == "complete"

    assert run(venv_gateway, "--version").strip() == f"gateway {gateway.__version__}"
    kernels = run(installed["venv"] / "bin" / "python", "-c",  # not from the checkout's cwd
                  "from gateway.config import Settings; print(Settings().kernels_dir)",
                  cwd=tmp_path)
    assert Path(kernels.strip()).is_relative_to(installed["venv"]), "the wheel's own kernels"

    # Reported for the closing note and CI logs, never asserted on.
    record_property("wheel_bytes", installed["wheel_bytes"])
    record_property("install_seconds", round(installed["install_seconds"], 1))
    record_property("install_to_first_result_seconds",
                    round(first_output - installed["began"], 1))
    print(f"wheel {installed['wheel_bytes']} bytes; pip install "
          f"{installed['install_seconds']:.1f} s; pip install to first result "
          f"{first_output - installed['began']:.1f} s")


def test_the_wheel_installed_at_opt_gateway_forks_its_kernels(installed_as_the_readme_says,
                                                              tmp_path):
    """The fork-server's view of the kernel files must not collide with the install: if it
    did, every Python kernel would be exec'd (a working gateway, but about 3x the memory per
    kernel and bursts of new threads about 10x slower)."""
    env = {**clean_environment(), "GATEWAY_TOKENS": "me:SECRET"}
    process = subprocess.Popen(
        [str(installed_as_the_readme_says / "bin" / "gateway"), "serve", "--port", "0",
         "--data-dir", str(tmp_path / "data"), "--pool-size", "1"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    health = None
    try:
        line = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if match:
            request = urllib.request.Request(  # the pool's figures are for callers with a token
                f"http://127.0.0.1:{match.group(1)}/healthz",
                headers={"Authorization": "Bearer SECRET"})
            with urllib.request.urlopen(request) as reply:
                health = json.load(reply)
    finally:
        process.send_signal(signal.SIGTERM)
        _, log = process.communicate()
    assert health is not None, f"no listening line: {line!r}\n{log[-4000:]}"
    pool = health["pool"]
    assert pool["start_method"] == "fork", f"{pool['start_method_reason']}\n{log[-4000:]}"
    assert health["status"] == "ok", health
