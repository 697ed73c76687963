// The reviewer's desk: keyboard, and live updates over the review websocket.
// No framework and no inline script (the Content Security Policy allows only this file).
(function () {
  "use strict";

  const body = document.body;
  const page = body.dataset.page;
  const me = body.dataset.user || "";

  // Typing into a field: single-key shortcuts stay out of the way (a focused radio or checkbox is
  // not typing, so that "l" then a shortcut still works).
  const NOT_TEXT = ["radio", "checkbox", "button", "submit", "reset"];
  function typing(event) {
    const el = event.target;
    if (!el) return false;
    if (el.tagName === "INPUT") return !NOT_TEXT.includes(el.type);
    return el.isContentEditable || ["TEXTAREA", "SELECT"].includes(el.tagName);
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

  // --- detail: decisions wait out an undo window ---------------------------------------------------
  // A submit of any form.decide-form (a key or its button) is held for UNDO_SECONDS, naming the
  // action; the same key again, Enter or "decide now" submits at once, u / Esc / "undo" drops it.
  // Leaving the page (or it going into the back-forward cache) drops it too: nothing is decided
  // unless the window ran out or the reviewer confirmed, on this page.
  const UNDO_SECONDS = 5;
  let pending = null;

  function actionName() {
    return `${body.dataset.actionType || "action"} ${(body.dataset.actionId || "").slice(0, 8)}…`;
  }

  function showPending() {
    const left = Math.max(0, Math.ceil((pending.deadline - Date.now()) / 1000));
    document.getElementById("pending-left").textContent = `${left} s`;
  }

  function decideLater(form) {
    if (pending || form.classList.contains("disabled")) return;
    const box = document.getElementById("pending");
    pending = {
      form,
      deadline: Date.now() + UNDO_SECONDS * 1000,
      timer: window.setTimeout(decideNow, UNDO_SECONDS * 1000),
      ticker: window.setInterval(showPending, 250),
    };
    document.getElementById("pending-text").textContent = `${form.dataset.verb} ${actionName()}`;
    document.getElementById("pending-now-text").textContent = form.dataset.now || "decide now";
    const fill = document.getElementById("pending-fill");
    fill.style.animationDuration = `${UNDO_SECONDS}s`;
    box.dataset.verdict = form.dataset.key || "";
    box.classList.remove("hidden");
    fill.classList.remove("running");
    void fill.offsetWidth; // restart the bar's animation
    fill.classList.add("running");
    showPending();
    document.querySelectorAll(".decide-form button").forEach((button) => (button.disabled = true));
    document.getElementById("pending-now").focus();
  }

  function dropPending() {
    if (!pending) return null;
    const form = pending.form;
    window.clearTimeout(pending.timer);
    window.clearInterval(pending.ticker);
    pending = null;
    document.getElementById("pending").classList.add("hidden");
    return form;
  }

  function decideNow() {
    const form = dropPending();
    if (!form || form.classList.contains("disabled")) return;
    form.dataset.confirmed = "1";
    form.requestSubmit();
  }

  function undo() {
    const form = dropPending();
    if (!form) return;
    document.querySelectorAll(".decide-form:not(.disabled) button").forEach((button) => (button.disabled = false));
    const button = form.querySelector("button[type=submit]");
    if (button) button.focus();
  }

  document.querySelectorAll("form.decide-form[data-verb]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (form.dataset.confirmed) return; // the window ran out or was confirmed: really submit
      event.preventDefault();
      decideLater(form);
    });
  });
  const pendingNow = document.getElementById("pending-now");
  if (pendingNow) pendingNow.addEventListener("click", decideNow);
  const pendingUndo = document.getElementById("pending-undo");
  if (pendingUndo) pendingUndo.addEventListener("click", undo);
  window.addEventListener("pagehide", undo);

  function startDecision(formId) {
    const form = document.getElementById(formId);
    if (form) decideLater(form);
  }

  function focusRejectReason() {
    const reason = document.getElementById("reject-reason");
    if (!reason || reason.closest("form").classList.contains("disabled")) return;
    reason.scrollIntoView({ block: "center" });
    reason.focus();
  }

  // --- detail: edit the params, then approve -----------------------------------------------------
  // The diff between the proposal and the form as the reviewer types. The server reads the form by
  // the type's schema and is the judge; this only shows what the agent would be told to do instead.
  const editBox = document.getElementById("edit-params");
  const editForm = document.getElementById("edit-form");

  function openEdit() {
    if (!editBox || editForm.classList.contains("disabled")) return;
    editBox.open = true;
    editBox.scrollIntoView({ block: "center" });
    const first = editForm.querySelector("[data-original]");
    if (first) first.focus();
  }

  function showEditDiff() {
    const diff = document.getElementById("edit-diff");
    const changed = Array.from(editForm.querySelectorAll("[data-original]")).filter(
      (input) => input.value !== input.dataset.original,
    );
    diff.replaceChildren();
    if (!changed.length) {
      const note = document.createElement("p");
      note.className = "muted";
      note.textContent = "No change yet: change a field to see what the agent will do instead.";
      diff.append(note);
      return;
    }
    const list = document.createElement("ul");
    list.className = "diff";
    for (const input of changed) {
      const item = document.createElement("li");
      const name = document.createElement("code");
      name.textContent = input.name.replace(/^param:/, "");
      const before = document.createElement("del");
      before.textContent = input.dataset.original === "" ? "(none)" : input.dataset.original;
      const after = document.createElement("ins");
      after.textContent = input.value === "" ? "(none)" : input.value;
      item.append(name, ": ", before, " → ", after);
      list.append(item);
    }
    diff.append(list);
  }

  if (editForm) {
    editForm.addEventListener("input", showEditDiff);
    editForm.addEventListener("change", showEditDiff);
    showEditDiff();
  }

  // --- detail: the label form, ready to save ----------------------------------------------------
  function openLabel() {
    const card = document.getElementById("label");
    if (!card) return;
    const choice =
      card.querySelector("input[name=label]:checked") || card.querySelector("input[name=label]");
    card.classList.add("active");
    card.scrollIntoView({ block: "center" });
    if (choice) choice.focus();
  }

  const labelForm = document.getElementById("label-form");
  if (labelForm) {
    // Enter on a choice saves it (the focused one, when none is checked yet).
    labelForm.addEventListener("keydown", (event) => {
      if (event.key !== "Enter" || event.target.name !== "label") return;
      event.preventDefault();
      if (!labelForm.querySelector("input[name=label]:checked")) event.target.checked = true;
      labelForm.requestSubmit();
    });
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (pending) {
      // During the undo window only these keys count; the rest are swallowed, never typed.
      if (event.key === "u" || event.key === "Escape") undo();
      else if (event.key === "Enter" || event.key === document.getElementById("pending").dataset.verdict) decideNow();
      else if (event.key === "Tab") return;
      event.preventDefault();
      return;
    }
    if (typing(event)) return;
    const keys = document.getElementById("keys");
    if (event.key === "?") {
      keys.open ? keys.close() : keys.showModal();
      event.preventDefault();
      return;
    }
    if (keys.open) return;
    if (page === "queue") {
      if (event.key === "j") select(selected + 1);
      else if (event.key === "k") select(selected - 1);
      else if (event.key === "/") document.getElementById("search").focus();
      else if (event.key === "Enter") {
        const row = rows()[selected];
        if (row) window.location.href = row.dataset.href;
      } else return;
      event.preventDefault();
    } else if (page === "detail") {
      if (event.key === "a") startDecision("approve-form");
      else if (event.key === "r") focusRejectReason();
      else if (event.key === "l") openLabel();
      else if (event.key === "e") openEdit();
      else return;
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
    // The queue's own query (search, filters): the server answers 404 for an action it does not list.
    const response = await fetch(`/review/${encodeURIComponent(id)}/row${window.location.search}`, {
      credentials: "same-origin",
    });
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

  function showProgress(message) {
    // An approval that is not the last (the two-person rule): the figures are absolute, so a
    // repeated push shows the same.
    const text = `${message.approvals} of ${message.approvals_required}`;
    if (page === "queue") {
      const badge = rowOf(message.action_id) && rowOf(message.action_id).querySelector(".badge-quorum");
      if (badge) badge.textContent = text;
      return;
    }
    const progress = document.getElementById("approval-progress");
    if (!progress) return;
    const mine = message.approved_by === me;
    progress.replaceChildren();
    const figures = document.createElement("strong");
    figures.textContent = `${text} approvals`;
    progress.append(
      figures,
      mine ? ": you approved it; it waits for another reviewer." : `: ${message.approved_by} approved it just now.`,
    );
  }

  function onQueueMessage(message) {
    if (body.dataset.tab !== "queue") return;
    if (message.event === "approved_partially") {
      showProgress(message);
      return;
    }
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
    if (message.event === "approved_partially") showProgress(message);
    if (message.event === "claimed" && message.claimed_by && message.claimed_by !== me) {
      const claim = document.getElementById("claim");
      claim.textContent = `${message.claimed_by} has just opened this action. You can still decide.`;
      claim.classList.remove("hidden");
    }
    if (message.status !== body.dataset.status && message.status !== "needs_review") {
      body.dataset.status = message.status;
      dropPending(); // decided elsewhere: an open undo window has nothing left to decide
      const look = statusLook(message.status);
      const banner = document.getElementById("status-banner");
      banner.className = `banner banner-${look.banner}`;
      banner.dataset.status = message.status;
      banner.textContent = `${look.name} just now, elsewhere. Reload to see the decision.`;
      document.querySelectorAll(".decide-form").forEach((form) => {
        form.classList.add("disabled");
        form.querySelectorAll("button").forEach((button) => (button.disabled = true));
      });
      const status = document.getElementById("status");
      if (status) {
        // the colour follows the status, not only the text
        status.className = `status status-${message.status}`;
        status.textContent = look.name;
      }
    }
  }

  // Each status's name and banner colour, as the server rendered them (approvals/review/display.py).
  let looks = null;
  function statusLook(status) {
    if (looks === null) {
      const data = document.getElementById("status-look");
      looks = data ? JSON.parse(data.textContent) : {};
    }
    return looks[status] || { name: status.replaceAll("_", " "), banner: "info" };
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
