"use strict";
// The livetune panel page. It draws what the panel's server streams (/api/stream: runs,
// state, journal records, step samples) and sends changes to /api/set, /api/fire and
// /api/undo. No build step: plain JavaScript, uPlot (vendored) for the curves.

const MAX_ROWS = 300;          // journal rows drawn (the filter searches all records held)
const REDRAW_MS = 250;         // curves and journal are redrawn at most this often per run
const LOG_STEPS = 1000;        // positions of a log slider
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
                "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"];

const runs = new Map();        // id -> run view (see newRun)
const staged = new Map();      // variable name -> text to send
const targets = new Set();     // run ids the staged set goes to
const $ = (sel, root = document) => root.querySelector(sel);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function fmt(value) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "number") {
    if (Number.isInteger(value)) return String(value);
    return String(Number(value.toPrecision(6)));
  }
  return String(value);
}

function ago(seconds) {
  if (!seconds) return "never";
  const d = Math.max(0, Date.now() / 1000 - seconds);
  if (d < 60) return `${d.toFixed(0)}s ago`;
  if (d < 3600) return `${(d / 60).toFixed(0)}m ago`;
  return `${(d / 3600).toFixed(1)}h ago`;
}

function who(source) {  // "ipv4:127.0.0.1:4312 (claims 'livetune-panel me@box')" -> the claim
  if (!source) return "";
  const claim = /claims '([^']*)'/.exec(source);
  return claim ? claim[1] : source;
}

// ------------------------------------------------------------------ the runs list
function newRun(summary) {
  return {summary, state: null, events: [], seen: new Set(), progress: [], status: "",
          live: summary.live, shown: false, column: null, charts: new Map(), rows: new Map(),
          triggers: new Map(), redraw: 0, loaded: summary.live, applyTimes: new Map()};
}

function onRuns(list) {
  // the hub's list is the whole truth: a run it no longer lists goes (an ended run's journal
  // removed, or a journal listed as ended in the moment before its live run was discovered)
  const listed = new Set(list.map(summary => summary.id));
  for (const id of [...runs.keys()]) if (!listed.has(id)) runs.delete(id);
  let autoShown = [...runs.values()].filter(r => r.shown).length;
  for (const summary of list) {
    let run = runs.get(summary.id);
    if (!run) {
      run = newRun(summary);
      runs.set(summary.id, run);
      if (summary.live && autoShown < 4) { run.shown = true; autoShown++; }
    }
    run.summary = summary;
    if (!summary.live) run.live = false;
  }
  drawRunList();
  drawColumns();
}

function drawRunList() {
  const list = $("#run-list");
  list.replaceChildren();
  for (const run of runs.values()) {
    const s = run.summary;
    const box = el("input", {type: "checkbox", "data-run": s.id, checked: run.shown,
      onchange: e => { run.shown = e.target.checked; drawColumns(); drawTargets(); }});
    const badge = el("span", {class: `badge ${run.live ? "live" : "ended"}`,
                              text: run.live ? "live" : "ended"});
    const title = run.live ? `pid ${s.pid} at ${s.address}` : (s.journal || "");
    list.append(el("li", {title}, el("label", {}, box, ` ${s.name} `, badge)));
  }
}

function drawColumns() {
  const columns = $("#columns");
  const shown = [...runs.values()].filter(r => r.shown);
  $("#empty").hidden = shown.length > 0;
  for (const run of runs.values()) {
    if (run.shown && !run.column) buildColumn(run);
    if (!run.shown && run.column) { run.column.remove(); run.column = null; run.charts.clear();
                                    run.rows.clear(); run.triggers.clear(); }
  }
  columns.replaceChildren(...shown.map(r => r.column));
  for (const run of shown) { if (!run.loaded) loadJournal(run); drawRun(run); }
  drawTargets();
}

