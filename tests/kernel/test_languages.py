"""Threads in other languages (gateway/languages): bash through the same sandbox, limits,
files, timeouts, interrupts and envelopes as Python; unknown and unavailable languages refused
with clear errors.

The gateway half; the pure half is tests/unit/test_languages_registry.py."""

from __future__ import annotations

import asyncio
import base64
import logging
import shutil
import urllib.request
from pathlib import Path

import pytest
import pytest_asyncio

from gateway.errors import LanguageUnavailable
from support.browser import CHROMIUM
from support.gateways import close_threads_named, start_gateway, stop_gateway, test_settings
from support.host import needs_linux

pytestmark = needs_linux
on_loop = pytest.mark.asyncio(loop_scope="session")
# The checkout's kernelspecs (a worktree's editable install may map gateway.kernels elsewhere;
# tests/kernel/test_packaging.py checks that the wheel carries the same files).
KERNELS = Path(__file__).resolve().parents[2] / "kernels"

# A 1x1 red PNG.
DOT_PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElF"
           "TkSuQmCC")


@on_loop
async def test_a_missing_runtime_is_reported_and_refused(tmp_path):
    from gateway.app import Gateway

    kernels = tmp_path / "kernels"
    shutil.copytree(KERNELS, kernels, ignore=shutil.ignore_patterns("bash"))
    gateway = Gateway(test_settings(tmp_path / "data", kernels_dir=kernels, bash_pool_size=1))
    try:
        await gateway._start_other_languages()  # the probe alone: no kernel starts
        described = gateway.languages()["bash"]
        assert described["available"] is False
        assert "kernelspec" in described["reason"] and described["pool"]["target"] == 0
        with pytest.raises(LanguageUnavailable, match="not available on this gateway"):
            gateway.pool_for("bash")
        session = gateway.thread("t-missing", "alice", create=True)
        with pytest.raises(LanguageUnavailable):
            session.choose_language("bash")
        assert session.language is None  # still free to be a Python thread
    finally:
        gateway.store.close()


@on_loop
async def test_a_missing_runtime_is_no_warning_at_start_up_and_a_request_learns_why(
        data_root, tmp_path, caplog):
    """Nobody asked for bash yet: start-up (e.g. every ``gateway exec``) says nothing about it
    above DEBUG; the thread that asks for it gets the whole reason."""
    kernels = tmp_path / "kernels"
    shutil.copytree(KERNELS, kernels, ignore=shutil.ignore_patterns("bash"))
    running = await start_gateway(test_settings(data_root / "languages-missing", pool_size=1,
                                                kernels_dir=kernels))
    try:
        loud = [r.getMessage() for r in caplog.records
                if r.levelno >= logging.WARNING and "bash" in r.getMessage()]
        assert not loud, loud
        client = await running.client()
        try:
            refused = await client.thread("t-no-bash", language="bash").run("echo hi")
        finally:
            await client.close()
        assert refused.error["code"] == "language_unavailable", refused.error
        message = refused.error["message"]
        assert "language 'bash' is not available on this gateway" in message
        assert f"its kernelspec {kernels / 'bash' / 'kernel.json'} is missing" in message
    finally:
        await stop_gateway(running)


# -- a gateway with a warm bash kernel ----------------------------------------------------------
@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def polyglot(data_root):
    running = await start_gateway(test_settings(data_root / "languages", pool_size=1,
                                                bash_pool_size=1, javascript_pool_size=1,
                                                r_pool_size=1, max_kernels=10,
                                                kernels_dir=KERNELS))
    yield running
    await stop_gateway(running)


@pytest_asyncio.fixture(loop_scope="session")
async def tid(polyglot, thread_id):
    """A thread id; afterwards its threads (and ``<id>-suffix`` ones) on ``polyglot`` are
    closed, so their kernels go back to its budget."""
    yield thread_id
    await close_threads_named(polyglot.gateway, thread_id)


@pytest_asyncio.fixture(loop_scope="session")
async def bash(polyglot, tid):
    client = await polyglot.client()
    yield client.thread(tid, language="bash")
    await client.close()


