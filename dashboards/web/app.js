// vigil's built-in dashboard. Plain ES2020, no dependencies, nothing loaded from elsewhere:
// every number on the page comes from this engine's own API (/v1/sql, /v1/subjects,
// /v1/decisions, /v1/decisions/stream, /metrics), called with the bearer token kept in
// localStorage. Charts are SVG drawn here. The page's CSP forbids inline styles and scripts,
// so all styling is by class (or SVG attributes).
"use strict";

const REFRESH_MS = 5000;
const KINDS = ["identity", "session", "ip", "api_key", "device"];
// the zero-trust pillars of the `pillars` SQL view, in display order
const PILLARS = ["identity", "device", "network", "application_workload", "data"];
const ACTIONS = ["allow", "monitor", "step_up", "throttle", "block"];
const TOKEN_KEY = "vigil.token";
const FEED_MAX = 60;
const SVG = "http://www.w3.org/2000/svg";
const EVENT_COLUMN = { identity: "identity", session: "session", ip: "client_ip", api_key: "api_key_id", device: "device" };

const SQL_EXAMPLES = [
  ["Decisions by action", "SELECT action, count(*) AS decisions FROM decisions GROUP BY action ORDER BY decisions DESC"],
  ["Events per minute", "SELECT date_trunc('minute', timestamp) AS minute, count(*) AS events FROM events WHERE timestamp > now() - INTERVAL '1 hour' GROUP BY 1 ORDER BY 1"],
  ["Top client IPs", "SELECT client_ip, count(*) AS requests, sum(CASE WHEN status >= 400 THEN 1 ELSE 0 END) AS errors FROM events GROUP BY client_ip ORDER BY requests DESC LIMIT 20"],
  ["Status codes", "SELECT status, count(*) AS n FROM events GROUP BY status ORDER BY status"],
  ["Rules fired", "SELECT rules, count(*) AS evaluations FROM scores WHERE rules IS NOT NULL GROUP BY rules ORDER BY evaluations DESC LIMIT 20"],
  ["Latest decisions", "SELECT issued_at, kind, subject, action, score, reasons FROM decisions ORDER BY issued_at DESC LIMIT 50"],
  ["Slowest routes", "SELECT route, count(*) AS n, avg(latency_ms) AS avg_latency_ms FROM events WHERE latency_ms IS NOT NULL GROUP BY route ORDER BY avg_latency_ms DESC LIMIT 15"],
];

const state = {
  token: localStorage.getItem(TOKEN_KEY) || "",
  authWaiters: [],
  prevMetrics: null,
  prevMetricsAt: 0,
  active: new Map(), // "kind:id" -> decision record (in force now)
  feed: [], // newest first: {kind, subject, action, score, reasons, issued_at, change}
  feedSeen: new Set(),
  feedStatus: "connecting",
  feedSeq: null,
  feedEpoch: null,
  route: null,
  timer: null,
  loading: false,
  firstLoad: null,
  firstLoadDone: null,
};
state.firstLoad = new Promise((resolve) => { state.firstLoadDone = resolve; });

// ---------- small DOM helpers ----------

const $ = (id) => document.getElementById(id);

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  if (!attrs) return;
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.setAttribute("class", v);
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

function empty(msg) {
  return h("div", { class: "empty", text: msg || "no data yet" });
}

// ---------- formatting ----------

function num(v, digits = 3) {
  if (v === null || v === undefined || v === "") return "—";
  let n = Number(v);
  if (!Number.isFinite(n)) return String(v);
  if (n === 0) n = 0; // no "-0"
  if (Math.abs(n) < 1e-9) n = 0;
  if (Number.isInteger(n)) return n.toLocaleString("en-US");
  const a = Math.abs(n);
  if (a >= 1000) return Math.round(n).toLocaleString("en-US");
  if (a === 0) return "0";
  return Number(n.toPrecision(digits)).toString();
}

function parseTime(t) {
  if (t === null || t === undefined) return null;
  let str = String(t);
  // DataFusion gives naive timestamps (now()) without a zone and with nanoseconds
  if (!/[zZ]|[+-]\d\d:?\d\d$/.test(str)) str += "Z";
  str = str.replace(/(\.\d{3})\d+/, "$1");
  const ms = Date.parse(str);
  return Number.isNaN(ms) ? null : ms;
}

function clock(t) {
  const ms = parseTime(t);
  if (ms === null) return t === null || t === undefined ? "—" : String(t);
  const d = new Date(ms);
  return d.toLocaleTimeString("en-GB", { hour12: false });
}

function dateTime(t) {
  const ms = parseTime(t);
  if (ms === null) return "—";
  const d = new Date(ms);
  return d.toLocaleDateString("en-CA") + " " + d.toLocaleTimeString("en-GB", { hour12: false });
}

function ago(t) {
  const ms = parseTime(t);
  if (ms === null) return "—";
  const secs = Math.round((Date.now() - ms) / 1000);
  if (secs < -5) return "in " + duration(-secs);
  if (secs < 5) return "now";
  return duration(secs) + " ago";
}

function duration(secs) {
  if (secs < 90) return secs + "s";
  if (secs < 5400) return Math.round(secs / 60) + "m";
  if (secs < 172800) return Math.round(secs / 3600) + "h";
  return Math.round(secs / 86400) + "d";
}

function sqlString(v) {
  return "'" + String(v).replace(/'/g, "''") + "'";
}

function subjectHref(kind, id) {
  return "#/subject/" + encodeURIComponent(kind) + "/" + encodeURIComponent(id);
}

function subjectLink(kind, id) {
  return h("a", { class: "subject-link", href: subjectHref(kind, id), title: kind + " " + id, text: id });
}

function actionBadge(action, extra) {
  return h("span", { class: "badge a-" + (action || "none"), text: (action || "none").replace("_", "-") + (extra || "") });
}

// ---------- API ----------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function authHeaders(extra) {
  const headers = Object.assign({}, extra || {});
  if (state.token) headers.authorization = "Bearer " + state.token;
  return headers;
}

