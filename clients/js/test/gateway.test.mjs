// The client against a real gateway (real sandboxed kernels), one gateway for the whole file.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { ConnectError, DisconnectedError, Gateway, HttpError, RequestError, download, fromBase64 } from "../dist/index.js";
import { ADMIN_TOKEN, TOKENS, startGateway, startRelay } from "./support.mjs";

let gw;
let client;
before(async () => {
  gw = await startGateway();
  client = await Gateway.connect(gw.url, TOKENS.alice);
});
after(async () => {
  client?.close();
  await gw?.stop();
});

let threads = 0;
const newThread = (options) => client.thread(`js-${process.pid}-${++threads}`, options);

test("execute: callbacks, the async iterator and the folded result agree", async () => {
  const thread = newThread();
  const seen = { code: "", output: "", statuses: [] };
  const call = thread.execute("x = 41\nprint(x + 1)\nx", {
    onHotCode: (text) => { seen.code += text; },
    onOutput: (text) => { seen.output += text; },
    onStatus: (status) => seen.statuses.push(status.state),
  });
  const types = [];
  for await (const envelope of call) types.push(envelope.chunk.type);
  const result = await call;
  assert.equal(result.state, "complete");
  assert.equal(result.output, "42\n41\n");
  assert.equal(seen.output, result.output);
  assert.equal(seen.code, "```python\nx = 41\nprint(x + 1)\nx\n```");
  assert.deepEqual(seen.statuses, ["complete"]);
  assert.equal(types.at(-1), "status");
  assert.ok(types.includes("hot_code") && types.includes("hot_code_output"));
  // State survives between calls: one kernel per thread.
  assert.equal((await thread.execute("print(x * 2)")).output, "82\n");
});

test("pre-streamed code deltas become the hot code and then run", async () => {
  const thread = newThread();
  let hot = "";
  const call = thread.call({ onHotCode: (text) => { hot += text; } });
  for (const piece of ['{"code": "print(', "'stre", "amed')\"", "}"]) await call.codeDelta(piece);
  await call.execute();
  const result = await call;
  assert.equal(result.output, "streamed\n");
  assert.equal(hot, "```python\nprint('streamed')\n```");
  const raw = thread.call();
  await raw.codeDelta("print(6 *", "raw");
  await raw.codeDelta(" 7)", "raw");
  await raw.execute();
  assert.equal((await raw).output, "42\n");
});

test("displays and files arrive, and a file downloads byte for byte", async () => {
  const thread = newThread();
  const files = [];
  const displays = [];
  const result = await thread.execute(
    "from IPython.display import HTML, display\ndisplay(HTML('<b>hi</b>'))\n"
    + "open('out.bin', 'wb').write(bytes(range(256)) * 3)",
    { onFile: (file) => files.push(file), onDisplay: (d) => displays.push(d) });
  assert.equal(result.state, "complete");
  assert.equal(displays[0].data["text/html"], "<b>hi</b>");
  const file = files.find((f) => f.filename === "out.bin");
  assert.ok(file, JSON.stringify(files.map((f) => f.filename)));
  const expected = new Uint8Array(768).map((_, i) => i % 256);
  assert.deepEqual(fromBase64(file.base64), expected);
  let progress = 0;
  const bytes = await download(client, file.file_id, (done) => { progress = done; });
  assert.deepEqual(bytes, expected);
  assert.equal(progress, 768);
  await assert.rejects(download(client, "nope"), (e) => e instanceof HttpError && e.status === 404);
});

test("an error chunk rejects the call with a typed RequestError", async () => {
  const thread = newThread();
  await assert.rejects(thread.execute("1", { timeout: -1 }).done, (error) => {
    assert.ok(error instanceof RequestError);
    assert.equal(error.code, "bad_request");
    return true;
  });
  const failed = await thread.execute("1/0");
  assert.equal(failed.state, "error");
  assert.equal(failed.status.error.ename, "ZeroDivisionError");
});

test("interrupt stops a running cell, restart clears the state", async () => {
  const thread = newThread();
  await thread.execute("kept = 1");
  let started;
  const running = new Promise((resolve) => { started = resolve; });
  const call = thread.execute("import time\nprint('go', flush=True)\ntime.sleep(600)",
                              { onOutput: () => started() });
  await running;
  await thread.interrupt();
  assert.equal((await call).state, "interrupted");
  await thread.restart();
  const after = await thread.execute("print('kept' in globals())");
  assert.equal(after.output, "False\n");
});

