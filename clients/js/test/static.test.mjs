// The live page loads gateway/static/gateway-client.js (committed, so `make run` needs no
// node): it must be exactly what a fresh build of this package gives.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "node:test";

import { ROOT } from "./support.mjs";

test("the committed bundle in gateway/static matches a fresh build", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "gw-bundle-"));
  try {
    const fresh = path.join(dir, "gateway-client.js");
    execFileSync(process.execPath, ["scripts/bundle.mjs", fresh], { cwd: path.join(ROOT, "clients/js") });
    const committed = readFileSync(path.join(ROOT, "gateway/static/gateway-client.js"), "utf8");
    assert.ok(committed === readFileSync(fresh, "utf8"),
              "gateway/static/gateway-client.js is stale: run `npm run build && cp dist/gateway-client.js ../../gateway/static/` in clients/js");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
