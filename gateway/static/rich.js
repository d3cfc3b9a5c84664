// Rich results (display chunks) on the live page: HTML tables, Markdown, LaTeX, JSON, SVG.
//
// Everything here is untrusted: a cell's code chose it. It never runs in the page's origin:
// HTML and Markdown go through DOMPurify (no scripts, handlers, styles, forms or javascript:
// URLs survive it) and the page's CSP (script-src 'self', no inline anything) stands behind it;
// SVG is shown as an <img> (an image document runs no script); LaTeX is laid out by KaTeX
// (trust off: no \href to javascript:). The renderers are vendored under /static/vendor
// (scripts/vendor-static.sh) and loaded the first time a display needs them.

const VENDOR = "/static/vendor";
const JSON_TREE_NODES = 2000; // a huge JSON value is shown in part, with a note
const JSON_OPEN_DEPTH = 1;
// What the page can render, richest first; text/plain is left to hot_code_output.
const RENDERERS = [
  ["text/html", renderHtml],
  ["text/markdown", renderMarkdown],
  ["text/latex", renderLatex],
  ["image/svg+xml", renderSvg],
  ["application/vnd.vegalite.v5+json", renderSpec],
  ["application/vnd.vegalite.v4+json", renderSpec],
  ["application/vnd.plotly.v1+json", renderSpec],
  ["application/json", renderJson],
];

let purifier = null;
let markdown = null;
let katex = null;

async function loadPurifier() {
  if (!purifier) {
    purifier = (await import(`${VENDOR}/dompurify/purify.es.mjs`)).default;
    purifier.addHook("afterSanitizeAttributes", (node) => {
      dropSignInLinks(node);
      // Links (HTML's and SVG's) open elsewhere, never replacing the page (which holds the token).
      if (node.localName === "a" || node.localName === "area") {
        node.setAttribute("target", "_blank");
        node.setAttribute("rel", "noopener noreferrer");
      }
    });
  }
  return purifier;
}

// The page signs in with the token in its own address (app.js, start), so a link back into
// this origin that carries one would open the page as whoever wrote the link: their thread,
// our code and files (login CSRF). Such a link loses its href and stays as plain text.
const LINK_ATTRIBUTES = ["href", "xlink:href"];

function dropSignInLinks(node) {
  if (node.nodeType !== Node.ELEMENT_NODE) return;
  for (const name of LINK_ATTRIBUTES) {
    const value = node.getAttribute(name);
    if (value !== null && signsIn(value)) node.removeAttribute(name);
  }
}

// Parsed as the browser will follow it, and its query read as the page reads its own
// (URLSearchParams decodes tok%65n to token). The page reads no fragment, but a later one
// might: a token there counts too.
function signsIn(href) {
  let url;
  try {
    url = new URL(href, document.baseURI);
  } catch {
    return false;
  }
  if (url.origin !== location.origin) return false;
  return [url.search, url.hash.slice(1)].some((part) => new URLSearchParams(part).has("token"));
}

function sanitize(purify, html) {
  return purify.sanitize(html, {
    RETURN_DOM_FRAGMENT: true,
    FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "iframe", "object",
      "embed", "link", "meta", "base"],
    FORBID_ATTR: ["style", "srcset", "action", "formaction"],
  });
}

async function loadKatex() {
  if (!katex) {
    if (!document.querySelector('link[data-vendor="katex"]')) {
      const link = document.createElement("link");
      link.rel = "stylesheet";
      link.href = `${VENDOR}/katex/katex.min.css`;
      link.dataset.vendor = "katex";
      document.head.append(link);
    }
    await import(`${VENDOR}/katex/katex.min.js`); // a UMD build: it sets window.katex
    katex = window.katex;
  }
  return katex;
}

async function renderHtml(box, html) {
  const purify = await loadPurifier();
  box.classList.add("html");
  box.append(sanitize(purify, String(html)));
}

async function renderMarkdown(box, text) {
  if (!markdown) markdown = (await import(`${VENDOR}/marked/marked.esm.js`)).marked;
  const purify = await loadPurifier();
  box.classList.add("markdown");
  box.append(sanitize(purify, markdown.parse(String(text), { async: false })));
  await renderMathIn(box);
}

// $...$ and $$...$$ in Markdown text (not in code) as KaTeX, as notebooks show them.
const MATH = /\$\$([^$]+)\$\$|\$([^$\n]+)\$/g;

