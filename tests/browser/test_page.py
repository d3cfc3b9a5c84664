"""The live page (GET /) in a real headless Chromium against the real gateway.

Drives Debian's /usr/bin/chromium through playwright (no browser download); skipped only when
that binary is missing.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from support.browser import CHROMIUM, WAIT_MS, card, open_page

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = [
    pytest.mark.asyncio(loop_scope="session"),
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
]


async def test_page_runs_code_and_renders_output_plot_and_file_link(running, page, thread_id):
    from playwright.async_api import expect

    await open_page(page, running)
    assert await page.get_by_test_id("token").input_value() == "tok-alice"
    assert "token" not in page.url, "the token is taken out of the address bar"
    code = ("import matplotlib.pyplot as plt; print('hello page'); plt.plot([1,2,3]); plt.show()\n"
            "open('page.csv', 'w').write('x,y\\n1,2\\n')")
    await page.get_by_test_id("thread").fill(thread_id)
    await page.get_by_test_id("code-input").fill(code)
    await page.get_by_test_id("run").click()

    call = card(page, thread_id)
    await expect(call).to_have_count(1)
    await expect(call).to_have_attribute("data-state", "complete", timeout=WAIT_MS)
    await expect(call.get_by_test_id("call-output")).to_contain_text("hello page")
    await expect(call.get_by_test_id("call-status")).to_have_text(
        re.compile(r"complete · [\d.]+ (ms|s)"))
    await expect(call).to_have_attribute("data-typing", "done")
    assert await call.get_by_test_id("call-code").text_content() == code

    plot = call.locator('img[data-testid="plot"]')
    await expect(plot).to_have_count(1)
    assert (await plot.get_attribute("src")).startswith("data:image/png;base64,iVBOR")
    await plot.evaluate("img => img.decode()")
    assert await plot.evaluate("img => img.complete && img.naturalWidth") > 0

    link = call.locator('a.file[data-testid="file-link"]')
    await expect(link).to_contain_text("page.csv")
    await expect(link).to_contain_text("8 B")
    assert await link.get_attribute("download") == "page.csv"
    fetched = await link.evaluate(
        "async a => { const r = await fetch(a.href); return [r.status, await r.text()]; }")
    assert fetched == [200, "x,y\n1,2\n"]

    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "page.png"))
    assert page.problems == []


async def test_page_types_out_hot_code_streamed_by_another_client(running, page, client,
                                                                  thread_id):
    from playwright.async_api import expect

    await open_page(page, running)
    await page.get_by_test_id("thread").fill(thread_id)
    await page.get_by_test_id("subscribe").click()
    await expect(page.get_by_test_id("event-subscribed")).to_contain_text(thread_id)
    await expect(page.get_by_test_id("watching")).to_contain_text(thread_id)

    # Markup, quotes, escapes, a tab and a surrogate pair: all must come out as typed.
    code = ('label = "<b>caf\u00e9 & \\"quotes\\"</b> \U0001F600"\n'
            "for i in range(3):\n\tprint(i, label)\n"
            "print('done')")
    arguments = json.dumps({"code": code})  # \u escapes, split anywhere by the fragments
    fragments = [arguments[i:i + 5] for i in range(0, len(arguments), 5)]
    thread = client.thread(thread_id)
    call_id = "streamed-1"
    half = len(fragments) // 2
    await thread.send_code(call_id, fragments[:half])

    call = card(page, thread_id, call_id)
    await expect(call).to_have_attribute("data-state", "writing")
    await expect(call).to_have_attribute("data-typing", "done")
    partial = await call.get_by_test_id("call-code").text_content()
    assert partial and code.startswith(partial) and partial != code

    await thread.send_code(call_id, fragments[half:])
    await thread.execute(call_id=call_id)
    result = await thread.collect(call_id, timeout=WAIT_MS / 1000)
    assert result.state == "complete"

    await expect(call).to_have_attribute("data-state", "complete", timeout=WAIT_MS)
    await expect(call).to_have_attribute("data-typing", "done")
    assert await call.get_by_test_id("call-code").text_content() == code
    assert await call.get_by_test_id("call-output").text_content() == result.output
    assert result.output.endswith("done\n")
    await expect(card(page, thread_id)).to_have_count(1)
    assert page.problems == []


async def test_page_interrupt_and_restart_buttons(running, page, thread_id):
    from playwright.async_api import expect

    await open_page(page, running, f"&thread={thread_id}")
    await expect(page.get_by_test_id("event-subscribed")).to_contain_text(thread_id)
    assert await page.get_by_test_id("thread").input_value() == thread_id
    await page.get_by_test_id("code-input").fill(
        "import time\nprint('sleeping', flush=True)\ntime.sleep(60)")
    await page.get_by_test_id("run").click()
    call = card(page, thread_id)
    await expect(call.get_by_test_id("call-output")).to_contain_text("sleeping",
                                                                     timeout=WAIT_MS)
    await page.get_by_test_id("interrupt").click()
    await expect(call).to_have_attribute("data-state", "interrupted", timeout=WAIT_MS)
    await expect(call.get_by_test_id("call-output")).to_contain_text("KeyboardInterrupt")

    await page.get_by_test_id("restart").click()
    await expect(page.get_by_test_id("event-restarted")).to_contain_text(thread_id,
                                                                       timeout=WAIT_MS)
    assert page.problems == []


async def test_page_uploads_a_file_in_parts(running, page, thread_id):
    from playwright.async_api import expect

    await open_page(page, running)
    await page.get_by_test_id("thread").fill(thread_id)
    size = 5 * 2**20 + 123  # two parts of at most 4 MiB
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    await page.get_by_test_id("upload").set_input_files(
        {"name": "blob.bin", "mimeType": "application/octet-stream", "buffer": data})
    await expect(page.get_by_test_id("event-uploaded")).to_contain_text(
        "uploaded blob.bin (5.0 MB) → /mnt/data/blob.bin", timeout=WAIT_MS)

    await page.get_by_test_id("code-input").fill(
        "import hashlib\nprint(hashlib.sha256(open('blob.bin', 'rb').read()).hexdigest())")
    await page.get_by_test_id("run").click()
    call = card(page, thread_id)
    await expect(call).to_have_attribute("data-state", "complete", timeout=WAIT_MS)
    digest = hashlib.sha256(data).hexdigest()
    assert await call.get_by_test_id("call-output").text_content() == digest + "\n"
    assert page.problems == []


async def test_page_reports_a_bad_token(running, page):
    from playwright.async_api import expect

    page.problems.clear()
    await page.goto(f"{running.http}/?token=wrong")
    await expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "failed")
    await expect(page.get_by_test_id("connection")).to_contain_text("wrong token")


async def test_page_resumes_after_its_connection_drops(running, page, client, thread_id):
    """The page's websocket goes away mid-cell; it reconnects and subscribes from its last
    seq, so what ran meanwhile appears once, in order, and nothing twice."""
    from playwright.async_api import expect

    # Keep a handle on the page's sockets, to cut one from outside its code.
    await page.add_init_script("""(() => {
        const Native = window.WebSocket;
        window.__sockets = [];
        window.WebSocket = function (...args) {
            const socket = new Native(...args); window.__sockets.push(socket); return socket;
        };
        Object.assign(window.WebSocket, Native);
        window.WebSocket.prototype = Native.prototype;
    })();""")
    await open_page(page, running)
    await page.get_by_test_id("thread").fill(thread_id)
    await page.get_by_test_id("subscribe").click()
    await expect(page.get_by_test_id("event-subscribed")).to_contain_text(thread_id)
    thread = client.thread(thread_id)
    call_id = await thread.execute(
        "import time\nfor i in range(8):\n    print('step', i, flush=True)\n    time.sleep(0.3)")
    call = card(page, thread_id, call_id)
    await expect(call.get_by_test_id("call-output")).to_contain_text("step 0", timeout=WAIT_MS)
    await page.evaluate("window.__sockets.at(-1).close()")  # the page's connection, gone
    await expect(page.get_by_test_id("connection")).not_to_have_attribute("data-state", "open")
    result = await thread.collect(call_id, timeout=WAIT_MS / 1000)
    assert result.state == "complete"
    await expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "open",
                                                                      timeout=WAIT_MS)
    await expect(call).to_have_attribute("data-state", "complete", timeout=WAIT_MS)
    assert await call.get_by_test_id("call-output").text_content() == result.output
    await expect(card(page, thread_id)).to_have_count(1)
    assert page.problems == []


async def test_page_downloads_the_thread_as_a_notebook(running, page, thread_id):
    import nbformat
    from playwright.async_api import expect

    await open_page(page, running)
    await page.get_by_test_id("thread").fill(thread_id)
    await page.get_by_test_id("code-input").fill("print('in the notebook')")
    await page.get_by_test_id("run").click()
    await expect(card(page, thread_id)).to_have_attribute("data-state", "complete",
                                                          timeout=WAIT_MS)
    async with page.expect_download() as download_info:
        await page.get_by_test_id("download-notebook").click()
    download = await download_info.value
    assert download.suggested_filename == f"{thread_id}.ipynb"
    notebook = nbformat.read(await download.path(), as_version=4)
    nbformat.validate(notebook)
    assert notebook.cells[-1]["outputs"][0]["text"] == "in the notebook\n"
    assert page.problems == []
