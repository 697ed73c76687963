// The reviewer's desk: keyboard, and live updates over the review websocket.
// No framework and no inline script (the Content Security Policy allows only this file).
(function () {
  "use strict";

  const body = document.body;
  const page = body.dataset.page;
  const me = body.dataset.user || "";

  function typing(event) {
    const el = event.target;
    return el && (el.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(el.tagName));
  }

  // --- queue: selection and keys --------------------------------------------------------------
  function rows() {
    return Array.from(document.querySelectorAll("#queue tbody tr.row"));
  }
  let selected = 0;
  function select(index) {
    const all = rows();
    if (!all.length) return;
    selected = Math.max(0, Math.min(index, all.length - 1));
    all.forEach((row, i) => row.classList.toggle("selected", i === selected));
    all[selected].scrollIntoView({ block: "nearest" });
  }

  function submit(formId) {
    const form = document.getElementById(formId);
    if (form && !form.classList.contains("disabled")) form.requestSubmit();
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event)) return;
    const keys = document.getElementById("keys");
    if (event.key === "?") {
      keys.open ? keys.close() : keys.showModal();
      event.preventDefault();
      return;
    }
    if (page === "queue") {
      if (event.key === "j") select(selected + 1);
      else if (event.key === "k") select(selected - 1);
      else if (event.key === "Enter") {
        const row = rows()[selected];
        if (row) window.location.href = row.dataset.href;
      } else return;
      event.preventDefault();
    } else if (page === "detail") {
      if (event.key === "a") submit("approve-form");
      else if (event.key === "r") submit("reject-form");
      else if (event.key === "l") {
        const first = document.querySelector("#label-form input[name=label]");
        if (first) first.focus();
      } else return;
      event.preventDefault();
    }
  });

  if (page === "queue") {
    select(0);
    document.addEventListener("click", (event) => {
      const row = event.target.closest && event.target.closest("#queue tbody tr.row");
      if (row && event.target.tagName !== "A") window.location.href = row.dataset.href;
    });
  }

  // --- detail: claim a held action once it is open (a POST: reading a page changes nothing) ------
  function claimOpenAction() {
    if (body.dataset.status !== "needs_review" || !body.dataset.claimUrl) return;
    const token = document.querySelector("input[name=csrfmiddlewaretoken]");
    fetch(body.dataset.claimUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": token ? token.value : "" },
    })
      .then((response) => (response.ok ? response.json() : null))
      .then((claim) => {
        if (!claim || claim.mine || !claim.claimed_by) return;
        const note = document.getElementById("claim");
        const until = claim.claimed_until ? claim.claimed_until.slice(11, 16) : "";
        note.textContent = `${claim.claimed_by} has this open until ${until} UTC. You can still decide.`;
        note.classList.remove("hidden");
      })
      .catch(() => {}); // advisory only: the page works without it
  }
  if (page === "detail") claimOpenAction();

  // --- detail: "apply to similar actions in this session" ----------------------------------------
  // The explanation's "until" follows the chosen window, on the server's clock (as rendered, plus
  // the time since), so that a skewed client clock does not show a wrong time.
  const remember = document.getElementById("remember");
  if (remember) {
    const check = document.getElementById("remember-check");
    const minutes = document.getElementById("remember-minutes");
    const until = document.getElementById("remember-until");
    const serverNow = parseInt(until.dataset.now, 10) * 1000;
    const loadedAt = Date.now();
    const pad = (n) => String(n).padStart(2, "0");
    function showUntil() {
      const at = new Date(serverNow + (Date.now() - loadedAt) + parseInt(minutes.value, 10) * 60000);
      until.dateTime = at.toISOString();
      until.textContent =
        `${at.getUTCFullYear()}-${pad(at.getUTCMonth() + 1)}-${pad(at.getUTCDate())} ` +
        `${pad(at.getUTCHours())}:${pad(at.getUTCMinutes())} UTC`;
      remember.classList.toggle("on", check.checked);
    }
    minutes.addEventListener("change", () => {
      check.checked = true;
      showUntil();
    });
    check.addEventListener("change", showUntil);
    window.setInterval(showUntil, 30000);
  }

  // --- live updates ------------------------------------------------------------------------------
  const live = document.getElementById("live");
  function showLive(state, text) {
    if (!live) return;
    live.dataset.state = state;
    live.textContent = text;
  }

  function setCount(delta) {
    const count = document.getElementById("count");
    if (count) count.textContent = String(Math.max(0, parseInt(count.textContent, 10) + delta));
    const empty = document.getElementById("empty");
    if (empty) empty.classList.toggle("hidden", rows().length > 0);
  }

  function rowOf(id) {
    return document.querySelector(`#queue tbody tr.row[data-id="${CSS.escape(id)}"]`);
  }

  async function addRow(id) {
    if (rowOf(id)) return;
    const response = await fetch(`/review/${encodeURIComponent(id)}/row`, { credentials: "same-origin" });
    if (!response.ok || rowOf(id)) return;
    const holder = document.createElement("tbody");
    holder.innerHTML = (await response.text()).trim(); // server-rendered, escaped by the template
    const row = holder.querySelector("tr.row");
    if (!row) return;
    row.classList.add("arrived");
    document.querySelector("#queue tbody").prepend(row);
    setCount(+1);
    select(selected + (rows().length > 1 ? 1 : 0));
  }

  function removeRow(id) {
    const row = rowOf(id);
    if (!row) return;
    const index = rows().indexOf(row);
    row.remove();
    setCount(-1);
    if (index < selected) selected -= 1;
    select(selected);
  }

  function showClaim(row, who) {
    const cell = row.querySelector(".claim");
    if (!cell) return;
    cell.textContent = "";
    const badge = document.createElement("span");
    badge.className = "badge badge-claim";
    badge.textContent = `open: ${who}`;
    cell.appendChild(badge);
  }

  function onQueueMessage(message) {
    if (body.dataset.tab !== "queue") return;
    if (message.status === "needs_review" && message.event === "evaluated") addRow(message.action_id);
    else if (message.status !== "needs_review" && message.status !== "pending") removeRow(message.action_id);
    else if (message.event === "claimed" && message.claimed_by) {
      const row = rowOf(message.action_id);
      if (row) showClaim(row, message.claimed_by);
    } else if (message.event === "escalated") {
      // Past its review SLA: escalated items come first in the queue; show it there, flagged.
      if (rowOf(message.action_id)) removeRow(message.action_id);
      else setCount(-1); // it is already counted, on another page of the queue
      addRow(message.action_id);
    }
  }

  function onDetailMessage(message) {
    if (message.action_id !== body.dataset.actionId) return;
    if (message.event === "claimed" && message.claimed_by && message.claimed_by !== me) {
      const claim = document.getElementById("claim");
      claim.textContent = `${message.claimed_by} has just opened this action. You can still decide.`;
      claim.classList.remove("hidden");
    }
    if (message.status !== body.dataset.status && message.status !== "needs_review") {
      body.dataset.status = message.status;
      const banner = document.getElementById("elsewhere");
      banner.textContent = `This action was just ${message.status.replace("_", " ")} elsewhere. Reload to see the decision.`;
      banner.classList.remove("hidden");
      document.querySelectorAll(".decide-form").forEach((form) => {
        form.classList.add("disabled");
        form.querySelectorAll("button").forEach((button) => (button.disabled = true));
      });
      const status = document.getElementById("status");
      if (status) status.textContent = message.status.replace("_", " ");
    }
  }

  let retry = 500;
  function connect() {
    if (!live || !("WebSocket" in window)) return;
    const scheme = window.location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${window.location.host}/ws/review/`);
    socket.addEventListener("open", () => {
      retry = 500;
      showLive("open", "live");
    });
    socket.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch (error) {
        return;
      }
      if (page === "queue") onQueueMessage(message);
      else if (page === "detail") onDetailMessage(message);
    });
    socket.addEventListener("close", () => {
      showLive("closed", "offline: reload to refresh");
      window.setTimeout(connect, retry);
      retry = Math.min(retry * 2, 30000);
    });
  }
  connect();
})();