// A 401 opens the token form; the call waits for a token and is retried.
async function api(path, opts = {}) {
  for (;;) {
    const resp = await fetch(path, Object.assign({}, opts, { headers: authHeaders(opts.headers), cache: "no-store" }));
    if (resp.status === 401) {
      await askToken(true);
      continue;
    }
    const isText = opts.text === true;
    if (!resp.ok) {
      let detail = resp.status + " " + resp.statusText;
      try {
        const p = await resp.json();
        detail = p.detail || p.title || detail;
      } catch (_) { /* not problem+json */ }
      throw new ApiError(resp.status, detail);
    }
    return isText ? resp.text() : resp.json();
  }
}

function sql(query) {
  return api("/v1/sql", {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json" },
    body: JSON.stringify({ sql: query }),
  });
}

function askToken(unauthorized) {
  const dialog = $("token-dialog");
  dialog.classList.remove("hidden");
  const input = $("token-input");
  input.value = "";
  if (unauthorized && state.token) input.placeholder = "the stored token was refused";
  input.focus();
  return new Promise((resolve) => state.authWaiters.push(resolve));
}

function setToken(token) {
  state.token = token;
  if (token) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
}

function initToken() {
  const params = new URLSearchParams(location.search);
  const t = params.get("token");
  if (t) {
    setToken(t);
    params.delete("token");
    const qs = params.toString();
    history.replaceState(null, "", location.pathname + (qs ? "?" + qs : "") + location.hash);
  }
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    setToken($("token-input").value.trim());
    $("token-dialog").classList.add("hidden");
    const waiters = state.authWaiters.splice(0);
    waiters.forEach((w) => w());
    restartFeed();
  });
  $("token-forget").addEventListener("click", () => {
    setToken("");
    $("token-input").value = "";
  });
  $("token-button").addEventListener("click", () => askToken(false));
}

// ---------- Prometheus text ----------

function parseMetrics(text) {
  const out = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    if (m[3]) {
      const re = /(\w+)="((?:[^"\\]|\\.)*)"/g;
      let l;
      while ((l = re.exec(m[3])) !== null) labels[l[1]] = l[2].replace(/\\(.)/g, "$1");
    }
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}

function metric(ms, name, pred) {
  return ms.filter((m) => m.name === name && (!pred || pred(m.labels)));
}

function sum(list) {
  return list.reduce((a, m) => a + m.value, 0);
}

// ---------- charts (SVG) ----------