@on_loop
async def test_health_lists_the_languages(polyglot):
    def get() -> dict:
        import json

        request = urllib.request.Request(f"{polyglot.http}/healthz",
                                         headers={"Authorization": "Bearer tok-alice"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)

    health = await asyncio.to_thread(get)
    assert health["languages"]["python"]["available"] is True
    assert health["languages"]["bash"] == {
        "available": True, "reason": None,
        "pool": {"target": 1, "warm": health["languages"]["bash"]["pool"]["warm"],
                 "starting": health["languages"]["bash"]["pool"]["starting"],
                 "leased": health["languages"]["bash"]["pool"]["leased"]}}


@on_loop
async def test_bash_state_persists_and_the_fence_names_bash(bash):
    first = await bash.run("X=41\ncd /mnt/data && mkdir -p sub && cd sub")
    assert first.state == "complete", first.status
    assert first.hot_code == "```bash\nX=41\ncd /mnt/data && mkdir -p sub && cd sub\n```"
    second = await bash.run("echo $((X + 1)) $(pwd)")
    assert second.state == "complete"
    assert second.output == "42 /mnt/data/sub\n"
    outputs = [e["chunk"] for e in second.envelopes if e["chunk"]["type"] == "hot_code_output"]
    assert {c["stream"] for c in outputs} == {"stdout"}
    assert second.status["execution_count"] > first.status["execution_count"]


@on_loop
async def test_bash_displays_html_and_images(bash):
    html = await bash.run("echo '<b>from bash</b>' | displayHTML")
    assert html.state == "complete"
    (shown,) = html.displays
    assert shown["data"]["text/html"].strip() == "<b>from bash</b>"
    image = await bash.run(f"echo {DOT_PNG} | base64 -d | display")
    assert image.state == "complete"
    (plot,) = image.files
    assert plot["mime_type"] == "image/png" and plot["filename"].endswith(".png")
    assert base64.b64decode(plot["base64"]) == base64.b64decode(DOT_PNG)
    (shown,) = image.displays
    assert shown["files"]["image/png"]["file_id"] == plot["file_id"]


@on_loop
async def test_bash_error_is_structured(bash):
    result = await bash.run("echo before\nls /no/such/dir\n")
    assert result.state == "error"
    assert "No such file or directory" in result.output
    error = result.status["error"]
    assert error["evalue"] == "2"  # ls's exit status
    assert error["traceback"] and all("\x1b" not in line for line in error["traceback"])
    after = await bash.run("echo still here")
    assert after.state == "complete" and after.output == "still here\n"


@on_loop
async def test_bash_timeout_and_interrupt(bash):
    slow = await bash.run("sleep 60", timeout=2)
    assert slow.state in ("timeout", "killed"), slow.status
    call_id = await bash.execute("echo started; sleep 60")
    async for envelope in bash.stream(call_id):
        chunk = envelope["chunk"]
        if chunk["type"] == "hot_code_output" and "started" in chunk["content"]:
            await bash.interrupt()
        if chunk["type"] == "status" and chunk["content"]["state"] not in ("queued", "running"):
            interrupted = chunk["content"]
            break
    assert interrupted["state"] == "interrupted", interrupted
    after = await bash.run("echo alive")
    assert after.state == "complete" and after.output == "alive\n"


@on_loop
async def test_a_thread_keeps_its_language(polyglot, tid):
    client = await polyglot.client()
    try:
        bash = client.thread(tid, language="bash")
        assert (await bash.run("echo $BASH_VERSION")).output[0].isdigit()
        as_python = client.thread(tid, language="python")
        refused = await as_python.run("print(1)")
        assert refused.state == "protocol_error"
        assert refused.error["code"] == "language_mismatch"
        unknown = await client.thread(tid + "-x", language="cobol").run("DISPLAY 'HI'")
        assert unknown.error["code"] == "unknown_language"
        plain = await client.thread(tid + "-py").run("import sys; print(sys.version[0])")
        assert plain.output == "3\n" and plain.hot_code.startswith("```python\n")
        # Its first request named none: it is a Python thread now.
        late = await client.thread(tid + "-py", language="bash").run("echo x")
        assert late.error["code"] == "language_mismatch"
        assert "runs python, not bash" in late.error["message"]
    finally:
        await client.close()


# -- the sandbox holds for bash too (escape probes; nothing is written) --------------------------
ESCAPE_CELL = r"""
echo "uid=$(id -u)"
grep -E '^(Seccomp|NoNewPrivs|CapEff|CapBnd):' /proc/self/status
test -w /proc/sys/kernel/core_pattern && echo "core_pattern=writable" || echo "core_pattern=ro"
unshare --user true 2>/dev/null && echo "userns=ok" || echo "userns=refused"
(exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && echo "net=open" || echo "net=refused"
test -e /etc/passwd && echo "passwd=visible" || echo "passwd=absent"
echo "secret=${{GATEWAY_TEST_SECRET:-none}}"
cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\0' ' ' | grep -c 'py[t]est' || true
"""


@on_loop
async def test_pool_ls_shows_each_kernels_language(polyglot, bash):
    from gateway.net.admin import execute_admin

    ran = await bash.run("true")
    assert ran.state == "complete", (ran.status, ran.error)
    rows = await execute_admin(polyglot.gateway, {"op": "pool.ls"})
    mine = [row for row in rows if row["thread"] == bash.id]
    assert [row["language"] for row in mine] == ["bash"]
    assert {row["language"] for row in rows} >= {"python", "bash"}
    stats = await execute_admin(polyglot.gateway, {"op": "pool.stats"})
    assert stats["language"] == "python" and stats["languages"]["bash"]["available"] is True


@on_loop
async def test_bash_env_is_for_one_cell(bash):
    await bash.run("export KEEP=kept")
    value = "it's a \"value\" with $dollar and `ticks`"
    seen = await bash.run('echo "$API_KEY|$KEEP"; bash -c \'echo "child:$API_KEY"\'',
                          env={"API_KEY": value, "KEEP": "shadowed"})
    assert seen.state == "complete", seen.output
    assert seen.output == f"{value}|shadowed\nchild:{value}\n"
    after = await bash.run('echo "${API_KEY-unset}|$KEEP|${__gateway_saved_env-gone}"')
    assert after.output == "unset|kept|gone\n"


@on_loop
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing")
async def test_the_page_runs_a_bash_thread(polyglot, browser, tid):
    from playwright.async_api import expect

    context = await browser.new_context()
    page = await context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    try:
        await page.goto(f"{polyglot.http}/?token=tok-alice")
        await expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "open")
        await page.get_by_test_id("thread").fill(tid)
        await page.get_by_test_id("language").select_option("bash")
        await page.get_by_test_id("code-input").fill('N=6; echo "bash says $((N * 7))"')
        await page.get_by_test_id("run").click()
        call = page.locator(f'[data-testid="call"][data-thread-id="{tid}"]')
        await expect(call).to_have_attribute("data-state", "complete", timeout=60_000)
        await expect(call.get_by_test_id("call-output")).to_have_text("bash says 42\n")
        assert await call.locator("code").get_attribute("class") == "language-bash"
        assert problems == []
    finally:
        await context.close()


