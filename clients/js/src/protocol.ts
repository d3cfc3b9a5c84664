// The wire shapes of protocol v1, as gateway/wire/schema/{request,envelope}.v1.json define
// them. test/schema.test.mjs compares the key lists below with those schemas, and the compiler
// checks the lists against the types, so the types cannot drift from the schema unnoticed.

export const PROTOCOL_VERSION = 1;

export type Language = "python" | "bash" | "javascript" | "typescript" | "r";

export interface CodeDeltaRequest {
  type: "code_delta"; thread_id: string; call_id: string; delta: string;
  format?: "json" | "raw"; language?: Language;
}
export interface ExecuteRequest {
  type: "execute"; thread_id: string; call_id: string; code?: string; timeout?: number;
  language?: Language; env?: Record<string, string>;
}
export interface InterruptRequest { type: "interrupt"; thread_id: string }
export interface RestartRequest { type: "restart"; thread_id: string }
export interface CloseRequest { type: "close"; thread_id: string }
export interface SubscribeRequest { type: "subscribe"; thread_id: string; since_seq?: number }
export interface ResultRequest { type: "result"; thread_id: string; call_id: string }
export interface UploadRequest {
  type: "upload"; thread_id: string; filename: string; base64: string; call_id?: string;
  offset?: number; final?: boolean;
}
export type Request = CodeDeltaRequest | ExecuteRequest | InterruptRequest | RestartRequest
  | CloseRequest | SubscribeRequest | ResultRequest | UploadRequest;

export type OutputStream = "stdout" | "stderr" | "result" | "display" | "traceback" | "note";
export interface FileRef { filename: string; file_id: string }
export interface FileContent { filename: string; file_id: string; base64: string; mime_type: string }
export interface DisplayContent {
  source: "execute_result" | "display_data" | "update_display_data";
  display_id: string | null;
  data: Record<string, unknown>;
  metadata?: Record<string, unknown>;
  files?: Record<string, FileRef>;
  omitted?: Record<string, number>;
}
export type State = "complete" | "error" | "timeout" | "interrupted" | "killed" | "restarted"
  | "closed" | "released";
export interface StatusContent {
  state: State;
  execution_count?: number | null;
  duration_ms?: number;
  /** The names of the files this call stored or changed. */
  files?: string[];
  tool_output?: string;
  reason?: string;
  kernel_restarted?: boolean;
  error_code?: string;
  error?: { ename: string; evalue: string; traceback: string[] };
  restored?: { names: number; skipped: Array<{ name: string; reason: string }>;
               [key: string]: unknown };
  [key: string]: unknown;
}
export interface ErrorContent { code: string; message: string }

export interface HotCodeChunk { type: "hot_code"; content: string }
export interface OutputChunk { type: "hot_code_output"; content: string; stream?: OutputStream }
export interface RewindChunk { type: "rewind"; content: { chars: number } }
export interface DisplayChunk { type: "display"; content: DisplayContent }
export interface FileChunk { type: "code_interpreter_stream"; content: FileContent }
export interface FlatFileChunk extends FileContent { type: "code_interpreter_file"; url?: string }
export interface StatusChunk { type: "status"; content: StatusContent }
export interface ErrorChunk { type: "error"; content: ErrorContent; message?: string; tool?: string }
export interface SubscribedChunk { type: "subscribed"; content: { thread_id: string; last_seq: number } }
export interface FileUploadedChunk {
  type: "file_uploaded";
  content: { filename: string; size?: number; path?: string; received?: number; final?: boolean;
             file_id?: string; sha256?: string };
}
export interface GapChunk { type: "gap"; content: { first_seq: number; last_seq: number } }
export type Chunk = HotCodeChunk | OutputChunk | RewindChunk | DisplayChunk | FileChunk
  | FlatFileChunk | StatusChunk | ErrorChunk | SubscribedChunk | FileUploadedChunk | GapChunk;

export interface Envelope<C extends Chunk = Chunk> {
  stream_type: "code_execution";
  chunk: C;
  thread_id: string | null;
  call_id: string | null;
  seq?: number;
  replayed?: true;
}

type RequestOf<K extends Request["type"]> = Extract<Request, { type: K }>;
type KeyLists = { readonly [K in Request["type"]]: readonly (keyof RequestOf<K>)[] };

/** Every field of every request: the schema test compares these with request.v1.json. */
export const REQUEST_KEYS = {
  code_delta: ["type", "thread_id", "call_id", "delta", "format", "language"],
  execute: ["type", "thread_id", "call_id", "code", "timeout", "language", "env"],
  interrupt: ["type", "thread_id"],
  restart: ["type", "thread_id"],
  close: ["type", "thread_id"],
  subscribe: ["type", "thread_id", "since_seq"],
  result: ["type", "thread_id", "call_id"],
  upload: ["type", "thread_id", "filename", "base64", "call_id", "offset", "final"],
} as const satisfies KeyLists;

/** Every chunk type, and every final state of a status: compared with envelope.v1.json. */
export const CHUNK_TYPES = [
  "hot_code", "hot_code_output", "rewind", "display", "code_interpreter_stream",
  "code_interpreter_file", "status", "error", "subscribed", "file_uploaded", "gap",
] as const satisfies readonly Chunk["type"][];
export const STATES = [
  "complete", "error", "timeout", "interrupted", "killed", "restarted", "closed", "released",
] as const satisfies readonly State[];
export const OUTPUT_STREAMS = [
  "stdout", "stderr", "result", "display", "traceback", "note",
] as const satisfies readonly OutputStream[];
export const LANGUAGES = [
  "python", "bash", "javascript", "typescript", "r",
] as const satisfies readonly Language[];

// The lists above must be complete, not just correct: a key or member left out fails here.
type Never<T extends never> = T;
type MissingKeys = {
  [K in Request["type"]]: Exclude<keyof RequestOf<K>, (typeof REQUEST_KEYS)[K][number]>
}[Request["type"]];
export type _Complete = [
  Never<MissingKeys>,
  Never<Exclude<Chunk["type"], (typeof CHUNK_TYPES)[number]>>,
  Never<Exclude<State, (typeof STATES)[number]>>,
  Never<Exclude<OutputStream, (typeof OUTPUT_STREAMS)[number]>>,
  Never<Exclude<Language, (typeof LANGUAGES)[number]>>,
];

/** The states that end a call. */
export const FINAL_STATES: ReadonlySet<string> = new Set(
  ["complete", "error", "timeout", "interrupted", "killed"]);

/** Does this envelope end its call (the final status, or an error about it)? */
export function isFinal(envelope: Envelope): boolean {
  const chunk = envelope.chunk;
  if (chunk.type === "error") return true;
  return chunk.type === "status" && FINAL_STATES.has(chunk.content.state);
}
