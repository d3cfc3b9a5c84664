// The client's protocol types against the JSON Schema the gateway ships: the compiler holds the
// key lists in src/protocol.ts to the types, this test holds them to the schema.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";

import { CHUNK_TYPES, LANGUAGES, OUTPUT_STREAMS, PROTOCOL_VERSION, REQUEST_KEYS, STATES } from "../dist/index.js";
import { ROOT } from "./support.mjs";

const load = (kind) => JSON.parse(readFileSync(
  path.join(ROOT, "gateway/wire/schema", `${kind}.v${PROTOCOL_VERSION}.json`), "utf8"));
const request = load("request");
const envelope = load("envelope");

function properties(schema, def) {
  // A request's fields, following the one level of $ref the schema uses (thread_only).
  const own = Object.keys(def.properties ?? {});
  const ref = def.$ref ? properties(schema, schema.$defs[def.$ref.split("/").at(-1)]) : [];
  return [...new Set([...ref, ...own])].sort();
}

test("every request type and field matches the schema", () => {
  const kinds = request.oneOf.map((r) => r.$ref.split("/").at(-1)).sort();
  assert.deepEqual(Object.keys(REQUEST_KEYS).sort(), kinds);
  for (const kind of kinds) {
    assert.deepEqual([...REQUEST_KEYS[kind]].sort(), properties(request, request.$defs[kind]), kind);
    assert.equal(request.$defs[kind].properties?.type?.const, kind);
  }
  assert.deepEqual([...LANGUAGES, null].sort(), [...request.$defs.language.enum].sort());
});

test("every chunk type, state and output stream matches the schema", () => {
  const chunks = envelope.$defs.chunk.oneOf.map((c) => c.$ref.split("/").at(-1));
  const consts = chunks.map((name) => envelope.$defs[name].properties.type.const);
  assert.deepEqual([...CHUNK_TYPES].sort(), consts.sort());
  assert.deepEqual([...STATES].sort(), [...envelope.$defs.status.properties.content.properties.state.enum].sort());
  assert.deepEqual([...OUTPUT_STREAMS].sort(), [...envelope.$defs.hot_code_output.properties.stream.enum].sort());
  assert.equal(envelope.properties.stream_type.const, "code_execution");
});