async function loadJournal(run) {
  run.loaded = true;
  const reply = await fetch(`/api/runs/${encodeURIComponent(run.summary.id)}/journal`);
  if (!reply.ok) { run.status = `cannot read the journal (${reply.status})`; drawRun(run);
                   return; }
  addEvents(run, (await reply.json()).events, true);
  drawRun(run);
}

// ------------------------------------------------------------------ one run's column
function buildColumn(run) {
  const s = run.summary;
  const filter = el("input", {class: "filter", type: "search",
    placeholder: "filter: name, kind, source, value", "aria-label": "filter the journal",
    oninput: () => drawJournal(run)});
  const kind = el("select", {class: "kind", "aria-label": "kind of record",
    onchange: () => drawJournal(run)},
    ...["all", "set", "fire", "applied", "event", "start"].map(k => el("option", {value: k,
                                                                                text: k})));
  run.column = el("section", {class: "run", "data-run": s.id},
    el("h2", {}, s.name, " ", el("span", {class: "status"})),
    el("div", {class: "meta"}),
    el("h3", {text: "Variables"}),
    el("table", {class: "vars"}, el("thead", {}, el("tr", {},
      ...["name", "control", "value · version", "status"].map(h => el("th", {text: h})))),
      el("tbody")),
    el("h3", {text: "Triggers"}),
    el("div", {class: "triggers"}),
    el("div", {class: "undo-row"},
      el("button", {type: "button", class: "undo", onclick: () => undoLast(run),
                    title: "set the variables of the newest set back to their old values " +
                           "(refused if anything changed them since)"}, "Undo last set"),
      el("span", {class: "undo-result", role: "status"})),
    el("h3", {text: "Curves"}),
    el("div", {class: "charts"}),
    el("h3", {text: "Journal"}),
    el("div", {class: "journal-tools"}, filter, kind),
    el("table", {class: "journal"}, el("tbody")));
}

function drawRun(run) {
  if (!run.column) return;
  const col = run.column;
  const s = run.summary;
  col.classList.toggle("ended", !run.live);
  $(".status", col).textContent = run.live ? (run.status === "live" ? "" : run.status)
                                           : "ended: read-only";
  const st = run.state;
  const rate = stepsPerSecond(run);
  const meta = [];
  if (s.pid) meta.push(`pid ${s.pid} · ${s.address}`);
  if (st) meta.push(`version ${st.version}`);
  if (st && st.step !== null) meta.push(`step ${st.step}`);
  if (rate !== null) meta.push(`${rate.toFixed(0)} steps/s`);
  if (s.token_required) meta.push("token");
  $(".meta", col).textContent = meta.join(" · ");
  $(".undo", col).disabled = !run.live;
  if (st) { drawVariables(run); drawTriggers(run); }
  else if (!run.live) drawJournalValues(run);
  scheduleRedraw(run);
}

function stepsPerSecond(run) {
  const p = run.progress;
  if (p.length < 2) return null;
  const [t1, s1] = p[p.length - 1];
  for (let i = p.length - 2; i >= 0; i--) {
    const [t0, s0] = p[i];
    if (t1 - t0 >= 2) return (s1 - s0) / (t1 - t0);
  }
  return null;
}

// ------------------------------------------------------------------ variables and controls
function toSlider(control, value) {
  const v = Number(value);
  if (!Number.isFinite(v)) return null;
  if (control.kind === "log") {
    if (v <= 0) return 0;
    const p = Math.log(v / control.low) / Math.log(control.high / control.low) * LOG_STEPS;
    return Math.min(LOG_STEPS, Math.max(0, Math.round(p)));
  }
  return Math.min(control.high, Math.max(control.low, v));
}

function fromSlider(control, position, isInt) {
  if (control.kind === "log") {
    const v = control.low * Math.pow(control.high / control.low, position / LOG_STEPS);
    return String(Number(v.toPrecision(3)));
  }
  const v = Number(position);
  return isInt ? String(Math.round(v)) : String(Number(v.toPrecision(6)));
}

