// toolfleet web: the fleet's state from /events (server-sent events), rendered with
// textContent only (nothing from Redis is ever parsed as HTML); actions are POSTs
// carrying the _xsrf cookie's value (the login cookie alone is not enough).
"use strict";

const $ = (id) => document.getElementById(id);
let offset = 0; // server clock - this browser's clock, seconds
let last = null; // the newest state
const outputs = new Map(); // prompt id -> its output panel

// ---- formatting

function serverNow() {
  return Date.now() / 1000 + offset;
}

function age(since) {
  if (since === null || since === undefined) return "";
  const s = Math.max(0, serverNow() - since);
  if (s < 60) return s.toFixed(1) + " s";
  const m = Math.floor(s / 60);
  const h = Math.floor(m / 60);
  const pad = (n) => String(n).padStart(2, "0");
  return h ? `${h}h ${pad(m % 60)}m` : `${m}m ${pad(Math.floor(s % 60))}s`;
}

function ms(value) {
  return value === null || value === undefined ? "-" : value < 100 ? value.toFixed(1) : value.toFixed(0);
}

function mib(bytes) {
  return bytes === null || bytes === undefined ? "-" : (bytes / 1048576).toFixed(1) + " MiB";
}

function usage(u) {
  if (!u) return "-";
  const tokens = u.sent || u.received ? `${u.sent}/${u.received} tok` : "";
  const cost = u.cost ? "$" + u.cost.toFixed(4) : "";
  return [tokens, cost].filter(Boolean).join(" ") || "-";
}

function short(id) {
  return id ? String(id).slice(0, 8) : "";
}

// ---- DOM helpers

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value !== null && value !== undefined && value !== false) node.setAttribute(name, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

function setText(node, text) {
  const value = text === null || text === undefined ? "" : String(text);
  if (node.textContent !== value) node.textContent = value;
}

// Keep one <tr> per key, in the items' order, updating cells in place (buttons and
// open diffs survive updates). A row's .extra (a detail row) follows it.
function sync(tbody, items, key, build, update) {
  const rows = new Map();
  for (const tr of tbody.querySelectorAll(":scope > tr[data-key]")) rows.set(tr.dataset.key, tr);
  let prev = null;
  for (const item of items) {
    const k = key(item);
    let tr = rows.get(k);
    if (tr) rows.delete(k);
    else {
      tr = build(item);
      tr.dataset.key = k;
    }
    update(tr, item);
    for (const row of [tr, tr.extra]) {
      if (!row) continue;
      const want = prev ? prev.nextSibling : tbody.firstChild;
      if (row !== want) tbody.insertBefore(row, want);
      prev = row;
    }
  }
  for (const tr of rows.values()) {
    if (tr.extra) tr.extra.remove();
    tr.remove();
  }
}

function cells(tr, n) {
  while (tr.children.length < n) tr.append(el("td"));
  return tr.children;
}

// ---- actions

function xsrf() {
  const found = document.cookie.split("; ").find((c) => c.startsWith("_xsrf="));
  return found ? decodeURIComponent(found.slice(6)) : "";
}

function flash(message, ok) {
  const box = $("flash");
  const line = el("div", { class: ok ? "msg ok" : "msg bad" },
    el("span", { class: "muted", text: new Date().toLocaleTimeString() + " " }),
    el("span", { text: message }));
  box.prepend(line);
  while (box.children.length > 5) box.lastChild.remove();
}

async function post(path, body) {
  let data;
  try {
    const response = await fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-XSRFToken": xsrf() },
      body: JSON.stringify(body),
    });
    if (response.status === 401) {
      location.href = "/login";
      return null;
    }
    try {
      data = await response.json();
    } catch (err) {
      data = { ok: false, message: `${response.status} ${response.statusText}` };
    }
  } catch (err) {
    data = { ok: false, message: "the dashboard did not answer: " + err };
  }
  flash(data.message, data.ok);
  return data;
}

function cancel(row) {
  if (!confirm(`Cancel prompt ${row.prompt_id} on ${row.worker}?`)) return;
  post("/api/cancel", { prompt_id: row.prompt_id });
}

function restart(row) {
  const running = row.prompt_id ? ` Its running prompt ${short(row.prompt_id)} fails.` : "";
  if (!confirm(`Restart the tool of ${row.worker}?${running}`)) return;
  post("/api/restart", { worker: row.worker });
}

// ---- instances

