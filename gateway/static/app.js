// Live page of the code-interpreter gateway: plain ES module, no build step, no dependencies.
//
// One websocket (ws://HOST/ws?token=T) carries envelopes of every thread this page runs code on
// or watches: {"stream_type": "code_execution", "chunk": {"type", "content"}, "thread_id",
// "call_id"}. Each call gets a card: its code typed out as the hot_code chunks arrive, its output,
// its plots and files, its rich results (rich.js: tables, Markdown, LaTeX, JSON, SVG), and a
// status badge.

import { Gateway } from "./gateway-client.js";
import { renderDisplay } from "./rich.js";

const FENCE_OPENER = /^```[a-z][a-z0-9_+-]*\n$/; // names the thread's language
const FENCE_CLOSE = "\n```";
const FINAL_STATES = new Set(["complete", "error", "timeout", "interrupted", "killed"]);
const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$/;
const HIGHLIGHT_LIMIT = 30000; // longer code is shown plain: re-highlighting it per frame is costly
const RECENT_KEY = "gateway.recentThreads";
const TOKEN_KEY = "gateway.token";

const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("data-") || key === "role" || key.startsWith("aria-")) {
      node.setAttribute(key, value);
    } else node[key] = value;
  }
  node.append(...children);
  return node;
};

const ui = {
  token: $("token"), connForm: $("conn-form"), conn: $("conn-state"), connText: $("conn-text"),
  thread: $("thread"), recent: $("recent-threads"), newThread: $("new-thread"),
  watch: $("watch"), interrupt: $("interrupt"), restart: $("restart"), watching: $("watching"),
  notebook: $("notebook"),
  code: $("code"), language: $("language"), run: $("run"), upload: $("upload"), clear: $("clear"),
  stream: $("stream"), calls: $("calls"), empty: $("empty"),
};

// ---------------------------------------------------------------------------------------------
// Python highlighting (just enough to read code comfortably; textContent stays the exact code)

const KEYWORDS = new Set((
  "False None True and as assert async await break class continue def del elif else except " +
  "finally for from global if import in is lambda nonlocal not or pass raise return try while " +
  "with yield match case").split(" "));
const BUILTINS = new Set((
  "print len range enumerate zip map filter sorted sum min max abs round open int float str " +
  "bool list dict set tuple type isinstance super object repr format any all iter next " +
  "Exception ValueError KeyError TypeError RuntimeError self").split(" "));
const TOKENS = new RegExp([
  String.raw`(?<comment>#[^\n]*)`,
  String.raw`(?<string>[rRbBuUfF]{0,2}(?:"""[\s\S]*?(?:"""|$(?![\s\S]))|'''[\s\S]*?(?:'''|$(?![\s\S]))|"(?:[^"\\\n]|\\[\s\S])*(?:"|(?=\n)|$)|'(?:[^'\\\n]|\\[\s\S])*(?:'|(?=\n)|$)))`,
  String.raw`(?<number>\b(?:0[xXoObB][\da-fA-F_]+|\d[\d_]*\.?[\d_]*(?:[eE][+-]?\d+)?j?)\b)`,
  String.raw`(?<decorator>@[A-Za-z_][\w.]*)`,
  String.raw`(?<word>[A-Za-z_][\w]*)`,
].join("|"), "g");

function escapeHtml(text) {
  return text.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
}

function highlight(code) {
  let html = "";
  let last = 0;
  let previousWord = "";
  for (const match of code.matchAll(TOKENS)) {
    html += escapeHtml(code.slice(last, match.index));
    const text = match[0];
    const g = match.groups;
    let cls = null;
    if (g.comment !== undefined) cls = "c";
    else if (g.string !== undefined) cls = "s";
    else if (g.number !== undefined) cls = "n";
    else if (g.decorator !== undefined) cls = "d";
    else if (KEYWORDS.has(text)) cls = "k";
    else if (previousWord === "def" || previousWord === "class") cls = "f";
    else if (BUILTINS.has(text)) cls = "b";
    html += cls ? `<span class="${cls}">${escapeHtml(text)}</span>` : escapeHtml(text);
    if (g.word !== undefined) previousWord = text;
    last = match.index + text.length;
  }
  return html + escapeHtml(code.slice(last));
}

// ---------------------------------------------------------------------------------------------
// Formatting helpers

