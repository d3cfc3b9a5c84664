"""JupyterLab itself, in headless Chromium, running a cell on the model's thread through
Jupyter Server's ``--gateway-url`` and the gateway's Jupyter API."""

from __future__ import annotations

import pytest

from support.browser import CHROMIUM
from support.jupyter_server import SERVER_TOKEN, JupyterServer

# JupyterLab is a large application for a browser on a shared 2-core machine: each wait is a
# guard against a hang, not a time limit, and is generous.
LAB_WAIT_MS = 300_000

pytestmark = [
    pytest.mark.asyncio(loop_scope="session"),
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
]


async def test_jupyterlab_runs_a_cell_on_the_models_thread(running, client, thread_id, browser,
                                                           tmp_path):
    from playwright.async_api import expect

    assert (await client.thread(thread_id).run("answer = 41")).state == "complete"
    # Started with KERNEL_THREAD_ID: the kernels this JupyterLab starts are the model's thread.
    lab = await JupyterServer.start(tmp_path / "lab", running.http, app="jupyterlab",
                                    KERNEL_THREAD_ID=thread_id)
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = await context.new_page()
        await page.goto(f"{lab.http}/lab?token={SERVER_TOKEN}")
        launcher = page.locator('.jp-LauncherCard[title*="sandboxed gateway"]').first
        await launcher.click(timeout=LAB_WAIT_MS)
        await expect(page.locator(".jp-Notebook")).to_be_visible(timeout=LAB_WAIT_MS)
        await expect(page.locator(".jp-Notebook-ExecutionIndicator, #jp-main-statusbar")
                     .first).to_be_visible(timeout=LAB_WAIT_MS)
        editor = page.locator(".jp-Cell .cm-content").first
        await editor.click()
        await page.keyboard.type("answer + 1")
        # In the cell (keys typed while the editor is still taking focus are lost), and the
        # notebook's kernel connected and idle: a cell run before that stays "[ ]", unrun.
        await expect(editor).to_have_text("answer + 1", timeout=LAB_WAIT_MS)
        await expect(page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]')
                     .first).to_be_attached(timeout=LAB_WAIT_MS)
        await page.keyboard.press("Shift+Enter")
        output = page.locator(".jp-OutputArea-output").first
        await expect(output).to_have_text("42", timeout=LAB_WAIT_MS)
    finally:
        await context.close()
        lab.stop()
    # The person's cell ran in the model's thread: the model sees it.
    result = await client.thread(thread_id).run("print(_)")
    assert result.output == "42\n"