# -- JavaScript and TypeScript: Deno's kernel, TCP only, behind the in-sandbox bridge ------------
needs_deno = pytest.mark.skipif(shutil.which("deno") is None,
                                reason="deno is not installed (scripts/setup-system.sh)")


@pytest_asyncio.fixture(loop_scope="session")
async def js(polyglot, tid):
    if "javascript" in polyglot.gateway.unavailable_languages:
        pytest.skip(polyglot.gateway.unavailable_languages["javascript"])
    client = await polyglot.client()
    yield client.thread(tid, language="javascript")
    await client.close()


@pytest_asyncio.fixture(loop_scope="session")
async def ts(polyglot, tid):
    if "typescript" in polyglot.gateway.unavailable_languages:
        pytest.skip(polyglot.gateway.unavailable_languages["typescript"])
    client = await polyglot.client()
    yield client.thread(tid + "-ts", language="typescript")
    await client.close()


@on_loop
@needs_deno
async def test_typescript_state_persists_and_results_display(ts):
    first = await ts.run("const x: number = 41;\nlet seen: string[] = [];")
    assert first.state == "complete", (first.status, first.output)
    assert first.hot_code.startswith("```typescript\nconst x: number = 41;")
    second = await ts.run("seen.push('a'); console.log(x + 1, seen);\n({answer: x + 1})")
    assert second.state == "complete", second.status
    streams = {c["stream"] for c in (e["chunk"] for e in second.envelopes)
               if c["type"] == "hot_code_output"}
    assert "stdout" in streams and "result" in streams
    assert "42 [ \"a\" ]\n" in second.output and "answer: 42" in second.output
    assert second.status["execution_count"] > first.status["execution_count"]
    html = await ts.run('Deno.jupyter.html`<b>from deno</b>`')
    (shown,) = html.displays
    assert shown["data"]["text/html"] == "<b>from deno</b>"


