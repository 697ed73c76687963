// The evaluation dashboard's charts and the what-if progress page.
// The pages are complete without this file: the server renders every figure in tables; this draws
// the same figures (embedded with json_script, data the CSP does not execute) with the vendored
// Chart.js, and follows a running what-if. No inline script or style anywhere.
(function () {
  "use strict";

  const page = document.body.dataset.page;

  function css(name, fallback) {
    const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }

  const colours = {
    ok: css("--ok", "#19733a"),
    warn: css("--warn", "#8a5a00"),
    bad: css("--bad", "#b42318"),
    accent: css("--accent", "#2453c7"),
    muted: css("--muted", "#5d6778"),
    okBg: "#7cc995",
    warnBg: "#f2c25c",
    badBg: "#ef8a80",
  };

  const percentAxis = {
    min: 0,
    max: 1,
    ticks: { callback: (value) => `${Math.round(value * 100)}%` },
  };

  function percent(value) {
    return value === null || value === undefined ? "–" : `${(value * 100).toFixed(1)}%`;
  }

  function draw(id, config) {
    const canvas = document.getElementById(id);
    if (!canvas) return null;
    config.options = Object.assign({ responsive: true, maintainAspectRatio: false, animation: false }, config.options);
    const chart = new window.Chart(canvas, config);
    canvas.dataset.drawn = "1";
    return chart;
  }

  function drawDays(days) {
    if (!days || !days.labels.length) return;
    draw("chart-days", {
      data: {
        labels: days.labels,
        datasets: [
          { type: "bar", label: "Auto-approved", data: days.auto_approved, backgroundColor: colours.okBg, stack: "n", yAxisID: "y", maxBarThickness: 56 },
          { type: "bar", label: "Held for a person", data: days.held, backgroundColor: colours.warnBg, stack: "n", yAxisID: "y", maxBarThickness: 56 },
          { type: "bar", label: "Blocked", data: days.blocked, backgroundColor: colours.badBg, stack: "n", yAxisID: "y", maxBarThickness: 56 },
          {
            type: "line",
            label: "Automation rate",
            data: days.automation_rate,
            borderColor: colours.accent,
            backgroundColor: colours.accent,
            yAxisID: "rate",
            spanGaps: true,
          },
        ],
      },
      options: {
        interaction: { mode: "index", intersect: false },
        scales: {
          x: { stacked: true },
          y: { stacked: true, beginAtZero: true, title: { display: true, text: "actions" } },
          rate: Object.assign({ position: "right", grid: { drawOnChartArea: false } }, percentAxis),
        },
        plugins: {
          tooltip: {
            callbacks: {
              label: (item) =>
                item.dataset.yAxisID === "rate" ? `Automation rate: ${percent(item.raw)}` : `${item.dataset.label}: ${item.raw}`,
            },
          },
        },
      },
    });
  }

  function only(length, index, values) {
    // A dataset with one point: marks the current or the recommended thresholds on the curve.
    return Array.from({ length }, (_, i) => (i === index ? values[i] : null));
  }

  function drawSweep(sweep) {
    if (!sweep || !sweep.labels.length) return;
    const n = sweep.labels.length;
    const datasets = [
      {
        type: "line",
        label: "Automation rate",
        data: sweep.automation_rate,
        borderColor: colours.accent,
        backgroundColor: colours.accent,
        pointRadius: 2,
        yAxisID: "rate",
        order: 1,
      },
      {
        type: "bar",
        label: "Unsafe auto-approvals",
        data: sweep.unsafe,
        backgroundColor: colours.badBg,
        yAxisID: "y",
        maxBarThickness: 40,
        order: 3,
      },
    ];
    if (sweep.current !== null && sweep.current !== undefined) {
      datasets.push({
        type: "line",
        label: "Current",
        data: only(n, sweep.current, sweep.automation_rate),
        showLine: false,
        pointRadius: 8,
        pointStyle: "rectRot",
        borderColor: colours.muted,
        backgroundColor: colours.muted,
        yAxisID: "rate",
        order: 0,
      });
    }
    if (sweep.recommended !== null && sweep.recommended !== undefined) {
      datasets.push({
        type: "line",
        label: "Recommended",
        data: only(n, sweep.recommended, sweep.automation_rate),
        showLine: false,
        pointRadius: 9,
        pointStyle: "star",
        borderWidth: 3,
        borderColor: colours.ok,
        backgroundColor: colours.ok,
        yAxisID: "rate",
        order: 0,
      });
    }
    draw("chart-sweep", {
      data: { labels: sweep.labels, datasets },
      options: {
        interaction: { mode: "index", intersect: false },
        scales: {
          x: { ticks: { maxRotation: 60, autoSkip: true } },
          rate: Object.assign({ position: "left", title: { display: true, text: "automation rate" } }, percentAxis),
          y: {
            position: "right",
            beginAtZero: true,
            grid: { drawOnChartArea: false },
            ticks: { precision: 0 },
            title: { display: true, text: "unsafe auto-approved" },
          },
        },
        plugins: {
          tooltip: {
            filter: (item) => item.raw !== null,
            callbacks: {
              label: (item) =>
                item.dataset.yAxisID === "rate" ? `${item.dataset.label}: ${percent(item.raw)}` : `${item.dataset.label}: ${item.raw}`,
            },
          },
        },
      },
    });
  }

  function drawRules(rules) {
    if (!rules || !rules.labels.length) return;
    draw("chart-rules", {
      type: "bar",
      data: {
        labels: rules.labels,
        datasets: [
          { label: "Failed a safe action", data: rules.failed_safe, backgroundColor: colours.warnBg, maxBarThickness: 18 },
          { label: "Failed an unsafe action", data: rules.failed_unsafe, backgroundColor: colours.badBg, maxBarThickness: 18 },
        ],
      },
      options: { indexAxis: "y", scales: { x: { beginAtZero: true, ticks: { precision: 0 } } } },
    });
  }

  function dashboard() {
    // Changing a filter shows it at once; the Show button stays for keyboards and no-JS.
    const filters = document.getElementById("eval-filters");
    if (filters) {
      filters.querySelectorAll("select").forEach((select) => select.addEventListener("change", () => filters.requestSubmit()));
    }
    const source = document.getElementById("evaluation-charts");
    if (!source || !window.Chart) return;
    let charts;
    try {
      charts = JSON.parse(source.textContent);
    } catch (error) {
      return;
    }
    drawDays(charts.days);
    drawSweep(charts.sweep);
    drawRules(charts.rules);
    document.body.dataset.charts = "ready";
  }

  // --- what-if progress ----------------------------------------------------------------------------
  function followRun() {
    const body = document.body;
    const url = body.dataset.statusUrl;
    if (!url || ["done", "failed"].includes(body.dataset.runState)) return;
    const bar = document.getElementById("progress");
    const text = document.getElementById("progress-text");
    const state = document.getElementById("run-state");
    let delay = 500;

    async function poll() {
      let status;
      try {
        const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
        if (!response.ok) throw new Error(String(response.status));
        status = await response.json();
      } catch (error) {
        delay = Math.min(delay * 2, 10000);
        window.setTimeout(poll, delay);
        return;
      }
      bar.value = Math.round((status.progress || 0) * 100);
      bar.textContent = `${bar.value}%`;
      text.textContent = `${status.processed} of ${status.total} labelled actions replayed`;
      state.textContent = status.state;
      state.className = `badge state-${status.state}`;
      body.dataset.runState = status.state;
      if (status.state === "done" || status.state === "failed") {
        // The summary tables are rendered by the server: show them with a reload.
        document.getElementById("run-done").classList.toggle("hidden", status.state !== "done");
        window.location.reload();
        return;
      }
      delay = Math.min(delay * 1.5, 5000);
      window.setTimeout(poll, delay);
    }
    poll();
  }

  if (page === "evaluation") dashboard();
  else if (page === "whatif-run") followRun();
})();
