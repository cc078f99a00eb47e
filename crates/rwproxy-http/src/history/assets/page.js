// The operator's page: reads this node's /status, /events, /series and /peers every two seconds and
// draws them. Plain DOM and SVG, no library; text goes in with textContent only (event
// messages come from the cluster source and are never parsed as HTML).
"use strict";

const REFRESH_MS = 2000;
// The SVG namespace is a name, never fetched.
const SVG = "http://www.w3.org/2000/svg";
const W = 600, H = 160, PAD_L = 40, PAD_B = 18, PAD_T = 8;

function $(id) { return document.getElementById(id); }

// Only a changed text is written: the verdict is a live region, and a screen reader should
// hear it when it changes, not every two seconds.
function text(id, value) {
  const node = $(id);
  if (node.textContent !== value) { node.textContent = value; }
}

function ms(value) {
  if (value === null || value === undefined) { return "unknown"; }
  if (value < 1000) { return value + " ms"; }
  return (value / 1000).toFixed(value < 10000 ? 2 : 1) + " s";
}

function clock(iso) {
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

const VERDICT_WORDS = {
  "ok": "serving traffic",
  "lagging": "lag over health.max_lag",
  "no-primary": "replica without a known primary",
  "degraded": "every reachable node lost the primary: reads served here, writes refused",
  "not-ready": "initial sync not done",
  "draining": "shutting down",
  "unknown": "cluster state unknown",
  "app-down": "the local app fails its health check"
};

function verdictClass(status) {
  if (status === "ok") { return "ok"; }
  if (status === "lagging" || status === "draining" || status === "degraded") { return "warn"; }
  return "bad";
}

async function getJson(path) {
  const response = await fetch(path, { cache: "no-store", credentials: "omit" });
  if (!response.ok) { throw new Error(path + ": HTTP " + response.status); }
  return response.json();
}

function showStatus(s) {
  text("node", s.node);
  document.title = "rwproxy " + s.node + ": " + s.status;
  const badge = $("verdict");
  text("verdict", s.status + (s.status === "ok" || s.status === "degraded" ? " (200)" : " (503)"));
  badge.className = "badge " + verdictClass(s.status);
  let why = VERDICT_WORDS[s.status] || "";
  if (s.problem) { why += ": " + s.problem; }
  if (s.observed && s.observed !== s.status) { why += " (now observed: " + s.observed + ", being confirmed)"; }
  text("why", why);
  text("role", s.role);
  text("primary", s.primary === null ? "none known" : s.primary + (s.role === "primary" ? " (this node)" : ""));
  text("lag", ms(s.lag_ms));
  const positions = Object.keys(s.positions || {}).map(function (db) { return db + " " + s.positions[db]; });
  text("positions", positions.length ? positions.join(", ") : "none");
  const uptime = s.uptime_seconds === undefined ? "" : ", up " + Math.round(s.uptime_seconds) + " s";
  text("version", (s.version || "") + uptime);
}

function el(name, attrs, parent) {
  const node = document.createElementNS(SVG, name);
  Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
  if (parent) { parent.appendChild(node); }
  return node;
}

function clear(node) { while (node.firstChild) { node.removeChild(node.firstChild); } }

// Draws columns (arrays of numbers or null) over times t; returns the points drawn.
function chart(svg, t, columns, limits, unit) {
  clear(svg);
  let max = 0;
  columns.forEach(function (c) { c.values.forEach(function (v) { if (v !== null && v > max) { max = v; } }); });
  limits.forEach(function (l) { if (l.value > max) { max = l.value; } });
  if (max === 0) { max = 1; }
  max *= 1.1;
  const t0 = t.length ? t[0] : 0, t1 = t.length ? t[t.length - 1] : 1;
  const span = Math.max(t1 - t0, 60);
  const x = function (s) { return PAD_L + (W - PAD_L - 4) * (s - t0) / span; };
  const y = function (v) { return PAD_T + (H - PAD_T - PAD_B) * (1 - v / max); };
  el("line", { x1: PAD_L, y1: y(0), x2: W - 4, y2: y(0), "class": "axis" }, svg);
  el("line", { x1: PAD_L, y1: PAD_T, x2: PAD_L, y2: y(0), "class": "axis" }, svg);
  const top = el("text", { x: 2, y: PAD_T + 8 }, svg);
  top.textContent = unit(max);
  const zero = el("text", { x: 2, y: y(0) }, svg);
  zero.textContent = "0";
  const left = el("text", { x: PAD_L, y: H - 4 }, svg);
  left.textContent = t.length ? new Date(t0 * 1000).toLocaleTimeString([], { hour12: false }) : "";
  // The right edge is t0 + span: at least a minute is drawn, so the line may end before it.
  const right = el("text", { x: W - 60, y: H - 4 }, svg);
  right.textContent = t.length ? new Date((t0 + span) * 1000).toLocaleTimeString([], { hour12: false }) : "";
  limits.forEach(function (l) {
    el("line", { x1: PAD_L, y1: y(l.value), x2: W - 4, y2: y(l.value), "class": l.cls }, svg);
    const label = el("text", { x: PAD_L + 4, y: y(l.value) - 2 }, svg);
    label.textContent = l.label;
  });
  let points = 0;
  columns.forEach(function (c) {
    // A gap (unknown value) ends one line and starts the next.
    let run = [];
    const flush = function () {
      if (run.length) { el("polyline", { points: run.join(" "), "class": c.cls }, svg); }
      run = [];
    };
    c.values.forEach(function (v, i) {
      if (v === null) { flush(); return; }
      run.push(x(t[i]).toFixed(1) + "," + y(v).toFixed(1));
      points += 1;
    });
    flush();
  });
  svg.setAttribute("data-points", String(points));
  return points;
}

function showSeries(s) {
  const lagPoints = chart($("lag-chart"), s.t, [{ values: s.lag_ms, cls: "s1" }], [
    { value: s.reads_max_lag_ms, cls: "limit-reads", label: "reads.max_lag " + ms(s.reads_max_lag_ms) },
    { value: s.health_max_lag_ms, cls: "limit-health", label: "health.max_lag " + ms(s.health_max_lag_ms) }
  ], ms);
  const known = s.lag_ms.filter(function (v) { return v !== null; });
  const last = known.length ? known[known.length - 1] : null;
  const worst = known.length ? Math.max.apply(null, known) : null;
  $("lag-chart").setAttribute("aria-label", "Lag over the last " + s.t.length + " seconds: now " + ms(last) +
    ", highest " + ms(worst) + "; " + lagPoints + " points.");
  const columns = [];
  const legend = $("traffic-legend");
  clear(legend);
  // Fixed colours per status class (5xx red, 2xx green); refusals are dashed lines. The
  // legend names every line, so the colour is never the only way to tell them apart.
  const CLASS_COLOURS = { "1xx": "s3", "2xx": "s2", "3xx": "s1", "4xx": "s4", "5xx": "s5" };
  let i = 0;
  const add = function (name, values, code) {
    let cls = CLASS_COLOURS[code];
    if (!cls) {
      cls = "s" + (((i + 2) % 5) + 1) + " refusal";
      i += 1;
    }
    columns.push({ values: values, cls: cls });
    const total = values.reduce(function (a, b) { return a + b; }, 0);
    const item = document.createElement("li");
    item.className = cls;
    item.textContent = name + ": " + total + " in the window";
    legend.appendChild(item);
  };
  Object.keys(s.requests).forEach(function (code) { add("requests " + code, s.requests[code], code); });
  Object.keys(s.refusals).forEach(function (code) { add("refused " + code + " (dashed)", s.refusals[code], null); });
  if (!columns.length) {
    const item = document.createElement("li");
    item.textContent = "no requests in the window";
    legend.appendChild(item);
  }
  chart($("traffic-chart"), s.t, columns, [], function (v) { return v.toFixed(0) + "/s"; });
  const described = [];
  legend.querySelectorAll("li").forEach(function (item) { described.push(item.textContent); });
  $("traffic-chart").setAttribute("aria-label", "Per second over the last " + s.t.length + " seconds: " + described.join("; ") + ".");
}

function details(e) {
  const parts = [];
  if (e.from) { parts.push("from " + e.from); }
  if (e.to) { parts.push("to " + e.to); }
  if (e.message) { parts.push(e.message); }
  if (e.count > 1) { parts.push("first " + clock(e.first_at)); }
  return parts.join("; ");
}

// A last row across the whole table, saying what the rows above leave out.
function noteRow(body, columns, words) {
  const row = document.createElement("tr");
  const cell = document.createElement("td");
  cell.colSpan = columns;
  cell.className = "muted";
  cell.textContent = words;
  row.appendChild(cell);
  body.appendChild(row);
}

function showEvents(doc) {
  const body = $("events-body");
  clear(body);
  doc.events.forEach(function (e) {
    const row = document.createElement("tr");
    row.setAttribute("data-kind", e.kind);
    const time = document.createElement("td");
    time.className = "time";
    const when = document.createElement("time");
    when.setAttribute("datetime", e.at);
    when.textContent = clock(e.at);
    time.appendChild(when);
    const what = document.createElement("td");
    const sev = document.createElement("span");
    sev.className = "sev " + e.severity;
    // Text beside the colour: the word says what the colour says.
    sev.textContent = e.severity === "warn" ? "warning: " : "";
    what.appendChild(sev);
    what.appendChild(document.createTextNode(e.summary));
    const count = document.createElement("td");
    count.textContent = e.count > 1 ? "×" + e.count : "1";
    const more = document.createElement("td");
    more.textContent = details(e);
    row.appendChild(time);
    row.appendChild(what);
    row.appendChild(count);
    row.appendChild(more);
    body.appendChild(row);
  });
  if (doc.dropped > 0) {
    noteRow(body, 4, doc.dropped + " older events no longer kept (the ring holds " + doc.capacity + ").");
  }
}

const STANCE_WORDS = {
  "reaches": "reaches a primary",
  "lost": "lost the primary",
  "abstains": "cannot tell"
};

// The cluster table: hidden when the node has no peers; every flag is a sentence, never only
// a colour.
function showPeers(doc) {
  $("cluster").hidden = doc.known === 0;
  if (doc.known === 0) { return; }
  const flags = $("cluster-flags");
  clear(flags);
  doc.disagreements.forEach(function (d) {
    const item = document.createElement("li");
    item.textContent = "Disagreement: " + d;
    flags.appendChild(item);
  });
  if (!doc.disagreements.length) {
    const item = document.createElement("li");
    item.className = "agree";
    item.textContent = "All " + (doc.heard + 1) + " nodes agree on the primary.";
    flags.appendChild(item);
  }
  const body = $("cluster-body");
  clear(body);
  doc.nodes.forEach(function (n) {
    const row = document.createElement("tr");
    row.setAttribute("data-node", n.node);
    const name = document.createElement("th");
    name.scope = "row";
    name.textContent = n.node + (n.this_node ? " (this node)" : "");
    row.appendChild(name);
    const positions = Object.keys(n.positions).map(function (db) { return db + " " + n.positions[db]; });
    const health = (n.ready ? "" : "not ready, ") + (STANCE_WORDS[n.stance] || n.stance);
    [n.role, n.primary === null ? "none known" : n.primary, ms(n.lag_ms),
      positions.length ? positions.join(", ") : "none", health].forEach(function (value) {
      const cell = document.createElement("td");
      cell.textContent = value;
      row.appendChild(cell);
    });
    body.appendChild(row);
  });
  if (doc.heard < doc.known) {
    noteRow(body, 6, (doc.known - doc.heard) + " peer(s) not heard in the last round.");
  }
}

async function refresh() {
  try {
    const [status, events, series, peers] = await Promise.all([getJson("status"), getJson("events"), getJson("series"), getJson("peers")]);
    showStatus(status);
    showPeers(peers);
    showEvents(events);
    showSeries(series);
    text("limits", "reads " + ms(series.reads_max_lag_ms) + ", health " + ms(series.health_max_lag_ms));
    text("updated", "Updated " + new Date().toLocaleTimeString([], { hour12: false }) + ".");
    document.body.setAttribute("data-loaded", "true");
  } catch (error) {
    text("updated", "Could not reach this node: " + error.message + ". Retrying.");
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