function buildInstance() {
  const tr = el("tr");
  cells(tr, 13);
  tr.children[2].append(el("span", { class: "state" }), el("div", { class: "reason" }));
  tr.children[4].append(
    el("code", { class: "prompt" }), " ",
    el("button", { class: "show-output", type: "button", text: "output", hidden: true }), " ",
    el("button", { class: "cancel", type: "button", text: "cancel", hidden: true }));
  tr.children[12].append(el("button", { class: "restart", type: "button", text: "restart" }));
  tr.querySelector(".show-output").addEventListener("click", () => showOutput(tr.row));
  tr.querySelector(".cancel").addEventListener("click", () => cancel(tr.row));
  tr.querySelector(".restart").addEventListener("click", () => restart(tr.row));
  return tr;
}

function updateInstance(tr, row) {
  tr.row = row;
  tr.dataset.worker = row.worker;
  tr.dataset.state = row.state;
  tr.className = "state-" + row.state;
  const td = cells(tr, 13);
  setText(td[0], row.worker);
  td[0].title = `tool pid ${row.pid ?? "-"}, version ${row.version}`;
  setText(td[1], row.profile);
  setText(td[2].querySelector(".state"), row.state);
  const reason = row.state === "failed" || row.state === "restarting" ? row.last_error : "";
  setText(td[2].querySelector(".reason"), reason);
  td[2].title = row.last_error || "";
  setText(td[3], row.session ? short(row.session) : "");
  td[3].title = row.session || "";
  const prompt = td[4].querySelector(".prompt");
  setText(prompt, short(row.prompt_id));
  prompt.title = row.prompt_id || "";
  td[4].querySelector(".show-output").hidden = !row.prompt_id;
  td[4].querySelector(".cancel").hidden = !row.prompt_id;
  td[5].dataset.since = row.busy_since ?? "";
  setText(td[5], age(row.busy_since));
  for (const [i, name] of [[6, "generation"], [7, "restarts"], [8, "prompts_served"]]) {
    td[i].className = "num";
    setText(td[i], row[name]);
  }
  td[9].className = "num";
  const latencies = [row.p50_latency_ms, row.p95_latency_ms, row.last_latency_ms];
  setText(td[9], latencies.every((v) => v === null) ? "-" : latencies.map(ms).join(" / ") + " ms");
  td[10].className = "num";
  setText(td[10], mib(row.rss_bytes));
  td[11].className = "num";
  setText(td[11], usage(row.usage));
}

function renderInstances(state) {
  const profiles = [...new Set(state.instances.map((r) => r.profile))].sort();
  const select = $("filter-profile");
  const known = [...select.options].slice(1).map((o) => o.value);
  if (known.join("\n") !== profiles.join("\n")) {
    const chosen = select.value;
    select.replaceChildren(el("option", { value: "", text: "all" }),
      ...profiles.map((p) => el("option", { value: p, text: p })));
    select.value = profiles.includes(chosen) ? chosen : "";
  }
  const profile = select.value;
  const wanted = $("filter-state").value;
  const shown = state.instances.filter(
    (r) => (!profile || r.profile === profile) && (!wanted || r.state === wanted));
  sync($("instances").tBodies[0], shown, (r) => r.worker, buildInstance, updateInstance);
  const total = state.instances.length;
  setText($("instances-count"), shown.length === total ? `${total}` : `${shown.length} of ${total}`);
  $("instances-empty").hidden = total > 0;
  const byState = {};
  for (const r of state.instances) byState[r.state] = (byState[r.state] || 0) + 1;
  setText($("counts"), Object.entries(byState).map(([s, n]) => `${n} ${s}`).join(" · "));
}

// ---- output of running prompts

function showOutput(row) {
  if (!row || !row.prompt_id) return;
  let panel = outputs.get(row.prompt_id);
  if (panel) {
    panel.scrollIntoView({ block: "nearest" });
    return;
  }
  const status = el("span", { class: "status muted", text: "running" });
  const pre = el("pre", { class: "output" });
  const close = el("button", { type: "button", text: "close" });
  panel = el("div", { class: "panel", "data-prompt": row.prompt_id },
    el("div", { class: "panel-head" },
      el("strong", { text: `prompt ${row.prompt_id}` }),
      el("span", { class: "muted", text: ` on ${row.worker} ` }), status, " ", close),
    pre);
  const source = new EventSource(`/events/output/${encodeURIComponent(row.prompt_id)}`);
  source.addEventListener("chunk", (event) => {
    const stick = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.append(JSON.parse(event.data).t);
    if (stick) pre.scrollTop = pre.scrollHeight;
  });
  source.addEventListener("end", (event) => {
    const end = JSON.parse(event.data);
    source.close();
    const what = end.message ? `${end.status}: ${end.message}` : end.status;
    status.textContent = "ended: " + what + (end.truncated ? " (cut)" : "");
    status.className = "status " + (end.status === "ok" ? "ok" : "bad");
    panel.dataset.ended = end.status;
  });
  close.addEventListener("click", () => {
    source.close();
    panel.remove();
    outputs.delete(row.prompt_id);
    $("output-section").hidden = outputs.size === 0;
  });
  outputs.set(row.prompt_id, panel);
  $("outputs").prepend(panel);
  $("output-section").hidden = false;
}