// An axis maximum that splits into 5 round steps.
function niceMax(v) {
  if (!(v > 0)) return 1;
  if (v <= 1) return v <= 0.5 ? 0.5 : 1;
  if (v <= 5) return 5;
  if (v <= 10) return 10;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

// Bars: labels along x, one or more stacked series ({name, cls, values}).
function barChart({ labels, series, width = 640, height = 220, xLabel, tickEvery, yFormat = num, legend = true }) {
  const pad = { l: 44, r: 8, t: 10, b: 26 };
  const iw = width - pad.l - pad.r;
  const ih = height - pad.t - pad.b;
  const totals = labels.map((_, i) => series.reduce((a, sr) => a + (Number(sr.values[i]) || 0), 0));
  const max = niceMax(Math.max(0, ...totals));
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img" });
  for (let k = 0; k <= 5; k++) {
    const y = pad.t + ih - (ih * k) / 5;
    svg.append(s("line", { class: "grid", x1: pad.l, x2: width - pad.r, y1: y, y2: y }));
    svg.append(s("text", { class: "tick", x: pad.l - 6, y: y + 4, "text-anchor": "end", text: yFormat((max * k) / 5) }));
  }
  const n = Math.max(labels.length, 1);
  const bw = iw / n;
  const gap = Math.min(bw * 0.2, 4);
  const every = tickEvery || Math.max(1, Math.ceil(n / 8));
  labels.forEach((label, i) => {
    let y0 = pad.t + ih;
    const x = pad.l + i * bw + gap / 2;
    for (const sr of series) {
      const v = Number(sr.values[i]) || 0;
      if (v <= 0) continue;
      const bh = (ih * v) / max;
      y0 -= bh;
      svg.append(s("rect", { class: "bar " + (sr.cls || ""), x, y: y0, width: Math.max(bw - gap, 1), height: bh },
        s("title", { text: `${label}: ${sr.name} ${yFormat(v)}` })));
    }
    if (i % every === 0) {
      svg.append(s("text", { class: "tick", x: x + (bw - gap) / 2, y: height - 8, "text-anchor": "middle", text: xLabel ? xLabel(label) : String(label) }));
    }
  });
  svg.append(s("line", { class: "axis", x1: pad.l, x2: width - pad.r, y1: pad.t + ih, y2: pad.t + ih }));
  const wrap = h("div", { class: "chart-wrap" }, svg);
  if (legend && series.length > 1) {
    wrap.append(h("div", { class: "legend" }, series.map((sr) => h("span", { class: "key" }, h("i", { class: "swatch " + sr.cls }), sr.name))));
  }
  return wrap;
}

function lineChart({ xs, ys, width = 640, height = 200, xLabel, yMax, yFormat = num, cls = "line-main" }) {
  const pad = { l: 44, r: 10, t: 10, b: 26 };
  const iw = width - pad.l - pad.r;
  const ih = height - pad.t - pad.b;
  const numericX = xs.every((x) => typeof x === "number");
  const xmin = numericX ? Math.min(...xs) : 0;
  const xmax = numericX ? Math.max(...xs) : xs.length - 1;
  const ymax = yMax || niceMax(Math.max(0, ...ys.map(Number).filter(Number.isFinite)));
  const px = (x, i) => pad.l + (xmax === xmin ? iw / 2 : (iw * ((numericX ? x : i) - xmin)) / (xmax - xmin));
  const py = (y) => pad.t + ih - (ih * Math.max(0, Number(y) || 0)) / ymax;
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img" });
  for (let k = 0; k <= 5; k++) {
    const y = pad.t + ih - (ih * k) / 5;
    svg.append(s("line", { class: "grid", x1: pad.l, x2: width - pad.r, y1: y, y2: y }));
    svg.append(s("text", { class: "tick", x: pad.l - 6, y: y + 4, "text-anchor": "end", text: yFormat((ymax * k) / 5) }));
  }
  const pts = xs.map((x, i) => `${px(x, i).toFixed(1)},${py(ys[i]).toFixed(1)}`);
  if (pts.length > 1) svg.append(s("polyline", { class: "line " + cls, points: pts.join(" ") }));
  xs.forEach((x, i) => {
    svg.append(s("circle", { class: "pt " + cls, cx: px(x, i), cy: py(ys[i]), r: xs.length > 60 ? 1.5 : 3 },
      s("title", { text: `${xLabel ? xLabel(x) : x}: ${yFormat(ys[i])}` })));
  });
  const ticks = Math.min(6, xs.length);
  for (let k = 0; k < ticks; k++) {
    const i = ticks === 1 ? 0 : Math.round((k * (xs.length - 1)) / (ticks - 1));
    const anchor = ticks > 1 && k === 0 ? "start" : ticks > 1 && k === ticks - 1 ? "end" : "middle";
    svg.append(s("text", { class: "tick", x: px(xs[i], i), y: height - 8, "text-anchor": anchor, text: xLabel ? xLabel(xs[i]) : String(xs[i]) }));
  }
  svg.append(s("line", { class: "axis", x1: pad.l, x2: width - pad.r, y1: pad.t + ih, y2: pad.t + ih }));
  return h("div", { class: "chart-wrap" }, svg);
}

// Horizontal bars, values in [0, max]: for feature contributions and model scores.
function hbars(items, { max = 1, cls = "hbar-fill", format = (v) => num(v) } = {}) {
  const rowH = 22;
  const width = 420;
  const labelW = 210;
  const barW = width - labelW - 60;
  const svg = s("svg", { class: "chart hbars", viewBox: `0 0 ${width} ${items.length * rowH + 4}`, role: "img" });
  items.forEach((it, i) => {
    const y = i * rowH + 2;
    const w = Math.max(1, (barW * Math.min(Math.abs(it.value), max)) / max);
    svg.append(s("text", { class: "hlabel", x: labelW - 6, y: y + 14, "text-anchor": "end", text: it.label },
      s("title", { text: it.label })));
    svg.append(s("rect", { class: "hbar-bg", x: labelW, y: y + 4, width: barW, height: 12, rx: 2 }));
    svg.append(s("rect", { class: it.cls || cls, x: labelW, y: y + 4, width: w, height: 12, rx: 2 }));
    svg.append(s("text", { class: "hvalue", x: labelW + barW + 6, y: y + 14, text: format(it.value) }));
  });
  return svg;
}

// ---------- tables ----------

function cellText(v) {
  if (v === null || v === undefined) return "—";
  if (Array.isArray(v)) return v.join(", ");
  if (typeof v === "object") return JSON.stringify(v);
  if (typeof v === "number") return num(v, 4);
  return String(v);
}

function table(columns, rows, { maxRows = 500, cls = "" } = {}) {
  const thead = h("thead", null, h("tr", null, columns.map((c) => h("th", { class: c.num ? "num" : "", text: c.title || c.name }))));
  const tbody = h("tbody");
  rows.slice(0, maxRows).forEach((r) => {
    tbody.append(h("tr", null, columns.map((c) => {
      const v = c.render ? c.render(r) : cellText(r[c.name]);
      return h("td", { class: [c.num ? "num" : "", c.cls || ""].join(" ").trim() }, v);
    })));
  });
  const t = h("table", { class: "grid-table " + cls }, thead, tbody);
  if (rows.length > maxRows) {
    return h("div", null, t, h("div", { class: "muted small", text: `${rows.length - maxRows} more rows not shown` }));
  }
  return t;
}

function showError(el, err) {
  fill(el, h("div", { class: "error", text: err && err.message ? err.message : String(err) }));
}

// ---------- header: /metrics ----------

async function loadMetrics() {
  const text = await api("/metrics", { text: true });
  const ms = parseMetrics(text);
  const now = Date.now();
  const prev = state.prevMetrics;
  const dt = prev ? (now - state.prevMetricsAt) / 1000 : 0;
  const rate = (name, pred) => {
    if (!prev || dt <= 0) return null;
    const d = sum(metric(ms, name, pred)) - sum(metric(prev, name, pred));
    return Math.max(0, d) / dt;
  };
  const ready = sum(metric(ms, "vigil_ready")) > 0;
  $("st-ready").classList.toggle("ok", ready);
  $("st-ready").classList.toggle("bad", !ready);
  $("st-ready").querySelector(".v").textContent = ready ? "ready" : "not ready";
  const eps = rate("vigil_ingest_events_total");
  $("st-eps").textContent = eps === null ? "…" : num(eps, 3);
  const sources = metric(ms, "vigil_ingest_lines_total");
  $("st-sources").textContent = String(sources.length);
  $("st-active").textContent = state.active.size ? String(state.active.size) : "0";
  updateFeedStatus();
  const result = { ms, prev, dt, rate };
  state.prevMetrics = ms;
  state.prevMetricsAt = now;
  return result;
}

function updateFeedStatus() {
  const st = state.feedStatus;
  const el = $("st-feed");
  el.textContent = st === "live" ? "live" + (state.feedSeq !== null ? " #" + state.feedSeq : "") : st;
  el.className = "v " + (st === "live" ? "good" : st === "connecting" ? "" : "warn");
  $("feed-state").textContent = st === "live" ? "streaming" : st;
}

// ---------- panel: sources and feed state ----------

async function loadSources(m) {
  const el = $("sources");
  let newest = new Map();
  try {
    const r = await sql("SELECT gateway, max(timestamp) AS newest FROM events WHERE timestamp > now() - INTERVAL '24 hours' GROUP BY gateway");
    newest = new Map(r.rows.map((row) => [row.gateway, row.newest]));
  } catch (_) { /* the lag column shows — */ }
  const ms = m.ms;
  const sources = metric(ms, "vigil_ingest_lines_total").map((x) => x.labels);
  const rows = sources.map((l) => {
    const pick = (name) => sum(metric(ms, name, (lab) => lab.source === l.source));
    const lag = newest.has(l.source) ? (Date.now() - parseTime(newest.get(l.source))) / 1000 : null;
    return {
      source: l.source,
      type: l.type,
      events_s: m.rate("vigil_ingest_events_total", (lab) => lab.source === l.source),
      lines: pick("vigil_ingest_lines_total"),
      events: pick("vigil_ingest_events_total"),
      dead: pick("vigil_ingest_dead_letters_total"),
      lag,
    };
  });
  const parts = [];
  if (rows.length) {
    parts.push(table([
      { name: "source" },
      { name: "type" },
      { name: "events_s", title: "events/s", num: true, render: (r) => (r.events_s === null ? "…" : num(r.events_s)) },
      { name: "events", num: true },
      { name: "dead", title: "dead letters", num: true, render: (r) => h("span", { class: r.dead > 0 ? "warn" : "", text: num(r.dead) }) },
      { name: "lag", title: "latest", num: true, cls: "nowrap", render: (r) => (r.lag === null ? "—" : duration(Math.max(0, Math.round(r.lag))) + " ago") },
    ], rows, { cls: "compact" }));
  } else {
    parts.push(empty("no sources configured"));
  }
  const reasons = metric(ms, "vigil_ingest_dead_letters_by_reason_total").filter((x) => x.value > 0);
  if (reasons.length) {
    parts.push(h("div", { class: "kv-line" }, h("span", { class: "k", text: "dead letters by reason" }),
      reasons.map((x) => h("span", { class: "chip", text: `${x.labels.reason} ${num(x.value)}` }))));
  }
  const decisions = metric(ms, "vigil_decisions_total");
  const seq = sum(metric(ms, "vigil_decisions_stream_seq"));
  const dps = m.rate("vigil_decisions_total");
  parts.push(h("h3", { text: "Decision feed" }));
  const feedRows = [
    ["stream", state.feedStatus + (state.feedSeq !== null ? ` (seq ${state.feedSeq} of ${num(seq)})` : ` (seq ${num(seq)})`)],
    ["in force now", num(state.active.size)],
    ["issued", decisions.length ? h("span", null, decisions.map((x) => h("span", { class: "chip a-" + x.labels.action, text: `${x.labels.action.replace("_", "-")} ${num(x.value)}` }))) : "—"],
    ["decisions/s", dps === null ? "…" : num(dps)],
    ["revoked", num(sum(metric(ms, "vigil_decisions_revoked_total")))],
  ];
  for (const w of metric(ms, "vigil_feed_warm")) {
    const f = w.labels.feed || "proxy";
    const stale = sum(metric(ms, "vigil_feed_stale", (l) => (l.feed || "proxy") === f)) > 0;
    const lag = metric(ms, "vigil_feed_lag_seconds", (l) => (l.feed || "proxy") === f);
    feedRows.push([`proxy feed (${f})`, `${w.value > 0 ? "warm" : "cold"}${stale ? ", stale" : ""}${lag.length ? `, lag ${num(lag[0].value)} s` : ""}`]);
  }
  const store = ["events", "scores", "decisions"].map((t) => {
    const v = (name) => sum(metric(ms, name, (l) => l.table === t));
    return { table: t, hot: v("vigil_store_hot_rows"), files: v("vigil_store_files"), flushed: v("vigil_store_rows_flushed_total"), failing: v("vigil_store_flush_failing") };
  });
  parts.push(h("dl", { class: "kv" }, feedRows.map(([k, v]) => [h("dt", { text: k }), h("dd", null, v)])));
  parts.push(h("h3", { text: "Store" }));
  parts.push(table([
    { name: "table" },
    { name: "hot", title: "rows in memory", num: true },
    { name: "flushed", title: "rows flushed", num: true },
    { name: "files", num: true },
    { name: "failing", title: "flush", render: (r) => h("span", { class: r.failing > 0 ? "warn" : "good", text: r.failing > 0 ? "failing" : "ok" }) },
  ], store, { cls: "compact" }));
  fill(el, parts);
}

// ---------- panel: live decisions (SSE over fetch, so the bearer token can be sent) ----------

function normalizeDecision(d, change) {
  // stream/active records carry subject {kind,id}; table rows carry kind + subject strings
  const kind = d.subject && typeof d.subject === "object" ? d.subject.kind : d.kind;
  const subject = d.subject && typeof d.subject === "object" ? d.subject.id : d.subject;
  return {
    id: d.id || `${change}:${kind}:${subject}:${Date.now()}`,
    kind,
    subject,
    action: d.action,
    score: d.score,
    reasons: d.reasons || [],
    issued_at: d.issued_at || new Date().toISOString(),
    expires_at: d.expires_at,
    change: change || d.change || "issue",
  };
}

function addToFeed(list) {
  let added = false;
  for (const d of list) {
    if (state.feedSeen.has(d.id)) continue;
    state.feedSeen.add(d.id);
    state.feed.push(d);
    added = true;
  }
  if (!added) return;
  state.feed.sort((a, b) => (parseTime(b.issued_at) || 0) - (parseTime(a.issued_at) || 0));
  for (const d of state.feed.splice(FEED_MAX)) state.feedSeen.delete(d.id);
  renderFeed();
}

function renderFeed() {
  const el = $("feed");
  if (!state.feed.length) {
    fill(el, h("li", { class: "empty", text: "no decisions yet" }));
    return;
  }
  fill(el, state.feed.map((d) => {
    const rule = d.reasons.find((r) => r.startsWith("rule:"));
    const model = d.reasons.find((r) => r.startsWith("model:"));
    const why = rule || model || d.reasons[0] || "";
    return h("li", { class: "feed-item" + (d.change === "revoke" ? " revoked" : "") },
      h("span", { class: "feed-time", text: clock(d.issued_at) }),
      d.change === "revoke" ? h("span", { class: "badge a-none", text: "revoke" }) : actionBadge(d.action),
      h("span", { class: "feed-subject" }, h("span", { class: "kind", text: d.kind }), " ", subjectLink(d.kind, d.subject)),
      h("span", { class: "feed-score", text: d.score !== undefined && d.score !== null ? num(d.score, 2) : "" }),
      h("span", { class: "feed-why", text: why.replace(/^rule:/, "").replace(/^model:/, "") }));
  }));
}

async function loadFeedHistory() {
  const r = await api("/v1/decisions?limit=" + FEED_MAX);
  addToFeed(r.decisions.map((d) => normalizeDecision(d)));
}

async function loadActive() {
  const r = await api("/v1/decisions?active=true");
  state.active = new Map(r.decisions.map((d) => {
    const n = normalizeDecision(d);
    return [n.kind + ":" + n.subject, n];
  }));
}

let feedAbort = null;

function restartFeed() {
  if (feedAbort) feedAbort.abort();
  feedAbort = null;
  streamFeed();
}

async function streamFeed() {
  const ctrl = new AbortController();
  feedAbort = ctrl;
  let backoff = 1000;
  while (!ctrl.signal.aborted) {
    try {
      let url = "/v1/decisions/stream";
      if (state.feedSeq !== null && state.feedEpoch) url += `?since=${state.feedSeq}&epoch=${encodeURIComponent(state.feedEpoch)}`;
      const resp = await fetch(url, { headers: authHeaders({ accept: "text/event-stream" }), signal: ctrl.signal, cache: "no-store" });
      if (resp.status === 401) {
        state.feedStatus = "needs token";
        updateFeedStatus();
        await askToken(true);
        continue;
      }
      if (!resp.ok || !resp.body) throw new Error("stream answered " + resp.status);
      state.feedStatus = "live";
      updateFeedStatus();
      backoff = 1000;
      await readSse(resp.body, ctrl.signal);
      throw new Error("stream ended");
    } catch (err) {
      if (ctrl.signal.aborted) return;
      state.feedStatus = "reconnecting";
      updateFeedStatus();
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 15000);
    }
  }
}

