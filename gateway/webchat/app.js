// Pincer WebChat: one page, no build step. It speaks the gateway's WebSocket protocol as an
// operator client ("webchat-ui", mode "webchat") with a device identity of its own:
// an Ed25519 key made in this browser (WebCrypto where the page is a secure context, kept
// non-extractable in IndexedDB; a small JS signer, ed25519.js, on plain http from the LAN).
// The gateway token is used for the first sign-in only; the device token the gateway issues
// is what is kept.
"use strict";
(() => {
const $ = (id) => document.getElementById(id);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const k of kids) if (k != null) e.append(k);
  return e;
};
const SCOPES = ["operator.admin", "operator.read", "operator.write", "operator.approvals", "operator.pairing"];
const CLIENT_ID = "webchat-ui", MODE = "webchat", VERSION = "pincer-webchat/1";
const LS = { token: "pincer.webchat.deviceToken", seed: "pincer.webchat.seed", session: "pincer.webchat.session", instance: "pincer.webchat.instance" };
const b64u = (bytes) => btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const unb64u = (s) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
const uuid = () => (crypto.randomUUID ? crypto.randomUUID() : hex(crypto.getRandomValues(new Uint8Array(16))));
const store = { get: (k) => { try { return localStorage.getItem(k); } catch { return null; } }, set: (k, v) => { try { v == null ? localStorage.removeItem(k) : localStorage.setItem(k, v); } catch {} } };

// ---- device identity --------------------------------------------------------------------
const idb = () => new Promise((ok, fail) => {
  const r = indexedDB.open("pincer-webchat", 1);
  r.onupgradeneeded = () => r.result.createObjectStore("keys");
  r.onsuccess = () => ok(r.result);
  r.onerror = () => fail(r.error);
});
const idbDo = async (mode, f) => {
  const db = await idb();
  return new Promise((ok, fail) => {
    const tx = db.transaction("keys", mode), req = f(tx.objectStore("keys"));
    tx.oncomplete = () => ok(req && req.result);
    tx.onerror = () => fail(tx.error);
  });
};
async function sha256(bytes) {
  if (crypto.subtle) return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return PincerEd25519.sha256 ? PincerEd25519.sha256(bytes) : null;
}
async function webcryptoIdentity() {
  if (!window.isSecureContext || !crypto.subtle) return null;
  try {
    let pair = await idbDo("readonly", (s) => s.get("device"));
    if (!pair) {
      pair = await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
      await idbDo("readwrite", (s) => s.put(pair, "device"));
    }
    const pub = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
    return { kind: "webcrypto", pub, sign: async (m) => new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, pair.privateKey, m)) };
  } catch (e) {
    console.warn("WebCrypto Ed25519 unavailable, using the JS signer:", e);
    return null;
  }
}
function jsIdentity() {
  let seed = store.get(LS.seed);
  if (!seed) { seed = b64u(crypto.getRandomValues(new Uint8Array(32))); store.set(LS.seed, seed); }
  const s = unb64u(seed);
  return { kind: "js", pub: PincerEd25519.publicKey(s), sign: async (m) => PincerEd25519.sign(s, m) };
}
async function identity() {
  const id = (await webcryptoIdentity()) || jsIdentity();
  const digest = crypto.subtle ? await sha256(id.pub) : PincerEd25519.sha256(id.pub);
  id.deviceId = hex(digest);
  id.publicKey = b64u(id.pub);
  return id;
}

// ---- connection -------------------------------------------------------------------------
const S = { ws: null, id: null, token: null, pending: new Map(), seq: 0, hello: null, session: store.get(LS.session) || "agent:main:main",
  runs: new Map(), retry: 0, timer: null, view: "chat", sessions: [] };
window.pincer = S;

function setStatus(text, on) { const s = $("status"); s.textContent = text; s.classList.toggle("on", !!on); }
function show(id, visible) { $(id).hidden = !visible; }
function toast(text) { const t = $("toast"); t.textContent = text; t.hidden = false; clearTimeout(toast.t); toast.t = setTimeout(() => (t.hidden = true), 5000); }

function call(method, params = {}) {
  return new Promise((ok, fail) => {
    if (!S.ws || S.ws.readyState !== 1) return fail(new Error("not connected"));
    const id = "w" + ++S.seq;
    S.pending.set(id, { ok, fail });
    S.ws.send(JSON.stringify({ type: "req", id, method, params }));
  });
}