function buildControl(run, v) {
  const c = v.control;
  const stage = text => stageValue(run, v.name, text);
  const wrap = el("div", {class: `control ${c.kind}`});
  const inputs = el("div", {class: "inputs"});
  wrap.append(inputs);
  if (c.kind === "select") {
    const select = el("select", {"aria-label": v.name, onchange: e => stage(e.target.value)},
      ...v.choices.map(ch => el("option", {value: fmt(ch), text: fmt(ch)})));
    inputs.append(select);
  } else if (c.kind === "switch") {
    inputs.append(el("label", {class: "switch"},
      el("input", {type: "checkbox", role: "switch", "aria-label": v.name,
                   onchange: e => stage(e.target.checked ? "true" : "false")}),
      el("span", {class: "knob"})));
  } else {
    const field = el("input", {type: "text", class: "field", inputmode: "decimal",
      "aria-label": v.name, spellcheck: "false",
      onchange: e => { stage(e.target.value.trim()); syncSlider(); },
      onkeydown: e => { if (e.key === "Enter") { stage(e.target.value.trim()); syncSlider(); } }});
    if (c.kind === "log" || c.kind === "linear") {
      const isInt = v.type === "int";
      const range = c.kind === "log"
        ? {min: 0, max: LOG_STEPS, step: 1}
        : {min: c.low, max: c.high, step: isInt ? 1 : (c.high - c.low) / 1000};
      const slider = el("input", {type: "range", class: "slider", ...range,
        "aria-label": `${v.name} (${c.kind === "log" ? "log scale" : "linear"})`,
        oninput: e => { field.value = fromSlider(c, e.target.value, isInt); stage(field.value); }});
      inputs.append(slider);
      wrap.syncSlider = () => {
        const p = toSlider(c, field.value);
        if (p !== null) slider.value = p;
      };
    }
    inputs.append(field);
    if (c.kind === "text") field.removeAttribute("inputmode");
  }
  function syncSlider() { if (wrap.syncSlider) wrap.syncSlider(); }
  wrap.append(el("div", {class: "error", role: "alert"}));
  return wrap;
}

function showValue(control, v, text) {  // put `text` (a value as text) into the control
  const c = v.control;
  if (c.kind === "select") $("select", control).value = text;
  else if (c.kind === "switch") $("input", control).checked = text === "true";
  else {
    const field = $(".field", control);
    if (document.activeElement !== field) field.value = text;
    if (control.syncSlider) control.syncSlider();
  }
}

function varStatus(run, v) {
  if (!v.deferred) return "live";
  if (v.pending) return `pending (v${v.version})`;
  if (v.version === 0) return "default";
  let text = v.applied_step !== null ? `applied at step ${v.applied_step}` : "applied";
  const sent = run.applyTimes.get(`${v.name}@${v.applied_version}`);
  if (sent !== undefined && sent.seen !== undefined) {
    text += ` (${((sent.seen - sent.clicked) / 1000).toFixed(2)} s after apply)`;
  }
  return text;
}

function drawVariables(run) {
  const body = $("table.vars tbody", run.column);
  const names = run.state.variables.map(v => v.name).join("\n");
  if (body.dataset.names !== names) {
    body.replaceChildren();
    run.rows.clear();
    for (const v of run.state.variables) {
      const control = buildControl(run, v);
      const row = el("tr", {"data-var": v.name, title: v.help || undefined},
        el("td", {class: "name"}, v.name), el("td", {}, control),
        el("td", {}, el("span", {class: "value"}), " ", el("span", {class: "version"})),
        el("td", {class: "vstatus"}));
      body.append(row);
      run.rows.set(v.name, {row, control, shown: undefined});
    }
    body.dataset.names = names;
  }
  for (const v of run.state.variables) {
    const r = run.rows.get(v.name);
    const text = fmt(v.value);
    $(".value", r.row).textContent = text;
    $(".version", r.row).textContent = v.version ? `v${v.version}` : "–";
    $(".vstatus", r.row).textContent = varStatus(run, v);
    r.row.classList.toggle("pending", v.pending);
    r.row.title = `${v.help || v.name}\ntype ${v.type}` +
      (v.min !== null || v.max !== null ? `, bounds [${fmt(v.min)}, ${fmt(v.max)}]` : "") +
      (v.choices.length ? `, choices ${v.choices.map(fmt).join(", ")}` : "") +
      (v.source ? `\nlast set by ${v.source}` : "");
    const isStaged = staged.has(v.name) && targets.has(run.summary.id);
    r.row.classList.toggle("staged", isStaged);
    if (!isStaged && r.shown !== text) { showValue(r.control, v, text); r.shown = text; }
    for (const input of r.control.querySelectorAll("input, select")) input.disabled = !run.live;
  }
}

