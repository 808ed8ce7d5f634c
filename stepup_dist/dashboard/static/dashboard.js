// The stepup-dist dashboard: polls /api/status every few seconds and /api/history every
// 30 s, and renders them. Every text from the server goes in through textContent (never
// innerHTML): folder names, steps and users are shown, never interpreted.
"use strict";

const HISTORY_EVERY = 30000;
const WINDOWS = [["1 h", 3600], ["6 h", 6 * 3600], ["24 h", 24 * 3600]];
let windowSeconds = 3600;
let lastHistory = null;

function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const total = Math.max(0, Math.round(seconds));
  const pad = (n) => String(n).padStart(2, "0");
  if (total < 60) return `${total}s`;
  if (total < 3600) return `${Math.floor(total / 60)}m${pad(total % 60)}s`;
  return `${Math.floor(total / 3600)}h${pad(Math.floor((total % 3600) / 60))}m`;
}

function clock(unix) {
  return unix ? new Date(unix * 1000).toLocaleTimeString() : "";
}

function buildLabel(row) {
  // The folder says more to a person than the build's id; the id stays as a tooltip.
  return h("span", { class: "folder", title: `build ${row.build}` }, row.folder || row.build);
}

function table(headers, rows, empty) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  const head = h("tr", {}, headers.map(([text, cls]) => h("th", { class: cls }, text)));
  return h("table", {}, h("thead", {}, head), h("tbody", {}, rows));
}

function replace(id, ...nodes) {
  document.getElementById(id).replaceChildren(...nodes);
}

function bar(share, full) {
  const fill = h("div", {});
  fill.style.width = `${share * 100}%`; // CSSOM, which the page's CSP allows (not a style attribute)
  return h("div", { class: full ? "bar full" : "bar" }, fill);
}

function renderClusterPools(pools) {
  if (!pools.length) {
    replace("cluster-pools", h("p", { class: "empty" }, "No cluster pools (stepup-dist pool set NAME SIZE)."));
    return;
  }
  replace("cluster-pools", ...pools.map((pool) => {
    const size = pool.size ?? "?";
    const share = pool.size ? Math.min(1, pool.held / pool.size) : 0;
    const full = pool.size !== null && pool.held >= pool.size;
    const head = h("div", { class: "pool-head" },
      h("span", { class: "pool-name" }, pool.name),
      h("span", { class: "pool-use" }, `${pool.held} / ${size} held`),
      bar(share, full),
      pool.waiting.length ? h("span", { class: "waiter" }, `${pool.waiting.length} waiting`) : null);
    const holders = table(
      [["Build"], ["User"], ["Host"], ["Step"], ["Held for", "num"]],
      pool.holders.map((x) => h("tr", { class: "holder", "data-build": x.build },
        h("td", {}, buildLabel(x)), h("td", {}, x.user || "?"), h("td", {}, x.host),
        h("td", { class: "step" }, x.step), h("td", { class: "num" }, duration(x.held_for)))),
      "No holders.");
    const waiting = pool.waiting.length
      ? h("ul", { class: "waiting" }, pool.waiting.map((w) =>
        h("li", { class: "waiter", "data-build": w.build }, "waiting: ", buildLabel(w),
          w.user ? ` (${w.user})` : "", ` since ${clock(w.since)}, ${duration(w.waited)}`)))
      : null;
    return h("div", { class: "pool", "data-pool": pool.name }, head, holders, waiting);
  }));
}

function renderPlanPools(pools) {
  replace("plan-pools", table(
    [["Build"], ["Pool"], ["Held", "num"], ["Size", "num"], ["Steps holding a slot"]],
    pools.map((p) => h("tr", { class: "plan-pool", "data-build": p.build, "data-pool": p.name },
      h("td", {}, buildLabel(p)), h("td", {}, p.name), h("td", { class: "num" }, p.held),
      h("td", { class: "num" }, p.size),
      h("td", { class: "step" }, p.holders.map((x) => `${x.step} [${x.host}]`).join("; ")))),
    "No running build defines a pool."));
}