function connect() {
  clearTimeout(S.timer);
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/";
  const ws = new WebSocket(url);
  S.ws = ws;
  setStatus("connecting");
  ws.onmessage = (m) => { let f; try { f = JSON.parse(m.data); } catch { return; } onFrame(ws, f); };
  ws.onclose = (e) => {
    if (S.ws !== ws) return;
    for (const p of S.pending.values()) p.fail(new Error("connection closed"));
    S.pending.clear();
    S.hello = null;
    setStatus("offline");
    if (S.stop) return;
    const wait = S.pairing ? 3000 : Math.min(1000 * 2 ** S.retry++, 15000);
    S.timer = setTimeout(connect, wait);
    if (e.code !== 1000 && e.code !== 1008 && !S.pairing) setStatus("offline: retrying");
  };
}

async function onFrame(ws, f) {
  if (f.type === "event" && f.event === "connect.challenge") return sendConnect(ws, f.payload.nonce);
  if (f.type === "res") {
    const p = S.pending.get(f.id);
    if (p) { S.pending.delete(f.id); f.ok ? p.ok(f.payload) : p.fail(Object.assign(new Error(f.error?.message || "error"), { shape: f.error })); }
    return;
  }
  if (f.type === "event") onEvent(f.event, f.payload || {});
}

async function sendConnect(ws, nonce) {
  if (!S.id) S.id = await S.idReady;
  const signedAt = Date.now(), platform = navigator.platform || "web";
  const deviceToken = store.get(LS.token);
  const auth = S.token ? { token: S.token } : deviceToken ? { deviceToken } : {};
  const signed = S.token || deviceToken || "";
  const payload = ["v3", S.id.deviceId, CLIENT_ID, MODE, "operator", SCOPES.join(","), signedAt, signed, nonce, platform.trim().toLowerCase(), ""].join("|");
  const signature = b64u(await S.id.sign(new TextEncoder().encode(payload)));
  let instance = store.get(LS.instance);
  if (!instance) { instance = uuid(); store.set(LS.instance, instance); }
  const params = { minProtocol: 3, maxProtocol: 4,
    client: { id: CLIENT_ID, version: VERSION, platform, mode: MODE, instanceId: instance, displayName: "WebChat (" + (navigator.userAgent.match(/(Firefox|Chrome|Safari|Edg)\/[\d]+/)?.[0] || "browser") + ")" },
    role: "operator", scopes: SCOPES, caps: ["tool-events"],
    device: { id: S.id.deviceId, publicKey: S.id.publicKey, signature, signedAt, nonce },
    auth, userAgent: navigator.userAgent, locale: navigator.language };
  const id = "connect";
  S.pending.set(id, { ok: onHello, fail: onRefused });
  ws.send(JSON.stringify({ type: "req", id, method: "connect", params }));
}

function onHello(hello) {
  S.hello = hello;
  S.retry = 0;
  S.pairing = false;
  if (hello.auth?.deviceToken) store.set(LS.token, hello.auth.deviceToken);
  S.token = null; // the shared token is not kept once this device has its own
  setStatus("connected", true);
  show("signin", false); show("pairwait", false);
  showView(S.view);
  refreshSessions();
  loadHistory();
  refreshPairing();
}

function onRefused(err) {
  const d = err.shape?.details || {};
  S.stop = false;
  if (err.shape?.code === "NOT_PAIRED" && d.requestId) {
    S.pairing = true;
    const code = d.requestId.replace(/[^0-9a-f]/gi, "").slice(0, 8).toUpperCase();
    $("pair-code").textContent = code;
    $("pair-cmd").textContent = "pincer-gateway devices approve " + code;
    hideViews(); show("signin", false); show("pairwait", true);
    setStatus("waiting for approval");
    return;
  }
  if (/^AUTH_|DEVICE_AUTH/.test(d.code || "")) {
    // A revoked device token or a wrong shared token: ask for the token again.
    store.set(LS.token, null);
    S.token = null;
    S.stop = true;
    askToken(err.message);
    return;
  }
  toast(err.message);
}

function askToken(message) {
  hideViews(); show("pairwait", false); show("signin", true);
  $("signin-error").hidden = !message;
  $("signin-error").textContent = message || "";
  setStatus("signed out");
}

// ---- events -------------------------------------------------------------------------------
function onEvent(name, p) {
  if (name === "chat") return onChat(p);
  if (name === "agent") return onAgent(p);
  if (/^(device|node)\.pair\.(requested|resolved)$/.test(name)) return refreshPairing();
  if (name === "shutdown") setStatus("gateway restarting");
}

const textOf = (m) => typeof m?.content === "string" ? m.content : (m?.content || []).filter((c) => c.type === "text").map((c) => c.text).join("");