function drawJournalValues(run) {  // an ended run without state: the values its journal holds
  const body = $("table.vars tbody", run.column);
  const values = new Map();
  for (const e of run.events) {
    if (e.kind === "start" && e.data && e.data.values) {
      for (const [k, val] of Object.entries(e.data.values)) values.set(k, {value: val, v: e.v});
    } else if (e.kind === "set") values.set(e.name, {value: e.new, v: e.v});
  }
  body.replaceChildren(...[...values.entries()].sort().map(([name, x]) => el("tr",
    {"data-var": name}, el("td", {class: "name"}, name), el("td", {text: "read-only"}),
    el("td", {}, el("span", {class: "value", text: fmt(x.value)}), " ",
       el("span", {class: "version", text: `v${x.v}`})),
    el("td", {text: "from the journal"}))));
}

function drawTriggers(run) {
  const box = $(".triggers", run.column);
  for (const t of run.state.triggers) {
    let item = run.triggers.get(t.name);
    if (!item) {
      const button = el("button", {type: "button", class: "trigger", "data-trigger": t.name,
        title: t.help || t.name, onclick: () => fireTrigger(run, t.name, item)}, t.name);
      item = {node: el("div", {class: "trigger-item"}, button, el("span", {class: "count"}),
                       el("span", {class: "error", role: "alert"})), button};
      run.triggers.set(t.name, item);
      box.append(item.node);
    }
    item.button.disabled = !run.live;
    const handled = t.pending ? `${t.pending} pending` : `handled ${t.handled}`;
    const last = lastHandled(run, t.name);
    $(".count", item.node).textContent =
      `fired ${t.fires} · ${handled}` + (t.last_fired ? ` · last fired ${ago(t.last_fired)}` : "")
      + (last && last.step !== null ? ` · handled at step ${last.step}` : "");
  }
}

function lastHandled(run, name) {  // the newest `applied` record of a trigger
  for (let i = run.events.length - 1; i >= 0; i--) {
    const e = run.events[i];
    if (e.kind === "applied" && e.name === name) return e;
  }
  return null;
}

// ------------------------------------------------------------------ staging and applying
function stageValue(run, name, text) {
  staged.set(name, text);
  targets.add(run.summary.id);
  for (const r of runs.values()) {
    const row = r.rows.get(name);
    if (row) $(".error", row.control).textContent = "";
  }
  drawStaged();
}

function drawStaged() {
  $("#staged").hidden = staged.size === 0;
  $("#staged-list").replaceChildren(...[...staged.entries()].map(([name, text]) =>
    el("li", {"data-var": name}, `${name} = ${text} `,
       el("button", {type: "button", class: "unstage", title: `do not set ${name}`,
                     onclick: () => { staged.delete(name); drawStaged(); refreshAll(); }},
          "×"))));
  drawTargets();
  for (const run of runs.values()) if (run.state && run.column) drawVariables(run);
}

function drawTargets() {
  const box = $("#targets");
  const live = [...runs.values()].filter(r => r.live && r.shown);
  box.replaceChildren(el("span", {text: "apply to:"}), ...live.map(r => el("label", {},
    el("input", {type: "checkbox", "data-target": r.summary.id,
                 checked: targets.has(r.summary.id),
                 onchange: e => { if (e.target.checked) targets.add(r.summary.id);
                                  else targets.delete(r.summary.id); drawStaged(); }}),
    ` ${r.summary.name}`)));
}