@on_loop
@needs_deno
async def test_javascript_error_is_structured(js):
    result = await js.run("console.log('before');\n"
                          "function f() { throw new TypeError('boom'); }\nf()")
    assert result.state == "error", result.status
    assert "before" in result.output
    error = result.status["error"]
    assert error["ename"] == "TypeError" and error["evalue"] == "boom", error
    assert error["traceback"] and all("\x1b" not in line for line in error["traceback"])
    assert any("at f" in line for line in error["traceback"]), error["traceback"]
    after = await js.run("console.log('still here')")
    assert after.state == "complete" and after.output == "still here\n"


async def interrupt_when_started(thread, code: str) -> dict:
    """Runs ``code`` (which prints "started"), interrupts it then; its final status."""
    call_id = await thread.execute(code)
    async for envelope in thread.stream(call_id):
        chunk = envelope["chunk"]
        if chunk["type"] == "hot_code_output" and "started" in chunk["content"]:
            await thread.interrupt()
        if chunk["type"] == "status" and chunk["content"]["state"] not in ("queued", "running"):
            return chunk["content"]
    raise AssertionError("no final status")


@on_loop
@needs_deno
async def test_an_awaiting_deno_cell_is_stopped_by_a_restart(js):
    """Deno interrupts running JavaScript only: a cell awaiting a timer ignores the interrupt,
    so the gateway restarts the kernel (and says so); the thread goes on in a fresh one."""
    interrupted = await interrupt_when_started(
        js, "console.log('started'); await new Promise((done) => setTimeout(done, 60000));")
    assert interrupted["state"] == "interrupted", interrupted
    assert interrupted["kernel_restarted"] is True, interrupted
    after = await js.run("console.log('alive')")
    assert after.state == "complete" and after.output == "alive\n", after.status


@on_loop
@needs_deno
async def test_javascript_env_is_for_one_cell(js):
    value = "it's a \"value\" with ${dollar} and `ticks`"
    seen = await js.run("console.log(Deno.env.get('API_KEY'))", env={"API_KEY": value})
    assert seen.state == "complete" and seen.output == value + "\n", seen.output
    after = await js.run("console.log(Deno.env.get('API_KEY') ?? 'unset', "
                         "typeof globalThis.__gatewaySavedEnv)")
    assert after.output == "unset undefined\n"


DENO_ESCAPE_CELL = r"""
const report = {};
const status = Deno.readTextFileSync("/proc/self/status");
for (const key of ["Seccomp", "NoNewPrivs", "CapEff", "CapBnd"])
  report[key] = status.match(new RegExp(`^${key}:\\s*(\\S+)`, "m"))[1];
report.uid = String(Deno.uid());
try { Deno.openSync("/proc/sys/kernel/core_pattern", {write: true}).close();
      report.core_pattern = "writable"; } catch { report.core_pattern = "ro"; }
report.userns = new Deno.Command("unshare", {args: ["--user", "true"], stderr: "null"})
  .outputSync().success ? "ok" : "refused";
async function reach(port) {
  try { (await Deno.connect({hostname: "127.0.0.1", port})).close(); return "open"; }
  catch { return "refused"; }
}
report.net = await reach(GATEWAY_PORT);
report.own_kernel = await reach(JSON.parse(Deno.readTextFileSync(
  [...Deno.readDirSync("/tmp")].map((e) => "/tmp/" + e.name)
    .find((p) => p.includes("kernel-tcp-")))).shell_port);
report.other_kernel = (await Promise.all(OTHER_PORTS.map(reach))).join(",");
try { Deno.statSync("/etc/passwd"); report.passwd = "visible"; } catch { report.passwd = "absent"; }
report.secret = Deno.env.get("GATEWAY_TEST_SECRET") ?? "none";
report.pytest = [...Deno.readDirSync("/proc")].filter((e) => /^\d+$/.test(e.name))
  .filter((e) => { try { return Deno.readTextFileSync(`/proc/${e.name}/cmdline`)
                               .includes("pytest"); } catch { return false; } }).length;
console.log(JSON.stringify(report));
"""