async function readSse(body, signal) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  let snapshot = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done || signal.aborted) return;
      buf += decoder.decode(value, { stream: true });
      let idx;
      while ((idx = buf.search(/\r?\n\r?\n/)) >= 0) {
        const frame = buf.slice(0, idx);
        buf = buf.slice(idx).replace(/^\r?\n\r?\n/, "");
        let event = "message";
        const data = [];
        for (const line of frame.split(/\r?\n/)) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        snapshot = handleSse(event, data, snapshot);
      }
    }
  } finally {
    try { reader.releaseLock(); } catch (_) { /* already released */ }
  }
}

function handleSse(event, data, snapshot) {
  const parse = (line) => { try { return JSON.parse(line); } catch (_) { return null; } };
  if (event === "hello") {
    const d = parse(data[0]);
    if (d) { state.feedEpoch = d.epoch; state.feedSeq = d.seq; }
  } else if (event === "reset") {
    return [];
  } else if (event === "snapshot") {
    return snapshot.concat(data.map(parse).filter(Boolean));
  } else if (event === "snapshot_end") {
    const d = parse(data[0]);
    if (d) state.feedSeq = d.seq;
    state.active = new Map(snapshot.map((r) => {
      const n = normalizeDecision(r, "issue");
      return [n.kind + ":" + n.subject, n];
    }));
    addToFeed(snapshot.map((r) => normalizeDecision(r, "issue")));
    $("st-active").textContent = String(state.active.size);
    return [];
  } else if (event === "decision") {
    const d = parse(data[0]);
    if (d) {
      const n = normalizeDecision(d, "issue");
      state.active.set(n.kind + ":" + n.subject, n);
      addToFeed([n]);
    }
  } else if (event === "revoke") {
    const d = parse(data[0]);
    if (d && d.subject) {
      state.active.delete(d.subject.kind + ":" + d.subject.id);
      addToFeed([normalizeDecision({ subject: d.subject, reasons: [] }, "revoke")]);
    }
  } else if (event === "heartbeat") {
    const d = parse(data[0]);
    if (d) state.feedSeq = d.seq;
  }
  updateFeedStatus();
  return snapshot;
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

// ---------- panel: decisions by action over time ----------

function rangeMinutes() {
  return Number($("range").value) || 60;
}

async function loadTimeline() {
  const el = $("timeline");
  const minutes = rangeMinutes();
  const bucket = minutes <= 60 ? "minute" : "hour";
  const r = await sql(`SELECT date_trunc('${bucket}', issued_at) AS t, action, count(*) AS n FROM decisions ` +
    `WHERE change = 'issue' AND issued_at > now() - INTERVAL '${minutes} minutes' GROUP BY 1, 2 ORDER BY 1`);
  if (!r.rows.length) {
    fill(el, empty(`no decisions in the last ${minutes >= 60 ? minutes / 60 + " h" : minutes + " min"} yet`));
    return;
  }
  const step = bucket === "minute" ? 60000 : 3600000;
  const end = Math.floor(Date.now() / step) * step;
  const start = end - (bucket === "minute" ? minutes - 1 : Math.ceil(minutes / 60) - 1) * step;
  const slots = [];
  for (let t = start; t <= end; t += step) slots.push(t);
  const index = new Map(slots.map((t, i) => [t, i]));
  const series = ACTIONS.map((a) => ({ name: a.replace("_", "-"), cls: "a-" + a, values: slots.map(() => 0) }));
  for (const row of r.rows) {
    const t = parseTime(row.t);
    const i = index.get(t);
    const a = ACTIONS.indexOf(row.action);
    if (i === undefined || a < 0) continue;
    series[a].values[i] += Number(row.n);
  }
  const total = r.rows.reduce((a, row) => a + Number(row.n), 0);
  fill(el,
    barChart({
      labels: slots,
      series: series.filter((sr) => sr.values.some((v) => v > 0)),
      width: 820,
      height: 230,
      xLabel: (t) => new Date(t).toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" }),
    }),
    h("div", { class: "muted small", text: `${num(total)} decisions issued, per ${bucket}` }));
}

// ---------- panel: score distribution ----------

async function loadHistogram() {
  const el = $("histogram");
  const minutes = rangeMinutes();
  const r = await sql(`SELECT kind, least(floor(peak * 20), 19) AS bucket, count(*) AS n FROM ` +
    `(SELECT kind, subject, max(score) AS peak FROM scores WHERE timestamp > now() - INTERVAL '${minutes} minutes' GROUP BY kind, subject) ` +
    `GROUP BY 1, 2 ORDER BY 2`);
  if (!r.rows.length) {
    fill(el, empty("no scores yet (a score is stored when a rule fires or a model reaches a threshold)"));
    return;
  }
  const labels = Array.from({ length: 20 }, (_, i) => i / 20);
  const series = KINDS.map((k) => ({ name: k, cls: "k-" + k, values: labels.map(() => 0) }));
  for (const row of r.rows) {
    const k = KINDS.indexOf(row.kind);
    const b = Number(row.bucket);
    if (k >= 0 && b >= 0 && b < 20) series[k].values[b] += Number(row.n);
  }
  fill(el, barChart({
    labels,
    series: series.filter((sr) => sr.values.some((v) => v > 0)),
    width: 400,
    height: 200,
    tickEvery: 4,
    xLabel: (v) => v.toFixed(1),
  }), h("div", { class: "muted small", text: "subjects by peak trust score (0 = trusted, 1 = hostile)" }));
}

// ---------- panel: trust by pillar ----------

function pillarBars(rows, field) {
  const by = new Map(rows.map((r) => [r.pillar, Number(r[field])]));
  const items = PILLARS.map((p) => ({ label: p.replace("_", " "), value: by.get(p) || 0, cls: "hbar-fill p-" + p }));
  return hbars(items, { max: Math.max(1, ...items.map((i) => i.value)), format: (v) => String(v) });
}

async function loadPillars() {
  const el = $("pillars");
  const minutes = rangeMinutes();
  const r = await sql(`SELECT pillar, count(DISTINCT kind || ':' || subject) AS subjects, count(*) AS reasons ` +
    `FROM pillars WHERE issued_at > now() - INTERVAL '${minutes} minutes' GROUP BY pillar`);
  if (!r.rows.length) {
    fill(el, empty("no decisions in this range"));
    return;
  }
  fill(el, pillarBars(r.rows, "subjects"),
    h("div", { class: "muted small", text: "subjects decided on, by the pillar of their decisions' rules, features and evidence (SQL: pillars)" }));
}

// ---------- panel: top risky subjects ----------

async function loadTop() {
  const el = $("top");
  const minutes = rangeMinutes();
  const r = await sql(`SELECT kind, subject, peak, evaluations, last_seen, rules FROM (` +
    `SELECT kind, subject, max(score) AS peak, count(*) AS evaluations, max(timestamp) AS last_seen, ` +
    `last_value(rules ORDER BY timestamp) AS rules, ` +
    `row_number() OVER (PARTITION BY kind ORDER BY max(score) DESC, max(timestamp) DESC) AS rn ` +
    `FROM scores WHERE timestamp > now() - INTERVAL '${minutes} minutes' GROUP BY kind, subject) ` +
    `WHERE rn <= 8 ORDER BY kind, peak DESC, last_seen DESC`);
  const titles = { identity: "Identities", session: "Sessions", ip: "IPs", api_key: "API keys", device: "Devices" };
  fill(el, KINDS.map((kind) => {
    const rows = r.rows.filter((x) => x.kind === kind);
    const body = rows.length ? table([
      { name: "subject", render: (x) => subjectLink(kind, x.subject), cls: "subject-cell" },
      { name: "peak", title: "score", num: true, render: (x) => num(x.peak, 3) },
      { name: "action", title: "in force", render: (x) => {
        const d = state.active.get(kind + ":" + x.subject);
        return d ? actionBadge(d.action) : h("span", { class: "muted", text: "—" });
      } },
      { name: "rules", render: (x) => h("span", { class: "rules", text: x.rules ? x.rules.replace(/,/g, ", ") : "model" }) },
      { name: "last_seen", title: "last", cls: "nowrap", render: (x) => ago(x.last_seen) },
    ], rows, { cls: "compact top-risky" }) : empty();
    return h("div", { class: "top-kind" }, h("h3", { text: titles[kind] }), body);
  }));
}

// ---------- SQL console ----------

function initSql() {
  const sel = $("sql-examples");
  for (const [name, q] of SQL_EXAMPLES) sel.append(h("option", { value: q, text: name }));
  sel.addEventListener("change", () => {
    if (sel.value) {
      $("sql-text").value = sel.value;
      sel.value = "";
      runSql();
    }
  });
  $("sql-form").addEventListener("submit", (e) => {
    e.preventDefault();
    runSql();
  });
  $("sql-text").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      runSql();
    }
  });
}