function refreshAll() { for (const run of runs.values()) { const rows = run.rows;
  for (const r of rows.values()) r.shown = undefined; if (run.state) drawRun(run); } }

async function post(path, body) {
  const reply = await fetch(path, {method: "POST", headers: {"Content-Type": "application/json"},
                                   body: JSON.stringify(body)});
  let data = {};
  try { data = await reply.json(); } catch (e) { data = {error: `HTTP ${reply.status}`}; }
  if (data.login) location.assign("/login");
  return {status: reply.status, data};
}

function showError(run, message) {  // beside the control the message names, else in the bar
  const name = [...staged.keys()].find(n => message.startsWith(`${n}:`) ||
                                             message.includes(`named '${n}'`) ||
                                             message.includes(`named ${n}`));
  const row = name && run.rows.get(name);
  if (row) { $(".error", row.control).textContent = message; return true; }
  return false;
}

async function apply() {
  const runIds = [...targets].filter(id => runs.get(id) && runs.get(id).live);
  const result = $("#apply-result");
  if (!staged.size || !runIds.length) {
    result.textContent = "nothing to apply: stage a value and tick a run"; return;
  }
  const values = Object.fromEntries(staged);
  const clicked = Date.now();
  result.textContent = "applying…";
  const {status, data} = await post("/api/set", {runs: runIds, values});
  if (!data.results) { result.textContent = data.error || `HTTP ${status}`; return; }
  const failed = [];
  for (const r of data.results) {
    const run = runs.get(r.run);
    if (r.ok) {
      for (const change of r.changes) run.applyTimes.set(`${change.name}@${change.v}`,
                                                         {clicked});
    } else {
      failed.push(r);
      if (!run || !showError(run, r.error)) failed[failed.length - 1].unplaced = true;
    }
  }
  if (!failed.length) {
    result.textContent = `applied to ${runIds.length} run(s)`;
    staged.clear(); targets.clear();
  } else {
    const names = failed.map(r => runs.get(r.run) ? runs.get(r.run).summary.name : r.run);
    result.textContent = `refused by ${names.join(", ")} (${failed[0].status}); nothing ` +
      `changed there` + (failed.some(r => r.unplaced) ? `: ${failed[0].error}` : "");
    for (const r of data.results) if (r.ok) targets.delete(r.run);
  }
  drawStaged();
  refreshAll();
}

async function fireTrigger(run, name, item) {
  const error = $(".error", item.node);
  error.textContent = "";
  const {data} = await post("/api/fire", {runs: [run.summary.id], name});
  const r = data.results ? data.results[0] : {ok: false, error: data.error};
  if (!r.ok) error.textContent = r.error;
}

async function undoLast(run) {
  const out = $(".undo-result", run.column);
  out.textContent = "";
  const {data} = await post("/api/undo", {run: run.summary.id});
  const r = data.results ? data.results[0] : {ok: false, error: data.error};
  out.textContent = r.ok
    ? "undone: " + r.changes.map(c => `${c.name} ${fmt(c.old)} → ${fmt(c.new)}`).join(", ")
    : r.error;
}

// ------------------------------------------------------------------ the stream
function addEvents(run, events, reset) {
  if (reset) { run.events = []; run.seen = new Set(); }
  for (const e of events) {
    if (run.seen.has(e.v)) continue;
    run.seen.add(e.v);
    run.events.push(e);
    if (e.kind === "applied") {
      const sent = run.applyTimes.get(`${e.name}@${e.applies}`);
      if (sent && sent.seen === undefined) sent.seen = e.t * 1000;
    }
  }
  run.events.sort((a, b) => a.v - b.v);
  scheduleRedraw(run);
}

