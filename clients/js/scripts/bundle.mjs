// One ESM file for pages that load the client without a bundler (the gateway's live page
// ships it as gateway/static/gateway-client.js; test/static.test.mjs keeps the two equal).
import { build } from "esbuild";

await build({
  entryPoints: ["src/index.ts"],
  bundle: true,
  format: "esm",
  target: "es2022",
  outfile: process.argv[2] ?? "dist/gateway-client.js",
  legalComments: "none",
  logLevel: "warning",
});

// The protocol's JSON Schema travels with the package for clients that validate messages.
import { cpSync } from "node:fs";

if (!process.argv[2]) cpSync("../../gateway/wire/schema", "dist/schema", { recursive: true });