async function runSql() {
  const q = $("sql-text").value.trim();
  if (!q) return;
  const err = $("sql-error");
  $("sql-run").disabled = true;
  $("sql-meta").textContent = "running…";
  try {
    const r = await sql(q);
    err.classList.add("hidden");
    $("sql-meta").textContent = `${num(r.row_count)} rows${r.truncated ? " (truncated)" : ""} · ${num(r.elapsed_ms)} ms`;
    renderSqlResult(r);
  } catch (e) {
    err.textContent = e.message;
    err.classList.remove("hidden");
    $("sql-meta").textContent = "";
    $("sql-table").replaceChildren();
    $("sql-chart").replaceChildren();
  } finally {
    $("sql-run").disabled = false;
  }
}

const NUMERIC = /^(U?Int\d+|Float\d+|Decimal)/;

function renderSqlResult(r) {
  const cols = r.schema.map((c) => ({ name: c.name, num: NUMERIC.test(c.type) }));
  fill($("sql-table"), r.rows.length ? table(cols, r.rows, { maxRows: 500 }) : empty("no rows"));
  const chartEl = $("sql-chart");
  const valueCol = r.schema.slice(1).find((c) => NUMERIC.test(c.type));
  if (!r.rows.length || r.schema.length < 2 || !valueCol) {
    fill(chartEl, h("div", { class: "muted small", text: "chart: needs a first column and a numeric column" }));
    return;
  }
  const first = r.schema[0];
  const isTime = /^(Timestamp|Date)/.test(first.type);
  const rows = r.rows.slice(0, 2000);
  const ys = rows.map((x) => Number(x[valueCol.name]) || 0);
  let chart;
  if (isTime || rows.length > 60) {
    const xs = isTime ? rows.map((x) => parseTime(x[first.name]) || 0) : rows.map((_, i) => i);
    chart = lineChart({
      xs, ys, width: 560, height: 240,
      xLabel: isTime ? (t) => clock(new Date(t).toISOString()) : (i) => cellText(rows[i] ? rows[i][first.name] : i),
    });
  } else {
    chart = barChart({
      labels: rows.map((x) => cellText(x[first.name])),
      series: [{ name: valueCol.name, cls: "sql-bar-fill", values: ys }],
      width: 560, height: 240,
      xLabel: (l) => (l.length > 12 ? l.slice(0, 11) + "…" : l),
    });
  }
  fill(chartEl, h("div", { class: "muted small", text: `${valueCol.name} by ${first.name}` }), chart);
}

