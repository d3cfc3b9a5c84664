import type { DisplayContent, Envelope, ErrorContent, FileContent, StatusContent } from "./protocol.js";

/** Everything one call produced, folded (like the Python client's `Result`). */
export class Result {
  readonly callId: string;
  readonly envelopes: Envelope[] = [];

  constructor(callId: string) {
    this.callId = callId;
  }

  /** The text as a screen shows it: a `rewind` drops the rewritten line it names. */
  get output(): string {
    let text = "";
    for (const { chunk } of this.envelopes) {
      if (chunk.type === "hot_code_output") text += chunk.content;
      else if (chunk.type === "rewind") text = text.slice(0, Math.max(text.length - chunk.content.chars, 0));
    }
    return text;
  }

  get hotCode(): string {
    return this.envelopes.map(({ chunk }) => (chunk.type === "hot_code" ? chunk.content : "")).join("");
  }

  get files(): FileContent[] {
    return this.envelopes.flatMap(({ chunk }) => (chunk.type === "code_interpreter_stream" ? [chunk.content] : []));
  }

  get displays(): DisplayContent[] {
    return this.envelopes.flatMap(({ chunk }) => (chunk.type === "display" ? [chunk.content] : []));
  }

  get status(): StatusContent | null {
    const all = this.envelopes.flatMap(({ chunk }) => (chunk.type === "status" ? [chunk.content] : []));
    return all.at(-1) ?? null;
  }

  get error(): ErrorContent | null {
    const all = this.envelopes.flatMap(({ chunk }) => (chunk.type === "error" ? [chunk.content] : []));
    return all.at(-1) ?? null;
  }

  /** The final state, or `protocol_error` when the gateway refused the request. */
  get state(): string | null {
    return this.error ? "protocol_error" : (this.status?.state ?? null);
  }
}