async function renderMathIn(box) {
  const walker = document.createTreeWalker(box, NodeFilter.SHOW_TEXT);
  const found = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (node.parentElement.closest("code, pre")) continue;
    if (node.textContent.includes("$")) found.push(node);
  }
  if (!found.length) return;
  const tex = await loadKatex();
  for (const node of found) {
    const text = node.textContent;
    const parts = document.createDocumentFragment();
    let last = 0;
    for (const match of text.matchAll(MATH)) {
      parts.append(text.slice(last, match.index));
      const span = document.createElement("span");
      tex.render(match[1] ?? match[2], span, { displayMode: match[1] !== undefined,
        throwOnError: false, trust: false });
      parts.append(span);
      last = match.index + match[0].length;
    }
    parts.append(text.slice(last));
    node.replaceWith(parts);
  }
}

function latexSource(text) {
  const trimmed = text.trim();
  for (const [open, close] of [["$$", "$$"], ["\\[", "\\]"], ["$", "$"], ["\\(", "\\)"]]) {
    if (trimmed.length >= open.length + close.length && trimmed.startsWith(open)
      && trimmed.endsWith(close)) {
      return trimmed.slice(open.length, trimmed.length - close.length);
    }
  }
  return trimmed;
}

async function renderLatex(box, text) {
  const tex = await loadKatex();
  box.classList.add("latex");
  tex.render(latexSource(String(text)), box, { displayMode: true, throwOnError: false,
    trust: false });
}

function renderSvg(box, svg) {
  const img = document.createElement("img");
  img.alt = "SVG image";
  img.src = URL.createObjectURL(new Blob([String(svg)], { type: "image/svg+xml" }));
  img.addEventListener("load", () => URL.revokeObjectURL(img.src), { once: true });
  box.classList.add("svg");
  box.append(img);
}

function renderSpec(box, spec, mime) {
  // No chart renderer is shipped (Vega and Plotly weigh megabytes): the spec as a tree.
  const label = document.createElement("p");
  label.className = "spec-label";
  label.textContent = `${mime} (chart specification; shown as data)`;
  box.append(label);
  renderJson(box, spec);
}

function renderJson(box, value) {
  box.classList.add("json");
  const budget = { left: JSON_TREE_NODES };
  box.append(jsonNode(value, null, 0, budget));
  if (budget.left < 0) {
    const more = document.createElement("p");
    more.className = "spec-label";
    more.textContent = `(only the first ${JSON_TREE_NODES} values are shown)`;
    box.append(more);
  }
}

function jsonNode(value, key, depth, budget) {
  budget.left -= 1;
  const label = key === null ? "" : `${key}: `;
  if (value === null || typeof value !== "object") {
    const leaf = document.createElement("div");
    leaf.className = "leaf";
    const valueText = document.createElement("span");
    valueText.className = `v ${value === null ? "null" : typeof value}`;
    valueText.textContent = JSON.stringify(value);
    leaf.append(label, valueText);
    return leaf;
  }
  const entries = Array.isArray(value) ? value.map((v, i) => [i, v]) : Object.entries(value);
  const details = document.createElement("details");
  details.open = depth < JSON_OPEN_DEPTH;
  const summary = document.createElement("summary");
  const shape = Array.isArray(value) ? `[${entries.length}]` : `{${entries.length}}`;
  summary.textContent = `${label}${shape}`;
  details.append(summary);
  for (const [childKey, child] of entries) {
    if (budget.left <= 0) {
      budget.left = -1;
      break;
    }
    details.append(jsonNode(child, childKey, depth + 1, budget));
  }
  return details;
}

// The MIME type this page would render for a display's data, or null (then its text/plain
// fallback, already in the output, is all there is). An image stored as a file is shown by
// its file chunk, so a display that names files needs a richer type than the image.
export function chosenType(content) {
  const data = content && typeof content.data === "object" && content.data ? content.data : {};
  const files = content && content.files && typeof content.files === "object" ? content.files : {};
  for (const [mime] of RENDERERS) {
    if (!(mime in data)) continue;
    if (mime === "image/svg+xml" && Object.keys(files).length) continue;
    return mime;
  }
  return null;
}

// A box for the display, filled once its renderer has loaded; data-rendered says when
// ("yes", or "failed" with the text/plain shown instead).
export function renderDisplay(content) {
  const mime = chosenType(content);
  if (!mime) return null;
  const box = document.createElement("div");
  box.className = "rich";
  box.dataset.testid = "display";
  box.dataset.mime = mime;
  box.dataset.rendered = "no";
  const renderer = RENDERERS.find(([type]) => type === mime)[1];
  Promise.resolve()
    .then(() => renderer(box, content.data[mime], mime))
    .then(() => { box.dataset.rendered = "yes"; })
    .catch((error) => {
      box.replaceChildren();
      const fallback = document.createElement("pre");
      fallback.className = "output";
      fallback.textContent = String(content.data["text/plain"] ?? `(${mime} could not be shown)`);
      box.append(fallback);
      box.dataset.rendered = "failed";
      console.warn(`display ${mime} not rendered:`, error);
    });
  return box;
}