// ---------- subject page ----------

async function loadSubjectPillars(kind, id) {
  const r = await sql(`SELECT pillar, count(*) AS reasons FROM pillars ` +
    `WHERE kind = ${sqlString(kind)} AND subject = ${sqlString(id)} GROUP BY pillar`);
  fill($("s-pillars"), h("h3", { text: "Evidence by pillar" }),
    r.rows.length ? pillarBars(r.rows, "reasons") : h("div", { class: "muted", text: "no decision reasons" }));
}

async function loadSubject(kind, id) {
  $("s-kind").textContent = kind;
  $("s-id").textContent = id;
  const errEl = $("s-error");
  let subj;
  try {
    subj = await api(`/v1/subjects/${encodeURIComponent(kind)}/${encodeURIComponent(id)}`);
    errEl.classList.add("hidden");
  } catch (e) {
    errEl.textContent = e.status === 404 ? `${kind} ${id} is not known to the engine (never seen, or forgotten after being idle)` : e.message;
    errEl.classList.remove("hidden");
    subj = null;
  }
  if (subj) renderSubject(subj);
  else {
    // not tracked now: what the tables still know
    fill($("s-summary"), empty("no current trust (the subject is not tracked)"));
    fill($("s-reasons"), empty("—"));
    fill($("s-features"), empty("no features (the subject is not tracked)"));
    fill($("s-decision"));
    const past = await api(`/v1/decisions?kind=${encodeURIComponent(kind)}&subject=${encodeURIComponent(id)}&limit=50`).catch(() => null);
    renderDecisionHistory(past ? past.decisions : []);
  }
  const col = EVENT_COLUMN[kind];
  const [hist, events] = await Promise.all([
    sql(`SELECT timestamp, score, rules, models FROM scores WHERE kind = ${sqlString(kind)} AND subject = ${sqlString(id)} ORDER BY timestamp DESC LIMIT 500`).catch((e) => e),
    col ? sql(`SELECT timestamp, method, path, status, client_ip, identity, session, user_agent, latency_ms FROM events WHERE ${col} = ${sqlString(id)} ORDER BY timestamp DESC LIMIT 50`).catch((e) => e) : null,
  ]);
  const chartEl = $("s-history-chart");
  if (hist instanceof Error) showError(chartEl, hist);
  else if (!hist.rows.length) fill(chartEl, empty("no stored scores for this subject"));
  else {
    const rows = hist.rows.slice().reverse();
    fill(chartEl, lineChart({ xs: rows.map((x) => parseTime(x.timestamp)), ys: rows.map((x) => x.score), yMax: 1, width: 820, height: 200, xLabel: (t) => clock(new Date(t).toISOString()), cls: "line-score" }),
      h("div", { class: "muted small", text: `${hist.rows.length} stored evaluations (a rule fired or a model reached a threshold)` }));
  }
  const evEl = $("s-events");
  if (events instanceof Error) showError(evEl, events);
  else if (!events || !events.rows.length) fill(evEl, empty("no stored events for this subject"));
  else {
    fill(evEl, table([
      { name: "timestamp", title: "time", render: (x) => dateTime(x.timestamp) },
      { name: "method" }, { name: "path", cls: "path" },
      { name: "status", num: true, render: (x) => h("span", { class: x.status >= 400 ? "warn" : "", text: String(x.status) }) },
      { name: "client_ip", render: (x) => (x.client_ip ? subjectLink("ip", x.client_ip) : "—") },
      { name: "identity", render: (x) => (x.identity ? subjectLink("identity", x.identity) : "—") },
      { name: "session", render: (x) => (x.session ? subjectLink("session", x.session) : "—") },
      { name: "latency_ms", title: "ms", num: true },
      { name: "user_agent", cls: "ua" },
    ], events.rows, { cls: "compact" }));
  }
  await loadSubjectPillars(kind, id).catch((e) => showError($("s-pillars"), e));
}

