// The operations page (/ops/): refreshes its figures from /ops/data every few seconds.
// Everything is written with textContent: nothing from the server is parsed as HTML.
(function () {
  "use strict";

  const body = document.body;
  if (body.dataset.page !== "ops") return;
  const url = body.dataset.opsUrl;
  const every = Number(body.dataset.opsRefreshMs) || 5000;

  function age(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const s = Math.round(seconds);
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
    return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
  }

  function lookup(data, path) {
    return path.split(".").reduce((value, key) => (value === null || value === undefined ? value : value[key]), data);
  }

  function cell(row, text, className) {
    const td = document.createElement("td");
    if (className) {
      const span = document.createElement("span");
      span.className = className;
      span.textContent = text;
      td.appendChild(span);
    } else {
      td.textContent = text;
    }
    row.appendChild(td);
    return td;
  }

  function rows(id, items, columns, empty) {
    const tbody = document.getElementById(id);
    if (!tbody) return;
    const fresh = document.createDocumentFragment();
    for (const item of items) {
      const tr = document.createElement("tr");
      columns(tr, item);
      fresh.appendChild(tr);
    }
    if (!items.length) {
      const tr = document.createElement("tr");
      const td = cell(tr, empty);
      td.colSpan = tbody.closest("table").querySelectorAll("thead th").length;
      td.className = "muted";
      fresh.appendChild(tr);
    }
    tbody.replaceChildren(fresh);
  }

  function render(data) {
    for (const el of document.querySelectorAll("[data-field]")) {
      const value = lookup(data, el.dataset.field);
      el.textContent = el.dataset.format === "age" ? age(value) : value === null || value === undefined ? "–" : String(value);
    }
    document.getElementById("ops-webhook-card").classList.toggle("stat-bad", data.webhooks.failed > 0);
    const redis = document.getElementById("ops-redis");
    redis.textContent = data.redis.embedded
      ? "Embedded mode: tasks run in-process."
      : data.redis.ok ? "" : `Redis unavailable: ${data.redis.error}`;
    rows("ops-workers", data.workers, (tr, w) => {
      cell(tr, w.hostname);
      cell(tr, `${age(w.age_seconds)} ago`);
      cell(tr, w.alive ? "alive" : "silent", w.alive ? "status status-approved" : "status status-rejected");
    }, "No worker heartbeat.");
    rows("ops-queues", Object.entries(data.celery_queues), (tr, [name, n]) => {
      cell(tr, name);
      cell(tr, String(n));
    }, "None.");
    rows("ops-statuses", Object.entries(data.by_status), (tr, [status, n]) => {
      cell(tr, status, `status status-${status}`);
      cell(tr, String(n));
    }, "None.");
    rows("ops-agents", Object.entries(data.last_hour.proposals_by_agent), (tr, [name, n]) => {
      cell(tr, name);
      cell(tr, String(n));
    }, "No proposals in the last hour.");
    rows("ops-decisions", Object.entries(data.last_hour.decisions_by_outcome), (tr, [status, n]) => {
      cell(tr, status, `status status-${status}`);
      cell(tr, String(n));
    }, "No decisions in the last hour.");
    rows("ops-failures", data.webhooks.recent_failures, (tr, f) => {
      cell(tr, String(f.id));
      const link = document.createElement("a");
      link.href = `/review/${encodeURIComponent(f.action_id)}`;
      link.textContent = f.action_id.slice(0, 12) + "…";
      cell(tr, "").appendChild(link);
      cell(tr, f.event);
      cell(tr, f.host);
      cell(tr, String(f.attempts));
      cell(tr, f.error);
      cell(tr, new Date(f.created_at).toLocaleString());
    }, "None.");
    const updated = document.getElementById("ops-updated");
    updated.textContent = `as of ${new Date(data.generated_at).toLocaleTimeString()}`;
    updated.dataset.state = "live";
  }

  async function refresh() {
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      render(await response.json());
    } catch (error) {
      const updated = document.getElementById("ops-updated");
      updated.textContent = `not refreshed (${error.message}); retrying`;
      updated.dataset.state = "stale";
    } finally {
      window.setTimeout(refresh, every);
    }
  }

  refresh();
})();
