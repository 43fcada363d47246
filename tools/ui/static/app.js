/* Falcon dashboard: live updates over server-sent events. The server renders every piece of
   HTML (escaped by its templates); this script swaps the pieces in, draws the chart, ticks ages,
   and sends submit/cancel with the token the user pasted (kept in this tab's sessionStorage only,
   sent in the X-Falcon-Token header, never in a URL). */
"use strict";

const F = (window.__falcon = { updates: [], connected: false, page: document.body.dataset.page });

// ---- small helpers ------------------------------------------------------------------------------
function fmtAge(seconds) {
  if (!isFinite(seconds)) return "-";
  const s = Math.max(0, Math.floor(seconds));
  const pad = (n) => String(n).padStart(2, "0");
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m " + pad(s % 60) + "s";
  if (s < 86400) return Math.floor(s / 3600) + "h " + pad(Math.floor((s % 3600) / 60)) + "m";
  return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
}

function tickAges() {
  const now = Date.now() / 1000;
  for (const el of document.querySelectorAll(".age[data-since]")) {
    const since = parseFloat(el.dataset.since);
    if (isFinite(since)) el.textContent = fmtAge(now - since);
  }
}
setInterval(tickAges, 1000);

function tsMillis(ts) {            // envelope ts: microseconds and Z; Date.parse wants milliseconds
  return Date.parse(String(ts).replace(/(\.\d{3})\d*Z$/, "$1Z"));
}

// how late each event reached the page: applied (now) minus the event's own timestamp
function recordApplied(causes) {
  const now = Date.now();
  for (const c of causes || []) {
    F.updates.push({ type: c.type, search_id: c.search_id, trial_id: c.trial_id, event_id: c.event_id,
                     stage: c.stage || "shown", ts: c.ts, applied_ms: now, lag_ms: now - tsMillis(c.ts) });
  }
}

function setLive(text, ok) {
  const el = document.getElementById("live");
  if (!el) return;
  el.textContent = text;
  el.classList.toggle("on", !!ok);
}

// One stream per page. It is closed when the page is left (else a page kept in the back/forward
// cache holds its connection, and six of them exhaust the browser's connections to this host),
// and opened again if the page comes back from that cache (it then reloads: its parts are stale).
function connect(view, id, handlers) {
  const url = "/api/stream?view=" + encodeURIComponent(view) + (id ? "&id=" + encodeURIComponent(id) : "");
  const es = new EventSource(url);
  es.onopen = () => { F.connected = true; setLive("live", true); };
  es.onerror = () => { F.connected = false; setLive("reconnecting…", false); };
  for (const [name, fn] of Object.entries(handlers)) {
    es.addEventListener(name, (ev) => {
      const data = JSON.parse(ev.data);
      fn(data);
      recordApplied(data.causes);
    });
  }
  window.addEventListener("pagehide", () => { es.close(); F.connected = false; });
  window.addEventListener("pageshow", (ev) => { if (ev.persisted) location.reload(); });
  return es;
}

function fragment(html, wrapper) {      // server-rendered, escaped HTML -> nodes
  const t = document.createElement(wrapper || "template");
  t.innerHTML = html;
  return t.content || t;
}

// ---- token, submit, cancel -----------------------------------------------------------------
const TOKEN_KEY = "falcon-ui-token";
function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

function initToken() {
  const input = document.getElementById("token");
  if (!input) return;
  const state = document.getElementById("token-state");
  const show = () => { state.textContent = token() ? "set" : "needed to submit/cancel"; };
  input.value = token();
  input.addEventListener("input", () => { sessionStorage.setItem(TOKEN_KEY, input.value.trim()); show(); });
  document.getElementById("token-form").addEventListener("submit", (e) => e.preventDefault());
  show();
}

async function post(url, body) {
  const resp = await fetch(url, {
    method: "POST", headers: { "Content-Type": "application/json", "X-Falcon-Token": token() },
    body: JSON.stringify(body), credentials: "same-origin",
  });
  let data = {};
  try { data = await resp.json(); } catch (e) { /* not JSON */ }
  return { ok: resp.ok, status: resp.status, data };
}

function say(el, text, ok) {
  el.textContent = text;
  el.className = ok ? "ok" : "err";
}

