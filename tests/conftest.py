"""Shared fixtures: a real gateway (real sandboxed kernels) on 127.0.0.1, and real clients.

The tests are in folders by kind, and the folder gives the markers (``-m "not kernel"`` runs
unit/ alone, starting no kernel and no gateway):

    unit/     pure logic: no kernel, no server, no gateway subprocess
    kernel/   real kernels and real gateways (in-process or ``gateway serve``)   kernel
    browser/  the live page in headless Chromium                                kernel, browser
    cluster/  several nodes with redis-server, HAProxy and moto                 kernel, cluster
    deploy/   the image, compose files and Helm chart (the chart's checks are fast; the
              container tests run only with GATEWAY_DEPLOY_TESTS=1)          container

The fixtures are lazy: a session that selects no test needing a gateway starts none. Helpers the
tests import are in ``support/`` (``from support.gateways import start_gateway``)."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import tempfile
from pathlib import Path

# Imported at collection, at a shallow stack: hypothesis' pytest plugin imports it lazily in
# the terminal summary otherwise, deep in pluggy's frames, where CPython 3.11.7's ast.parse
# (pytest rewrites the plugin's modules) fails with "AST constructor recursion depth mismatch"
# and the run exits 1 after every test passed.
import hypothesis  # noqa: F401
import pytest
import pytest_asyncio

from support.browser import CHROMIUM, CHROMIUM_ARGS
from support.gateways import close_threads_named, start_gateway, stop_gateway, test_settings
from support.projectdavid import new_sdk_stream

# A variable the kernels must never see (the sandbox builds their environment from nothing).
os.environ["GATEWAY_TEST_SECRET"] = "must-not-leak"

_thread_numbers = itertools.count(1)

HERE = Path(__file__).resolve().parent
FOLDER_MARKERS = {"unit": (), "kernel": ("kernel",), "browser": ("kernel", "browser"),
                  "cluster": ("kernel", "cluster"), "deploy": ()}
# What a unit test must not ask for: each starts a gateway or a browser.
NOT_IN_UNIT = {"running", "client", "browser"}


def pytest_collection_modifyitems(config, items):
    """Markers from the folder; a test that uses Chromium (wherever it is) is a browser test;
    a unit test that asks for a gateway or a browser is refused at collection."""
    for item in items:
        folder = item.path.resolve().relative_to(HERE).parts[0]
        if folder not in FOLDER_MARKERS:
            raise pytest.UsageError(f"{item.nodeid}: tests live in {', '.join(FOLDER_MARKERS)}")
        for marker in FOLDER_MARKERS[folder]:
            item.add_marker(marker)
        if "browser" in item.fixturenames:
            item.add_marker("browser")
        if folder == "unit" and NOT_IN_UNIT & set(item.fixturenames):
            raise pytest.UsageError(f"{item.nodeid} is in unit/ but uses "
                                    f"{sorted(NOT_IN_UNIT & set(item.fixturenames))}: "
                                    "move it to kernel/ or browser/")


@pytest.fixture(scope="session")
def data_root():
    root = Path(tempfile.mkdtemp(prefix="gateway-test-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def running(data_root):
    """One gateway for the whole session: kernel starts are the slow part of every test."""
    running = await start_gateway(test_settings(data_root / "main"))
    yield running
    await stop_gateway(running)


@pytest_asyncio.fixture(loop_scope="session")
async def client(running):
    client = await running.client()
    yield client
    await client.close()


@pytest_asyncio.fixture(loop_scope="session")
async def thread_id(request):
    """A fresh thread id; afterwards its threads (and ``<id>-suffix`` ones) are closed so their
    kernels go back to the shared gateway's budget."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", request.node.name[:40])
    tid = f"t{next(_thread_numbers)}-{name}"
    yield tid
    if "running" in request.fixturenames:
        gateway = request.getfixturevalue("running").gateway
        await close_threads_named(gateway, tid)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def browser():
    """One headless Chromium per test module (the page tests and the bash page test)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                   args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@pytest.fixture
def sdk_stream():
    """The projectdavid SDK's chunk-to-event mapping, set up as for one run."""
    return new_sdk_stream()