function renderBuilds(builds) {
  replace("builds", table(
    [["Folder"], ["User"], ["Host"], ["Done", "num"], ["Running", "num"], ["Queued", "num"],
      ["Failed", "num"], ["Skipped", "num"], ["ETA", "num"], ["Running for", "num"]],
    builds.map((b) => h("tr", { class: "build", "data-build": b.build },
      h("td", {}, buildLabel(b)), h("td", {}, b.user), h("td", {}, b.host),
      h("td", { class: "num" }, b.done), h("td", { class: "num" }, b.running),
      h("td", { class: "num" }, b.queued), h("td", { class: "num" }, b.failed),
      h("td", { class: "num" }, b.skipped),
      h("td", { class: "num" }, b.eta === null ? "?" : duration(b.eta)),
      h("td", { class: "num" }, duration(b.elapsed)))),
    "No build is running."));
}

function resources(map) {
  return Object.entries(map || {}).map(([k, v]) => `${k}:${v}`).join(", ");
}

function renderWorkers(workers) {
  replace("workers", table(
    [["Worker"], ["Host"], ["State"], ["Step / idle since"], ["Serves"], ["Queues"], ["Resources"]],
    workers.map((w) => h("tr", { class: "worker", "data-worker": w.name },
      h("td", {}, w.name), h("td", {}, w.host),
      h("td", { class: `state-${w.state}` }, w.state),
      h("td", { class: w.state === "busy" ? "step" : "" }, w.state === "busy"
        ? w.step : (w.idle_since ? `idle since ${clock(w.idle_since)} (${duration(w.idle_for)})` : "")),
      h("td", { class: "serves" }, (w.serves || []).join(", ")),
      h("td", { class: "queues" }, (w.queues || []).join(", ")),
      h("td", { class: "resources" }, resources(w.resources)))),
    "No worker is connected."));
}

function renderHosts(hosts) {
  const rows = [];
  for (const host of hosts) {
    for (const r of host.resources) {
      rows.push(h("tr", { class: "host-resource", "data-host": host.host },
        h("td", {}, host.host), h("td", {}, r.name), h("td", { class: "num" }, r.held),
        h("td", { class: "num" }, r.capacity), h("td", { class: "num" }, host.workers)));
    }
  }
  replace("hosts", table(
    [["Host"], ["Resource"], ["Held", "num"], ["Capacity", "num"], ["Workers", "num"]], rows,
    "No worker offers resources (stepup-worker --resources)."));
}

function renderQueues(queues) {
  replace("queues", table([["Queue"], ["Jobs waiting", "num"]],
    Object.entries(queues || {}).map(([name, depth]) =>
      h("tr", { class: "queue", "data-queue": name }, h("td", {}, name), h("td", { class: "num" }, depth))),
    "No queue yet."));
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return i ? `${n.toFixed(1)} ${units[i]}` : `${n} B`;
}