// ---- searches page -------------------------------------------------------------------------
function initSearches() {
  const table = document.getElementById("searches");
  const body = document.getElementById("search-rows");
  const empty = document.getElementById("empty");
  const sortKey = { age: "created", model: "model", status: "status", trials: "trials", best: "best",
                    spent: "spent", id: "id" }[table.dataset.sort] || "created";
  const desc = table.dataset.desc === "true";
  const q = (table.dataset.q || "").toLowerCase();
  const wanted = table.dataset.status;
  const numeric = ["created", "trials", "best", "spent"].includes(sortKey);

  function value(tr) {
    const v = tr.dataset[sortKey];
    if (v === undefined || v === "") return null;
    return numeric ? parseFloat(v) : v.toLowerCase();
  }
  function matches(tr) {
    if (wanted && tr.dataset.status !== wanted) return false;
    return !q || tr.dataset.id.toLowerCase().includes(q) || (tr.dataset.model || "").toLowerCase().includes(q);
  }
  function sortRows() {
    const rows = Array.from(body.querySelectorAll("tr"));
    rows.sort((a, b) => {
      const va = value(a), vb = value(b);
      if (va === null || vb === null) return (va === null) - (vb === null);
      return (va < vb ? -1 : va > vb ? 1 : 0) * (desc ? -1 : 1);
    });
    for (const r of rows) body.appendChild(r);
    empty.hidden = rows.length > 0;
  }

  connect("searches", "", {
    "search-row": (d) => {
      const tr = fragment(d.html).querySelector("tr");
      const old = Array.from(body.querySelectorAll("tr")).find((r) => r.dataset.id === d.search_id);
      if (!matches(tr)) { if (old) old.remove(); }
      else if (old) old.replaceWith(tr);
      else body.prepend(tr);
      sortRows();
      tickAges();
    },
  });

  const form = document.getElementById("submit-form");
  if (form) {
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const out = document.getElementById("submit-result");
      const body = {};
      for (const [k, v] of new FormData(form).entries()) if (String(v).trim() !== "") body[k] = String(v).trim();
      out.textContent = "submitting…";
      const r = await post("/api/searches", body);
      if (r.ok) {
        out.className = "ok";
        out.textContent = "submitted ";
        const a = document.createElement("a");
        a.href = r.data.url;
        a.textContent = r.data.search_id;
        a.id = "submitted-link";
        out.appendChild(a);
      } else {
        say(out, "refused (" + r.status + "): " + (r.data.error || "error"), false);
      }
    });
  }
}

// ---- one search ----------------------------------------------------------------------------
let chart = null;

function chartData(series) {
  return [0, 1, 2, 3].map((k) => series.map((p) => (p.length > k ? p[k] : null)));
}

// the product's compact figures (tools/units.py compact): 5.14M, 12.3k, 0.997 - never 5.14e+6
function compact(x) {
  if (x === null || x === undefined || !isFinite(x)) return "";
  const a = Math.abs(x);
  for (const [d, s] of [[1e12, "T"], [1e9, "B"], [1e6, "M"], [1e3, "k"]]) {
    if (a >= d) return String(Number((x / d).toPrecision(3))) + s;
  }
  return x === 0 ? "0" : String(Number(x.toPrecision(3)));
}

function paddedRange(u, min, max) {       // one value (one successful trial) still gets a visible band
  if (min === null || max === null) return [0, 1];
  if (min === max) { const d = Math.abs(min) * 0.1 || 1; return [min - d, max + d]; }
  const d = (max - min) * 0.08;
  return [min - d, max + d];
}

let valueLabel = "RPS/$";     // the search's objective and its unit (from the page's JSON island)

function drawChart(series) {
  const box = document.getElementById("chart");
  if (!box || typeof uPlot === "undefined") return;
  const data = chartData(series);
  if (chart) { chart.setData(data); return; }
  const width = Math.max(320, box.clientWidth || 560);
  chart = new uPlot({
    width, height: 250,
    // the trials so far (read at each redraw: a live search gains trials after the chart is made)
    scales: { x: { time: false, range: (u) => [0.5, Math.max(1, u.data[0].length) + 0.5] },
              y: { range: paddedRange } },
    axes: [
      { label: "trial", size: 40, incrs: [1, 2, 5, 10, 20, 50, 100], values: (u, v) => v.map((x) => String(x)) },
      // compact ticks and room between them and the label (the label overlapped "12,000,000")
      { label: valueLabel, size: 62, labelSize: 18, labelGap: 4, values: (u, v) => v.map(compact) },
    ],
    series: [
      { label: "trial" },
      { label: "best so far", stroke: "#1f6feb", width: 2, spanGaps: true,
        points: { show: true, size: 8, stroke: "#1f6feb", fill: "#1f6feb" } },
      { label: "trial " + valueLabel, stroke: "#8a8f98", width: 0, paths: () => null,
        points: { show: true, size: 7, stroke: "#57606a", fill: "#8a8f98" } },
      { label: "failed trial", stroke: "#d1242f", width: 0, paths: () => null,
        points: { show: true, size: 9, stroke: "#d1242f", fill: "#d1242f" } },
    ],
    legend: { live: false },
  }, data, box);
}

// a served trial's throughput vs p99 as the load rises, with the p99 SLO as a dashed red line
let servedChart = null;
let servedShown = "";