function onMessage(message) {
  if (message.type === "runs") { onRuns(message.data); return; }
  const run = runs.get(message.run);
  if (!run) return;
  const d = message.data;
  if (message.type === "state") { run.state = d; }
  else if (message.type === "events") { addEvents(run, d.events, d.reset); }
  else if (message.type === "progress") {
    if (d.reset) run.progress = [];
    run.progress.push(...d.samples);
  } else if (message.type === "status") {
    run.status = d.status;
    if (!d.live && run.live) { run.live = false; drawRunList(); drawTargets(); }
  }
  if (run.shown) drawRun(run);
}

function connect() {
  const badge = $("#connection");
  const source = new EventSource("/api/stream");
  source.onopen = () => { badge.textContent = "connected"; badge.className = "badge live"; };
  source.onmessage = e => onMessage(JSON.parse(e.data));
  source.onerror = async () => {
    badge.textContent = "reconnecting…"; badge.className = "badge ended";
    const check = await fetch("/api/runs").catch(() => null);
    if (check && check.status === 401) location.assign("/login");
  };
}

// ------------------------------------------------------------------ curves
function scheduleRedraw(run) {
  if (!run.column || run.redraw) return;
  run.redraw = setTimeout(() => { run.redraw = 0; drawCurves(run); drawJournal(run); },
                          REDRAW_MS);
}

function eventStep(e, fallback) { return e.step !== null && e.step !== undefined ? e.step
                                                                                 : fallback; }

function curves(run) {  // chart key -> {title, log, stepped, series: Map(label -> [[x, y]])}
  const charts = new Map();
  const add = (key, title, label, x, y, opts = {}) => {
    if (typeof y !== "number" || !Number.isFinite(y) || x === null) return;
    if (!charts.has(key)) charts.set(key, {title, series: new Map(), ...opts});
    const series = charts.get(key).series;
    if (!series.has(label)) series.set(label, []);
    series.get(label).push([x, y]);
  };
  let prev = null;
  for (const [t, step] of run.progress) {
    if (prev && t - prev[0] >= 0.5 && step >= prev[1]) {
      add("steps", "steps/s", "steps/s", step, (step - prev[1]) / (t - prev[0]));
    }
    if (!prev || t - prev[0] >= 0.5) prev = [t, step];
  }
  const vars = new Map((run.state ? run.state.variables : []).map(v => [v.name, v]));
  // the variables' names: from the state, or (an ended run) those its journal sets
  const setNames = new Set(run.events.filter(e => e.kind === "set").map(e => e.name));
  const isVar = name => run.state ? vars.has(name) : setNames.has(name);
  const start = new Map();
  let lastStep = 0;
  for (const e of run.events) {
    const x = eventStep(e, lastStep);
    if (e.step !== null && e.step !== undefined) lastStep = e.step;
    if (e.kind === "event" && e.data && !e.data.error && e.name !== "checkpoint" &&
        e.name !== "revert") {
      for (const [key, value] of Object.entries(e.data)) {
        if (key === "total_timesteps" || key === "episodes" || key.startsWith("std_")) continue;
        add(`${e.name}:${key}`, `${e.name}: ${key}`, key, x, value);
      }
      const episodes = e.data.train_episodes || {};
      for (const [key, values] of Object.entries(episodes)) {
        if (!key.startsWith("reward.") || !Array.isArray(values) || !values.length) continue;
        add("reward-terms", "reward terms (mean per training episode)", key, x,
            values.reduce((a, b) => a + b, 0) / values.length);
      }
    } else if (e.kind === "start" && e.data && e.data.values) {
      for (const [k, value] of Object.entries(e.data.values)) start.set(k, [x, value]);
    } else if (typeof e.new === "number" && isVar(e.name) &&
               (run.state ? (vars.get(e.name).deferred ? e.kind === "applied" : e.kind === "set")
                          : e.kind === "set")) {
      const v = vars.get(e.name);
      if (!charts.has(`knob:${e.name}`) && start.has(e.name)) {
        const [x0, y0] = start.get(e.name);
        add(`knob:${e.name}`, e.name, e.name, x0, y0,
            {log: v && v.control.kind === "log", stepped: true});
      } else if (!charts.has(`knob:${e.name}`) && typeof e.old === "number") {
        add(`knob:${e.name}`, e.name, e.name, 0, e.old,
            {log: v && v.control.kind === "log", stepped: true});
      }
      add(`knob:${e.name}`, e.name, e.name, x, e.new,
          {log: v && v.control.kind === "log", stepped: true});
    }
  }
  for (const chart of charts.values()) {  // a knob's line goes on to the current step
    if (!chart.stepped) continue;
    for (const points of chart.series.values()) {
      const now = run.state && run.state.step !== null ? run.state.step : lastStep;
      const last = points[points.length - 1];
      if (now > last[0]) points.push([now, last[1]]);
    }
  }
  return charts;
}