function renderCache(cache) {
  // Shown only when the server has a cache index (some build used --cache).
  document.getElementById("cache-section").hidden = !cache;
  if (!cache) {
    replace("cache");
    return;
  }
  const rate = cache.hit_rate === null ? "" : `${Math.round(cache.hit_rate * 100)} %`;
  replace("cache", table(
    [["Entries", "num"], ["Hits", "num"], ["Misses", "num"], ["Hit rate", "num"], ["Time saved", "num"],
      ["Bytes left by hits", "num"]],
    [h("tr", { class: "cache" },
      h("td", { class: "num", "data-count": "entries" }, cache.entries),
      h("td", { class: "num", "data-count": "hits" }, cache.hits),
      h("td", { class: "num", "data-count": "misses" }, cache.misses),
      h("td", { class: "num", "data-count": "hit_rate" }, rate),
      h("td", { class: "num", "data-count": "saved", title: `${cache.saved.toFixed(1)} s` },
        cache.saved < 60 ? `${cache.saved.toFixed(1)}s` : duration(cache.saved)),
      h("td", { class: "num", "data-count": "hit_bytes", title: `${cache.hit_bytes} bytes` },
        bytes(cache.hit_bytes)))],
    ""));
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

function chart(id, points, step, now) {
  const width = 600, height = 110, left = 28, bottom = 16;
  const start = now - windowSeconds;
  const shown = points.filter((p) => p[0] + step >= start);
  const top = Math.max(1, ...shown.map((p) => Math.max(p[1], p[2] || 0)));
  const x = (t) => left + ((t - start) / windowSeconds) * (width - left);
  const y = (v) => (height - bottom) - (v / top) * (height - bottom - 6);
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none" });
  root.append(svg("line", { class: "axis", x1: left, y1: y(0), x2: width, y2: y(0) }));
  for (const v of [0, top]) {
    const label = svg("text", { class: "label", x: 2, y: y(v) + 4 });
    label.textContent = String(v);
    root.append(label);
  }
  const tick = svg("text", { class: "label", x: left, y: height - 2 });
  tick.textContent = `-${duration(windowSeconds)}`;
  const nowTick = svg("text", { class: "label", x: width - 24, y: height - 2 });
  nowTick.textContent = "now";
  root.append(tick, nowTick);
  // One filled step shape per run of consecutive buckets (a gap: the dashboard was not reading).
  let run = [];
  const flush = () => {
    if (!run.length) return;
    let d = `M${x(run[0][0])},${y(0)}`;
    for (const [t, held] of run) d += ` L${x(Math.max(t, start))},${y(held)} L${x(Math.min(t + step, now))},${y(held)}`;
    d += ` L${x(Math.min(run[run.length - 1][0] + step, now))},${y(0)} Z`;
    root.append(svg("path", { class: "held-area", d }));
    run = [];
  };
  shown.forEach((p, i) => {
    if (i && p[0] - shown[i - 1][0] > step * 1.5) flush();
    run.push(p);
  });
  flush();
  const sizes = shown.filter((p) => p[2] !== null);
  if (sizes.length) {
    let d = "";
    for (const [t, , size] of sizes) d += `${d ? " L" : "M"}${x(Math.max(t, start))},${y(size)} L${x(Math.min(t + step, now))},${y(size)}`;
    root.append(svg("path", { class: "size-line", d }));
  }
  const last = shown.length ? shown[shown.length - 1] : null;
  const title = h("div", { class: "title" }, h("strong", {}, id),
    h("span", { class: "muted" }, last ? `now ${last[1]} / ${last[2] ?? "?"}; most in window ${Math.max(...shown.map((p) => p[1]))}` : "no data yet"));
  return h("div", { class: "chart", "data-pool": id }, title, root);
}

function renderCharts() {
  if (!lastHistory) return;
  const now = Date.now() / 1000;
  const entries = Object.entries(lastHistory.pools);
  if (!entries.length) {
    replace("charts", h("p", { class: "empty" }, "No pool to chart yet."));
    return;
  }
  replace("charts", ...entries.map(([id, points]) => chart(id, points, lastHistory.step, now)));
}

function renderWindows() {
  replace("windows", ...WINDOWS.map(([label, seconds]) => {
    const button = h("button", { type: "button", class: seconds === windowSeconds ? "on" : "" }, label);
    button.addEventListener("click", () => { windowSeconds = seconds; renderWindows(); renderCharts(); });
    return button;
  }));
}

function render(data) {
  document.getElementById("server").textContent = `${data.server} · prefix ${data.prefix}`;
  document.getElementById("interval").textContent = String(data.interval);
  const error = document.getElementById("error");
  error.hidden = !data.error;
  error.textContent = data.error ? `Cannot read the server: ${data.error} (showing the last reading)` : "";
  if (data.read_at === null) {
    document.getElementById("updated").textContent = "no reading yet";
    return;
  }
  document.getElementById("updated").textContent = `read at ${clock(data.read_at)}`;
  document.body.dataset.readAt = String(data.read_at);
  renderClusterPools(data.cluster_pools);
  renderPlanPools(data.plan_pools);
  renderBuilds(data.builds);
  renderWorkers(data.workers);
  renderHosts(data.hosts);
  renderQueues(data.queues);
  renderCache(data.cache);
}

async function fetchJson(url) {
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

async function poll() {
  let interval = 2;
  try {
    const data = await fetchJson("/api/status");
    interval = data.interval || interval;
    render(data);
  } catch (err) {
    const error = document.getElementById("error");
    error.hidden = false;
    error.textContent = `Cannot reach the dashboard: ${err.message}`;
  }
  setTimeout(poll, interval * 1000);
}

async function pollHistory() {
  try {
    lastHistory = await fetchJson("/api/history");
    renderCharts();
  } catch (err) {
    // The status poll shows the error; the charts keep their last data.
  }
  setTimeout(pollHistory, HISTORY_EVERY);
}

renderWindows();
poll();
pollHistory();