function parseReason(r) {
  let m = /^feature:([^:]+):(.+)=([+-]?[\d.eE+-]+)$/.exec(r);
  if (m) return { type: "feature", model: m[1], feature: m[2], value: Number(m[3]) };
  m = /^model:(.+)=([\d.eE+-]+)$/.exec(r);
  if (m) return { type: "model", model: m[1], value: Number(m[2]) };
  m = /^rule:(.+)$/.exec(r);
  if (m) return { type: "rule", rule: m[1] };
  m = /^manual:(.+)$/.exec(r);
  if (m) return { type: "manual", who: m[1] };
  return { type: "other", text: r };
}

function renderSubject(subj) {
  const d = subj.decision;
  fill($("s-decision"), d ? h("span", null, actionBadge(d.action), h("span", { class: "muted", text: ` until ${dateTime(d.expires_at)} (${ago(d.expires_at)}) · ${d.origin}` })) : h("span", { class: "badge a-none", text: "no decision in force" }));
  $("s-seen").textContent = subj.last_seen ? "last seen " + ago(subj.last_seen) : "";
  $("s-features-at").textContent = subj.features_at ? "as of " + dateTime(subj.features_at) : "";
  const score = subj.score;
  const models = Object.entries(subj.models || {}).map(([k, v]) => ({ label: k, value: Number(v) || 0, cls: "hbar-fill model" }));
  fill($("s-summary"),
    h("div", { class: "score-big " + (score >= 0.9 ? "hot" : score >= 0.5 ? "warm" : "cool") }, score === null || score === undefined ? "—" : num(score, 3),
      h("span", { class: "muted small", text: " trust score (1 = hostile)" })),
    h("div", { class: "kv-line" }, h("span", { class: "k", text: "tracked" }), h("span", { text: subj.tracked ? "yes" : "no (forgotten or never scored)" })),
    h("h3", { text: "Rules holding now" }),
    subj.rules && subj.rules.length ? h("div", null, subj.rules.map((r) => h("span", { class: "chip rule", text: r }))) : h("div", { class: "muted", text: "none" }),
    h("h3", { text: "Model scores" }),
    models.length ? hbars(models) : h("div", { class: "muted", text: "no model scores" }));
  // reasons of the decision in force, else of the latest recent decision
  const source = d || (subj.recent_decisions || [])[0];
  const reasonsEl = $("s-reasons");
  if (!source) {
    fill(reasonsEl, empty("no decision recorded for this subject"));
  } else {
    const reasons = (source.reasons || []).map(parseReason);
    const feats = reasons.filter((x) => x.type === "feature");
    const maxC = Math.max(0.001, ...feats.map((f) => Math.abs(f.value)));
    fill(reasonsEl,
      h("div", { class: "muted small", text: d ? "of the decision in force" : "of the latest decision (" + ago(source.issued_at) + ")" }),
      reasons.filter((x) => x.type === "rule").map((x) => h("div", { class: "reason" }, h("span", { class: "chip rule", text: "rule" }), " ", x.rule)),
      reasons.filter((x) => x.type === "model").map((x) => h("div", { class: "reason" }, h("span", { class: "chip model", text: "model" }), ` ${x.model} = ${num(x.value)}`)),
      reasons.filter((x) => x.type === "manual").map((x) => h("div", { class: "reason" }, h("span", { class: "chip", text: "manual" }), " by " + x.who)),
      reasons.filter((x) => x.type === "other").map((x) => h("div", { class: "reason", text: x.text })),
      feats.length ? [h("h3", { text: "Feature contributions" }), hbars(feats.map((f) => ({ label: f.feature, value: f.value, cls: "hbar-fill contrib" })), { max: Math.max(maxC, 1e-9), format: (v) => (v >= 0 ? "+" : "") + num(v) })] : null);
  }
  const feats = Object.entries(subj.features || {}).sort(([a], [b]) => a.localeCompare(b));
  fill($("s-features"), feats.length ? h("table", { class: "grid-table compact features", id: "subject-features" },
    h("thead", null, h("tr", null, h("th", { text: "feature" }), h("th", { class: "num", text: "value" }))),
    h("tbody", null, feats.map(([k, v]) => h("tr", { class: v === null ? "null" : "" }, h("td", { text: k }), h("td", { class: "num", text: v === null ? "—" : num(v, 4) }))))) : empty("no features (the subject is not tracked now)"));
  renderDecisionHistory(subj.recent_decisions || []);
}

