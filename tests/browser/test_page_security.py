"""The live page in headless Chromium: foreign origins refused, its token kept out of URLs and
Referer, and the page working over TLS (https + wss) under its CSP."""

from __future__ import annotations

import contextlib
import http.server
import threading

import pytest
import pytest_asyncio

from support.browser import CHROMIUM, WAIT_MS, card
from support.gateways import start_gateway, stop_gateway, test_settings
from support.tls import make_pki

pytestmark = [
    pytest.mark.asyncio(loop_scope="session"),
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
]

# A page that opens a websocket to the gateway and shows in its title what happened.
PROBE = """<!doctype html><title>pending</title><script>
const ws = new WebSocket("{url}");
ws.onopen = () => {{ document.title = "open"; }};
ws.onclose = () => {{ if (document.title !== "open") document.title = "refused"; }};
</script>"""


@contextlib.contextmanager
def foreign_site(html: str):
    """Another origin on 127.0.0.1 (another port) serving one page."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


async def test_foreign_page_is_refused_and_the_gateways_own_page_accepted(running, browser):
    from playwright.async_api import expect

    probe = PROBE.format(url=f"ws://127.0.0.1:{running.server.port}/ws?token=tok-alice")
    context = await browser.new_context()
    page = await context.new_page()
    try:
        with foreign_site(probe) as foreign:
            await page.goto(foreign)
            await expect(page).to_have_title("refused", timeout=WAIT_MS)

        # The same script run from the gateway's own origin gets through.
        await page.goto(f"{running.http}/healthz")
        await page.evaluate("url => { const ws = new WebSocket(url);"
                            " ws.onopen = () => { document.title = 'open'; }; }",
                            running.url + "?token=tok-alice")
        await expect(page).to_have_title("open", timeout=WAIT_MS)
    finally:
        await context.close()


async def test_page_drops_its_token_from_the_url_and_sends_no_referer(running, browser):
    from playwright.async_api import expect

    context = await browser.new_context()
    page = await context.new_page()
    requests = []
    page.on("request", lambda request: requests.append(request))
    try:
        response = await page.goto(f"{running.http}/?token=tok-alice&thread=sec-1")
        headers = response.headers
        assert headers["referrer-policy"] == "no-referrer"
        csp = headers["content-security-policy"]
        assert "connect-src 'self'" in csp and "default-src 'none'" in csp
        assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        await expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "open")
        assert "token" not in page.url and page.url.endswith("/?thread=sec-1")
        assert len(requests) >= 3  # the page, its script and its stylesheet
        for request in requests:
            sent = await request.all_headers()
            assert "referer" not in sent, f"{request.url} sent a Referer"
        assert [r.url for r in requests[1:] if "token" in r.url] == []
        await page.go_back()  # replaced, not pushed: no history entry holds the token
        assert page.url == "about:blank"
    finally:
        await context.close()


async def test_a_link_does_not_switch_a_signed_in_tab_to_another_identity(running, browser):
    from playwright.async_api import expect

    context = await browser.new_context()
    page = await context.new_page()
    try:
        await page.goto(f"{running.http}/?token=tok-alice")
        await expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "open")
        # Someone else's link, followed in the same tab.
        await page.goto(f"{running.http}/?tok%65n=tok-bob&thread=evil")
        await expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "open")
        await expect(page.get_by_test_id("event-token-ignored")).to_have_count(1)
        assert await page.get_by_test_id("token").input_value() == "tok-alice"
        assert await page.evaluate("sessionStorage.getItem('gateway.token')") == "tok-alice"
        assert "token" not in page.url
        # Typing the other token and connecting is how a tab switches, as before.
        await page.get_by_test_id("token").fill("tok-bob")
        await page.get_by_test_id("token").press("Enter")
        await expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "open")
        assert await page.evaluate("sessionStorage.getItem('gateway.token')") == "tok-bob"
    finally:
        await context.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def tls_page_gateway(tmp_path_factory, data_root):
    pki = make_pki(tmp_path_factory.mktemp("page-pki"))
    settings = test_settings(data_root / "tls-page", pool_size=1, max_kernels=3,
                             tls_cert=str(pki.cert_file),
                             tls_key=str(pki.key_file))
    running = await start_gateway(settings)
    yield running
    await stop_gateway(running)


async def test_page_runs_code_over_https_and_wss(tls_page_gateway, browser):
    from playwright.async_api import expect

    # The test's CA is not in Chromium's store; the certificate itself is what test_tls checks.
    context = await browser.new_context(ignore_https_errors=True)
    page = await context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    sockets = []
    page.on("websocket", lambda socket: sockets.append(socket))
    try:
        port = tls_page_gateway.server.port
        await page.goto(f"https://127.0.0.1:{port}/?token=tok-alice")
        await expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "open")
        assert [s.url.split("?")[0] for s in sockets] == [f"wss://127.0.0.1:{port}/ws"]
        await page.get_by_test_id("thread").fill("tls-page")
        await page.get_by_test_id("code-input").fill("print('over tls'); 6 * 7")
        await page.get_by_test_id("run").click()
        call = card(page, "tls-page")
        await expect(call).to_have_attribute("data-state", "complete", timeout=WAIT_MS)
        await expect(call.get_by_test_id("call-output")).to_contain_text("over tls")
        await expect(call.get_by_test_id("call-output")).to_contain_text("42")
        assert problems == [], "no CSP violation or script error"
    finally:
        await context.close()
        await tls_page_gateway.gateway.close_thread("tls-page", "alice")
