"""The dashboard page: one HTML document with its CSS and JavaScript inline (no build step, no asset
fetched from anywhere). It polls ``/api/cluster`` every second and redraws four panels: the topology
(one card a node, per pattern in the diagram's order), the load balance (share bars), the accounting
in words (each node's ``summary``) and recent events.

Every element a test reads carries ``data-*`` attributes with the raw values (``data-label``,
``data-state``, ``data-count``), so what the page shows can be checked without parsing its text.
"""

from __future__ import annotations

PAGE = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>messaging-patterns cluster</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
:root { --ok:#1f9d55; --warn:#d98b0b; --bad:#d0312d; --bg:#f6f7f9; --card:#fff; --mute:#6b7280; }
* { box-sizing: border-box; }
body { font: 14px/1.35 system-ui, sans-serif; margin: 0; background: var(--bg); color: #111; }
header { display:flex; gap:1.5em; align-items:baseline; padding:.6em 1em; background:#111827; color:#fff; }
header h1 { font-size:1.1em; margin:0; } header a { color:#93c5fd; } #meta { color:#d1d5db; }
main { display:grid; grid-template-columns: 3fr 2fr; gap:1em; padding:1em; }
section { background:var(--card); border-radius:8px; padding:.7em 1em; box-shadow:0 1px 2px #0002; }
h2 { font-size:1em; margin:.2em 0 .6em; }
h3 { font-size:.9em; margin:.8em 0 .3em; color:var(--mute); font-weight:600; }
.pattern { display:flex; align-items:center; gap:.5em; margin-bottom:.7em; flex-wrap:nowrap; }
.col { display:flex; flex-direction:column; gap:.35em; min-width:11em; }
.arrow { color:var(--mute); font-size:1.4em; }
.node { border:1px solid #ddd; border-left:6px solid var(--ok); border-radius:6px; padding:.25em .5em; }
.node.unhealthy { border-left-color:var(--warn); background:#fff8eb; }
.node.lost { border-left-color:var(--bad); background:#fde8e8; color:#7f1d1d; }
.node .name { font-weight:600; } .node .st { color:var(--mute); font-size:.85em; }
.node .rates { font-variant-numeric: tabular-nums; font-size:.85em; }
.bar { display:grid; grid-template-columns: 9em 1fr 7em; gap:.5em; align-items:center; margin:.15em 0; }
.bar .track { background:#e5e7eb; border-radius:4px; height:.9em; overflow:hidden; }
.bar .fill { background:#3b82f6; height:100%; }
.bar .num { font-variant-numeric: tabular-nums; text-align:right; }
table { border-collapse: collapse; width:100%; } td, th { padding:.15em .4em; text-align:left; }
td.n { text-align:right; font-variant-numeric: tabular-nums; }
.acct td:first-child { white-space:nowrap; font-weight:600; }
#events { max-height: 22em; overflow:auto; font-size:.9em; }
.ev { padding:.1em 0; border-bottom:1px solid #eee; } .ev time { color:var(--mute); margin-right:.5em; }
.ev.bad { color:var(--bad); } .ev.warn { color:#92400e; }
.empty { color:var(--mute); font-style:italic; }
</style></head>
<body>
<header><h1>messaging-patterns cluster</h1><span id="meta">connecting...</span><span id="links"></span></header>
<main>
  <section><h2>Topology (live, every second)</h2><div id="topology"></div></section>
  <section><h2>Load balance</h2><div id="balance"></div></section>
  <section><h2>Accounting</h2><div id="accounting"></div></section>
  <section><h2>Recent events</h2><div id="events"></div></section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const ENT = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\\"": "&quot;", "'": "&#39;"};
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ENT[c]);
const pct = (x) => (100 * x).toFixed(1) + "%";

function card(n) {
  const cls = n.lost ? "lost" : (n.ok ? "ok" : "unhealthy");
  const why = n.ok ? "" : ` title="${esc(n.reason)}"`;
  return `<div class="node ${cls}" data-label="${esc(n.label)}" data-role="${esc(n.role)}" data-state="${esc(n.state)}"`
    + ` data-node="${esc(n.node)}" data-ok="${n.ok}"${why}>`
    + `<div class="name">${esc(n.label)}</div>`
    + `<div class="st">${esc(n.role)} &middot; ${esc(n.state)}${n.ok ? "" : " &middot; " + esc(n.reason)}</div>`
    + `<div class="rates">in ${n.in_rate}/s &middot; out ${n.out_rate}/s</div></div>`;
}

function topology(d) {
  const out = [];
  for (const [p, cols] of Object.entries(d.topology)) {
    const nodes = d.nodes.filter((n) => n.pattern === p);
    if (!nodes.length) continue;
    const html = cols.map((roles) => {
      const here = nodes.filter((n) => roles.includes(n.role));
      return `<div class="col">${here.map(card).join("") || '<span class="empty">none</span>'}</div>`;
    }).join('<span class="arrow">&rarr;</span>');
    out.push(`<h3>${esc(d.titles[p] || p)}</h3><div class="pattern" data-pattern="${p}">${html}</div>`);
  }
  const other = d.nodes.filter((n) => !(n.pattern in d.topology));
  if (other.length) out.push(`<h3>other</h3><div class="pattern">${other.map(card).join("")}</div>`);
  $("topology").innerHTML = out.join("") || '<p class="empty">no node found yet</p>';
}

function bars(kind, rows) {
  if (!rows || !rows.length) return '<p class="empty">nothing counted yet</p>';
  return rows.map((r) => `<div class="bar" data-kind="${kind}" data-key="${esc(r.key)}" data-label="${esc(r.label)}"`
    + ` data-count="${r.count}"><span>${esc(r.label)}</span><span class="track">`
    + `<span class="fill" style="display:block;width:${pct(r.share)}"></span></span>`
    + `<span class="num">${r.count} (${pct(r.share)})</span></div>`).join("");
}

function balance(d) {
  const b = d.balance, pl = b.pipeline;
  let h = "<h3>request-reply: replies by worker, counted by the broker</h3>" + bars("broker", b.reqrep.broker);
  h += "<h3>request-reply: replies by worker, counted by the clients</h3>" + bars("clients", b.reqrep.clients);
  const done = pl.complete ? ", complete" : "";
  const batch = pl.batch ? ` of batch ${esc(pl.batch)} (${pl.distinct}/${pl.size ?? "?"}${done})` : "";
  h += `<h3>pipeline: results by pipeworker, counted by the sink${batch}</h3>` + bars("sink", pl.by_worker);
  const topics = [...new Set(b.pubsub.flatMap((s) => Object.keys(s.topics)))].sort();
  h += "<h3>pub/sub: messages received per subscriber and topic</h3>";
  if (!b.pubsub.length) h += '<p class="empty">no subscriber</p>';
  else h += "<table><tr><th>subscriber</th>" + topics.map((t) => `<th>${esc(t)}</th>`).join("") + "<th>total</th></tr>"
    + b.pubsub.map((s) => `<tr data-subscriber="${esc(s.label)}"><td>${esc(s.label)}</td>`
      + topics.map((t) => `<td class="n" data-topic="${esc(t)}">${s.topics[t] ?? 0}</td>`).join("")
      + `<td class="n">${Object.values(s.topics).reduce((a, x) => a + x, 0)}</td></tr>`).join("") + "</table>";
  $("balance").innerHTML = h;
}

function accounting(d) {
  const out = [];
  for (const [p, rows] of Object.entries(d.accounting)) {
    if (!rows.length) continue;
    const trs = rows.map((r) =>
      `<tr data-label="${esc(r.label)}"><td>${esc(r.label)}</td><td>${esc(r.summary)}</td></tr>`);
    out.push(`<h3>${esc(d.titles[p] || p)}</h3><table class="acct">` + trs.join("") + "</table>");
  }
  $("accounting").innerHTML = out.join("") || '<p class="empty">nothing yet</p>';
}

function events(d) {
  $("events").innerHTML = d.events.map((e) => `<div class="ev ${e.level}"><time>`
    + new Date(e.t * 1000).toLocaleTimeString() + `</time>${esc(e.text)}</div>`).join("")
    || '<p class="empty">no events yet</p>';
}

async function tick() {
  try {
    const r = await fetch("api/cluster", {cache: "no-store"});
    const d = await r.json();
    if (d.nodes) {
      topology(d); balance(d); accounting(d); events(d);
      $("meta").textContent = `${d.counts.nodes} nodes: ${d.counts.ok} healthy, ${d.counts.lost} lost`
        + ` \\u00b7 updated ${new Date(d.now * 1000).toLocaleTimeString()} (poll ${d.polls})`;
      $("meta").dataset.polls = d.polls;
      $("links").innerHTML = d.prometheus ? `<a href="${esc(d.prometheus)}">Prometheus</a>` : "";
    }
  } catch (e) {
    $("meta").textContent = "dashboard not answering: " + e;
  }
}
tick();
setInterval(tick, 1000);
</script>
</body></html>
"""