function onChat(p) {
  if (p.sessionKey && p.sessionKey !== S.session) { if (p.state === "final") refreshSessions(); return; }
  const run = runView(p.runId);
  if (p.state === "delta") {
    run.text = textOf(p.message) || run.text + (p.deltaText || "");
    run.bubble.innerHTML = markdown(run.text);
    run.bubble.classList.add("streaming");
    scrollDown();
  } else if (p.state === "final" || p.state === "aborted" || p.state === "error") {
    S.runs.delete(p.runId);
    setBusy(S.runs.size > 0);
    if (p.state === "error") toast(p.errorMessage || "the run failed");
    loadHistory();
    refreshSessions();
  }
}

function onAgent(p) {
  if (p.sessionKey && p.sessionKey !== S.session) return;
  if (p.stream !== "tool") return;
  const run = runView(p.runId), d = p.data || {};
  let chip = run.tools.get(d.toolCallId);
  if (!chip) {
    chip = el("div", { class: "msg tool running" }, "⚙ " + (d.name || "tool"));
    run.tools.set(d.toolCallId, chip);
    $("messages").insertBefore(chip, run.bubble);
  }
  if (d.phase === "result") { chip.classList.remove("running"); chip.textContent = (d.isError ? "✗ " : "✓ ") + d.name; }
  scrollDown();
}

function runView(runId) {
  let r = S.runs.get(runId);
  if (!r) {
    r = { text: "", bubble: el("div", { class: "msg assistant streaming" }), tools: new Map() };
    $("messages").append(r.bubble);
    S.runs.set(runId, r);
    setBusy(true);
  }
  return r;
}

// ---- chat -------------------------------------------------------------------------------------
function setBusy(busy) { show("abort", busy); }
function scrollDown() { const m = $("messages"); m.scrollTop = m.scrollHeight; }

async function loadHistory() {
  const key = S.session;
  try {
    const h = await call("chat.history", { sessionKey: key, limit: 100 });
    if (key !== S.session) return;
    const box = $("messages");
    box.replaceChildren();
    for (const m of h.messages || []) box.append(...renderMessage(m));
    if (!(h.messages || []).length) box.append(el("p", { class: "empty" }, "No messages yet. Say hello."));
    for (const r of S.runs.values()) box.append(...r.tools.values(), r.bubble);
    scrollDown();
  } catch (e) { toast("history: " + e.message); }
}

function renderMessage(m) {
  const parts = typeof m.content === "string" ? [{ type: "text", text: m.content }] : m.content || [];
  const out = [];
  if (m.role === "toolResult") {
    const box = el("div", { class: "msg tool" + (m.isError ? " error" : "") }, (m.isError ? "✗ " : "✓ ") + (m.toolName || "tool"));
    for (const c of parts) if (c.type === "image") box.append(el("img", { src: "data:" + c.mimeType + ";base64," + c.data, alt: m.toolName + " image" }));
    out.push(box);
    return out;
  }
  if (m.role !== "user" && m.role !== "assistant") return out;
  const text = parts.filter((c) => c.type === "text").map((c) => c.text).join("\n");
  const box = el("div", { class: "msg " + m.role + (m.stopReason === "error" ? " error" : "") });
  if (text) box.innerHTML = markdown(text);
  for (const c of parts) if (c.type === "image") box.append(el("img", { src: "data:" + c.mimeType + ";base64," + c.data, alt: "image" }));
  if (m.stopReason === "aborted") box.append(el("p", { class: "muted stopped" }, "(stopped)"));
  if (text || box.childNodes.length) out.push(box);
  return out;
}

async function send(text) {
  const idempotencyKey = uuid();
  const key = S.session;
  const box = $("messages");
  box.querySelector(".empty")?.remove();
  box.append(el("div", { class: "msg user" }, text));
  scrollDown();
  try {
    const r = await call("chat.send", { sessionKey: key, message: text, deliver: false, idempotencyKey });
    if (r?.runId && key === S.session && !["ok", "error"].includes(r.status)) runView(r.runId);
  } catch (e) { toast(e.message); }
}

async function abort() {
  try { await call("chat.abort", { sessionKey: S.session }); } catch (e) { toast(e.message); }
}

