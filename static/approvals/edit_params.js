// Edit, then approve: the diff between the proposed params and the form, as the reviewer types,
// and `e` to open the form. The server reads the form by the schema and is the judge; this only
// shows what the agent would be told to do instead.
(function () {
  "use strict";
  const box = document.getElementById("edit-params");
  const form = document.getElementById("edit-form");
  if (!box || !form) return;
  const diff = document.getElementById("edit-diff");
  const fields = Array.from(form.querySelectorAll("[data-original]"));

  function shown(value) {
    return value === "" ? "(none)" : value;
  }

  function render() {
    const changed = fields.filter((input) => input.value !== input.dataset.original);
    diff.replaceChildren();
    if (!changed.length) {
      const p = document.createElement("p");
      p.className = "muted";
      p.textContent = "No change yet: change a field to see what the agent will do instead.";
      diff.append(p);
      return;
    }
    const list = document.createElement("ul");
    list.className = "diff";
    for (const input of changed) {
      const item = document.createElement("li");
      const name = document.createElement("code");
      name.textContent = input.name.replace(/^param:/, "");
      const before = document.createElement("del");
      before.textContent = shown(input.dataset.original);
      const after = document.createElement("ins");
      after.textContent = shown(input.value);
      item.append(name, ": ", before, " → ", after);
      list.append(item);
    }
    diff.append(list);
  }

  form.addEventListener("input", render);
  form.addEventListener("change", render);
  render();

  document.addEventListener("keydown", (event) => {
    if (event.key !== "e" || event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target instanceof HTMLElement && target.closest("input, textarea, select, [contenteditable]")) return;
    event.preventDefault();
    box.open = true;
    const first = form.querySelector("input:not([type=hidden]), select, textarea");
    if (first) first.focus();
  });
})();
