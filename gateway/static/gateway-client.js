// src/errors.ts
var GatewayError = class extends Error {
  code;
  constructor(code, message) {
    super(message);
    this.name = new.target.name;
    this.code = code;
  }
};
var ConnectError = class extends GatewayError {
  status;
  constructor(status, message) {
    super(
      status === 401 ? "unauthorized" : status === 403 ? "forbidden" : "connect_failed",
      message
    );
    this.status = status;
  }
};
var RequestError = class extends GatewayError {
  threadId;
  callId;
  constructor(code, message, threadId, callId) {
    super(code, message);
    this.threadId = threadId;
    this.callId = callId;
  }
};
var DisconnectedError = class extends GatewayError {
  constructor(message) {
    super("disconnected", message);
  }
};
var HttpError = class extends GatewayError {
  status;
  constructor(status, code, message) {
    super(code, `${status} ${code}: ${message}`);
    this.status = status;
  }
};

// src/http.ts
var PIECE = 256 * 1024;
function toBytes(data) {
  if (typeof data === "string") return new TextEncoder().encode(data);
  return data instanceof Uint8Array ? data : new Uint8Array(data);
}
async function bytesOf(data) {
  if (typeof Blob !== "undefined" && data instanceof Blob) return new Uint8Array(await data.arrayBuffer());
  return toBytes(data);
}
async function refusal(status, text) {
  let code = "http_error";
  let message = text.slice(0, 200);
  try {
    const body = JSON.parse(text);
    if (typeof body.error === "string") message = body.error;
    else if (body.error) {
      code = body.error.code ?? code;
      message = body.error.message ?? message;
    }
  } catch {
  }
  if (status === 401) code = "unauthorized";
  if (status === 404 && code === "http_error") code = "not_found";
  return new HttpError(status, code, message);
}
async function put(url, token, data, onProgress) {
  if (typeof XMLHttpRequest !== "undefined") return putXhr(url, token, data, onProgress);
  const bytes = await bytesOf(data);
  let sent = 0;
  const body = new ReadableStream({
    pull(controller) {
      if (sent >= bytes.length) {
        controller.close();
        return;
      }
      const piece = bytes.subarray(sent, sent + PIECE);
      sent += piece.length;
      controller.enqueue(piece);
      onProgress?.(sent, bytes.length);
    }
  });
  const response = await fetch(url, {
    method: "PUT",
    body,
    duplex: "half",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/octet-stream" }
  });
  const text = await response.text();
  if (!response.ok) throw await refusal(response.status, text);
  if (bytes.length === 0) onProgress?.(0, 0);
  return JSON.parse(text);
}
function putXhr(url, token, data, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", url);
    xhr.setRequestHeader("Authorization", `Bearer ${token}`);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    if (onProgress) xhr.upload.onprogress = (event) => onProgress(event.loaded, event.lengthComputable ? event.total : null);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) resolve(JSON.parse(xhr.responseText));
      else refusal(xhr.status, xhr.responseText).then(reject);
    };
    xhr.onerror = () => reject(new HttpError(0, "network_error", "the upload did not reach the gateway"));
    const body = typeof data === "string" || data instanceof Blob ? data : new Blob([data instanceof Uint8Array ? data.slice() : data]);
    xhr.send(body);
  });
}
async function get(url, token, onProgress) {
  const response = await fetch(url, { headers: { Authorization: `Bearer ${token}` } });
  if (!response.ok) throw await refusal(response.status, await response.text());
  const length = Number(response.headers.get("Content-Length") ?? NaN);
  const total = Number.isFinite(length) ? length : null;
  if (!response.body) return new Uint8Array(await response.arrayBuffer());
  const reader = response.body.getReader();
  const pieces = [];
  let received = 0;
  for (; ; ) {
    const { done, value } = await reader.read();
    if (done) break;
    pieces.push(value);
    received += value.length;
    onProgress?.(received, total);
  }
  const out = new Uint8Array(received);
  let at = 0;
  for (const piece of pieces) {
    out.set(piece, at);
    at += piece.length;
  }
  return out;
}
function toBase64(bytes) {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 32768) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 32768));
  }
  return btoa(binary);
}
function fromBase64(text) {
  const binary = atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

// src/protocol.ts
var PROTOCOL_VERSION = 1;
var REQUEST_KEYS = {
  code_delta: ["type", "thread_id", "call_id", "delta", "format", "language"],
  execute: ["type", "thread_id", "call_id", "code", "timeout", "language", "env"],
  interrupt: ["type", "thread_id"],
  restart: ["type", "thread_id"],
  close: ["type", "thread_id"],
  subscribe: ["type", "thread_id", "since_seq"],
  result: ["type", "thread_id", "call_id"],
  upload: ["type", "thread_id", "filename", "base64", "call_id", "offset", "final"]
};
var CHUNK_TYPES = [
  "hot_code",
  "hot_code_output",
  "rewind",
  "display",
  "code_interpreter_stream",
  "code_interpreter_file",
  "status",
  "error",
  "subscribed",
  "file_uploaded",
  "gap"
];
var STATES = [
  "complete",
  "error",
  "timeout",
  "interrupted",
  "killed",
  "restarted",
  "closed",
  "released"
];
var OUTPUT_STREAMS = [
  "stdout",
  "stderr",
  "result",
  "display",
  "traceback",
  "note"
];
var LANGUAGES = [
  "python",
  "bash",
  "javascript",
  "typescript",
  "r"
];
var FINAL_STATES = /* @__PURE__ */ new Set(
  ["complete", "error", "timeout", "interrupted", "killed"]
);
function isFinal(envelope) {
  const chunk = envelope.chunk;
  if (chunk.type === "error") return true;
  return chunk.type === "status" && FINAL_STATES.has(chunk.content.state);
}

// src/queue.ts
var Queue = class {
  items = [];
  waiters = [];
  push(item) {
    const waiter = this.waiters.shift();
    if (waiter) waiter(item);
    else this.items.push(item);
  }
  next() {
    if (this.items.length) return Promise.resolve(this.items.shift());
    return new Promise((resolve) => this.waiters.push(resolve));
  }
  get waiting() {
    return this.waiters.length > 0;
  }
};

// src/result.ts
var Result = class {
  callId;
  envelopes = [];
  constructor(callId) {
    this.callId = callId;
  }
  /** The text as a screen shows it: a `rewind` drops the rewritten line it names. */
  get output() {
    let text = "";
    for (const { chunk } of this.envelopes) {
      if (chunk.type === "hot_code_output") text += chunk.content;
      else if (chunk.type === "rewind") text = text.slice(0, Math.max(text.length - chunk.content.chars, 0));
    }
    return text;
  }
  get hotCode() {
    return this.envelopes.map(({ chunk }) => chunk.type === "hot_code" ? chunk.content : "").join("");
  }
  get files() {
    return this.envelopes.flatMap(({ chunk }) => chunk.type === "code_interpreter_stream" ? [chunk.content] : []);
  }
  get displays() {
    return this.envelopes.flatMap(({ chunk }) => chunk.type === "display" ? [chunk.content] : []);
  }
  get status() {
    const all = this.envelopes.flatMap(({ chunk }) => chunk.type === "status" ? [chunk.content] : []);
    return all.at(-1) ?? null;
  }
  get error() {
    const all = this.envelopes.flatMap(({ chunk }) => chunk.type === "error" ? [chunk.content] : []);
    return all.at(-1) ?? null;
  }
  /** The final state, or `protocol_error` when the gateway refused the request. */
  get state() {
    return this.error ? "protocol_error" : this.status?.state ?? null;
  }
};

// src/client.ts
var OPEN = 1;
var DROPPED = 1006;
function newCallId() {
  const bytes = new Uint8Array(8);
  globalThis.crypto.getRandomValues(bytes);
  return "call_" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
function key(threadId, callId) {
  return `${threadId ?? ""}\0${callId ?? ""}`;
}
function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
function deferred() {
  let resolve;
  const promise = new Promise((r) => {
    resolve = r;
  });
  return { promise, resolve };
}
async function openSocket(Ws, url, probe) {
  const socket = new Ws(url);
  const opened = await new Promise((resolve) => {
    socket.onopen = () => resolve(true);
    socket.onerror = () => resolve(false);
    socket.onclose = () => resolve(false);
  });
  if (opened) return socket;
  let status = null;
  try {
    status = (await fetch(probe)).status;
  } catch {
  }
  throw new ConnectError(status, status === 401 ? "the gateway refused the token" : status === 403 ? "the gateway refused this origin or host" : `could not connect to ${url.replace(/token=[^&]*/, "token=***")}`);
}
var Gateway = class _Gateway {
  url;
  httpBase;
  token;
  /** Times the connection was dropped and resumed. */
  reconnects = 0;
  socket;
  Ws;
  reconnect;
  reconnectFor;
  onState;
  routes = /* @__PURE__ */ new Map();
  watchers = /* @__PURE__ */ new Map();
  acks = /* @__PURE__ */ new Map();
  seen = /* @__PURE__ */ new Map();
  resumeAcks = /* @__PURE__ */ new Map();
  connected = deferred();
  closing = false;
  failed = null;
  constructor(socket, url, token, options, Ws, httpBase) {
    this.socket = socket;
    this.url = url;
    this.token = token;
    this.Ws = Ws;
    this.httpBase = httpBase;
    this.reconnect = options.reconnect ?? true;
    this.reconnectFor = options.reconnectFor ?? 12e4;
    this.onState = options.onState;
    this.connected.resolve();
    this.attach(socket);
  }
  /** Connect to `url` (`ws://host:8765/ws`, `wss://...`) with a client or minted token. */
  static async connect(url, token, options = {}) {
    const Ws = options.WebSocket ?? globalThis.WebSocket;
    if (!Ws) throw new GatewayError("no_websocket", "no WebSocket here: pass options.WebSocket (Node 20: --experimental-websocket)");
    const parsed = new URL(url);
    const httpBase = options.httpBase ?? `${parsed.protocol === "wss:" ? "https:" : "http:"}//${parsed.host}${parsed.pathname.replace(/\/ws\/?$/, "")}`;
    const socket = await openSocket(Ws, _Gateway.socketUrl(url, token), `${httpBase}/ws?token=${encodeURIComponent(token)}`);
    return new _Gateway(socket, url, token, options, Ws, httpBase);
  }
  static socketUrl(url, token) {
    const parsed = new URL(url);
    parsed.searchParams.set("token", token);
    return parsed.toString();
  }
  thread(threadId, options = {}) {
    return new Thread(this, threadId, options.language);
  }
  /** Every envelope of a thread (subscribed or not) also goes to `watcher`; returns an undo. */
  watch(threadId, watcher) {
    let set = this.watchers.get(threadId);
    if (!set) this.watchers.set(threadId, set = /* @__PURE__ */ new Set());
    set.add(watcher);
    return () => set.delete(watcher);
  }
  close() {
    this.closing = true;
    this.socket.close(1e3);
    this.fail(new DisconnectedError("closed by the client"));
  }
  /** Cut the connection as a network would (no close handshake on our side): for tests. */
  get rawSocket() {
    return this.socket;
  }
  /** @internal */
  route(threadId, callId, handler) {
    this.routes.set(key(threadId, callId), handler);
    return () => {
      if (this.routes.get(key(threadId, callId)) === handler) this.routes.delete(key(threadId, callId));
    };
  }
  /** @internal */
  ackQueue(threadId) {
    let queue = this.acks.get(threadId);
    if (!queue) this.acks.set(threadId, queue = new Queue());
    return queue;
  }
  /** @internal: the last seq seen of a thread, so a resume starts after it. */
  noteSeen(threadId, seq) {
    this.seen.set(threadId, Math.max(this.seen.get(threadId) ?? 0, seq));
  }
  async send(message) {
    if (!this.seen.has(message.thread_id)) this.seen.set(message.thread_id, 0);
    const text = JSON.stringify(message);
    for (; ; ) {
      await this.connected.promise;
      if (this.failed) throw this.failed;
      if (this.socket.readyState === OPEN) {
        this.socket.send(text);
        return;
      }
      await sleep(20);
    }
  }
  attach(socket) {
    socket.onmessage = (event) => this.deliver(JSON.parse(String(event.data)));
    socket.onclose = (event) => {
      if (socket !== this.socket) return;
      if (this.closing || !this.reconnect || event.code !== DROPPED) {
        this.fail(new DisconnectedError(`the gateway closed the connection (${event.code}${event.reason ? ": " + event.reason : ""})`));
        return;
      }
      this.connected = deferred();
      this.onState?.("reconnecting");
      this.resume().catch((error) => {
        this.fail(error instanceof GatewayError ? error : new DisconnectedError(`could not reconnect: ${String(error)}`));
      });
    };
  }
  deliver(envelope) {
    const threadId = envelope.thread_id;
    const seq = envelope.seq;
    if (typeof threadId === "string" && typeof seq === "number" && !envelope.replayed) {
      if (seq <= (this.seen.get(threadId) ?? 0)) return;
      this.seen.set(threadId, seq);
    }
    const chunk = envelope.chunk;
    if (chunk.type === "subscribed" && threadId !== null) {
      const owed = this.resumeAcks.get(threadId) ?? 0;
      if (owed > 0) {
        this.resumeAcks.set(threadId, owed - 1);
        return;
      }
      this.ackQueue(threadId).push(chunk.content);
    }
    if (threadId !== null) for (const watcher of this.watchers.get(threadId) ?? []) watcher(envelope);
    this.routes.get(key(threadId, envelope.call_id))?.(envelope);
  }
  async resume() {
    this.resumeAcks.clear();
    const deadline = Date.now() + this.reconnectFor;
    let delay = 50;
    for (; ; ) {
      try {
        this.socket = await openSocket(
          this.Ws,
          _Gateway.socketUrl(this.url, this.token),
          `${this.httpBase}/ws?token=${encodeURIComponent(this.token)}`
        );
        break;
      } catch (error) {
        if (error instanceof ConnectError && error.status !== null && error.status < 500) throw error;
        if (Date.now() + delay > deadline) throw new DisconnectedError(`could not reconnect within ${this.reconnectFor} ms`);
        await sleep(delay);
        delay = Math.min(delay * 2, 5e3);
      }
    }
    if (this.closing) {
      this.socket.close(1e3);
      return;
    }
    this.reconnects += 1;
    this.attach(this.socket);
    for (const [threadId, seq] of this.seen) {
      this.resumeAcks.set(threadId, (this.resumeAcks.get(threadId) ?? 0) + 1);
      this.socket.send(JSON.stringify({ type: "subscribe", thread_id: threadId, since_seq: seq }));
    }
    this.connected.resolve();
    this.onState?.("open");
  }
  fail(error) {
    if (this.failed) return;
    this.failed = error;
    this.onState?.("closed", error.message);
    for (const [routeKey, handler] of [...this.routes]) {
      const [threadId, callId] = routeKey.split("\0");
      handler({
        stream_type: "code_execution",
        thread_id: threadId ?? null,
        call_id: callId || null,
        chunk: { type: "error", content: { code: "disconnected", message: error.message } }
      });
    }
    this.connected.resolve();
  }
};
var Call = class {
  id;
  thread;
  /** Everything received so far (complete once `done` settles). */
  result;
  done;
  queue = new Queue();
  handlers;
  settle;
  reject;
  finished = false;
  unroute;
  /** @internal */
  constructor(thread, id, handlers) {
    this.thread = thread;
    this.id = id;
    this.handlers = handlers;
    this.result = new Result(id);
    this.done = new Promise((resolve, reject) => {
      this.settle = resolve;
      this.reject = reject;
    });
    this.done.catch(() => {
    });
    this.unroute = thread.gateway.route(thread.id, id, (envelope) => this.receive(envelope));
  }
  /** Pre-stream a fragment of the code as the model writes it (`json`: of `{"code": ...}`). */
  codeDelta(delta, format = "json") {
    const language = this.thread.language;
    return this.thread.gateway.send({
      type: "code_delta",
      thread_id: this.thread.id,
      call_id: this.id,
      delta,
      format,
      ...language ? { language } : {}
    });
  }
  /** Run `code`, or, without it, the code the deltas built. */
  execute(code, options = {}) {
    const language = this.thread.language;
    const sent = this.thread.gateway.send({
      type: "execute",
      thread_id: this.thread.id,
      call_id: this.id,
      ...code !== void 0 ? { code } : {},
      ...options.timeout !== void 0 ? { timeout: options.timeout } : {},
      ...language ? { language } : {},
      ...options.env ? { env: options.env } : {}
    });
    sent.catch((error) => this.end(error));
    return sent;
  }
  then(onfulfilled, onrejected) {
    return this.done.then(onfulfilled, onrejected);
  }
  async *[Symbol.asyncIterator]() {
    for (; ; ) {
      const envelope = await this.queue.next();
      yield envelope;
      if (isFinal(envelope)) return;
    }
  }
  receive(envelope) {
    if (this.finished) return;
    this.result.envelopes.push(envelope);
    const h = this.handlers;
    const chunk = envelope.chunk;
    h.onEnvelope?.(envelope);
    switch (chunk.type) {
      case "hot_code":
        h.onHotCode?.(chunk.content);
        break;
      case "hot_code_output":
        h.onOutput?.(chunk.content, chunk.stream);
        break;
      case "rewind":
        h.onRewind?.(chunk.content.chars);
        break;
      case "display":
        h.onDisplay?.(chunk.content);
        break;
      case "code_interpreter_stream":
        h.onFile?.(chunk.content);
        break;
      case "status":
        h.onStatus?.(chunk.content);
        break;
      default:
        break;
    }
    this.queue.push(envelope);
    if (!isFinal(envelope)) return;
    this.end(chunk.type === "error" ? errorOf(envelope) : null);
  }
  end(error) {
    if (this.finished) return;
    this.finished = true;
    this.unroute();
    if (error) this.reject(error);
    else this.settle(this.result);
  }
};
function errorOf(envelope) {
  const { code, message } = envelope.chunk.content;
  if (code === "disconnected") return new DisconnectedError(message);
  return new RequestError(code, message, envelope.thread_id, envelope.call_id);
}
var Thread = class {
  gateway;
  id;
  /** Sent with every execute and code delta (none: the gateway's python). */
  language;
  /** @internal */
  constructor(gateway, id, language) {
    this.gateway = gateway;
    this.id = id;
    this.language = language;
  }
  /** A call not sent yet: stream its code with `codeDelta`, then `execute()`. */
  call(handlers = {}) {
    return new Call(this, handlers.callId ?? newCallId(), handlers);
  }
  /** Run `code`; iterate the returned call for its envelopes, or await it for its Result. */
  execute(code, options = {}) {
    const call = this.call(options);
    void call.execute(code, options).catch(() => {
    });
    return call;
  }
  interrupt() {
    return this.gateway.send({ type: "interrupt", thread_id: this.id });
  }
  restart() {
    return this.gateway.send({ type: "restart", thread_id: this.id });
  }
  close() {
    return this.gateway.send({ type: "close", thread_id: this.id });
  }
  /** Receive every envelope of this thread (also other clients' calls); `sinceSeq`: first what
   * came after it. Resolves with the acknowledgement; the returned function stops watching. */
  async subscribe(onEnvelope, options = {}) {
    const stop = this.gateway.watch(this.id, onEnvelope);
    if (options.sinceSeq !== void 0) this.gateway.noteSeen(this.id, options.sinceSeq);
    const ack = this.gateway.ackQueue(this.id).next();
    await this.gateway.send({
      type: "subscribe",
      thread_id: this.id,
      ...options.sinceSeq !== void 0 ? { since_seq: options.sinceSeq } : {}
    });
    return { lastSeq: (await ack).last_seq, stop };
  }
  /** A finished call's final status again (after a reload, say). */
  resultOf(callId) {
    const call = new Call(this, callId, {});
    void this.gateway.send({ type: "result", thread_id: this.id, call_id: callId });
    return call;
  }
  /** Upload over the websocket, in parts; resolves with the final confirmation. */
  async upload(filename, data, options = {}) {
    const bytes = await bytesOf(data);
    const callId = options.callId ?? newCallId();
    const partSize = options.partSize ?? 8 * 2 ** 20;
    let offset = 0;
    for (; ; ) {
      const part = bytes.subarray(offset, offset + partSize);
      const final = offset + part.length >= bytes.length;
      const answer = new Promise((resolve) => {
        const unroute = this.gateway.route(this.id, callId, (envelope2) => {
          unroute();
          resolve(envelope2);
        });
      });
      await this.gateway.send({
        type: "upload",
        thread_id: this.id,
        call_id: callId,
        filename,
        base64: toBase64(part),
        offset,
        final
      });
      const envelope = await answer;
      if (envelope.chunk.type === "error") throw errorOf(envelope);
      offset += part.length;
      options.onProgress?.(offset, bytes.length);
      if (final && envelope.chunk.type === "file_uploaded") return envelope.chunk.content;
    }
  }
  /** Upload with an HTTP PUT (large files: no base64), with progress. */
  async uploadHttp(filename, data, options = {}) {
    const path = filename.split("/").map(encodeURIComponent).join("/");
    let url = `${this.gateway.httpBase}/threads/${encodeURIComponent(this.id)}/files/${path}`;
    if (options.callId) url += `?call_id=${encodeURIComponent(options.callId)}`;
    return await put(url, this.gateway.token, data, options.onProgress);
  }
};
async function download(gateway, fileId, onProgress) {
  return get(`${gateway.httpBase}/files/${encodeURIComponent(fileId)}`, gateway.token, onProgress);
}
function fileUrl(gateway, fileId) {
  return `${gateway.httpBase}/files/${encodeURIComponent(fileId)}?token=${encodeURIComponent(gateway.token)}`;
}
export {
  CHUNK_TYPES,
  Call,
  ConnectError,
  DisconnectedError,
  FINAL_STATES,
  Gateway,
  GatewayError,
  HttpError,
  LANGUAGES,
  OUTPUT_STREAMS,
  PROTOCOL_VERSION,
  REQUEST_KEYS,
  RequestError,
  Result,
  STATES,
  Thread,
  download,
  fileUrl,
  fromBase64,
  isFinal,
  toBase64
};