function formatDuration(ms) {
  if (typeof ms !== "number" || !Number.isFinite(ms)) return "";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

function formatSize(bytes) {
  if (!Number.isFinite(bytes)) return "";
  const units = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (bytes >= 1024 && i < units.length - 1) { bytes /= 1024; i += 1; }
  return i === 0 ? `${bytes} B` : `${bytes.toFixed(1)} ${units[i]}`;
}

function base64Size(b64) {
  if (!b64) return NaN;
  const padding = b64.endsWith("==") ? 2 : b64.endsWith("=") ? 1 : 0;
  return Math.floor((b64.length * 3) / 4) - padding;
}

function fileKind(name, mime) {
  const ext = (name.includes(".") ? name.split(".").pop() : "").toLowerCase();
  const families = {
    doc: ["doc", "docx", "odt", "rtf", "md", "txt"],
    sheet: ["xls", "xlsx", "csv", "tsv", "ods", "parquet"],
    pdf: ["pdf"],
    image: ["png", "jpg", "jpeg", "gif", "svg", "webp"],
    archive: ["zip", "gz", "tar", "bz2", "xz"],
  };
  let family = "other";
  for (const [fam, exts] of Object.entries(families)) if (exts.includes(ext)) family = fam;
  if (mime.startsWith("image/")) family = "image";
  return { label: (ext || "file").slice(0, 4).toUpperCase(), family };
}

// ---------------------------------------------------------------------------------------------
// State

const state = {
  gateway: null, // the package's connection (gateway-client.js, built from clients/js)
  watchers: new Set(), // threads whose envelopes this connection renders
  token: "",
  everOpened: false,
  retry: 0,
  retryTimer: null,
  watched: new Set(), // threads to (re)subscribe on every connect
  lastSeq: new Map(), // thread -> last seq shown: a reconnect resumes from there
  calls: new Map(), // "thread\u0000call" -> CallView
  displays: new Map(), // "thread\u0000display_id" -> its box, which an update replaces
  typing: new Set(), // CallViews with code still to type out
  frame: null,
  follow: true, // keep the stream scrolled to its newest content
  autoScrollTop: 0,
  uploads: new Set(), // "thread\u0000call" of this page's own uploads: they report themselves
  callNumber: 0,
};

function currentThread() {
  return ui.thread.value.trim();
}

function validThread(id) {
  return ID_PATTERN.test(id) && !id.includes("..");
}

function newThreadId() {
  const stamp = new Date().toISOString().slice(5, 16).replace(/[-T:]/g, "");
  const random = Math.random().toString(36).slice(2, 6);
  return `page-${stamp}-${random}`;
}

function rememberThread(id) {
  let recent = [];
  try { recent = JSON.parse(localStorage.getItem(RECENT_KEY) || "[]"); } catch { /* ignore */ }
  recent = [id, ...recent.filter((t) => t !== id)].slice(0, 12);
  try { localStorage.setItem(RECENT_KEY, JSON.stringify(recent)); } catch { /* ignore */ }
  renderRecent(recent);
}

function renderRecent(recent) {
  if (!recent) {
    try { recent = JSON.parse(localStorage.getItem(RECENT_KEY) || "[]"); } catch { recent = []; }
  }
  ui.recent.replaceChildren(...recent.map((id) => el("option", { value: id })));
}

function renderWatching() {
  const threads = [...state.watched];
  ui.watching.replaceChildren();
  if (!threads.length) return;
  ui.watching.append("Live: ");
  for (const id of threads) ui.watching.append(el("span", { class: "chip", text: id }));
}

// ---------------------------------------------------------------------------------------------
// One call's card

class CallView {
  constructor(threadId, callId) {
    this.threadId = threadId;
    this.callId = callId;
    this.code = ""; // code received so far (fences stripped)
    this.shown = 0; // how much of it is typed out
    this.renderedLength = -1;
    this.hotChunks = 0;
    this.pendingClose = false; // a "\n```" chunk: the closer, unless more code follows
    this.state = "writing";
    this.fileIds = new Set();
    this.skipFallback = false; // a rich display was shown: its text/plain copy comes next

    this.badge = el("span", { class: "badge writing", "data-testid": "call-status", text: "writing" });
    this.meta = el("span", { class: "meta" });
    this.codeEl = el("code", { class: "language-python" });
    this.codePre = el("pre", { class: "code", "data-testid": "call-code" }, this.codeEl);
    this.codeBox = el("div", { class: "code-box typing" }, this.codePre);
    this.outputEl = el("pre", { class: "output", "data-testid": "call-output", hidden: true });
    this.displaysEl = el("div", { class: "displays", "data-testid": "call-displays", hidden: true });
    this.filesEl = el("div", { class: "files", "data-testid": "call-files", hidden: true });
    this.notesEl = el("div", { class: "notes", hidden: true });
    const title = el("div", { class: "title" },
      el("span", { class: "call-id", text: callId || "(no call id)" }),
      el("span", { class: "thread-tag", text: threadId }));
    this.root = el("article", {
      class: "call", "data-testid": "call", "data-call-id": callId || "",
      "data-thread-id": threadId, "data-state": "writing",
    }, el("header", {}, title, el("div", { class: "right" }, this.meta, this.badge)),
    this.codeBox, this.outputEl, this.displaysEl, this.filesEl, this.notesEl);
  }

  setState(name, label = name) {
    this.state = name;
    this.root.dataset.state = name;
    this.badge.className = `badge ${name}`;
    this.badge.textContent = label;
  }

  hotCode(text) {
    this.hotChunks += 1;
    if (this.hotChunks === 1 && FENCE_OPENER.test(text)) { // "```python\n", "```bash\n", ...
      this.codeEl.className = `language-${text.slice(3, -1)}`;
      return;
    }
    if (this.pendingClose) { // the earlier "\n```" was code after all
      this.code += FENCE_CLOSE;
      this.pendingClose = false;
    }
    if (text === FENCE_CLOSE) {
      this.pendingClose = true;
      if (!FINAL_STATES.has(this.state)) this.setState("running");
      return;
    }
    this.code += text;
    if (this.state === "sent") this.setState("writing");
    scheduleTyping(this);
  }

  // Advance the typing effect by one frame; returns true while there is more to type.
  type(instant = false) {
    const backlog = this.code.length - this.shown;
    if (backlog > 0) {
      let step = instant ? backlog : Math.max(2, Math.ceil(backlog / 6));
      let end = Math.min(this.code.length, this.shown + step);
      const unit = this.code.charCodeAt(end - 1);
      if (unit >= 0xd800 && unit <= 0xdbff && end < this.code.length) end += 1; // whole emoji
      this.shown = end;
    }
    if (this.shown !== this.renderedLength) {
      const follow = atEnd(this.codePre);
      const visible = this.code.slice(0, this.shown);
      if (visible.length <= HIGHLIGHT_LIMIT) this.codeEl.innerHTML = highlight(visible);
      else this.codeEl.textContent = visible;
      this.renderedLength = this.shown;
      if (follow) this.codePre.scrollTop = this.codePre.scrollHeight;
    }
    const more = this.shown < this.code.length;
    this.codeBox.classList.toggle("typing", more || !this.codeClosed());
    this.root.dataset.typing = more ? "yes" : "done";
    return more;
  }

  codeClosed() {
    return this.pendingClose || FINAL_STATES.has(this.state);
  }

  output(text, stream) {
    if (this.state === "writing" || this.state === "sent") this.setState("running");
    const fallback = stream === "result" || stream === "display";
    if (fallback && this.skipFallback) { // shown richly already
      this.skipFallback = false;
      return;
    }
    this.skipFallback = false;
    this.outputEl.hidden = false;
    const follow = atEnd(this.outputEl);
    this.outputEl.append(text);
    if (follow) this.outputEl.scrollTop = this.outputEl.scrollHeight;
  }

  // Progress output rewrote its line: drop that line as it was sent (its characters may span
  // several text nodes); the new state follows as ordinary output.
  rewind(chars) {
    let left = Number(chars) || 0;
    while (left > 0 && this.outputEl.lastChild) {
      const node = this.outputEl.lastChild;
      const text = node.textContent;
      if (text.length <= left) {
        node.remove();
        left -= text.length;
      } else {
        node.textContent = text.slice(0, text.length - left);
        left = 0;
      }
    }
  }

  // A rich result; an update replaces the display with its id (in this call or an earlier one).
  display(content) {
    if (this.state === "writing" || this.state === "sent") this.setState("running");
    const data = content && typeof content.data === "object" && content.data ? content.data : {};
    const id = typeof content.display_id === "string" ? content.display_id : null;
    const key = id && `${this.threadId}\u0000${id}`;
    const known = key && state.displays.get(key);
    let box = renderDisplay(content);
    if (content.source === "update_display_data") {
      if (!known || !known.isConnected) return; // as in Jupyter: nothing to update
      if (!box) box = el("pre", { class: "output", "data-testid": "display", text: String(data["text/plain"] ?? "") });
      known.replaceWith(box);
    } else {
      if (!box) return;
      this.displaysEl.hidden = false;
      this.displaysEl.append(box);
    }
    if (key) state.displays.set(key, box);
    this.skipFallback = "text/plain" in data;
  }

  file(content) {
    const fileId = String(content.file_id || "");
    if (fileId && this.fileIds.has(fileId)) return; // announced in both shapes
    this.fileIds.add(fileId);
    const name = String(content.filename || "file");
    const mime = String(content.mime_type || "application/octet-stream");
    const b64 = typeof content.base64 === "string" ? content.base64 : "";
    const url = `/files/${encodeURIComponent(fileId)}?token=${encodeURIComponent(state.token)}`;
    this.filesEl.hidden = false;
    const size = formatSize(base64Size(b64));
    if (mime.startsWith("image/")) {
      const img = el("img", {
        class: "plot", alt: name, "data-testid": "plot", decoding: "async",
        src: b64 ? `data:${mime};base64,${b64}` : url,
      });
      img.addEventListener("load", followStream); // it grows when decoded
      const caption = el("figcaption", {},
        el("span", { text: name }),
        el("a", { href: url, download: name, "data-testid": "file-link", text: "download" }));
      this.filesEl.append(el("figure", {}, img, caption));
      return;
    }
    const kind = fileKind(name, mime);
    this.filesEl.append(el("a", {
      class: "file", href: url, download: name, "data-testid": "file-link",
      "data-file-id": content.file_id || "", title: `${mime}`,
    }, el("span", { class: `icon ${kind.family}`, text: kind.label }),
    el("span", { class: "name", text: name }),
    el("span", { class: "size", text: size || "fetch" })));
  }

  status(content) {
    const name = String(content.state || "unknown");
    if (!FINAL_STATES.has(name)) { // queued, running, ... as the gateway may add them
      this.setState(name);
      return;
    }
    this.pendingClose = false;
    const duration = formatDuration(content.duration_ms);
    this.setState(name, duration ? `${name} · ${duration}` : name);
    this.badge.title = `duration_ms: ${content.duration_ms}`;
    if (content.execution_count != null) this.meta.textContent = `[${content.execution_count}]`;
    if (content.error && content.error.ename && name !== "complete") {
      this.note(`${content.error.ename}: ${content.error.evalue || ""}`, "error");
    }
    if (content.reason) this.note(String(content.reason), name === "complete" ? "info" : "warn");
    if (content.kernel_restarted) this.note("the kernel was restarted", "warn");
    this.type(true);
    this.codeBox.classList.remove("typing");
  }

  error(content) {
    const code = content && content.code ? content.code : "error";
    const message = content && content.message ? content.message : JSON.stringify(content);
    this.note(`${code}: ${message}`, "error", "call-error");
    this.setState("error", "refused");
    this.codeBox.classList.remove("typing");
  }

  note(text, kind, testid = "call-note") {
    this.notesEl.hidden = false;
    this.notesEl.append(el("p", { class: `note ${kind}`, "data-testid": testid, text }));
  }
}

function scheduleTyping(view) {
  state.typing.add(view);
  if (document.hidden) { // no animation frames in a hidden tab: show it at once
    view.type(true);
    state.typing.delete(view);
    return;
  }
  if (state.frame === null) state.frame = requestAnimationFrame(typeFrame);
}

function typeFrame() {
  state.frame = null;
  for (const view of state.typing) if (!view.type()) state.typing.delete(view);
  followStream();
  if (state.typing.size) state.frame = requestAnimationFrame(typeFrame);
}

document.addEventListener("visibilitychange", () => {
  if (!document.hidden) return;
  for (const view of state.typing) view.type(true);
  state.typing.clear();
});

// Is a scroll box showing its end? (Then keep it there as content grows.)
function atEnd(box, slack = 24) {
  return box.scrollHeight - box.scrollTop - box.clientHeight < slack;
}

// The stream follows new content until the reader scrolls up, and again once they scroll back
// to the end. (Scroll events arrive a frame late, when more content may have grown below: only a
// position above the one we scrolled to means the reader moved.)
ui.stream.addEventListener("scroll", () => {
  if (atEnd(ui.stream, 120)) state.follow = true;
  else if (ui.stream.scrollTop < state.autoScrollTop - 4) state.follow = false;
});

function followStream() {
  if (state.follow) scrollToBottom();
}

function scrollToBottom() {
  ui.stream.scrollTop = ui.stream.scrollHeight;
  state.autoScrollTop = ui.stream.scrollTop;
}

function callView(threadId, callId, create = true) {
  const key = `${threadId}\u0000${callId}`;
  let view = state.calls.get(key);
  if (!view && create) {
    view = new CallView(threadId, callId);
    state.calls.set(key, view);
    ui.empty.hidden = true;
    ui.calls.append(view.root);
  }
  return view;
}

function logEvent(text, kind = "info", testid = "event") {
  ui.empty.hidden = true;
  const time = new Date().toLocaleTimeString();
  const row = el("div", { class: `event ${kind}`, "data-testid": testid },
    el("time", { text: time }), el("span", { text }));
  ui.calls.append(row);
  followStream();
  return row;
}

// ---------------------------------------------------------------------------------------------
// Envelopes

function handleEnvelope(envelope) {
  const chunk = envelope && envelope.chunk;
  if (!chunk || typeof chunk.type !== "string") return;
  const threadId = envelope.thread_id || "";
  const callId = envelope.call_id;
  const content = chunk.content;
  if (Number.isInteger(envelope.seq) && threadId && !envelope.replayed) {
    // After a reconnect the gateway replays from the last seq we had: never show one twice.
    if (envelope.seq <= (state.lastSeq.get(threadId) || 0)) return;
    state.lastSeq.set(threadId, envelope.seq);
  }

  switch (chunk.type) {
    case "subscribed":
      logEvent(`watching thread ${content && content.thread_id}`, "ok", "event-subscribed");
      break;
    case "gap":
      logEvent(`thread ${threadId}: output ${content.first_seq}–${content.last_seq} is no longer `
        + "available (the connection was away too long); final results follow", "error",
        "event-gap");
      break;
    case "file_uploaded": {
      if (state.uploads.has(`${threadId}\u0000${callId}`)) break; // this page's: upload() says
      if (content && content.final !== false) { // someone else's, when complete
        logEvent(`uploaded ${content.filename} (${formatSize(content.size)}) → ${content.path}`,
          "ok", "event-uploaded");
      }
      break;
    }
    case "hot_code":
      if (callId) callView(threadId, callId).hotCode(String(content));
      break;
    case "hot_code_output":
      if (callId) callView(threadId, callId).output(String(content), chunk.stream);
      break;
    case "display":
      if (callId && content && typeof content === "object") callView(threadId, callId).display(content);
      break;
    case "rewind":
      if (callId && content) callView(threadId, callId).rewind(content.chars);
      break;
    case "code_interpreter_stream":
      if (callId && content) callView(threadId, callId).file(content);
      break;
    case "code_interpreter_file": // the projectdavid SDK's flat shape (gateway compat setting)
      if (callId) callView(threadId, callId).file(chunk);
      break;
    case "status":
      if (callId) callView(threadId, callId).status(content || {});
      else if (content && content.state === "restarted") logEvent(`${threadId}: kernel restarted`, "warn", "event-restarted");
      else if (content && content.state === "closed") logEvent(`${threadId}: thread closed`, "warn");
      else if (content) logEvent(`${threadId}: ${content.state}`);
      break;
    case "error": {
      if (state.uploads.has(`${threadId}\u0000${callId}`)) break; // upload() reports it
      const view = callId ? callView(threadId, callId, true) : null;
      if (view) view.error(content);
      else logEvent(`${threadId ? threadId + ": " : ""}${content.code}: ${content.message}`, "error", "event-error");
      break;
    }
    default: // chunk types this page does not know: ignore, as the contract allows
      break;
  }
  followStream();
}

// ---------------------------------------------------------------------------------------------
// Connection

function setConnection(name, text) {
  ui.conn.dataset.state = name;
  ui.connText.textContent = text;
}

// The socket, resuming after a dropped connection and typed refusals are the package's; the
// page reconnects by itself only when the package gives a connection up (a close it did not
// choose to resume: the gateway restarting, say), and then subscribes from its own last seqs.
async function connect() {
  const token = ui.token.value.trim();
  if (!token) {
    setConnection("closed", "enter a token to connect");
    ui.token.focus();
    return;
  }
  clearTimeout(state.retryTimer);
  if (state.gateway) {
    const old = state.gateway;
    state.gateway = null;
    old.close();
  }
  state.token = token;
  try { sessionStorage.setItem(TOKEN_KEY, token); } catch { /* ignore */ }
  const attempt = {};
  state.attempt = attempt;
  setConnection("connecting", "connecting…");
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  let gateway;
  try {
    gateway = await Gateway.connect(`${scheme}://${location.host}/ws`, token, {
      onState: (name, why) => connectionChanged(gateway, name, why),
    });
  } catch (error) {
    if (state.attempt !== attempt) return;
    if (!state.everOpened) {
      setConnection("failed", error.status === 401 ? "could not connect: wrong token"
        : "could not connect: wrong token or gateway down");
    } else {
      retryLater("");
    }
    return;
  }
  if (state.attempt !== attempt) { // superseded by a newer connect()
    gateway.close();
    return;
  }
  state.gateway = gateway;
  state.watchers = new Set();
  state.everOpened = true;
  state.retry = 0;
  setConnection("open", `connected to ${location.host}`);
  for (const id of state.watched) {
    const resume = state.lastSeq.get(id);
    send(resume === undefined ? { type: "subscribe", thread_id: id }
      : { type: "subscribe", thread_id: id, since_seq: resume });
  }
}

function connectionChanged(gateway, name, why) {
  if (!gateway || state.gateway !== gateway) return;
  if (name === "open") {
    setConnection("open", `connected to ${location.host}`);
  } else if (name === "reconnecting") {
    setConnection("connecting", "connection lost; resuming…");
  } else {
    state.gateway = null;
    retryLater(why ? ` (${why})` : "");
  }
}

function retryLater(why) {
  const delay = Math.min(10000, 1000 * 2 ** state.retry);
  state.retry += 1;
  setConnection("closed", `disconnected${why}; retrying in ${Math.round(delay / 1000)} s`);
  state.retryTimer = setTimeout(connect, delay);
}

// Every envelope of a thread this page runs, watches or uploads to is rendered.
function renderThread(threadId) {
  if (!state.gateway || state.watchers.has(threadId)) return;
  state.watchers.add(threadId);
  state.gateway.watch(threadId, handleEnvelope);
}

function send(message) {
  if (!state.gateway) {
    logEvent("not connected: connect with a token first", "error", "event-error");
    return false;
  }
  renderThread(message.thread_id);
  state.gateway.send(message).catch((error) => logEvent(`not sent: ${error.message}`, "error", "event-error"));
  return true;
}

function threadOrComplain() {
  const id = currentThread();
  if (!validThread(id)) {
    ui.thread.classList.add("invalid");
    logEvent("thread id: a letter or digit, then letters, digits and _ . : @ - (at most 128)", "error", "event-error");
    ui.thread.focus();
    return null;
  }
  ui.thread.classList.remove("invalid");
  rememberThread(id);
  return id;
}

// ---------------------------------------------------------------------------------------------
// Actions

function run() {
  const threadId = threadOrComplain();
  const code = ui.code.value;
  if (!threadId || !code.trim()) return;
  state.callNumber += 1;
  const callId = `page-${state.callNumber}-${Math.random().toString(36).slice(2, 8)}`;
  // The thread's first cell fixes its language; the gateway refuses a later switch.
  if (!send({ type: "execute", thread_id: threadId, call_id: callId, code,
    language: ui.language.value })) return;
  state.watched.add(threadId); // re-subscribe after a reconnect
  renderWatching();
  const view = callView(threadId, callId);
  view.setState("sent");
  state.follow = true;
  scrollToBottom();
}

function watch() {
  const threadId = threadOrComplain();
  if (!threadId) return;
  if (send({ type: "subscribe", thread_id: threadId })) {
    state.watched.add(threadId);
    renderWatching();
  }
}

const UPLOAD_PART = 4 * 2 ** 20; // bytes per message; larger files go in parts

// Sent in parts by the package, each confirmed before the next goes out.
async function upload(file) {
  const threadId = threadOrComplain();
  if (!threadId || !file) return;
  if (!state.gateway) {
    logEvent("not connected: connect with a token first", "error", "event-error");
    return;
  }
  state.callNumber += 1;
  const callId = `upload-${state.callNumber}-${Math.random().toString(36).slice(2, 6)}`;
  const row = logEvent(`uploading ${file.name}…`, "info", "event-uploading");
  state.watched.add(threadId);
  renderWatching();
  renderThread(threadId);
  state.uploads.add(`${threadId}\u0000${callId}`);
  try {
    const done = await state.gateway.thread(threadId).upload(file.name, file, {
      callId, partSize: UPLOAD_PART,
      onProgress: (sent, total) => {
        if (sent < total) row.lastChild.textContent = `uploading ${file.name}: ${Math.round((100 * sent) / total)}%`;
      },
    });
    row.lastChild.textContent = `uploaded ${done.filename} (${formatSize(done.size)}) → ${done.path}`;
    row.className = "event ok";
    row.dataset.testid = "event-uploaded";
  } catch (error) {
    row.lastChild.textContent = `upload of ${file.name} refused: ${error.code}: ${error.message}`;
    row.className = "event error";
    row.dataset.testid = "event-error";
  } finally {
    state.uploads.delete(`${threadId}\u0000${callId}`);
  }
}

ui.connForm.addEventListener("submit", (e) => { e.preventDefault(); connect(); });
ui.run.addEventListener("click", run);
ui.watch.addEventListener("click", watch);
ui.interrupt.addEventListener("click", () => {
  const id = threadOrComplain();
  if (id) send({ type: "interrupt", thread_id: id });
});
ui.restart.addEventListener("click", () => {
  const id = threadOrComplain();
  if (id) send({ type: "restart", thread_id: id });
});
ui.notebook.addEventListener("click", () => {
  // A link, like file downloads: the browser saves it (a link cannot send a header).
  const id = threadOrComplain();
  if (!id) return;
  const link = el("a", {
    href: `/threads/${encodeURIComponent(id)}/notebook?token=${encodeURIComponent(state.token)}`,
    download: `${id}.ipynb`,
  });
  document.body.append(link);
  link.click();
  link.remove();
});
ui.newThread.addEventListener("click", () => {
  ui.thread.value = newThreadId();
  ui.thread.classList.remove("invalid");
});
ui.clear.addEventListener("click", () => {
  state.calls.clear();
  state.displays.clear();
  state.typing.clear();
  ui.calls.replaceChildren();
  ui.empty.hidden = false;
  state.follow = true;
  state.autoScrollTop = 0;
});
ui.upload.addEventListener("change", () => {
  upload(ui.upload.files[0]);
  ui.upload.value = "";
});
ui.thread.addEventListener("input", () => ui.thread.classList.remove("invalid"));
ui.code.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
    e.preventDefault();
    run();
  } else if (e.key === "Tab" && !e.shiftKey) {
    e.preventDefault();
    ui.code.setRangeText("    ", ui.code.selectionStart, ui.code.selectionEnd, "end");
  }
});

// ---------------------------------------------------------------------------------------------
// Start: ?token= and ?thread= prefill (the token is then removed from the address bar)

(function start() {
  const params = new URLSearchParams(location.search);
  let held = null;
  try { held = sessionStorage.getItem(TOKEN_KEY); } catch { held = null; }
  const offered = params.get("token");
  // A link never switches a signed-in tab to another identity: whoever wrote it (a message, a
  // page) would get what this tab runs next. Switching takes entering the token in the form.
  const token = held || offered;
  if (held && offered && offered !== held) {
    logEvent("the link's token was not used: this tab is signed in already "
      + "(enter a token and connect to switch)", "warn", "event-token-ignored");
  }
  if (token) ui.token.value = token;
  if (params.has("token")) {
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? `?${rest}` : "") + location.hash);
  }
  const thread = params.get("thread");
  ui.thread.value = thread && validThread(thread) ? thread : newThreadId();
  if (thread && validThread(thread)) state.watched.add(thread); // open with ?thread=: watch it
  renderRecent();
  renderWatching();
  if (token) connect();
  else setConnection("closed", "enter a token to connect");
})();
