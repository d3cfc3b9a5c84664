"""The page tests' fixtures: a fresh Chromium page (``browser`` is the root conftest's) whose
errors fail the test, and a thread id whose thread is closed afterwards."""

from __future__ import annotations

import contextlib

import pytest_asyncio

from gateway.errors import GatewayError


@pytest_asyncio.fixture(loop_scope="session")
async def page(browser):
    """A fresh page whose script errors, failed requests and CSP violations fail the test."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("console", lambda message: problems.append(f"console: {message.text}")
            if message.type == "error" else None)
    page.on("requestfailed", lambda request: problems.append(f"request failed: {request.url}"))
    page.problems = problems
    yield page
    await context.close()


@pytest_asyncio.fixture(loop_scope="session")
async def thread_id(running, thread_id):
    """conftest's thread id, closed after the test so its kernel goes back to the pool."""
    yield thread_id
    with contextlib.suppress(GatewayError):
        await running.gateway.close_thread(thread_id, "alice")
