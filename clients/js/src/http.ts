// Uploads and downloads over HTTP on the websocket's port, with progress. Browsers report an
// upload's progress only through XMLHttpRequest (a streamed fetch body needs HTTP/2); Node has
// no XMLHttpRequest but streams a fetch body, whose reads are the progress.
import { HttpError } from "./errors.js";

export type Progress = (done: number, total: number | null) => void;
export type Body = Uint8Array | ArrayBuffer | Blob | string;

const PIECE = 256 * 1024;

export function toBytes(data: Uint8Array | ArrayBuffer | string): Uint8Array {
  if (typeof data === "string") return new TextEncoder().encode(data);
  return data instanceof Uint8Array ? data : new Uint8Array(data);
}

export async function bytesOf(data: Body): Promise<Uint8Array> {
  if (typeof Blob !== "undefined" && data instanceof Blob) return new Uint8Array(await data.arrayBuffer());
  return toBytes(data as Uint8Array | ArrayBuffer | string);
}

async function refusal(status: number, text: string): Promise<HttpError> {
  let code = "http_error";
  let message = text.slice(0, 200);
  try {
    const body = JSON.parse(text) as { error?: string | { code?: string; message?: string } };
    if (typeof body.error === "string") message = body.error;
    else if (body.error) {
      code = body.error.code ?? code;
      message = body.error.message ?? message;
    }
  } catch { /* not JSON: the text itself */ }
  if (status === 401) code = "unauthorized";
  if (status === 404 && code === "http_error") code = "not_found";
  return new HttpError(status, code, message);
}

export async function put(url: string, token: string, data: Body,
                          onProgress?: Progress): Promise<unknown> {
  if (typeof XMLHttpRequest !== "undefined") return putXhr(url, token, data, onProgress);
  const bytes = await bytesOf(data);
  let sent = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent >= bytes.length) {
        controller.close();
        return;
      }
      const piece = bytes.subarray(sent, sent + PIECE);
      sent += piece.length;
      controller.enqueue(piece);
      onProgress?.(sent, bytes.length);
    },
  });
  const response = await fetch(url, {
    method: "PUT", body, duplex: "half",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/octet-stream" },
  } as RequestInit & { duplex: "half" });
  const text = await response.text();
  if (!response.ok) throw await refusal(response.status, text);
  if (bytes.length === 0) onProgress?.(0, 0);
  return JSON.parse(text);
}

function putXhr(url: string, token: string, data: Body, onProgress?: Progress): Promise<unknown> {
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
    const body = typeof data === "string" || data instanceof Blob ? data
      : new Blob([data instanceof Uint8Array ? data.slice() : data]);
    xhr.send(body);
  });
}

export async function get(url: string, token: string, onProgress?: Progress): Promise<Uint8Array> {
  const response = await fetch(url, { headers: { Authorization: `Bearer ${token}` } });
  if (!response.ok) throw await refusal(response.status, await response.text());
  const length = Number(response.headers.get("Content-Length") ?? NaN);
  const total = Number.isFinite(length) ? length : null;
  if (!response.body) return new Uint8Array(await response.arrayBuffer());
  const reader = response.body.getReader();
  const pieces: Uint8Array[] = [];
  let received = 0;
  for (;;) {
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

export function toBase64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

export function fromBase64(text: string): Uint8Array {
  const binary = atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}
