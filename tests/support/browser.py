"""Headless Chromium for the page tests (Debian's, driven by playwright: no browser download)."""

from __future__ import annotations

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
WAIT_MS = 60_000


async def open_page(page, running, query: str = "") -> None:
    from playwright.async_api import expect

    await page.goto(f"{running.http}/?token=tok-alice{query}")
    await expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "open")


def card(page, thread_id: str, call_id: str | None = None):
    selector = f'[data-testid="call"][data-thread-id="{thread_id}"]'
    if call_id is not None:
        selector += f'[data-call-id="{call_id}"]'
    return page.locator(selector)
