// beampod web console: a small canvas plot, live updates over server-sent events,
// and a few fetches. No third-party code; everything is served by the pod.
"use strict";

const csrf = () => document.querySelector('meta[name="csrf-token"]').content;
// Where this instrument's pages are: "" for the default instrument, else /i/<name>.
const base = () => document.body.dataset.base || "";

class Plot {
  constructor(canvas) { this.c = canvas; this.x = []; this.y = []; this.xl = ""; this.yl = ""; }
  set(xs, ys, xl, yl) { this.x = xs; this.y = ys; this.xl = xl; this.yl = yl; this.draw(); }
  add(x, y) { this.x.push(x); this.y.push(y); }
  static ticks(lo, hi, n) {
    const span = hi - lo || 1, raw = span / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map(m => m * mag).find(s => span / s <= n) || raw;
    const out = [];
    for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(+t.toPrecision(12));
    return out;
  }
  draw() {
    const c = this.c, g = c.getContext("2d"), W = c.width, H = c.height;
    const L = 80, R = 15, T = 15, B = 45;
    g.clearRect(0, 0, W, H); g.font = "12px sans-serif"; g.fillStyle = "#222"; g.strokeStyle = "#999";
    const pts = [];
    for (let i = 0; i < this.x.length; i++) {
      const a = this.x[i], b = this.y[i];
      if (typeof a === "number" && typeof b === "number" && isFinite(a) && isFinite(b)) pts.push([a, b]);
    }
    g.strokeRect(L, T, W - L - R, H - T - B);
    g.fillText(this.xl, L + (W - L - R) / 2 - 20, H - 8);
    g.save(); g.translate(12, T + (H - T - B) / 2 + 20); g.rotate(-Math.PI / 2); g.fillText(this.yl, 0, 0); g.restore();
    if (!pts.length) { g.fillText("no points yet", L + 10, T + 20); return; }
    let [x0, x1, y0, y1] = [Infinity, -Infinity, Infinity, -Infinity];
    for (const [a, b] of pts) { x0 = Math.min(x0, a); x1 = Math.max(x1, a); y0 = Math.min(y0, b); y1 = Math.max(y1, b); }
    if (x0 === x1) { x0 -= 1; x1 += 1; }
    if (y0 === y1) { y0 -= 1; y1 += 1; }
    const pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad;
    const sx = a => L + (a - x0) / (x1 - x0) * (W - L - R), sy = b => H - B - (b - y0) / (y1 - y0) * (H - T - B);
    g.fillStyle = "#444";
    for (const t of Plot.ticks(x0, x1, 6)) { g.fillText(String(t), sx(t) - 10, H - B + 16); g.beginPath(); g.moveTo(sx(t), H - B); g.lineTo(sx(t), H - B + 4); g.stroke(); }
    g.textAlign = "right";
    for (const t of Plot.ticks(y0, y1, 6)) { g.fillText(String(t), L - 6, sy(t) + 4); g.beginPath(); g.moveTo(L - 4, sy(t)); g.lineTo(L, sy(t)); g.stroke(); }
    g.textAlign = "left";
    g.strokeStyle = "#1f6fb2"; g.fillStyle = "#1f6fb2"; g.beginPath();
    pts.forEach(([a, b], i) => (i ? g.lineTo(sx(a), sy(b)) : g.moveTo(sx(a), sy(b))));
    g.stroke();
    for (const [a, b] of pts) { g.beginPath(); g.arc(sx(a), sy(b), 2.5, 0, 2 * Math.PI); g.fill(); }
    c.dataset.points = String(pts.length);
  }
}

function refreshers() {
  for (const el of document.querySelectorAll("[data-refresh]")) {
    setInterval(async () => {
      if (el.contains(document.activeElement)) return;
      const r = await fetch(el.dataset.refresh, { headers: { accept: "text/html" } });
      if (r.ok) el.innerHTML = await r.text();
    }, 2000);
  }
}

// The Live page's link indicator: what the console says about its bus link (hello and
// status messages, repeated as a heartbeat) and whether this page still hears the
// console. Words match beampod.web._streams.link_text.
function linkText(bus, sseUp) {
  if (!sseUp) return ["reconnecting", "reconnecting to the console…"];
  if (bus.bus === "connecting") return ["reconnecting", "connecting to the bus…"];
  if (bus.bus === "reconnecting") return ["reconnecting", "the console is reconnecting to the bus" + (bus.error ? ` (${bus.error})` : "")];
  if (!bus.run) return ["waiting", "connected to the bus · no run yet"];
  if (bus.running) return ["connected", "connected to the bus · receiving the run"];
  return ["connected", "connected to the bus · waiting for the next run"];
}

