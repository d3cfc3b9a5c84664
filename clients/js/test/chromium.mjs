// Headless Chromium driven over the DevTools protocol with Node's own WebSocket: no browser
// download and no dependency (Debian's /usr/bin/chromium, as the Python page tests use).
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";

import { until } from "./support.mjs";

export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

export async function launch() {
  const profile = await mkdtemp(path.join(tmpdir(), "gw-chromium-"));
  const child = spawn(CHROMIUM, ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
    "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
    `--user-data-dir=${profile}`, "--remote-debugging-port=0", "about:blank"], { stdio: "ignore" });
  const exited = new Promise((resolve) => child.on("exit", resolve));
  const portFile = path.join(profile, "DevToolsActivePort");
  const port = await until(() => existsSync(portFile) && readFileSync(portFile, "utf8").split("\n")[0], "chromium's debugging port");
  const targets = await until(async () => {
    const list = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
    return list.find((t) => t.type === "page");
  }, "a page target");
  const socket = new WebSocket(targets.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => { socket.onopen = resolve; socket.onerror = reject; });
  let next = 0;
  const pending = new Map();
  const events = [];
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.id !== undefined) pending.get(message.id)?.(message);
    else events.push(message);
  };
  const send = (method, params = {}) => new Promise((resolve, reject) => {
    const id = ++next;
    pending.set(id, (message) => (message.error ? reject(new Error(JSON.stringify(message.error))) : resolve(message.result)));
    socket.send(JSON.stringify({ id, method, params }));
  });
  return {
    events,
    async goto(url) {
      await send("Page.enable");
      await send("Page.navigate", { url });
      await until(() => events.some((e) => e.method === "Page.loadEventFired"), `${url} to load`);
    },
    /** Run an async expression in the page; its JSON value, or the page's exception. */
    async evaluate(expression) {
      const { result, exceptionDetails } = await send("Runtime.evaluate", { expression, awaitPromise: true, returnByValue: true });
      if (exceptionDetails) throw new Error(exceptionDetails.exception?.description ?? exceptionDetails.text);
      return result.value;
    },
    async close() {
      socket.close();
      child.kill("SIGTERM");
      await exited;
      await rm(profile, { recursive: true, force: true });
    },
  };
}