// ---- sessions ---------------------------------------------------------------------------------
async function refreshSessions() {
  try {
    const r = await call("sessions.list", { limit: 50 });
    S.sessions = r.sessions || [];
  } catch (e) { return; }
  const list = $("session-list");
  list.replaceChildren();
  const keys = new Set(S.sessions.map((s) => s.key));
  if (!keys.has(S.session)) S.sessions.unshift({ key: S.session, displayName: S.session.split(":").pop() + " (new)" });
  for (const s of S.sessions) {
    list.append(el("li", { class: s.key === S.session ? "on" : "", "data-key": s.key, onclick: () => openSession(s.key) },
      s.label || s.displayName || s.key, el("small", {}, s.lastMessagePreview || "")));
  }
}
function openSession(key) {
  S.session = key;
  store.set(LS.session, key);
  for (const r of S.runs.values()) r.bubble.remove();
  S.runs.clear();
  setBusy(false);
  document.body.classList.remove("sessions-open");
  refreshSessions();
  loadHistory();
}
function newSession() {
  const stamp = new Date().toISOString().replace(/\D/g, "").slice(0, 14);
  openSession("agent:main:web-" + stamp);
}

// ---- nodes ------------------------------------------------------------------------------------
async function refreshNodes() {
  const list = $("node-list");
  let nodes = [];
  try { nodes = (await call("node.list", {})).nodes || []; } catch (e) { toast("nodes: " + e.message); }
  list.replaceChildren();
  const online = nodes.filter((n) => n.connected);
  if (!online.length) list.append(el("li", { class: "empty" }, "No node is online. Start one with: pincer-node run --gateway ws://<this host>:18789"));
  for (const n of online) {
    const cmds = n.commands || [];
    const out = el("div", { class: "out" });
    const act = (label, command, params) => el("button", { onclick: () => invoke(n, command, params, out) }, label);
    list.append(el("li", { "data-node": n.nodeId },
      el("strong", {}, n.displayName || n.nodeId),
      el("div", { class: "meta" }, [n.platform, n.version, n.remoteIp].filter(Boolean).join(" · ")),
      el("div", { class: "meta" }, cmds.join(", ") || "no commands"),
      el("div", { class: "actions" },
        cmds.includes("camera.snap") ? act("Take a photo", "camera.snap", { facing: "back", maxWidth: 1280 }) : null,
        cmds.includes("location.get") ? act("Where is it?", "location.get", { timeoutMs: 10000 }) : null,
        cmds.includes("system.which") ? null : null),
      out));
  }
}
async function invoke(node, command, params, out) {
  out.replaceChildren(el("span", { class: "muted" }, command + "…"));
  try {
    const r = await call("node.invoke", { nodeId: node.nodeId, command, params, idempotencyKey: uuid(), timeoutMs: 30000 });
    const p = r.payload || {};
    out.replaceChildren();
    if (p.base64 && p.format) out.append(el("img", { src: "data:image/" + (p.format === "jpg" ? "jpeg" : p.format) + ";base64," + p.base64, alt: command }));
    else if (p.lat != null || p.latitude != null) out.append(el("div", {}, `${p.lat ?? p.latitude}, ${p.lon ?? p.longitude}` + (p.accuracyMeters != null ? ` (±${Math.round(p.accuracyMeters)} m)` : "")));
    else out.append(el("pre", {}, JSON.stringify(p, null, 2)));
  } catch (e) { out.replaceChildren(el("span", { class: "error" }, e.message)); }
}

// ---- pairing ----------------------------------------------------------------------------------
async function refreshPairing() {
  let devices = { pending: [], paired: [] }, nodes = { pending: [] };
  try { devices = await call("device.pair.list", {}); } catch (e) { return; }
  try { nodes = await call("node.pair.list", {}); } catch {}
  const pending = devices.pending || [];
  const badge = $("pending-badge");
  badge.hidden = !pending.length && !(nodes.pending || []).length;
  badge.textContent = pending.length + (nodes.pending || []).length;
  const card = (title, meta, actions) => el("li", {}, el("strong", {}, title), el("div", { class: "meta" }, meta), actions ? el("div", { class: "actions" }, ...actions) : null);
  const decide = (method, requestId) => async () => {
    try { await call(method, { requestId }); toast("done"); } catch (e) { toast(e.message); }
    refreshPairing();
  };
  const fill = (id, items, empty) => { const l = $(id); l.replaceChildren(...items); if (!items.length) l.append(el("li", { class: "empty" }, empty)); };
  fill("pending-list", pending.map((r) => card(
    (r.displayName || r.clientId || "device") + " · " + r.requestId.replace(/[^0-9a-f]/gi, "").slice(0, 8).toUpperCase(),
    [r.role, r.platform, r.remoteIp, (r.scopes || []).join(" ")].filter(Boolean).join(" · "),
    [el("button", { class: "primary", "data-approve": r.requestId, onclick: decide("device.pair.approve", r.requestId) }, "Approve"),
     el("button", { onclick: decide("device.pair.reject", r.requestId) }, "Reject")])), "Nothing is waiting.");
  fill("node-pending-list", (nodes.pending || []).map((r) => card(
    (r.displayName || r.nodeId) + " asks for " + (r.commands || []).join(", "), r.requestId,
    [el("button", { class: "primary", onclick: decide("node.pair.approve", r.requestId) }, "Approve"),
     el("button", { onclick: decide("node.pair.reject", r.requestId) }, "Reject")])), "Nothing is waiting.");
  fill("paired-list", (devices.paired || []).map((d) => card(
    (d.displayName || d.clientId || d.deviceId.slice(0, 12)) + (d.deviceId === S.id.deviceId ? " (this browser)" : ""),
    [(d.roles || [d.role]).join(","), d.platform, d.remoteIp].filter(Boolean).join(" · "))), "No devices.");
}

