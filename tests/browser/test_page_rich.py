"""Rich results on the live page, in headless Chromium against the real gateway: tables,
Markdown, LaTeX, JSON and SVG rendered with the vendored renderers, displays replaced by id, and
hostile HTML that never runs in the page's origin."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.browser import CHROMIUM, WAIT_MS, card, open_page

pytestmark = [
    pytest.mark.asyncio(loop_scope="session"),
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
]

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "page-rich.png"

RICH_CELL = r"""from IPython.display import JSON, SVG, Latex, Markdown, display
import pandas as pd
print('rich results')
display(Markdown('# Quarterly summary\n\nRevenue grew **12%**; the fit is $y = ax^2 + b$.'))
display(Latex(r'$$\int_0^1 x^2\,dx = \frac{1}{3}$$'))
display(JSON({'region': 'north', 'sales': [120, 98, 143], 'meta': {'currency': 'EUR'}}))
display(SVG('<svg xmlns="http://www.w3.org/2000/svg" width="120" height="40">'
            '<rect width="120" height="40" rx="6" fill="#4f46e5"/></svg>'))
pd.DataFrame({'city': ['Oslo', 'Lima', 'Pune'], 'temp_c': [3.5, 19.0, 27.25],
              'rain_mm': [61, 1, 3]}).set_index('city')
"""

# Every way a cell's HTML could try to run script in the page and read its token.
HOSTILE_CELL = r"""from IPython.display import HTML, Markdown, display
steal = "window.__pwned = (window.__pwned || 0) + 1; " \
        "fetch('/steal?t=' + sessionStorage.getItem('gateway.token'))"