function renderDecisionHistory(recent) {
  fill($("s-decisions"), recent.length ? table([
    { name: "issued_at", title: "issued", render: (x) => dateTime(x.issued_at) },
    { name: "change" },
    { name: "action", render: (x) => actionBadge(x.action) },
    { name: "score", num: true },
    { name: "origin" },
    { name: "expires_at", title: "expires", render: (x) => dateTime(x.expires_at) },
    { name: "reasons", cls: "reasons" },
  ], recent, { cls: "compact" }) : empty("no decisions for this subject"));
}

// ---------- routing and refresh ----------

function currentRoute() {
  const m = /^#\/subject\/([^/]+)\/(.+)$/.exec(location.hash);
  if (m) return { page: "subject", kind: decodeURIComponent(m[1]), id: decodeURIComponent(m[2]) };
  return { page: "overview" };
}

async function refresh() {
  if (state.loading) {
    state.again = true;
    return;
  }
  state.loading = true;
  state.again = false;
  const route = currentRoute();
  try {
    let m = null;
    try {
      m = await loadMetrics();
    } catch (e) {
      $("st-ready").querySelector(".v").textContent = "unreachable";
      $("st-ready").classList.add("bad");
    }
    await loadActive().catch(() => {});
    // without the stream (blocked by a proxy, or ?feed=poll), the feed is polled
    if (state.feedStatus !== "live") await loadFeedHistory().catch(() => {});
    if (route.page === "overview") {
      const tasks = [
        loadTimeline().catch((e) => showError($("timeline"), e)),
        loadHistogram().catch((e) => showError($("histogram"), e)),
        loadPillars().catch((e) => showError($("pillars"), e)),
        loadTop().catch((e) => showError($("top"), e)),
        m ? loadSources(m).catch((e) => showError($("sources"), e)) : Promise.resolve(),
      ];
      await Promise.all(tasks);
      if (!state.feed.length) renderFeed();
      state.firstLoadDone();
    } else {
      await loadSubject(route.kind, route.id);
    }
    $("st-updated").textContent = "updated " + new Date().toLocaleTimeString("en-GB", { hour12: false });
  } finally {
    state.loading = false;
  }
  if (state.again) await refresh();
}

function show(route) {
  const isSubject = route.page === "subject";
  $("overview").classList.toggle("hidden", isSubject);
  $("subject").classList.toggle("hidden", !isSubject);
  if (isSubject) {
    for (const id of ["s-summary", "s-reasons", "s-features", "s-decisions", "s-events", "s-history-chart"]) fill($(id), h("div", { class: "muted", text: "loading…" }));
    fill($("s-decision"));
    window.scrollTo(0, 0);
  }
}

function onRoute() {
  const route = currentRoute();
  show(route);
  refresh();
}

function schedule() {
  clearTimeout(state.timer);
  state.timer = setTimeout(async () => {
    if (!document.hidden) await refresh();
    schedule();
  }, REFRESH_MS);
}

// ?selftest=1: after the first full load (with its pillar chart), click the first subject of a top-risky table and wait
// for the subject page to show its features (the browser test reads body[data-selftest]).
async function selftest() {
  try {
    await state.firstLoad;
    if (!document.querySelector("#pillars svg.hbars")) throw new Error("no pillar chart");
    const link = document.querySelector(".top-risky a.subject-link");
    if (!link) throw new Error("no subject link in the top risky tables");
    const expect = "#/subject/";
    link.click();
    const deadline = Date.now() + 10000;
    for (;;) {
      const rows = document.querySelectorAll("#subject-features tbody tr");
      if (location.hash.startsWith(expect) && rows.length > 0 && !$("subject").classList.contains("hidden")) break;
      if (Date.now() > deadline) throw new Error("the subject page did not render its features");
      await sleep(100);
    }
    document.body.dataset.selftest = "ok";
  } catch (e) {
    document.body.dataset.selftest = "failed: " + (e && e.message ? e.message : String(e));
  }
}

function main() {
  initToken();
  initSql();
  renderFeed();
  window.addEventListener("hashchange", onRoute);
  $("range").addEventListener("change", () => refresh());
  show(currentRoute());
  const params = new URLSearchParams(location.search);
  if (params.get("selftest") === "1") selftest();
  loadFeedHistory().catch(() => {});
  if (params.get("feed") !== "poll") streamFeed();
  else state.feedStatus = "polling";
  refresh().then(() => runSql()).finally(schedule);
}

main();