function drawServed(v) {
  const section = document.getElementById("served-box");
  const box = document.getElementById("served-chart");
  if (!section || !box) return;
  section.hidden = !v;
  if (!v || typeof uPlot === "undefined") return;
  const key = JSON.stringify(v);
  if (servedChart && key === servedShown) return;       // live updates redraw only what changed
  servedShown = key;
  // uPlot wants x ascending: the levels by p99 (it rises with the load); a level past the SLO in red
  const pts = v.curve.slice().sort((a, b) => a.p99_ms - b.p99_ms);
  const data = [pts.map((p) => p.p99_ms), pts.map((p) => p.rps),
                pts.map((p) => (p.meets_slo ? null : p.rps)),
                pts.map((p) => (v.peak && p.concurrency === v.peak.concurrency ? p.rps : null))];
  const slo = v.slo_p99_ms;
  const xmax = Math.max(slo * 1.15, Math.max(...data[0]) * 1.05);
  const ymax = Math.max(...data[1]) * 1.15;
  if (servedChart) servedChart.destroy();
  servedChart = new uPlot({
    width: Math.max(320, box.clientWidth || 560), height: 240,
    scales: { x: { time: false, range: () => [0, xmax] }, y: { range: () => [0, ymax] } },
    axes: [
      { label: "p99 latency (ms)", size: 40, values: (u, vs) => vs.map(compact) },
      { label: "RPS", size: 56, labelSize: 18, labelGap: 4, values: (u, vs) => vs.map(compact) },
    ],
    series: [
      { label: "p99 ms" },
      { label: "RPS (" + v.of + ")", stroke: "#1f6feb", width: 2,
        points: { show: true, size: 7, stroke: "#1f6feb", fill: "#1f6feb" } },
      { label: "past the SLO", stroke: "#d1242f", width: 0, paths: () => null,
        points: { show: true, size: 9, stroke: "#d1242f", fill: "#d1242f" } },
      { label: "peak within the SLO", stroke: "#1a7f37", width: 0, paths: () => null,
        points: { show: true, size: 14, stroke: "#1a7f37", fill: "rgba(0,0,0,0)", width: 2 } },
    ],
    hooks: { draw: [(u) => {            // the SLO: a vertical dashed line at its p99, labelled
      const x = Math.round(u.valToPos(slo, "x", true));
      const ctx = u.ctx;
      ctx.save();
      ctx.strokeStyle = "#d1242f"; ctx.lineWidth = 1.5 * devicePixelRatio;
      ctx.setLineDash([6 * devicePixelRatio, 4 * devicePixelRatio]);
      ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke();
      ctx.setLineDash([]); ctx.fillStyle = "#d1242f";
      ctx.font = (11 * devicePixelRatio) + "px sans-serif"; ctx.textAlign = "right";
      ctx.fillText("SLO p99 " + compact(slo) + " ms", x - 4 * devicePixelRatio, u.bbox.top + 12 * devicePixelRatio);
      ctx.restore();
    }] },
    legend: { live: false },
  }, data, box);
}

function initSearch() {
  const sid = document.body.dataset.searchId;
  const initial = JSON.parse(document.getElementById("initial").textContent);
  if (initial.value_label) valueLabel = initial.value_label;
  drawChart(initial.best_so_far);
  drawServed(initial.served);
  const cancelForm = document.getElementById("cancel-form");

  connect("search", sid, {
    search: (d) => {
      for (const [name, html] of Object.entries(d.parts)) {
        const box = document.getElementById("part-" + name);
        if (box) box.innerHTML = html;          // rendered and escaped by the server's templates
      }
      drawChart(d.best_so_far);
      drawServed(d.served);
      if (cancelForm) cancelForm.hidden = !d.can_cancel;
      document.body.dataset.status = d.status;
      tickAges();
    },
  });

  if (cancelForm) {
    cancelForm.addEventListener("submit", async (e) => {
      e.preventDefault();
      const out = document.getElementById("cancel-result");
      out.textContent = "cancelling…";
      const r = await post("/api/searches/" + encodeURIComponent(sid) + "/cancel",
                           { reason: cancelForm.elements.reason.value.trim() });
      say(out, r.ok ? "cancel sent" : "refused (" + r.status + "): " + (r.data.error || "error"), r.ok);
    });
  }
  document.body.dataset.status = initial.status;
}

// ---- runners and dead letters --------------------------------------------------------------
function initPart(view, event, partId) {
  connect(view, "", {
    [event]: (d) => { document.getElementById(partId).innerHTML = d.html; tickAges(); },
  });
}

initToken();
({
  searches: initSearches,
  search: initSearch,
  runners: () => initPart("runners", "runners", "part-runners"),
  dead_letters: () => initPart("dead-letters", "dead-letters", "part-dead-letters"),
}[F.page] || (() => {}))();
