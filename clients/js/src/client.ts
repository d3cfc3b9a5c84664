// One websocket connection to the gateway; envelopes are routed to the call that awaits them.
// Resuming after a dropped connection follows the Python client (gateway/client.py): the last
// seq of every thread used is kept, a drop (close code 1006) reconnects with backoff and
// subscribes each thread from there, and anything already seen is dropped.
import { ConnectError, DisconnectedError, GatewayError, RequestError } from "./errors.js";
import * as http from "./http.js";
import type {
  Chunk, DisplayContent, Envelope, ErrorChunk, FileContent, FileUploadedChunk, Language,
  OutputStream, Request, StatusContent, SubscribedChunk,
} from "./protocol.js";
import { isFinal } from "./protocol.js";
import { Queue } from "./queue.js";
import { Result } from "./result.js";

type Socket = WebSocket;
type SocketClass = new (url: string) => Socket;

export interface ConnectOptions {
  /** Reconnect and resume after a dropped connection (default true). */
  reconnect?: boolean;
  /** How long to keep trying to reconnect, in ms (default 120 000, like the Python client). */
  reconnectFor?: number;
  /** A WebSocket class where the platform has none built in. */
  WebSocket?: SocketClass;
  /** Base URL of the gateway's HTTP side; default: the websocket URL's, without `/ws`. */
  httpBase?: string;
  /** The connection dropped and is being resumed, is back, or is gone for good (with why). */
  onState?: (state: "reconnecting" | "open" | "closed", detail?: string) => void;
}

export interface CallHandlers {
  onHotCode?: (text: string) => void;
  onOutput?: (text: string, stream: OutputStream | undefined) => void;
  onRewind?: (chars: number) => void;
  onDisplay?: (display: DisplayContent) => void;
  onFile?: (file: FileContent) => void;
  onStatus?: (status: StatusContent) => void;
  onEnvelope?: (envelope: Envelope) => void;
}

export interface ExecuteOptions extends CallHandlers {
  callId?: string;
  /** Seconds; the gateway's default when left out. */
  timeout?: number;
  /** Environment variables this cell alone sees. */
  env?: Record<string, string>;
}

const OPEN = 1;
const DROPPED = 1006;