OWN_PORTS_CELL = r"""
const own = JSON.parse(Deno.readTextFileSync([...Deno.readDirSync("/tmp")]
  .map((e) => "/tmp/" + e.name).find((p) => p.includes("kernel-tcp-"))));
console.log(JSON.stringify(["shell", "iopub", "stdin", "control", "hb"]
  .map((c) => own[c + "_port"])));
"""


@on_loop
@needs_deno
async def test_escape_probes_from_a_deno_kernel(polyglot, js, ts):
    """Deno's own TCP ports are on its sandbox's loopback: reachable from its own cells,
    unreachable from another kernel's; the gateway's port is unreachable from both."""
    import json
    import os

    other = await ts.run(OWN_PORTS_CELL)
    assert other.state == "complete", other.status
    other_ports = json.loads(other.output)
    cell = (DENO_ESCAPE_CELL.replace("GATEWAY_PORT", str(polyglot.server.port))
            .replace("OTHER_PORTS", json.dumps(other_ports)))
    result = await js.run(cell)
    assert result.state == "complete", (result.status, result.output)
    report = json.loads(result.output)
    assert report["Seccomp"] == "2" and report["NoNewPrivs"] == "1"
    assert int(report["CapEff"], 16) == 0 and int(report["CapBnd"], 16) == 0
    assert report["core_pattern"] == "ro"
    assert report["userns"] == "refused"
    assert report["net"] == "refused"
    assert report["own_kernel"] == "open"  # the probe can reach a port: its own kernel's
    assert report["other_kernel"] == ",".join(["refused"] * 5)
    assert report["passwd"] == "absent"
    assert report["secret"] == "none"
    assert report["pytest"] == 0
    if os.geteuid() == 0 and polyglot.gateway.host.drop_uid:
        assert int(report["uid"]) >= polyglot.gateway.settings.kernel_uid_base


# -- R: IRkernel speaks ipc itself ---------------------------------------------------------------
@pytest_asyncio.fixture(loop_scope="session")
async def r(polyglot, tid):
    if "r" in polyglot.gateway.unavailable_languages:
        pytest.skip(polyglot.gateway.unavailable_languages["r"])
    client = await polyglot.client()
    yield client.thread(tid, language="r")
    await client.close()


@on_loop
async def test_r_state_persists_and_plots_and_tables_display(r):
    first = await r.run("x <- 41")
    assert first.state == "complete", first.status
    assert first.hot_code == "```r\nx <- 41\n```"
    second = await r.run("print(x + 1)\ndata.frame(city = c('Oslo', 'Rome'), temp = c(3, 14))")
    assert second.state == "complete", second.status
    assert second.output.startswith("[1] 42\n") and "Oslo" in second.output
    (table,) = second.displays
    assert "<table" in table["data"]["text/html"] and "Rome" in table["data"]["text/html"]
    plot = await r.run("plot(1:3)")
    (png,) = plot.files
    assert png["mime_type"] == "image/png"
    assert base64.b64decode(png["base64"]).startswith(b"\x89PNG")


@on_loop
async def test_r_error_is_structured(r):
    result = await r.run("cat('before\\n')\nf <- function() stop('boom')\nf()")
    assert result.state == "error", result.status
    assert "before" in result.output
    error = result.status["error"]
    assert error["evalue"].startswith("Error in f(): boom"), error
    assert "1. f()" in error["traceback"] and all("\x1b" not in line
                                                 for line in error["traceback"])
    after = await r.run("cat('still here')")
    assert after.state == "complete" and after.output == "still here"