// ---- sessions and runs

function renderSessions(state) {
  sync($("sessions").tBodies[0], state.sessions, (s) => s.id, () => el("tr"), (tr, s) => {
    const td = cells(tr, 6);
    tr.dataset.session = s.id;
    setText(td[0], s.id);
    setText(td[1], s.worker);
    setText(td[2], s.profile);
    setText(td[3], s.state);
    setText(td[4], short(s.prompt_id));
    td[4].title = s.prompt_id || "";
    td[5].dataset.since = s.busy_since ?? "";
    setText(td[5], age(s.busy_since));
  });
  setText($("sessions-count"), state.sessions.length || "");
  $("sessions-empty").hidden = state.sessions.length > 0;
}

function renderRuns(state) {
  sync($("runs").tBodies[0], state.runs, (r) => r.id, () => {
    const tr = el("tr");
    cells(tr, 12)[2].append(el("progress"), el("span", { class: "muted" }));
    return tr;
  }, (tr, r) => {
    const td = cells(tr, 12);
    tr.dataset.run = r.id;
    tr.className = "run-" + r.state;
    const todo = Math.max(0, r.total - r.skipped);
    const ended = r.done + r.failed;
    setText(td[0], r.id);
    setText(td[1], r.profile);
    const bar = td[2].querySelector("progress");
    bar.max = Math.max(1, todo);
    bar.value = ended;
    setText(td[2].querySelector("span"), ` ${ended} / ${todo}`);
    const numbers = [r.done, r.failed, r.retried, r.skipped, r.rate.toFixed(1) + "/s"];
    numbers.forEach((value, i) => {
      td[3 + i].className = "num";
      setText(td[3 + i], value);
    });
    td[4].className = r.failed ? "num bad" : "num";
    const left = todo - ended;
    td[8].className = "num";
    setText(td[8], r.state !== "running" ? "" : r.rate > 0 ? age(serverNow() - left / r.rate) : "-");
    setText(td[9], r.state);
    setText(td[10], r.producer);
    td[11].dataset.since = r.started;
    setText(td[11], age(r.started) + " ago");
  });
  setText($("runs-count"), state.runs.length || "");
  $("runs-empty").hidden = state.runs.length > 0;
}

function renderGateways(state) {
  const gateways = state.gateways || [];
  sync($("gateways").tBodies[0], gateways, (g) => g.upstream, () => el("tr"), (tr, g) => {
    const td = cells(tr, 11);
    setText(td[0], g.upstream);
    const numbers = [g.requests, g.waiting, g.inflight, g.ceiling ? g.ceiling.toFixed(1) : "-",
      g.throttled, g.retries, g.sent, g.received, g.cost.toFixed(4)];
    numbers.forEach((value, i) => {
      td[1 + i].className = "num";
      setText(td[1 + i], value);
    });
    td[10].className = g.quota_exhausted ? "bad" : "";
    setText(td[10], g.quota_exhausted ? "exhausted" : "ok");
  });
  setText($("gateways-count"), gateways.length || "");
  $("gateways-empty").hidden = gateways.length > 0;
}

// ---- changes

function diffView(patch) {
  const pre = el("pre", { class: "diff" });
  for (const line of patch.split("\n")) {
    let kind = "";
    if (line.startsWith("+++") || line.startsWith("---") || line.startsWith("diff ")) kind = "file";
    else if (line.startsWith("+")) kind = "add";
    else if (line.startsWith("-")) kind = "del";
    else if (line.startsWith("@@")) kind = "hunk";
    pre.append(el("span", { class: kind, text: line + "\n" }));
  }
  return pre;
}

async function toggleDiff(tr) {
  if (tr.extra) {
    tr.extra.remove();
    tr.extra = null;
    return;
  }
  const change = tr.change;
  const cell = el("td", { colspan: 7, text: "loading the diff ..." });
  tr.extra = el("tr", { class: "diff-row", "data-diff": change.id }, cell);
  tr.after(tr.extra);
  try {
    const response = await fetch(`/api/changes/${encodeURIComponent(change.id)}`, { credentials: "same-origin" });
    const record = await response.json();
    if (!response.ok) throw new Error(record.message || response.status);
    const note = record.truncated ? `(cut; the branch ${record.branch} has all of it)` : "";
    cell.replaceChildren(
      el("div", { class: "muted", text: `${record.branch}, base ${record.base.slice(0, 12)} ${note}` }),
      diffView(record.patch || "(no change)"));
  } catch (err) {
    cell.textContent = "cannot show the diff: " + err.message;
  }
}