function newCallId(): string {
  const bytes = new Uint8Array(8);
  globalThis.crypto.getRandomValues(bytes);
  return "call_" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function key(threadId: string | null, callId: string | null): string {
  return `${threadId ?? ""}\u0000${callId ?? ""}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => { resolve = r; });
  return { promise, resolve };
}

/** Open one socket; a refusal becomes a ConnectError with the HTTP status when it can be had. */
async function openSocket(Ws: SocketClass, url: string, probe: string): Promise<Socket> {
  const socket = new Ws(url);
  const opened = await new Promise<boolean>((resolve) => {
    socket.onopen = () => resolve(true);
    // Node's websocket reports a refused handshake with an error event and no close event.
    socket.onerror = () => resolve(false);
    socket.onclose = () => resolve(false);
  });
  if (opened) return socket;
  // A browser's websocket never tells why a handshake failed; the same URL over plain HTTP
  // gets the same refusal (401, 403) from the gateway, which it does say.
  let status: number | null = null;
  try {
    status = (await fetch(probe)).status;
  } catch { /* unreachable, or a cross-origin page: no status to give */ }
  throw new ConnectError(status, status === 401 ? "the gateway refused the token"
    : status === 403 ? "the gateway refused this origin or host"
    : `could not connect to ${url.replace(/token=[^&]*/, "token=***")}`);
}

export class Gateway {
  readonly url: string;
  readonly httpBase: string;
  readonly token: string;
  /** Times the connection was dropped and resumed. */
  reconnects = 0;
  private socket: Socket;
  private readonly Ws: SocketClass;
  private readonly reconnect: boolean;
  private readonly reconnectFor: number;
  private readonly onState: ConnectOptions["onState"];
  private readonly routes = new Map<string, (envelope: Envelope) => void>();
  private readonly watchers = new Map<string, Set<(envelope: Envelope) => void>>();
  private readonly acks = new Map<string, Queue<SubscribedChunk["content"]>>();
  private readonly seen = new Map<string, number>();
  private readonly resumeAcks = new Map<string, number>();
  private connected = deferred<void>();
  private closing = false;
  private failed: GatewayError | null = null;

  private constructor(socket: Socket, url: string, token: string, options: ConnectOptions,
                      Ws: SocketClass, httpBase: string) {
    this.socket = socket;
    this.url = url;
    this.token = token;
    this.Ws = Ws;
    this.httpBase = httpBase;
    this.reconnect = options.reconnect ?? true;
    this.reconnectFor = options.reconnectFor ?? 120_000;
    this.onState = options.onState;
    this.connected.resolve();
    this.attach(socket);
  }

  /** Connect to `url` (`ws://host:8765/ws`, `wss://...`) with a client or minted token. */
  static async connect(url: string, token: string, options: ConnectOptions = {}): Promise<Gateway> {
    const Ws = options.WebSocket ?? (globalThis.WebSocket as SocketClass | undefined);
    if (!Ws) throw new GatewayError("no_websocket", "no WebSocket here: pass options.WebSocket (Node 20: --experimental-websocket)");
    const parsed = new URL(url);
    const httpBase = options.httpBase ?? `${parsed.protocol === "wss:" ? "https:" : "http:"}//${parsed.host}${parsed.pathname.replace(/\/ws\/?$/, "")}`;
    const socket = await openSocket(Ws, Gateway.socketUrl(url, token), `${httpBase}/ws?token=${encodeURIComponent(token)}`);
    return new Gateway(socket, url, token, options, Ws, httpBase);
  }

  private static socketUrl(url: string, token: string): string {
    // Browsers cannot set an Authorization header on a websocket: the token goes in the query.
    const parsed = new URL(url);
    parsed.searchParams.set("token", token);
    return parsed.toString();
  }

  thread(threadId: string, options: { language?: Language } = {}): Thread {
    return new Thread(this, threadId, options.language);
  }

  /** Every envelope of a thread (subscribed or not) also goes to `watcher`; returns an undo. */
  watch(threadId: string, watcher: (envelope: Envelope) => void): () => void {
    let set = this.watchers.get(threadId);
    if (!set) this.watchers.set(threadId, (set = new Set()));
    set.add(watcher);
    return () => set.delete(watcher);
  }

  close(): void {
    this.closing = true;
    this.socket.close(1000);
    this.fail(new DisconnectedError("closed by the client"));
  }

  /** Cut the connection as a network would (no close handshake on our side): for tests. */
  get rawSocket(): Socket {
    return this.socket;
  }

  /** @internal */
  route(threadId: string, callId: string, handler: (envelope: Envelope) => void): () => void {
    this.routes.set(key(threadId, callId), handler);
    return () => {
      if (this.routes.get(key(threadId, callId)) === handler) this.routes.delete(key(threadId, callId));
    };
  }

  /** @internal */
  ackQueue(threadId: string): Queue<SubscribedChunk["content"]> {
    let queue = this.acks.get(threadId);
    if (!queue) this.acks.set(threadId, (queue = new Queue()));
    return queue;
  }

  /** @internal: the last seq seen of a thread, so a resume starts after it. */
  noteSeen(threadId: string, seq: number): void {
    this.seen.set(threadId, Math.max(this.seen.get(threadId) ?? 0, seq));
  }

  async send(message: Request): Promise<void> {
    if (!this.seen.has(message.thread_id)) this.seen.set(message.thread_id, 0);
    const text = JSON.stringify(message);
    for (;;) {
      await this.connected.promise;
      if (this.failed) throw this.failed;
      if (this.socket.readyState === OPEN) {
        this.socket.send(text);
        return;
      }
      // Closing or closed but not yet reported: the close handler decides (resume or fail).
      await sleep(20);
    }
  }

  private attach(socket: Socket): void {
    socket.onmessage = (event: MessageEvent) => this.deliver(JSON.parse(String(event.data)) as Envelope);
    socket.onclose = (event: CloseEvent) => {
      if (socket !== this.socket) return;
      // Only a dropped connection (no close frame) is resumed; a close the gateway chose
      // (shutdown, revoked token, slow reader) is final.
      if (this.closing || !this.reconnect || event.code !== DROPPED) {
        this.fail(new DisconnectedError(`the gateway closed the connection (${event.code}${event.reason ? ": " + event.reason : ""})`));
        return;
      }
      this.connected = deferred<void>();
      this.onState?.("reconnecting");
      this.resume().catch((error: unknown) => {
        this.fail(error instanceof GatewayError ? error
          : new DisconnectedError(`could not reconnect: ${String(error)}`));
      });
    };
  }

  private deliver(envelope: Envelope): void {
    const threadId = envelope.thread_id;
    const seq = envelope.seq;
    if (typeof threadId === "string" && typeof seq === "number" && !envelope.replayed) {
      if (seq <= (this.seen.get(threadId) ?? 0)) return; // already had it before the drop
      this.seen.set(threadId, seq);
    }
    const chunk: Chunk = envelope.chunk;
    if (chunk.type === "subscribed" && threadId !== null) {
      const owed = this.resumeAcks.get(threadId) ?? 0;
      if (owed > 0) {
        this.resumeAcks.set(threadId, owed - 1); // our own resume, not the caller's subscribe
        return;
      }
      this.ackQueue(threadId).push(chunk.content);
    }
    if (threadId !== null) for (const watcher of this.watchers.get(threadId) ?? []) watcher(envelope);
    this.routes.get(key(threadId, envelope.call_id))?.(envelope);
  }

  private async resume(): Promise<void> {
    this.resumeAcks.clear(); // acks owed by a connection that died will never come
    const deadline = Date.now() + this.reconnectFor;
    let delay = 50;
    for (;;) {
      try {
        this.socket = await openSocket(this.Ws, Gateway.socketUrl(this.url, this.token),
                                       `${this.httpBase}/ws?token=${encodeURIComponent(this.token)}`);
        break;
      } catch (error) {
        if (error instanceof ConnectError && error.status !== null && error.status < 500) throw error;
        if (Date.now() + delay > deadline) throw new DisconnectedError(`could not reconnect within ${this.reconnectFor} ms`);
        await sleep(delay);
        delay = Math.min(delay * 2, 5000);
      }
    }
    if (this.closing) {
      this.socket.close(1000);
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

  private fail(error: GatewayError): void {
    if (this.failed) return;
    this.failed = error;
    this.onState?.("closed", error.message);
    for (const [routeKey, handler] of [...this.routes]) {
      const [threadId, callId] = routeKey.split("\u0000");
      handler({ stream_type: "code_execution", thread_id: threadId ?? null, call_id: callId || null,
                chunk: { type: "error", content: { code: "disconnected", message: error.message } } });
    }
    this.connected.resolve();
  }
}

/** One call: an async iterator of its envelopes and a promise of its folded Result. */
export class Call implements AsyncIterable<Envelope>, PromiseLike<Result> {
  readonly id: string;
  readonly thread: Thread;
  /** Everything received so far (complete once `done` settles). */
  readonly result: Result;
  readonly done: Promise<Result>;
  private readonly queue = new Queue<Envelope>();
  private readonly handlers: CallHandlers;
  private settle!: (result: Result) => void;
  private reject!: (error: unknown) => void;
  private finished = false;
  private readonly unroute: () => void;

  /** @internal */
  constructor(thread: Thread, id: string, handlers: CallHandlers) {
    this.thread = thread;
    this.id = id;
    this.handlers = handlers;
    this.result = new Result(id);
    this.done = new Promise<Result>((resolve, reject) => {
      this.settle = resolve;
      this.reject = reject;
    });
    this.done.catch(() => {}); // handled by whoever awaits; not an unhandled rejection
    this.unroute = thread.gateway.route(thread.id, id, (envelope) => this.receive(envelope));
  }

  /** Pre-stream a fragment of the code as the model writes it (`json`: of `{"code": ...}`). */
  codeDelta(delta: string, format: "json" | "raw" = "json"): Promise<void> {
    const language = this.thread.language;
    return this.thread.gateway.send({ type: "code_delta", thread_id: this.thread.id, call_id: this.id,
                                      delta, format, ...(language ? { language } : {}) });
  }

  /** Run `code`, or, without it, the code the deltas built. */
  execute(code?: string, options: { timeout?: number; env?: Record<string, string> } = {}): Promise<void> {
    const language = this.thread.language;
    const sent = this.thread.gateway.send({
      type: "execute", thread_id: this.thread.id, call_id: this.id,
      ...(code !== undefined ? { code } : {}), ...(options.timeout !== undefined ? { timeout: options.timeout } : {}),
      ...(language ? { language } : {}), ...(options.env ? { env: options.env } : {}),
    });
    sent.catch((error: unknown) => this.end(error));
    return sent;
  }

  then<A = Result, B = never>(onfulfilled?: ((value: Result) => A | PromiseLike<A>) | null,
                              onrejected?: ((reason: unknown) => B | PromiseLike<B>) | null): Promise<A | B> {
    return this.done.then(onfulfilled, onrejected);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Envelope> {
    for (;;) {
      const envelope = await this.queue.next();
      yield envelope;
      if (isFinal(envelope)) return;
    }
  }

  private receive(envelope: Envelope): void {
    if (this.finished) return;
    this.result.envelopes.push(envelope);
    const h = this.handlers;
    const chunk = envelope.chunk;
    h.onEnvelope?.(envelope);
    switch (chunk.type) {
      case "hot_code": h.onHotCode?.(chunk.content); break;
      case "hot_code_output": h.onOutput?.(chunk.content, chunk.stream); break;
      case "rewind": h.onRewind?.(chunk.content.chars); break;
      case "display": h.onDisplay?.(chunk.content); break;
      case "code_interpreter_stream": h.onFile?.(chunk.content); break;
      case "status": h.onStatus?.(chunk.content); break;
      default: break;
    }
    this.queue.push(envelope);
    if (!isFinal(envelope)) return;
    this.end(chunk.type === "error" ? errorOf(envelope as Envelope<ErrorChunk>) : null);
  }

  private end(error: unknown): void {
    if (this.finished) return;
    this.finished = true;
    this.unroute();
    if (error) this.reject(error);
    else this.settle(this.result);
  }
}

function errorOf(envelope: Envelope<ErrorChunk>): GatewayError {
  const { code, message } = envelope.chunk.content;
  if (code === "disconnected") return new DisconnectedError(message);
  return new RequestError(code, message, envelope.thread_id, envelope.call_id);
}

export interface UploadOptions {
  callId?: string;
  /** Bytes per websocket message (default 8 MiB; the gateway takes up to max_upload_bytes). */
  partSize?: number;
  onProgress?: http.Progress;
}

export class Thread {
  readonly gateway: Gateway;
  readonly id: string;
  /** Sent with every execute and code delta (none: the gateway's python). */
  readonly language: Language | undefined;

  /** @internal */
  constructor(gateway: Gateway, id: string, language?: Language) {
    this.gateway = gateway;
    this.id = id;
    this.language = language;
  }

  /** A call not sent yet: stream its code with `codeDelta`, then `execute()`. */
  call(handlers: CallHandlers & { callId?: string } = {}): Call {
    return new Call(this, handlers.callId ?? newCallId(), handlers);
  }

  /** Run `code`; iterate the returned call for its envelopes, or await it for its Result. */
  execute(code: string, options: ExecuteOptions = {}): Call {
    const call = this.call(options);
    void call.execute(code, options).catch(() => {});
    return call;
  }

  interrupt(): Promise<void> {
    return this.gateway.send({ type: "interrupt", thread_id: this.id });
  }

  restart(): Promise<void> {
    return this.gateway.send({ type: "restart", thread_id: this.id });
  }

  close(): Promise<void> {
    return this.gateway.send({ type: "close", thread_id: this.id });
  }

  /** Receive every envelope of this thread (also other clients' calls); `sinceSeq`: first what
   * came after it. Resolves with the acknowledgement; the returned function stops watching. */
  async subscribe(onEnvelope: (envelope: Envelope) => void,
                  options: { sinceSeq?: number } = {}): Promise<{ lastSeq: number; stop: () => void }> {
    const stop = this.gateway.watch(this.id, onEnvelope);
    if (options.sinceSeq !== undefined) this.gateway.noteSeen(this.id, options.sinceSeq);
    const ack = this.gateway.ackQueue(this.id).next();
    await this.gateway.send({ type: "subscribe", thread_id: this.id,
                              ...(options.sinceSeq !== undefined ? { since_seq: options.sinceSeq } : {}) });
    return { lastSeq: (await ack).last_seq, stop };
  }

  /** A finished call's final status again (after a reload, say). */
  resultOf(callId: string): Call {
    const call = new Call(this, callId, {});
    void this.gateway.send({ type: "result", thread_id: this.id, call_id: callId });
    return call;
  }

  /** Upload over the websocket, in parts; resolves with the final confirmation. */
  async upload(filename: string, data: http.Body, options: UploadOptions = {}): Promise<FileUploadedChunk["content"]> {
    const bytes = await http.bytesOf(data);
    const callId = options.callId ?? newCallId();
    const partSize = options.partSize ?? 8 * 2 ** 20;
    let offset = 0;
    for (;;) {
      const part = bytes.subarray(offset, offset + partSize);
      const final = offset + part.length >= bytes.length;
      const answer = new Promise<Envelope>((resolve) => {
        const unroute = this.gateway.route(this.id, callId, (envelope) => {
          unroute();
          resolve(envelope);
        });
      });
      await this.gateway.send({ type: "upload", thread_id: this.id, call_id: callId, filename,
                                base64: http.toBase64(part), offset, final });
      const envelope = await answer;
      if (envelope.chunk.type === "error") throw errorOf(envelope as Envelope<ErrorChunk>);
      offset += part.length;
      options.onProgress?.(offset, bytes.length);
      if (final && envelope.chunk.type === "file_uploaded") return envelope.chunk.content;
    }
  }

  /** Upload with an HTTP PUT (large files: no base64), with progress. */
  async uploadHttp(filename: string, data: http.Body,
                   options: { callId?: string; onProgress?: http.Progress } = {}): Promise<FileUploadedChunk["content"]> {
    const path = filename.split("/").map(encodeURIComponent).join("/");
    let url = `${this.gateway.httpBase}/threads/${encodeURIComponent(this.id)}/files/${path}`;
    if (options.callId) url += `?call_id=${encodeURIComponent(options.callId)}`;
    return (await http.put(url, this.gateway.token, data, options.onProgress)) as FileUploadedChunk["content"];
  }
}

/** Helpers on the gateway's HTTP side that need no thread. */
export async function download(gateway: Gateway, fileId: string, onProgress?: http.Progress): Promise<Uint8Array> {
  return http.get(`${gateway.httpBase}/files/${encodeURIComponent(fileId)}`, gateway.token, onProgress);
}

/** A URL for `<img src>` or a link: the token rides in the query (use a short-lived one). */
export function fileUrl(gateway: Gateway, fileId: string): string {
  return `${gateway.httpBase}/files/${encodeURIComponent(fileId)}?token=${encodeURIComponent(gateway.token)}`;
}