function markers(run) {  // the changes: one vertical line each, with who, what, old -> new
  const out = [];
  let lastStep = 0;
  for (const e of run.events) {
    if (e.step !== null && e.step !== undefined) lastStep = e.step;
    if ((e.kind === "set" && !(e.data && e.data.unchanged)) || e.kind === "fire") {
      out.push({x: eventStep(e, lastStep), kind: e.kind,
                text: e.kind === "set" ? `${e.name} ${fmt(e.old)} → ${fmt(e.new)}`
                                       : `fire ${e.name} (#${e.new})`,
                who: who(e.source), t: e.t, v: e.v});
    }
  }
  return out;
}

function aligned(series) {  // uPlot data: one x array, one y array per series (null: no point)
  const xs = [...new Set([...series.values()].flatMap(p => p.map(([x]) => x)))]
    .sort((a, b) => a - b);
  const index = new Map(xs.map((x, i) => [x, i]));
  const data = [xs];
  for (const points of series.values()) {
    const ys = new Array(xs.length).fill(null);
    for (const [x, y] of points) ys[index.get(x)] = y;
    data.push(ys);
  }
  return data;
}

function tick(value) {  // an axis label: three significant digits (a log axis within a decade)
  if (value === null || value === undefined) return "";
  return Math.abs(value) >= 1e4 ? value.toExponential(1) : String(Number(value.toPrecision(3)));
}

function markerPlugin(run) {
  return {hooks: {draw: [u => {
    const ctx = u.ctx;
    const {left, top, width, height} = u.bbox;
    ctx.save();
    for (const m of run.markerList || []) {
      const px = Math.round(u.valToPos(m.x, "x", true));
      if (px < left || px > left + width) continue;
      ctx.strokeStyle = m.kind === "set" ? "rgba(214,39,40,0.8)" : "rgba(120,120,120,0.6)";
      ctx.setLineDash(m.kind === "set" ? [] : [4, 4]);
      ctx.lineWidth = 1.5 * devicePixelRatio;
      ctx.beginPath(); ctx.moveTo(px, top); ctx.lineTo(px, top + height); ctx.stroke();
    }
    ctx.restore();
  }], setCursor: [u => {
    const tip = $("#tooltip");
    const left = u.cursor.left;
    if (left === null || left < 0) { tip.hidden = true; return; }
    const near = (run.markerList || []).filter(m =>
      Math.abs(u.valToPos(m.x, "x") - left) <= 4);
    if (!near.length) { tip.hidden = true; return; }
    tip.replaceChildren(...near.slice(-6).map(m => el("div", {},
      el("b", {text: `step ${m.x}`}), ` ${m.text}`, el("br"),
      el("span", {class: "who", text: `by ${m.who} · v${m.v} · ` +
                  new Date(m.t * 1000).toLocaleTimeString()}))));
    const box = u.over.getBoundingClientRect();
    tip.style.left = `${box.left + window.scrollX + left + 12}px`;
    tip.style.top = `${box.top + window.scrollY + (u.cursor.top || 0) + 12}px`;
    tip.hidden = false;
  }]}};
}