@on_loop
async def test_r_env_is_for_one_cell(r):
    value = 'it\'s a "value" )-- with \\n and `ticks`'
    seen = await r.run("cat(Sys.getenv('API_KEY'))", env={"API_KEY": value})
    assert seen.state == "complete" and seen.output == value, seen.output
    after = await r.run("cat(Sys.getenv('API_KEY', 'unset'), exists('.gateway_saved_env'))")
    assert after.output == "unset FALSE"


# -- the same checks in each language ------------------------------------------------------------
@pytest.fixture
def thread(request):
    """The thread of the language fixture the test is parametrized with (bash, js or r)."""
    return request.getfixturevalue(request.param)


@on_loop
@pytest.mark.parametrize("thread, code", [
    ("bash", "printf 'city,temp\\nOslo,3\\n' > /mnt/data/temps.csv"),
    pytest.param("js", "Deno.writeTextFileSync('/mnt/data/temps.csv', 'city,temp\\nOslo,3\\n')",
                 marks=needs_deno),
    ("r", "writeLines(c('city,temp', 'Oslo,3'), '/mnt/data/temps.csv')"),
], indirect=["thread"], ids=["bash", "js", "r"])
async def test_files_are_announced(thread, code):
    result = await thread.run(code)
    assert result.state == "complete", result.status
    (announced,) = result.files
    assert announced["filename"] == "temps.csv" and announced["mime_type"] == "text/csv"
    assert base64.b64decode(announced["base64"]) == b"city,temp\nOslo,3\n"


@on_loop
@pytest.mark.parametrize("thread, keep, busy, started, show, shown", [
    # Deno stops the busy loop itself: no restart.
    pytest.param("js", "globalThis.kept = 'kept';", "while (true) {}",
                 "console.log('started'); while (true) {}", "console.log('alive', kept)",
                 "alive kept\n", marks=needs_deno),
    # IRkernel answers no interrupt_request; the gateway sends the R process SIGINT itself.
    ("r", "kept <- 42", "Sys.sleep(60)", "cat('started\\n'); Sys.sleep(60)", "cat(kept)", "42"),
], indirect=["thread"], ids=["js", "r"])
async def test_timeout_and_interrupt_stop_the_cell_and_keep_the_state(thread, keep, busy, started,
                                                                      show, shown):
    assert (await thread.run(keep)).state == "complete"
    slow = await thread.run(busy, timeout=2)
    assert slow.state == "timeout" and not slow.status.get("kernel_restarted"), slow.status
    interrupted = await interrupt_when_started(thread, started)
    assert interrupted["state"] == "interrupted", interrupted
    assert not interrupted.get("kernel_restarted"), interrupted
    after = await thread.run(show)
    assert after.state == "complete" and after.output == shown, after.status


@on_loop
@pytest.mark.parametrize("thread, wrap", [
    ("bash", "{}"),
    # The bash probes, run by the R process (system2): the same sandbox holds.
    ("r", "cat(system2('bash', c('-c', shQuote({!r})), stdout = TRUE), sep = '\\n')"),
], indirect=["thread"], ids=["bash", "r"])
async def test_escape_probes_from_a_bash_or_r_kernel(polyglot, thread, wrap):
    import os

    result = await thread.run(wrap.format(ESCAPE_CELL.format(port=polyglot.server.port)))
    assert result.state == "complete", result.output
    report = dict(line.split("=", 1) for line in result.output.splitlines() if "=" in line)
    fields = dict(line.split(":", 1) for line in result.output.splitlines() if ":" in line)
    assert fields["Seccomp"].strip() == "2"  # a filter is installed
    assert fields["NoNewPrivs"].strip() == "1"
    assert int(fields["CapEff"], 16) == 0 and int(fields["CapBnd"], 16) == 0
    assert report["core_pattern"] == "ro"
    assert report["userns"] == "refused"
    assert report["net"] == "refused"
    assert report["passwd"] == "absent"
    assert report["secret"] == "none"
    assert result.output.splitlines()[-1] == "0"  # no host process (pytest) is visible
    if os.geteuid() == 0 and polyglot.gateway.host.drop_uid:
        assert int(report["uid"]) >= polyglot.gateway.settings.kernel_uid_base
