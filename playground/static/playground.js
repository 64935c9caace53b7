// guestgate playground. Everything the page shows that came from a server
// or a token is written with textContent, never as HTML. Secrets typed here
// are used only by WebCrypto in this page and are never sent.
"use strict";

const $ = (id) => document.getElementById(id);
const enc = new TextEncoder();

function setText(id, s) { $(id).textContent = s == null ? "" : String(s); }

function hex(buf) {
  return Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, "0")).join("");
}

function b64url(bytes) {
  let s = "";
  for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

// base64 in either alphabet, padded or not, as the guest issuer's secret is.
function fromBase64(s) {
  const t = s.trim().replace(/-/g, "+").replace(/_/g, "/").replace(/=+$/, "");
  if (!/^[A-Za-z0-9+/]*$/.test(t) || t.length % 4 === 1) throw new Error("the secret is not base64");
  const bin = atob(t + "===".slice((t.length + 3) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

async function hmacSHA256(keyBytes, message) {
  const key = await crypto.subtle.importKey("raw", keyBytes, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return crypto.subtle.sign("HMAC", key, enc.encode(message));
}

function decodeSegment(seg) {
  const t = seg.replace(/-/g, "+").replace(/_/g, "/");
  const bin = atob(t + "===".slice((t.length + 3) % 4));
  const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
}

// showToken writes a token, its decoded header and claims, and its expiry.
function showToken(prefix, token) {
  setText(prefix + "-token", token);
  const parts = token.split(".");
  try {
    const header = decodeSegment(parts[0]);
    const claims = decodeSegment(parts[1]);
    setText(prefix + "-header", JSON.stringify(header, null, 2));
    setText(prefix + "-claims", JSON.stringify(claims, null, 2));
    if (typeof claims.exp === "number") {
      const exp = new Date(claims.exp * 1000);
      const mins = Math.round((exp.getTime() - Date.now()) / 60000);
      setText(prefix + "-expiry", exp.toISOString() + " (in " + mins + " min)");
    } else {
      setText(prefix + "-expiry", "no exp claim");
    }
  } catch (e) {
    setText(prefix + "-header", "(not a JWT: " + e.message + ")");
    setText(prefix + "-claims", "");
    setText(prefix + "-expiry", "");
  }
}

function showStatus(prefix, ok, message) {
  $(prefix + "-result").hidden = false;
  const st = $(prefix + "-status");
  st.className = "status " + (ok ? "ok" : "bad");
  st.textContent = message;
  $(prefix + "-token-block").hidden = !ok;
}

// apiError is the API's own answer: status, body as sent, and Retry-After.
async function apiError(resp) {
  let msg = resp.status + " " + resp.statusText;
  const retry = resp.headers.get("Retry-After");
  if (retry) msg += " (Retry-After: " + retry + " s)";
  const body = (await resp.text()).trim();
  if (body) msg += ": " + body;
  return msg;
}

// Tabs.
function selectTab(tab) {
  for (const t of document.querySelectorAll('nav [role="tab"]')) {
    const on = t === tab;
    t.setAttribute("aria-selected", String(on));
    $(t.dataset.panel).hidden = !on;
  }
}

// The catalog: providers, widgets, guest issuers, policy revision.
let catalog = { providers: [] };

async function loadCatalog() {
  try {
    const resp = await fetch("catalog.json");
    if (!resp.ok) throw new Error(await apiError(resp));
    catalog = await resp.json();
  } catch (e) {
    setText("policy-revision", "catalog unavailable: " + e.message);
    return;
  }
  setText("policy-revision", catalog.policy_revision || "(none)");
  if (!catalog.minting_enabled) {
    setText("mint-provider-info", "The issuer routes are off (issuer.enabled: false): minting answers 404.");
  }
  const sel = $("mint-provider");
  catalog.providers.forEach((p, i) => {
    const o = document.createElement("option");
    o.value = String(i);
    o.textContent = p.id + " (account " + p.account + ")" + (p.description ? ": " + p.description : "");
    sel.appendChild(o);
  });
  if (catalog.providers.length > 0) {
    sel.value = "0";
    pickProvider();
  }
  fillList("widget-ids", catalog.widgets.concat(catalog.public_channels));
  fillList("guest-issuers", catalog.guest_issuers);
  if (catalog.widgets.length > 0 && !$("widget-id").value) $("widget-id").value = catalog.widgets[0];
  if (catalog.guest_issuers.length > 0 && !$("guest-iss").value) $("guest-iss").value = catalog.guest_issuers[0];
}

function fillList(id, values) {
  const list = $(id);
  for (const v of values) {
    const o = document.createElement("option");
    o.value = v;
    list.appendChild(o);
  }
}

function pickProvider() {
  const p = catalog.providers[Number($("mint-provider").value)];
  if (!p || $("mint-provider").value === "") { setText("mint-provider-info", ""); return; }
  $("mint-account").value = p.account;
  $("mint-provider-id").value = p.id;
  setText("mint-provider-info", "role " + p.role + ", scope " + p.scope + ", tokens last " + p.duration +
    (catalog.minting_enabled ? "" : ". The issuer routes are off (issuer.enabled: false): minting answers 404."));
  refreshExamples();
}

// mintBody is the optional fields as a JSON object text, or "".
function mintBody() {
  const body = {};
  for (const [id, key] of [["mint-first-name", "first_name"], ["mint-last-name", "last_name"], ["mint-email", "email"], ["mint-email-domain", "email_domain"]]) {
    const v = $(id).value.trim();
    if (v) body[key] = v;
  }
  const meta = $("mint-metadata").value.trim();
  if (meta) {
    let m;
    try { m = JSON.parse(meta); } catch (e) { throw new Error("metadata is not JSON: " + e.message); }
    if (m === null || typeof m !== "object" || Array.isArray(m)) throw new Error("metadata must be a JSON object");
    body.metadata = m;
  }
  return Object.keys(body).length ? JSON.stringify(body) : "";
}

async function mint() {
  const account = $("mint-account").value.trim();
  const provider = $("mint-provider-id").value.trim();
  const clientId = $("mint-client-id").value.trim();
  const secret = $("mint-secret").value;
  let body;
  try { body = mintBody(); } catch (e) { showStatus("mint", false, e.message); return; }
  // A fresh nonce joins the signed string, so two mints in one second are
  // two different signatures, not a replay.
  const timestamp = String(Math.floor(Date.now() / 1000));
  const nonce = hex(crypto.getRandomValues(new Uint8Array(16)));
  const signature = hex(await hmacSHA256(enc.encode(secret), timestamp + clientId + nonce));
  const headers = {
    "X-Frame-ClientId": clientId,
    "X-Frame-Timestamp": timestamp,
    "X-Frame-Nonce": nonce,
    "X-Frame-Signature": signature,
  };
  if (body) headers["Content-Type"] = "application/json";
  const url = "/v1/accounts/" + encodeURIComponent(account) + "/secure-anonymous/" + encodeURIComponent(provider) + "/tokens";
  let resp;
  try {
    resp = await fetch(url, { method: "POST", headers, body: body || undefined, credentials: "omit" });
  } catch (e) { showStatus("mint", false, "request failed: " + e.message); return; }
  if (!resp.ok) { showStatus("mint", false, await apiError(resp)); return; }
  const token = await resp.json();
  if (typeof token !== "string") { showStatus("mint", false, "the answer is not a token: " + JSON.stringify(token)); return; }
  showStatus("mint", true, resp.status + " " + resp.statusText + ": minted");
  showToken("mint", token);
}

// The copyable examples come from the server (one source of truth with the
// tests); the page only passes what is not secret.
let examplesTimer = 0;
let examplesShown = "curl";

function refreshExamples() {
  clearTimeout(examplesTimer);
  examplesTimer = setTimeout(loadExamples, 200);
}

async function loadExamples() {
  const err = $("examples-error");
  let body = "";
  try { body = mintBody(); } catch (e) { err.hidden = false; err.textContent = e.message; return; }
  const q = new URLSearchParams({
    account_id: $("mint-account").value.trim(),
    provider_id: $("mint-provider-id").value.trim(),
    client_id: $("mint-client-id").value.trim() || "YOUR_CLIENT_ID",
    body,
  });
  if (!q.get("account_id") || !q.get("provider_id")) { err.hidden = false; err.textContent = "Pick a provider to see the examples."; return; }
  let resp;
  try { resp = await fetch("examples.json?" + q.toString()); } catch (e) { err.hidden = false; err.textContent = "examples unavailable: " + e.message; return; }
  if (!resp.ok) { err.hidden = false; err.textContent = await apiError(resp); return; }
  err.hidden = true;
  renderExamples(await resp.json());
}

function renderExamples(examples) {
  const box = $("examples");
  box.replaceChildren();
  const tabs = document.createElement("div");
  tabs.className = "example-tabs";
  box.appendChild(tabs);
  for (const ex of examples) {
    const b = document.createElement("button");
    b.type = "button";
    b.id = "example-tab-" + ex.lang;
    b.textContent = ex.label;
    b.setAttribute("aria-selected", String(ex.lang === examplesShown));
    tabs.appendChild(b);
    const wrap = document.createElement("div");
    wrap.id = "example-" + ex.lang;
    wrap.hidden = ex.lang !== examplesShown;
    const h = document.createElement("h3");
    h.textContent = ex.file + " ";
    const copy = document.createElement("button");
    copy.type = "button";
    copy.className = "small copy";
    copy.dataset.copy = "example-code-" + ex.lang;
    copy.textContent = "Copy";
    h.appendChild(copy);
    const pre = document.createElement("pre");
    pre.id = "example-code-" + ex.lang;
    pre.textContent = ex.code;
    wrap.append(h, pre);
    box.appendChild(wrap);
    b.addEventListener("click", () => {
      examplesShown = ex.lang;
      for (const other of examples) {
        $("example-" + other.lang).hidden = other.lang !== ex.lang;
        $("example-tab-" + other.lang).setAttribute("aria-selected", String(other.lang === ex.lang));
      }
    });
  }
}

// Widget sessions and public-chat links.
let widgetChannel = "";

async function startWidget() {
  const id = $("widget-id").value.trim();
  const kind = $("widget-kind").value === "widget" ? "widgets" : "public-chats";
  let resp;
  try {
    resp = await fetch("/v1/anonymous/" + kind + "/" + encodeURIComponent(id) + "/token", { method: "POST", credentials: "omit" });
  } catch (e) { showStatus("widget", false, "request failed: " + e.message); return; }
  if (!resp.ok) { showStatus("widget", false, await apiError(resp)); return; }
  const answer = await resp.json();
  widgetChannel = String(answer.channelId || "");
  showStatus("widget", true, resp.status + " " + resp.statusText + ": session started");
  setText("widget-channel", widgetChannel);
  showToken("widget", String(answer.token));
}

// Guest login: a pasted guest token, or one signed here with HS256.
async function guestToken() {
  const pasted = $("guest-token-in").value.trim();
  if (pasted) return pasted;
  const key = fromBase64($("guest-secret").value);
  const header = b64url(enc.encode(JSON.stringify({ typ: "JWT", alg: "HS256" })));
  const claims = {
    sub: $("guest-sub").value.trim(),
    name: $("guest-name").value.trim(),
    iss: $("guest-iss").value.trim(),
    exp: Math.floor(Date.now() / 1000) + 3600,
  };
  const payload = b64url(enc.encode(JSON.stringify(claims)));
  return header + "." + payload + "." + b64url(await hmacSHA256(key, header + "." + payload));
}

async function guestLogin() {
  let token;
  try { token = await guestToken(); } catch (e) { showStatus("guest", false, e.message); return; }
  let resp;
  try {
    resp = await fetch("/v1/jwt/login", { method: "POST", headers: { Authorization: "Bearer " + token }, credentials: "omit" });
  } catch (e) { showStatus("guest", false, "request failed: " + e.message); return; }
  if (!resp.ok) { showStatus("guest", false, await apiError(resp)); return; }
  const answer = await resp.json();
  showStatus("guest", true, resp.status + " " + resp.statusText + ": access token valid " + answer.expiresIn + " s");
  showToken("guest", String(answer.token));
}

// Decide.
function parseHeaders(text) {
  const out = {};
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const i = line.indexOf(":");
    if (i <= 0) throw new Error("header line without a name: " + line);
    out[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  return out;
}

async function decideNow() {
  $("decide-result").hidden = false;
  const err = $("decide-error");
  err.hidden = true;
  let request;
  try {
    request = {
      method: $("decide-method").value,
      path: $("decide-path").value.trim(),
      headers: parseHeaders($("decide-headers").value),
      body: $("decide-body").value,
      token: $("decide-token").value.trim(),
      explain: $("decide-explain").checked,
    };
  } catch (e) { showDecideError(e.message); return; }
  let resp;
  try {
    resp = await fetch("/v1/decide", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(request), credentials: "omit" });
  } catch (e) { showDecideError("request failed: " + e.message); return; }
  if (!resp.ok) { showDecideError(await apiError(resp)); return; }
  const d = await resp.json();
  const v = $("decide-verdict");
  v.className = "verdict " + (d.allowed ? "allowed" : "denied");
  v.textContent = d.allowed ? "ALLOWED" : "DENIED";
  $("decide-facts").hidden = false;
  setText("decide-status", d.status);
  setText("decide-reason", d.reason);
  setText("decide-token-error", d.token_error || "none");
  setText("decide-identity", d.kind ? d.kind + " · " + d.subject + " · " + d.issuer : "(no verified token)");
  setText("decide-revision", d.policy_revision || "(decided before the policy ran)");
  // The ownership effect is applied as the check applies it (a claim makes
  // the token's visitor the channel's owner).
  setText("decide-ownership", d.ownership ? d.ownership.need + " channel " + d.ownership.channel + ": " + d.ownership.outcome : "(none)");
  setText("decide-request-id", d.request_id);
  setText("decide-upstream", d.allowed ? d.upstream_headers.map((h) => h.name + ": " + h.value).join("\n") : "(nothing goes upstream)");
  setText("decide-removed", d.headers_removed.join("\n") || "(none)");
  setText("decide-denied", d.allowed ? "" : (d.denied_headers || []).map((h) => h.name + ": " + h.value).join("\n") + "\n\n" + (d.denied_body || ""));
  showShadow(d);
  showWhy(d);
}

// showShadow shows the shadow policy's answer beside the live one.
function showShadow(d) {
  const box = $("decide-shadow");
  box.hidden = !d.shadow;
  if (!d.shadow) return;
  const v = $("decide-shadow-verdict");
  v.className = "verdict " + (d.shadow.allowed ? "allowed" : "denied");
  v.textContent = d.shadow.allowed ? "ALLOWED" : "DENIED";
  setText("decide-shadow-status", d.shadow.status);
  setText("decide-shadow-reason", d.shadow.reason);
  setText("decide-shadow-revision", d.shadow.policy_revision || "(decided before the policy ran)");
  setText("decide-shadow-agrees", d.agrees ? "yes" : "NO: the answers differ");
}

// showWhy shows why each policy decided (the chain of rules, each with its
// file and line, its value or the expression that failed, and the data it
// read) and the input document.
function showWhy(d) {
  const box = $("decide-why");
  const asked = !!(d.explanation || d.explain_error);
  box.hidden = !asked;
  if (!asked) return;
  const err = $("decide-explain-error");
  err.hidden = !d.explain_error;
  err.textContent = d.explain_error || "";
  renderExplanation($("decide-explanation"), d.explanation);
  $("decide-shadow-why").hidden = !d.shadow_explanation;
  renderExplanation($("decide-shadow-explanation"), d.shadow_explanation);
  setText("decide-input", d.input ? JSON.stringify(d.input, null, 2) : "");
}

function renderExplanation(list, x) {
  list.replaceChildren();
  if (!x) return;
  for (const st of x.steps) {
    const li = document.createElement("li");
    li.style.paddingLeft = st.depth * 1.25 + "rem";
    const where = document.createElement("span");
    where.className = "where";
    where.textContent = st.file + ":" + st.line + "  ";
    li.append(where);
    const what = document.createElement("span");
    if (st.outcome === "value") {
      what.textContent = st.rule + " = " + JSON.stringify(st.value);
    } else {
      what.className = "undefined";
      what.textContent = st.rule + " is undefined";
    }
    li.append(what);
    const detail = (text) => {
      const s = document.createElement("span");
      s.className = "detail";
      s.textContent = text;
      li.append(s);
    };
    if (st.expr) detail((st.outcome === "value" ? "if " : "failed: ") + st.expr.replace(/\s+/g, " "));
    if (st.evaluated) detail("as: " + st.evaluated);
    if (st.not_evaluated) detail("(not evaluated: OPA's rule index found from the input that it cannot hold)");
    for (const r of st.data || []) {
      detail("read " + r.ref + (!r.defined ? ": undefined" : r.truncated ? " (too large to show)" : " = " + JSON.stringify(r.value)));
    }
    list.append(li);
  }
  if (x.truncated) {
    const li = document.createElement("li");
    li.textContent = "(the rest of the chain is left out)";
    list.append(li);
  }
}

function showDecideError(msg) {
  const v = $("decide-verdict");
  v.className = "verdict";
  v.textContent = "";
  $("decide-facts").hidden = true;
  const err = $("decide-error");
  err.hidden = false;
  err.textContent = msg;
}

// guarded runs a form's handler and shows anything it throws (an answer
// that is not JSON, a key WebCrypto refuses) where the form shows errors.
function guarded(show, handler) {
  return (ev) => {
    ev.preventDefault();
    handler(ev).catch((e) => show(e && e.message ? e.message : String(e)));
  };
}

function useInDecide(tokenId, path) {
  $("decide-token").value = $(tokenId).textContent;
  if (path) $("decide-path").value = path;
  selectTab($("tab-decide"));
}

document.addEventListener("DOMContentLoaded", () => {
  for (const t of document.querySelectorAll('nav [role="tab"]')) t.addEventListener("click", () => selectTab(t));
  $("mint-provider").addEventListener("change", pickProvider);
  $("mint-form").addEventListener("submit", guarded((m) => showStatus("mint", false, m), mint));
  $("mint-form").addEventListener("input", (e) => { if (e.target.id !== "mint-secret") refreshExamples(); });
  $("widget-form").addEventListener("submit", guarded((m) => showStatus("widget", false, m), startWidget));
  $("guest-form").addEventListener("submit", guarded((m) => showStatus("guest", false, m), guestLogin));
  $("decide-form").addEventListener("submit", guarded(showDecideError, decideNow));
  $("mint-use").addEventListener("click", () => useInDecide("mint-token"));
  $("widget-use").addEventListener("click", () => useInDecide("widget-token", widgetChannel ? "/conversations/channels/" + widgetChannel + "/MarkReadCommand" : ""));
  $("guest-use").addEventListener("click", () => useInDecide("guest-token"));
  document.addEventListener("click", (e) => {
    const id = e.target.dataset && e.target.dataset.copy;
    if (id) navigator.clipboard.writeText($(id).textContent).catch(() => {});
  });
  loadCatalog();
});