// ---- Markdown (escaped first; code, emphasis, links, lists, headings) -------------------------
const esc = (s) => s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
function inline(s) {
  return esc(s)
    .replace(/`([^`]+)`/g, "<code>$1</code>")
    .replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[^*\w])\*([^*\n]+)\*(?!\w)/g, "$1<em>$2</em>")
    .replace(/(^|\W)_([^_\n]+)_(?!\w)/g, "$1<em>$2</em>")
    .replace(/\[([^\]]+)\]\((https?:\/\/[^)\s]+)\)/g, '<a href="$2" target="_blank" rel="noopener noreferrer">$1</a>');
}
function markdown(src) {
  const out = [], lines = src.replace(/\r\n?/g, "\n").split("\n");
  let para = [], list = null;
  const flush = () => {
    if (para.length) out.push("<p>" + para.map(inline).join("<br>") + "</p>");
    para = [];
    if (list) out.push("<" + list.tag + ">" + list.items.map((i) => "<li>" + inline(i) + "</li>").join("") + "</" + list.tag + ">");
    list = null;
  };
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i];
    const fence = l.match(/^\s*```\s*([\w+-]*)/);
    if (fence) {
      flush();
      const code = [];
      while (++i < lines.length && !/^\s*```/.test(lines[i])) code.push(lines[i]);
      out.push('<pre><code class="lang-' + esc(fence[1]) + '">' + esc(code.join("\n")) + "</code></pre>");
      continue;
    }
    const h = l.match(/^(#{1,4})\s+(.*)/);
    const li = l.match(/^\s*([-*+]|\d+[.)])\s+(.*)/);
    if (h) { flush(); out.push("<h4>" + inline(h[2]) + "</h4>"); }
    else if (li) {
      const tag = /\d/.test(li[1]) ? "ol" : "ul";
      if (para.length || (list && list.tag !== tag)) flush();
      list = list || { tag, items: [] };
      list.items.push(li[2]);
    } else if (!l.trim()) flush();
    else { if (list) flush(); para.push(l); }
  }
  flush();
  return out.join("");
}

// ---- views ------------------------------------------------------------------------------------
function hideViews() { for (const v of ["chat", "nodes", "pairing"]) show(v, false); }
function showView(v) {
  S.view = v;
  hideViews();
  show(v, true);
  for (const b of document.querySelectorAll("button.tab")) b.classList.toggle("on", b.dataset.view === v);
  if (v === "nodes") refreshNodes();
  if (v === "pairing") refreshPairing();
}

async function start() {
  // The token comes in the fragment (#token=…) once; it leaves the address bar at once.
  const frag = new URLSearchParams(location.hash.slice(1));
  if (frag.get("token")) { S.token = frag.get("token"); history.replaceState(null, "", location.pathname + location.search); }
  for (const b of document.querySelectorAll("button.tab")) b.onclick = () => showView(b.dataset.view);
  $("menu").onclick = () => document.body.classList.toggle("sessions-open");
  $("new-session").onclick = newSession;
  $("nodes-refresh").onclick = refreshNodes;
  $("pairing-refresh").onclick = refreshPairing;
  $("abort").onclick = abort;
  const input = $("input");
  $("composer").onsubmit = (e) => { e.preventDefault(); const t = input.value.trim(); if (!t || !S.hello) return; input.value = ""; send(t); };
  input.onkeydown = (e) => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("composer").requestSubmit(); } };
  $("signin-form").onsubmit = (e) => { e.preventDefault(); S.token = $("token").value.trim(); $("token").value = ""; S.stop = false; show("signin", false); connect(); };
  // The key is loaded (or made) while the socket opens; the connect waits for it.
  S.idReady = identity();
  if (!S.token && !store.get(LS.token)) return askToken();
  connect();
}
document.readyState === "loading" ? document.addEventListener("DOMContentLoaded", start) : start();
})();
