// charter labeling page. Every piece of model text goes through textContent: never innerHTML.
"use strict";
(function () {
  const params = new URLSearchParams(location.search);
  const token = params.get("token") || "";
  let state = null;
  let busy = false;
  const $ = (id) => document.getElementById(id);

  function annotator() { return $("annotator").value.trim(); }

  async function call(method, path, body) {
    const url = path + (method === "GET" ? "?annotator=" + encodeURIComponent(annotator()) : "");
    const response = await fetch(url, {
      method, headers: { "X-Charter-Token": token, "Content-Type": "application/json" },
      body: method === "POST" ? JSON.stringify(Object.assign({ annotator: annotator() }, body || {})) : undefined,
    });
    const data = await response.json().catch(() => ({ error: "HTTP " + response.status }));
    if (!response.ok) throw new Error(data.error || ("HTTP " + response.status));
    return data;
  }

  function showError(message) {
    $("error").textContent = message || "";
    $("error").hidden = !message;
  }

  function line(className, label, value) {
    const div = document.createElement("div");
    div.className = className;
    const role = document.createElement("span");
    role.className = "role";
    role.textContent = label;
    const text = document.createElement("span");
    text.textContent = value;
    div.append(role, text);
    return div;
  }

  // A trajectory laid out by role: tool calls shown as actions, tool results marked as untrusted data.
  function renderConversation(messages) {
    const box = $("conversation");
    box.replaceChildren();
    messages.forEach((message, index) => {
      const role = String(message.role);
      const untrusted = role === "tool";
      const label = untrusted ? "tool result (untrusted" + (message.name ? ", " + String(message.name) : "") + "):"
        : role + ":";
      const div = line("message" + (untrusted ? " untrusted" : ""), label, String(message.content));
      div.dataset.step = String(index);
      div.dataset.role = role;
      for (const call of message.tool_calls || []) {
        const action = line("action", "action:", String(call.name) + " " + JSON.stringify(call.arguments || {}));
        div.append(action);
      }
      box.append(div);
    });
  }

  function renderSteps(item) {
    $("steps").hidden = !item.steps;
    if (!item.steps) return;
    $("steps-principle").textContent = item.principle.id;
    for (const response of ["A", "B"]) {
      const select = $("step-" + response);
      select.replaceChildren();
      const choices = [["", "(not labeled)"], ["none", "no step violates it"]].concat(
        item.steps.map((s) => [String(s.index), s.label === "the response" ? "response " + response : s.label]));
      for (const [value, text] of choices) {
        const option = document.createElement("option");
        option.value = value;
        option.textContent = text;
        select.append(option);
      }
      const given = (item.step_labels || {})[response];
      select.value = given === null || given === undefined ? "" : String(given);
      select.dataset.saved = select.value;  // what the run holds: the page shows it once the server has it
    }
  }

  function labelStep(response) {
    if (!state || !state.item) return;
    const step = $("step-" + response).value;
    if (!step) { showError("choose a step (or 'no step violates it') first"); return; }
    const pairId = state.item.pair_id;
    run(() => call("POST", "/api/step", { pair_id: pairId, response, step }));
  }

  function render(data) {
    state = data;
    if ($("annotator").value.trim() !== data.annotator) $("annotator").value = data.annotator;
    $("progress").textContent = data.progress.done + " / " + data.progress.total + " labeled by " + data.annotator;
    const item = data.item;
    $("task").hidden = !item;
    $("done").hidden = !!item;
    document.body.dataset.pairId = item ? item.pair_id : "";
    if (!item) return;
    $("principle-id").textContent = item.principle.id;
    $("principle-question").textContent = item.principle.comparison || "";
    $("principle-description").textContent = item.principle.description || "";
    renderConversation(item.prompt);
    $("response-a").textContent = item.A;
    $("response-b").textContent = item.B;
    renderChecklist(item);
    renderSteps(item);
  }

  function renderChecklist(item) {
    const rows = $("checklist-items");
    rows.replaceChildren();
    $("checklist").hidden = !item.checklist;
    for (const check of item.checklist || []) {
      const tr = document.createElement("tr");
      tr.dataset.item = String(check.id);
      const text = document.createElement("td");
      text.textContent = String(check.requirement);
      tr.append(text);
      for (const response of ["A", "B"]) {
        const cell = document.createElement("td");
        for (const verdict of ["yes", "no", "n/a"]) {
          const button = document.createElement("button");
          button.type = "button";
          button.className = "verdict" + (check[response] === verdict ? " chosen" : "");
          button.dataset.response = response;
          button.dataset.verdict = verdict;
          button.textContent = verdict;
          button.setAttribute("aria-pressed", String(check[response] === verdict));
          button.addEventListener("click", () => judgeItem(String(check.id), response, verdict));
          cell.append(button);
        }
        tr.append(cell);
      }
      rows.append(tr);
    }
  }

  function judgeItem(itemId, response, verdict) {
    if (!state || !state.item) return;
    const pairId = state.item.pair_id;
    run(() => call("POST", "/api/item", { pair_id: pairId, item_id: itemId, response, verdict }));
  }

  async function run(action) {
    if (busy) return;
    busy = true;
    try { render(await action()); showError(""); } catch (err) { showError(err.message); } finally { busy = false; }
  }

  function choose(choice) {
    if (!state || !state.item) return;
    const pairId = state.item.pair_id;
    run(() => call("POST", "/api/label", { pair_id: pairId, choice }));
  }
  function undo() { run(() => call("POST", "/api/undo")); }
  function load() { run(() => call("GET", "/api/state")); }

  const KEYS = { "1": "A", a: "A", "2": "B", b: "B", "3": "tie", t: "tie", s: "skip" };
  document.addEventListener("keydown", (event) => {
    if (event.target === $("annotator") || event.target.tagName === "SELECT") return;
    if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") { event.preventDefault(); undo(); return; }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key.toLowerCase();
    if (key === "u") { event.preventDefault(); undo(); }
    else if (KEYS[key]) { event.preventDefault(); choose(KEYS[key]); }
  });

  document.addEventListener("DOMContentLoaded", () => {
    $("annotator").value = params.get("annotator") || "";
    for (const button of document.querySelectorAll("button[data-choice]")) {
      button.addEventListener("click", () => choose(button.dataset.choice));
    }
    $("btn-undo").addEventListener("click", undo);
    $("btn-step-A").addEventListener("click", () => labelStep("A"));
    $("btn-step-B").addEventListener("click", () => labelStep("B"));
    $("annotator").addEventListener("change", () => {
      const next = new URLSearchParams(location.search);
      next.set("annotator", annotator());
      history.replaceState(null, "", "?" + next.toString());
      load();
    });
    load();
  });
})();