function buildChange() {
  const tr = el("tr");
  const td = cells(tr, 7);
  td[2].append(el("span", { class: "files" }), el("div", { class: "conflict bad" }));
  td[6].append(
    el("button", { class: "diff-button", type: "button", text: "diff" }), " ",
    el("button", { class: "apply", type: "button", text: "apply" }), " ",
    el("button", { class: "discard", type: "button", text: "discard" }));
  td[6].querySelector(".diff-button").addEventListener("click", () => toggleDiff(tr));
  td[6].querySelector(".apply").addEventListener("click", () => {
    post("/api/apply", { ids: [tr.change.id] });
  });
  td[6].querySelector(".discard").addEventListener("click", () => {
    if (confirm(`Discard change ${tr.change.id} (its branch is deleted)?`)) {
      post("/api/discard", { ids: [tr.change.id] });
    }
  });
  return tr;
}

function updateChange(tr, change, apply) {
  tr.change = change;
  tr.dataset.change = change.id;
  const td = cells(tr, 7);
  setText(td[0], change.id);
  td[0].title = change.branch;
  setText(td[1], change.worker);
  const more = change.more_files ? ` and ${change.more_files} more` : "";
  setText(td[2].querySelector(".files"), change.empty ? "(no file changed)" : change.files.join(", ") + more);
  const conflict = change.conflict
    ? `conflict: not applied (${change.conflict.join(", ") || "see git"}); the branch is unchanged`
    : "";
  const check = change.check;
  const turns = check && check.repairs ? ` after ${check.repairs} repair turn(s)` : "";
  const verdict = !check ? ""
    : check.passed ? `ready: check passed${turns}`
    : `rejected: check failed (exit status ${check.exit_status})${turns}: ${check.output.trim().split("\n").slice(-1)[0] || ""}`;
  setText(td[2].querySelector(".conflict"), [conflict, verdict].filter(Boolean).join("; "));
  td[2].title = check && !check.passed ? check.output : "";
  td[3].className = "num add";
  setText(td[3], change.insertions);
  td[4].className = "num del";
  setText(td[4], change.deletions);
  td[5].dataset.since = change.created_at;
  setText(td[5], age(change.created_at));
  const button = td[6].querySelector(".apply");
  const rejected = change.state === "rejected";
  button.disabled = !apply.enabled || rejected;
  button.title = rejected ? "its check failed: rejected changes are not applied"
    : apply.enabled ? `merge into the branch checked out in ${apply.repo}` : apply.reason;
}

function renderChanges(state) {
  const apply = state.apply;
  sync($("changes").tBodies[0], state.changes, (c) => c.id, buildChange,
    (tr, c) => updateChange(tr, c, apply));
  setText($("changes-count"), state.changes.length || "");
  $("changes-empty").hidden = state.changes.length > 0;
  setText($("apply-note"), apply.enabled
    ? `apply merges into the branch checked out in ${apply.repo}`
    : `apply is off: ${apply.reason}`);
}

// ---- the whole page

function render(state) {
  last = state;
  offset = state.now - Date.now() / 1000;
  setText($("fleet"), state.fleet);
  setText($("version"), state.version);
  setText($("interval"), state.interval);
  setText($("ttl"), state.health_ttl);
  const error = $("error");
  error.hidden = !state.error;
  setText(error, state.error ? `${state.error} (showing the last state read)` : "");
  renderInstances(state);
  renderSessions(state);
  renderRuns(state);
  renderGateways(state);
  renderChanges(state);
}

function tick() {
  for (const td of document.querySelectorAll("td[data-since]")) {
    if (td.dataset.since === "") continue;
    const since = Number(td.dataset.since);
    setText(td, age(since) + (td.closest("#runs") ? " ago" : ""));
  }
}

function connect() {
  const link = $("link");
  const source = new EventSource("/events");
  source.addEventListener("open", () => {
    link.textContent = "live";
    link.className = "link up";
  });
  source.addEventListener("state", (event) => render(JSON.parse(event.data)));
  source.addEventListener("error", async () => {
    link.textContent = "reconnecting";
    link.className = "link down";
    if (source.readyState === EventSource.CLOSED) {
      const response = await fetch("/api/state", { credentials: "same-origin" }).catch(() => null);
      if (response && response.status === 401) location.href = "/login";
      else setTimeout(connect, 2000);
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("logout-xsrf").value = xsrf();
  for (const id of ["filter-profile", "filter-state"]) {
    $(id).addEventListener("change", () => last && renderInstances(last));
  }
  connect();
  setInterval(tick, 1000);
});