display(HTML(f'''<p id="bait">hostile table</p>
<img id="hostile-img" src="missing.png" onerror="{steal}">
<script>{steal}</script>
<svg onload="{steal}"><circle r="3"/></svg>
<a id="hostile-link" href="javascript:{steal}">click</a>
<iframe srcdoc="<script>parent.{steal}</script>"></iframe>
<form action="/steal"><input name="t" autofocus onfocus="{steal}"></form>
<div style="background:url(/steal)">styled</div>'''))
display(Markdown(f'md <img src="missing.png" onerror="{steal}"> [x](javascript:{steal})'))
"""


async def run_rendered(page, running, thread_id: str, code: str, count: int):  # noqa: F811
    """Run ``code`` from the page; its card and its ``count`` displays, each rendered."""
    from playwright.async_api import expect

    await open_page(page, running)
    await page.get_by_test_id("thread").fill(thread_id)
    await page.get_by_test_id("code-input").fill(code)
    await page.get_by_test_id("run").click()
    call = card(page, thread_id)
    await expect(call).to_have_attribute("data-state", "complete", timeout=WAIT_MS)
    displays = call.get_by_test_id("display")
    await expect(displays).to_have_count(count)
    for index in range(count):
        await expect(displays.nth(index)).to_have_attribute("data-rendered", "yes")
    return call, displays


async def test_page_renders_tables_markdown_latex_json_and_svg(running, page, thread_id):  # noqa: F811
    from playwright.async_api import expect

    await page.set_viewport_size({"width": 1280, "height": 1300})
    call, displays = await run_rendered(page, running, thread_id, RICH_CELL, 4)
    markdown, latex, json_tree, table = (displays.nth(i) for i in range(4))

    await expect(markdown.locator("h1")).to_have_text("Quarterly summary")
    await expect(markdown.locator("strong")).to_have_text("12%")
    await expect(markdown.locator(".katex")).to_have_count(1)  # the inline $...$
    await expect(latex.locator(".katex-display")).to_have_count(1)
    assert "frac" not in (await latex.locator(".katex-html").text_content())
    await expect(json_tree.locator("summary").first).to_have_text("{3}")
    await expect(json_tree).to_contain_text('"north"')
    # The SVG is stored as a file (as before) and shown once, by its file chunk, as an image.
    svg = call.locator('img[data-testid="plot"]')
    await expect(svg).to_have_count(1)
    assert (await svg.get_attribute("src")).startswith("data:image/svg+xml;base64,")
    await svg.evaluate("img => img.decode()")
    assert await svg.evaluate("img => img.naturalWidth") == 120
    await expect(table.locator("table")).to_have_count(1)
    await expect(table.locator("tbody tr")).to_have_count(3)
    await expect(table.locator("tbody tr").first).to_contain_text("Oslo")
    await expect(table.locator("tbody tr").first).to_contain_text("3.50")

    # The text/plain copies of what was shown richly are not printed again.
    output = await call.get_by_test_id("call-output").text_content()
    assert output == "rich results\n"
    # KaTeX's fonts came from the gateway (no CDN), and nothing failed. The only console errors
    # allowed are the CSP blocking the inline styles of pandas' HTML while DOMPurify parses it
    # (Chrome reports them from the inert parse; DOMPurify then drops them).
    assert await page.evaluate("document.fonts.check('16px KaTeX_Main')")
    blocked_styles = [p for p in page.problems if "Applying inline style violates" in p]
    assert [p for p in page.problems if p not in blocked_styles] == []
    SCREENSHOT.parent.mkdir(exist_ok=True)
    await call.screenshot(path=str(SCREENSHOT))


async def test_an_update_replaces_the_display_with_its_id(running, page, thread_id):  # noqa: F811
    from playwright.async_api import expect

    await open_page(page, running)
    await page.get_by_test_id("thread").fill(thread_id)
    await page.get_by_test_id("code-input").fill(
        "from IPython.display import HTML, display\n"
        "h = display(HTML('<b>step 1</b>'), display_id=True)\n"
        "h.update(HTML('<b>step 2</b>'))\n")
    await page.get_by_test_id("run").click()
    call = card(page, thread_id)
    await expect(call).to_have_attribute("data-state", "complete", timeout=WAIT_MS)
    displays = call.get_by_test_id("display")
    await expect(displays).to_have_count(1)
    await expect(displays.locator("b")).to_have_text("step 2")
    assert await call.get_by_test_id("call-output").text_content() == ""


async def test_hostile_html_does_not_run_and_cannot_read_the_token(running, browser, thread_id):  # noqa: F811
    from playwright.async_api import expect

    context = await browser.new_context()
    page = await context.new_page()  # noqa: F811 - its own: this one expects CSP reports
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        call, displays = await run_rendered(page, running, thread_id, HOSTILE_CELL, 2)
        html = displays.nth(0)
        await expect(html.locator("#bait")).to_have_text("hostile table")
        # What could run is gone; the harmless rest stays.
        await expect(html.locator("img")).to_have_count(1)
        assert await html.locator("img").get_attribute("onerror") is None
        assert await html.locator("script, iframe, form, input, [style], [onload]").count() == 0
        assert await html.locator("a").get_attribute("href") in (None, "")
        assert await displays.nth(1).locator("img").get_attribute("onerror") is None
        # Let a failed image load (its onerror would fire) and a click on the link happen.
        await html.locator("img").evaluate(
            "img => new Promise(done => img.complete ? done() : (img.onload = img.onerror = done))")
        await html.locator("a").click()
        await page.wait_for_timeout(500)  # settle: a handler, had one survived, runs now
        assert await page.evaluate("window.__pwned") is None
        assert not [url for url in requests if "/steal" in url]
        assert await page.evaluate("sessionStorage.getItem('gateway.token')") == "tok-alice"
        assert errors == []
    finally:
        await context.close()


# Links a cell could write to sign the page in as someone else; ORIGIN is set in the kernel.
SIGN_IN_LINKS_CELL = r"""from IPython.display import HTML, Markdown, display
display(HTML(f'''<a id="link-root" href="/?token=ATTACKER&thread=evil">root</a>
<a id="link-absolute" href="{ORIGIN}/static/index.html?tok%65n=ATTACKER">absolute</a>
<a id="link-relative" href="static/../?thread=x&amp;token=ATTACKER">relative</a>
<a id="link-fragment" href="/#token=ATTACKER">fragment</a>
<svg width="20" height="10"><a id="link-svg" href="/?token=ATTACKER"><text y="9">s</text></a>
<a id="link-xlink" xlink:href="/?token=ATTACKER"><text x="10" y="9">x</text></a></svg>
<a id="link-external" href="https://example.org/docs?token=theirs">external</a>
<a id="link-own" href="/?thread=mine">own</a>'''))
display(Markdown('[md](/?token=ATTACKER) and [site](https://example.org/)'))
"""


async def test_links_that_would_sign_the_page_in_lose_their_href(running, page, thread_id):  # noqa: F811
    """Login CSRF: a cell's link back into this page with a token would open it as the link's
    author. Such links keep their text but not their href; other links are untouched."""
    from playwright.async_api import expect

    _, displays = await run_rendered(
        page, running, thread_id, f"ORIGIN = {running.http!r}\n" + SIGN_IN_LINKS_CELL, 2)
    html, markdown = displays.nth(0), displays.nth(1)

    async def link_targets(link) -> tuple[str | None, str | None]:
        return await link.evaluate(
            "a => [a.getAttribute('href'), a.getAttribute('xlink:href')]")

    for name in ("root", "absolute", "relative", "fragment", "svg", "xlink"):
        link = html.locator(f"#link-{name}")
        await expect(link).to_have_count(1)  # the link's text stays
        assert await link_targets(link) == [None, None], name
    assert await link_targets(html.locator("#link-external")) == [
        "https://example.org/docs?token=theirs", None]
    assert await link_targets(html.locator("#link-own")) == ["/?thread=mine", None]
    assert await link_targets(markdown.locator("a", has_text="md")) == [None, None]
    assert await link_targets(markdown.locator("a", has_text="site")) == [
        "https://example.org/", None]
    assert await html.locator("#link-external").get_attribute("target") == "_blank"


@pytest.mark.parametrize(("path", "status", "content_type"), [
    ("/static/rich.js", 200, "text/javascript; charset=utf-8"),
    ("/static/vendor/katex/katex.min.js", 200, "text/javascript; charset=utf-8"),
    ("/static/vendor/dompurify/purify.es.mjs", 200, "text/javascript; charset=utf-8"),
    ("/static/vendor/katex/fonts/KaTeX_Main-Regular.woff2", 200, "font/woff2"),
    ("/static/vendor/../app.js", 404, None),
    ("/static/vendor/katex/../../server.py", 404, None),
    ("/static/vendor/VERSIONS", 404, None),
    ("/static/vendor/katex/LICENSE.txt", 404, None),
])
async def test_the_vendored_renderers_are_served_and_nothing_else(running, path, status,
                                                                   content_type):
    import asyncio
    import urllib.error
    import urllib.request

    def get() -> tuple[int, str | None]:
        try:
            with urllib.request.urlopen(running.http + path, timeout=60) as response:
                response.read()
                return response.status, response.headers["Content-Type"]
        except urllib.error.HTTPError as exc:
            return exc.code, None

    got_status, got_type = await asyncio.to_thread(get)
    assert got_status == status
    if content_type:
        assert got_type == content_type