test("uploads: websocket parts and HTTP PUT with progress, read back by the kernel", async () => {
  const thread = newThread();
  const data = new Uint8Array(300_000).map((_, i) => (i * 7) % 251);
  const steps = [];
  const parts = await thread.upload("in/parts.bin", data, { partSize: 100_000, onProgress: (done) => steps.push(done) });
  assert.equal(parts.size, data.length);
  assert.deepEqual(steps, [100_000, 200_000, 300_000]);
  let last = 0;
  const put = await thread.uploadHttp("put me.bin", data, { onProgress: (done) => { last = done; } });
  assert.equal(put.size, data.length);
  assert.equal(last, data.length);
  const check = await thread.execute(
    "import hashlib\nfor n in ('in/parts.bin', 'put me.bin'):\n"
    + "    print(hashlib.sha256(open(n, 'rb').read()).hexdigest())");
  const digest = Buffer.from(await crypto.subtle.digest("SHA-256", data)).toString("hex");
  assert.equal(check.output, `${digest}\n${digest}\n`);
  await assert.rejects(thread.upload("../escape", data.subarray(0, 3)),
                       (e) => e instanceof RequestError && e.code === "bad_filename");
  await assert.rejects(thread.uploadHttp(".hidden", data.subarray(0, 3)),
                       (e) => e instanceof HttpError && e.status === 400 && e.code === "bad_filename");
});

test("subscribe: a second connection watches another client's call live", async () => {
  const thread = newThread();
  await thread.execute("pass");
  const watcher = await Gateway.connect(gw.url, TOKENS.alice);
  try {
    const seen = [];
    let acks = 0;
    let ended;
    const finished = new Promise((resolve) => { ended = resolve; });
    const { lastSeq, stop } = await watcher.thread(thread.id).subscribe((envelope) => {
      if (envelope.chunk.type === "subscribed") acks += 1;
      else seen.push(envelope);
      if (envelope.chunk.type === "status" && envelope.call_id === "watched") ended();
    });
    assert.ok(lastSeq > 0);
    await thread.execute("print('seen by both')", { callId: "watched" });
    await finished;
    stop();
    const output = seen.filter((e) => e.chunk.type === "hot_code_output").map((e) => e.chunk.content).join("");
    assert.equal(output, "seen by both\n");
    assert.equal(acks, 1);
    assert.ok(seen.every((e) => e.seq > lastSeq), JSON.stringify(seen.map((e) => e.seq)));
  } finally {
    watcher.close();
  }
});

test("a refused token is a ConnectError with its status", async () => {
  await assert.rejects(Gateway.connect(gw.url, "wrong-token"), (error) => {
    assert.ok(error instanceof ConnectError);
    assert.equal(error.status, 401);
    assert.equal(error.code, "unauthorized");
    return true;
  });
});

test("resume: a connection dropped mid-output loses and doubles no chunk", async () => {
  const relay = await startRelay(gw.port);
  const resuming = await Gateway.connect(`ws://127.0.0.1:${relay.port}/ws`, TOKENS.alice);
  try {
    const thread = resuming.thread(`js-${process.pid}-resume`);
    const lines = Array.from({ length: 120 }, (_, i) => `line ${String(i).padStart(4, "0")} ${"x".repeat(40)}\n`);
    const chunks = [];
    let cut = false;
    const call = thread.execute(
      "import time\nfor i in range(120):\n    print(f'line {i:04d} ' + 'x' * 40, flush=True)\n    time.sleep(0.02)",
      { onOutput: (text) => {
        chunks.push(text);
        if (!cut && chunks.length === 5) {
          cut = true;
          relay.cut();
        }
      } });
    const result = await call;
    assert.ok(cut);
    assert.equal(resuming.reconnects, 1);
    assert.equal(result.state, "complete");
    assert.equal(chunks.join(""), lines.join(""));
    assert.equal(result.output, lines.join(""));
    const seqs = result.envelopes.map((e) => e.seq);
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b));
    assert.equal(new Set(seqs).size, seqs.length);
    for (let i = 1; i < seqs.length; i++) assert.equal(seqs[i], seqs[i - 1] + 1, "a gap in the seqs");
  } finally {
    resuming.close();
    await relay.close();
  }
});