function drawCurves(run) {
  if (!run.column || typeof uPlot === "undefined") return;
  const box = $(".charts", run.column);
  const charts = curves(run);
  run.markerList = markers(run);
  const width = Math.max(280, Math.floor(box.clientWidth / 2) - 12);
  for (const [key, chart] of charts) {
    const data = aligned(chart.series);
    const labels = [...chart.series.keys()].join("\n");
    let held = run.charts.get(key);
    if (held && (held.labels !== labels || held.width !== width)) {
      held.plot.destroy(); held.node.remove(); run.charts.delete(key); held = null;
    }
    if (!held) {
      const node = el("div", {class: "chart", "data-chart": key});
      box.append(node);
      const series = [{label: "step"}, ...[...chart.series.keys()].map((label, i) => ({
        label, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: true,
        points: {show: true, size: 5},
        paths: chart.stepped && uPlot.paths.stepped ? uPlot.paths.stepped({align: 1})
                                                    : undefined}))];
      const plot = new uPlot({
        title: chart.title, width, height: 170, plugins: [markerPlugin(run)],
        scales: {x: {time: false}, y: chart.log ? {distr: 3} : {}},
        axes: [{label: "step", size: 36}, {size: 60, values: (u, ticks) => ticks.map(tick)}],
        series, legend: {live: true},
      }, data, node);
      held = {plot, node, labels, width};
      run.charts.set(key, held);
    } else {
      held.plot.setData(data);
    }
    held.node.dataset.points = String(data[0].length);
    held.node.dataset.markers = String(run.markerList.length);
  }
}

// ------------------------------------------------------------------ the journal
function journalText(e) {
  if (e.kind === "set") return `${fmt(e.old)} → ${fmt(e.new)}` +
                              (e.data && e.data.unchanged ? " (unchanged)" : "");
  if (e.kind === "fire") return `fire #${fmt(e.new)}` + (e.data && e.data.coalesced
                                                          ? " (joined a waiting fire)" : "");
  if (e.kind === "applied") return `= ${fmt(e.new)} (v${e.applies})`;
  const brief = {};
  for (const [k, val] of Object.entries(e.data || {})) {
    brief[k] = Array.isArray(val) ? `<${val.length} values>`
      : (val && typeof val === "object" ? `{${Object.keys(val).length} keys}`
                                        : (typeof val === "number" ? Number(val.toPrecision(4))
                                                                   : val));
  }
  return JSON.stringify(brief);
}

function drawJournal(run) {
  if (!run.column) return;
  const words = $(".filter", run.column).value.trim().toLowerCase().split(/\s+/)
    .filter(Boolean);
  const kind = $(".kind", run.column).value;
  const rows = [];
  for (let i = run.events.length - 1; i >= 0 && rows.length < MAX_ROWS; i--) {
    const e = run.events[i];
    if (kind !== "all" && e.kind !== kind) continue;
    const detail = journalText(e);
    const text = `${e.kind} ${e.name} ${detail} ${e.source}`.toLowerCase();
    if (!words.every(w => text.includes(w))) continue;
    rows.push(el("tr", {class: `k-${e.kind}`, "data-v": e.v},
      el("td", {text: `v${e.v}`}), el("td", {text: new Date(e.t * 1000).toLocaleTimeString()}),
      el("td", {text: e.step === null || e.step === undefined ? "" : `step ${e.step}`}),
      el("td", {text: e.kind}), el("td", {text: e.name}), el("td", {text: detail}),
      el("td", {text: who(e.source), title: e.source})));
  }
  $("table.journal tbody", run.column).replaceChildren(...rows);
}

document.addEventListener("DOMContentLoaded", () => {
  $("#apply").addEventListener("click", apply);
  $("#discard").addEventListener("click", () => {
    staged.clear(); targets.clear(); $("#apply-result").textContent = "";
    for (const node of document.querySelectorAll("table.vars .error")) node.textContent = "";
    drawStaged(); refreshAll();
  });
  window.addEventListener("resize", () => {
    for (const run of runs.values()) scheduleRedraw(run);
  });
  connect();
});
