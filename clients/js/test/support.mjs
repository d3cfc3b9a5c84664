// A real gateway for the tests: `python -m gateway serve` from the repository's .venv, on a
// free port with a temporary data dir, stopped (SIGTERM) when the test file ends.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
export const TOKENS = { alice: "tok-alice-0123456789", bob: "tok-bob-0123456789" };
export const ADMIN_TOKEN = "tok-admin-0123456789";
const GUARD_MS = 180_000; // a bound that fails rather than hangs, not a speed limit

export function python() {
  const venv = path.join(ROOT, ".venv/bin/python");
  return process.env.GATEWAY_PYTHON ?? (existsSync(venv) ? venv : "python3");
}

export function freePort(host = "127.0.0.1") {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on("error", reject);
    server.listen(0, host, () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

export async function until(check, what, guard = GUARD_MS) {
  const deadline = Date.now() + guard;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

export async function startGateway(extraArgs = []) {
  const dataDir = await mkdtemp(path.join(tmpdir(), "gw-js-"));
  const port = await freePort();
  const tokens = Object.entries(TOKENS).map(([id, tok]) => `${id}:${tok}`).join(",");
  const child = spawn(python(), ["-m", "gateway", "serve", "--port", String(port), "--data-dir", dataDir,
                                 "--pool-size", "1", "--max-kernels", "6", ...extraArgs], {
    cwd: ROOT,
    env: { ...process.env, GATEWAY_TOKENS: tokens, GATEWAY_ADMIN_TOKEN: ADMIN_TOKEN },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  child.stderr.on("data", (data) => { log = (log + data).slice(-20_000); });
  const exited = new Promise((resolve) => child.on("exit", resolve));
  const http = `http://127.0.0.1:${port}`;
  await until(async () => {
    if (child.exitCode !== null) throw new Error(`the gateway exited (${child.exitCode}):\n${log}`);
    try {
      return (await fetch(`${http}/readyz`)).status === 200;
    } catch {
      return false;
    }
  }, `the gateway on ${http} to be ready`);
  return {
    port, http, url: `ws://127.0.0.1:${port}/ws`, dataDir, get log() { return log; },
    async stop() {
      child.kill("SIGTERM");
      const guard = setTimeout(() => child.kill("SIGKILL"), GUARD_MS);
      await exited;
      clearTimeout(guard);
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** A TCP relay in front of the gateway whose connections the test can cut, as a network would. */
export async function startRelay(targetPort) {
  const sockets = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, "127.0.0.1");
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => {});
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: server.address().port,
    cut() {
      for (const s of sockets) s.destroy();
    },
    close() {
      this.cut();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}