function livePage() {
  const plot = new Plot(document.getElementById("plot"));
  const status = document.getElementById("live-status"), count = document.getElementById("points");
  const link = document.getElementById("live-link");
  const thead = document.querySelector("#livetable thead"), tbody = document.querySelector("#livetable tbody");
  let start = null, x = "seq_num", y = "", cols = [], pending = false, lat = [], live = false;
  let bus = { bus: link.dataset.state === "reconnecting" ? "connecting" : "connected", run: null }, sseUp = false;
  let heartbeat = 5, lastHeard = Date.now(), es = null;
  window.beampodLatencies = lat;
  const showLink = () => {
    const [state, words] = linkText(bus, sseUp);
    link.dataset.state = state; link.className = `link link-${state}`; link.textContent = words;
  };
  const redraw = () => {
    if (pending) return; pending = true;
    requestAnimationFrame(() => {
      pending = false; plot.draw(); count.textContent = String(plot.x.length);
      const now = Date.now() / 1000;
      for (const t of plot.pendingTimes || []) lat.push(now - t);
      plot.pendingTimes = [];
    });
  };
  const onMessage = (e) => {
    const m = JSON.parse(e.data);
    lastHeard = Date.now();
    if (m.type === "hello" || m.type === "status") {
      if (m.type === "hello") { live = false; heartbeat = m.heartbeat_s || heartbeat; }
      sseUp = true; bus = m; showLink();
    }
    else if (m.type === "caught-up") { live = true; }
    else if (m.type === "start") {
      start = m; plot.set([], [], "", ""); tbody.innerHTML = ""; thead.innerHTML = "";
      bus = { ...bus, run: m.uid, running: true }; showLink();
      status.textContent = `run ${m.scan_id ?? ""} · ${m.plan_name ?? ""} · ${m.uid.slice(0, 8)} · running`;
    } else if (m.type === "descriptor" && m.stream === "primary") {
      x = (start && start.motors.find(mm => m.keys.includes(mm))) || "seq_num";
      y = m.hints.find(h => h !== x && m.keys.includes(h)) || m.keys.find(k => k !== x) || "";
      cols = ["seq_num", ...new Set([x, ...m.hints.filter(h => m.keys.includes(h))])].filter(Boolean);
      thead.innerHTML = "<tr>" + cols.map(c => `<th>${c}</th>`).join("") + "</tr>";
      plot.xl = x; plot.yl = y; redraw();
    } else if (m.type === "event" && m.stream === "primary") {
      const v = { seq_num: m.seq_num, ...m.data };
      plot.add(v[x], v[y]);
      // Latency is measured for events that arrive live, not for the run so far.
      if (live) (plot.pendingTimes = plot.pendingTimes || []).push(m.time);
      const tr = document.createElement("tr");
      tr.innerHTML = cols.map(c => `<td>${typeof v[c] === "number" ? +v[c].toPrecision(6) : ""}</td>`).join("");
      tbody.prepend(tr);
      while (tbody.rows.length > 40) tbody.deleteRow(-1);
      redraw();
    } else if (m.type === "stop") {
      bus = { ...bus, running: false }; showLink();
      status.textContent = status.textContent.replace(/ · running$/, "") + ` · ${m.exit_status}`;
    }
  };
  const connect = () => {
    es = new EventSource(`${base()}/live/stream`);
    es.onmessage = onMessage;
    // EventSource retries by itself; until the next hello the page is not receiving.
    es.onerror = () => { sseUp = false; showLink(); };
  };
  // A stream that goes silent (a cut the browser cannot see) is closed and re-opened.
  setInterval(() => {
    if (Date.now() - lastHeard > 3000 * heartbeat) {
      sseUp = false; showLink(); es.close(); lastHeard = Date.now(); connect();
    }
  }, 1000);
  connect();
}

async function runPage() {
  const ctl = document.getElementById("plot-controls"), plot = new Plot(document.getElementById("plot"));
  const xs = document.getElementById("x-axis"), ys = document.getElementById("y-axis");
  const stream = document.getElementById("stream"), csv = document.getElementById("csv");
  let table = {};
  const draw = () => plot.set(table[xs.value] || [], table[ys.value] || [], xs.value, ys.value);
  const load = async (first) => {
    const r = await fetch(`${base()}/runs/${ctl.dataset.uid}/${encodeURIComponent(stream.value)}.json`);
    table = r.ok ? await r.json() : {};
    const names = Object.keys(table);
    for (const [sel, want] of [[xs, ctl.dataset.x], [ys, ctl.dataset.y]]) {
      sel.innerHTML = names.map(n => `<option>${n}</option>`).join("");
      if (first && names.includes(want)) sel.value = want;
    }
    csv.href = `${base()}/runs/${ctl.dataset.uid}/${encodeURIComponent(stream.value)}.csv`;
    draw();
  };
  xs.onchange = ys.onchange = draw; stream.onchange = () => load(false);
  await load(true);
}

function devicesPage() {
  const cells = {};
  for (const td of document.querySelectorAll("td[data-signal]")) cells[td.dataset.signal] = td;
  const es = new EventSource(`${base()}/devices/stream`);
  es.onmessage = (e) => {
    const m = JSON.parse(e.data), td = cells[m.signal];
    if (!td) return;
    td.textContent = typeof m.value === "number" ? String(+m.value.toPrecision(8)) : String(m.value);
    td.classList.toggle("disconnected", !m.connected);
  };
  const note = document.getElementById("move-status");
  for (const f of document.querySelectorAll("form.move")) {
    f.onsubmit = async (ev) => {
      ev.preventDefault();
      const body = new URLSearchParams({ device: f.dataset.device, position: f.position.value });
      note.textContent = `moving ${f.dataset.device} to ${f.position.value}…`;
      const r = await fetch(`${base()}/devices/move`, { method: "POST", body, headers: { "x-csrf-token": csrf(), accept: "application/json" } });
      const j = await r.json();
      note.textContent = r.ok ? `mv(${f.dataset.device}, ${f.position.value}): ${j.mode}` : `refused: ${j.detail}`;
      note.classList.toggle("error", !r.ok);
    };
  }
}

document.addEventListener("DOMContentLoaded", () => {
  refreshers();
  const page = document.body.dataset.page;
  if (page === "live") livePage();
  if (page === "run") runPage();
  if (page === "devices") devicesPage();
});