test("a close the client chose is final: later sends fail typed", async () => {
  const other = await Gateway.connect(gw.url, TOKENS.alice);
  other.close();
  await assert.rejects(other.thread("t").interrupt(), DisconnectedError);
});

test("in headless Chromium: the bundle the live page ships connects, streams and uploads", async () => {
  const { launch } = await import("./chromium.mjs");
  const browser = await launch();
  try {
    await browser.goto(`${gw.http}/?token=${TOKENS.alice}`);
    const seen = await browser.evaluate(`(async () => {
      const { Gateway, RequestError } = await import("/static/gateway-client.js");
      const gw = await Gateway.connect(location.origin.replace("http", "ws") + "/ws", ${JSON.stringify(TOKENS.alice)});
      const thread = gw.thread("browser-${process.pid}");
      let hot = "";
      const call = thread.call({ onHotCode: (t) => { hot += t; } });
      await call.codeDelta('{"code": "print(sum(range(');
      await call.codeDelta('10)))"}');
      await call.execute();
      const chunks = [];
      for await (const e of call) chunks.push(e.chunk.type);
      const result = await call;
      const steps = [];
      const put = await thread.uploadHttp("from-browser.txt", new Blob(["hello"]), { onProgress: (d) => steps.push(d) });
      const read = await thread.execute("print(open('from-browser.txt').read())");
      let refused = null;
      try { await thread.execute("1", { timeout: -1 }); } catch (e) { refused = e instanceof RequestError && e.code; }
      gw.close();
      return { hot, output: result.output, last: chunks.at(-1), size: put.size, steps, read: read.output, refused,
               agent: navigator.userAgent };
    })()`);
    assert.match(seen.agent, /HeadlessChrome/);
    assert.equal(seen.hot, "```python\nprint(sum(range(10)))\n```");
    assert.equal(seen.output, "45\n");
    assert.equal(seen.last, "status");
    assert.equal(seen.size, 5);
    assert.equal(seen.steps.at(-1), 5);
    assert.equal(seen.read, "hello\n");
    assert.equal(seen.refused, "bad_request");
  } finally {
    await browser.close();
  }
});

test("the docs' example frontend runs as written in Chromium (with a minted token)", async () => {
  const { readFileSync } = await import("node:fs");
  const { ROOT } = await import("./support.mjs");
  const { launch } = await import("./chromium.mjs");
  const docs = readFileSync(`${ROOT}/docs/clients.md`, "utf8");
  const html = docs.slice(docs.indexOf("## Example: a frontend")).match(/```html\n([\s\S]*?)```/)[1];
  const body = html.slice(html.indexOf("<pre"), html.indexOf("<script"));
  const script = html.slice(html.indexOf('<script type="module">') + 22, html.indexOf("</script>"));
  const minted = await (await fetch(`${gw.http}/admin/token?identity=alice&thread=t1&ttl=5m`,
                                    { headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } })).json();
  // The page's two lines that need a site around them: the static import and the backend call.
  const runnable = script
    .replace(/import \{([^}]*)\} from "([^"]*)";/, "const {$1} = await import(\"$2\");")
    .replace(/await \(await fetch\("\/my-backend\/gateway-token"\)\)\.text\(\)/, JSON.stringify(minted.token));
  assert.notEqual(runnable, script);
  const browser = await launch();
  try {
    await browser.goto(`${gw.http}/static/index.html`);
    const seen = await browser.evaluate(`(async () => {
      document.body.innerHTML = ${JSON.stringify(body)};
      ${runnable}
      const images = [...$("charts").querySelectorAll("img")];
      await Promise.all(images.map((img) => img.decode())); // rejects if the chart did not load
      return { code: $("code").textContent, out: $("out").textContent,
               charts: images.map((img) => img.naturalWidth > 0) };
    })()`);
    assert.match(seen.code, /^```python\nimport matplotlib.pyplot as plt\nplt.plot\(\[1, 4, 9, 16\]\)/);
    assert.match(seen.out, /^done\n\n\[complete in [\d.]+ ms\]$/);
    assert.deepEqual(seen.charts, [true]);
  } finally {
    await browser.close();
  }
});
