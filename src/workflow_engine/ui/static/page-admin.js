// Administration: the tenant's users (create, change role, deactivate) and API keys (issue,
// showing the secret once, and revoke). Only for roles with `users:manage`.

import { api } from "./api.js";
import { confirmDialog, emptyState, field, fmtTime, h, notice, problemText, statusBadge, table, tableScroll } from "./dom.js";
import { collect } from "./lists.js";
import { can, session, uiConfig } from "./session.js";

const MAX_ROWS = 1000;

function roleNames() {
  return Object.keys(uiConfig().roles);
}

function roleSelect(attrs, selected) {
  const select = h("select", attrs, roleNames().map((role) => h("option", { value: role }, role)));
  select.value = selected;
  return select;
}

async function listAll(path, signal) {
  return (await collect(path, { signal, max: MAX_ROWS })).items;
}

function section(id, title, ...children) {
  return h("section", { class: "panel", "aria-labelledby": id }, h("h2", { id }, title), ...children);
}

// ---------------------------------------------------------------------------------------------
// Users

function usersSection(signal) {
  const box = h("div");
  const status = h("div", { class: "section-notices" });

  let users = [];

  // Changes redraw from the API's answers rather than listing again: fewer requests against
  // the caller's rate limit.
  function draw() {
    const list = table(["Email", "Role", "State", "Created", "Actions"], users.map(row),
      { "data-testid": "users-table", "aria-label": "Users" });
    box.replaceChildren(tableScroll(list));
  }

  async function change(user, body, what) {
    try {
      const changed = await api("PATCH", `/api/v1/users/${user.id}`, { body, signal });
      users = users.map((candidate) => (candidate.id === changed.id ? changed : candidate));
      draw();
      notice(status, `${user.email}: ${what}.`, "success");
      box.querySelector(`tr[data-user-id="${user.id}"] button[data-action]`)?.focus();
    } catch (error) {
      if (!signal.aborted) notice(status, `Could not change ${user.email}: ${problemText(error)}`, "error");
    }
  }

  function row(user) {
    const self = session.user && session.user.id === user.id;
    const select = roleSelect({ name: "role", "aria-label": `Role of ${user.email}`, disabled: self }, user.role);
    const apply = h("button", { type: "button", class: "button", "data-action": "change-role", disabled: true }, "Change role");
    select.addEventListener("change", () => {
      apply.disabled = select.value === user.role;
    });
    apply.addEventListener("click", () => change(user, { role: select.value }, `role changed to ${select.value}`));
    const action = user.is_active ? "disable" : "enable";
    const toggle = h("button", { type: "button", class: "button", "data-action": action,
      "aria-label": `${user.is_active ? "Deactivate" : "Reactivate"} ${user.email}` }, user.is_active ? "Deactivate" : "Reactivate");
    toggle.addEventListener("click", async () => {
      if (user.is_active) {
        const sure = await confirmDialog(`Deactivate ${user.email}?`,
          "They are signed out everywhere at once and cannot sign in until reactivated.", "Deactivate");
        if (!sure) return toggle.focus();
      }
      await change(user, { is_active: !user.is_active }, user.is_active ? "deactivated" : "reactivated");
    });
    return h("tr", { "data-user-id": user.id, "data-active": String(user.is_active) },
      h("th", { scope: "row" }, user.email, self ? h("span", { class: "muted" }, " (you)") : null),
      h("td", null, h("div", { class: "inline-controls" }, select, self ? null : apply)),
      h("td", null, user.is_active ? statusBadge("active") : statusBadge("inactive", "deactivated")),
      h("td", null, fmtTime(user.created_at)),
      // The API refuses to demote or deactivate oneself: another admin must.
      h("td", null, self ? h("span", { class: "muted" }, "—") : toggle));
  }

  async function load() {
    try {
      users = await listAll("/api/v1/users", signal);
    } catch (error) {
      if (!signal.aborted) notice(status, `Could not load the users: ${problemText(error)}`, "error");
      return;
    }
    draw();
  }

  const email = h("input", { name: "email", type: "email", autocomplete: "off", required: true, maxlength: "320" });
  const role = roleSelect({ name: "role" }, "viewer");
  const password = h("input", { name: "password", type: "password", autocomplete: "new-password", required: true, minlength: "10" });
  const submit = h("button", { type: "submit", class: "button primary" }, "Create user");
  const form = h("form", { "data-testid": "create-user", class: "inline-form", "aria-labelledby": "create-user-heading" },
    field("Email", email),
    field("Role", role),
    field("Password", password, "At least 10 characters."),
    h("div", { class: "form-actions" }, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    try {
      const user = await api("POST", "/api/v1/users",
        { body: { email: email.value.trim(), role: role.value, password: password.value }, signal });
      notice(status, `${user.email} created as ${user.role}.`, "success");
      form.reset();
      role.value = "viewer";
      users = [...users, user].sort((a, b) => a.email.localeCompare(b.email));
      draw();
    } catch (error) {
      if (!signal.aborted) notice(status, `Could not create the user: ${problemText(error)}`, "error");
    } finally {
      submit.disabled = false;
    }
  });

  function actorName(actor) {
    const id = actor.startsWith("user:") ? actor.slice("user:".length) : null;
    return users.find((user) => user.id === id)?.email ?? actor;
  }

  return {
    actorName,
    element: section("users-heading", "Users", status, box, h("h3", { id: "create-user-heading" }, "Create a user"), form),
    load,
  };
}

// ---------------------------------------------------------------------------------------------
// API keys

function keyState(key) {
  if (key.revoked_at) return "revoked";
  if (key.expires_at && Date.parse(key.expires_at) <= Date.now()) return "expired";
  return "active";
}

function secretPanel(created, onDone) {
  const secret = h("code", { "data-testid": "api-key-secret", class: "secret" }, created.key);
  const copy = h("button", { type: "button", class: "button" }, "Copy");
  const done = h("button", { type: "button", class: "button primary" }, "Done: I stored it");
  const said = h("span", { class: "muted", role: "status" });
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(created.key);
      said.textContent = "Copied.";
    } catch {
      // Without clipboard access (a page not served over HTTPS, say) the key is selected
      // for the user to copy with the keyboard.
      getSelection().selectAllChildren(secret);
      said.textContent = "Selected: press Ctrl+C (⌘C) to copy.";
    }
  });
  const panel = h("div", { class: "secret-panel", role: "region", "aria-label": "The new API key", tabindex: "-1" },
    h("p", null, h("strong", null, `Key ${created.name} (${created.role}) created.`),
      " Store it now: it is shown only this once and cannot be read again."),
    h("div", { class: "secret-row" }, secret, copy, said),
    h("div", { class: "form-actions" }, done));
  done.addEventListener("click", () => {
    panel.remove();
    onDone();
  });
  return panel;
}

/**
 * @param {AbortSignal} signal
 * @param {(actor: string) => string} actorName who `user:<id>` is, for people
 */
function keysSection(signal, actorName) {
  let keys = [];
  const box = h("div");
  const status = h("div", { class: "section-notices" });
  const reveal = h("div");

  async function revoke(key, button) {
    const sure = await confirmDialog(`Revoke ${key.name}?`,
      `Requests with the key ${key.prefix}… are refused from now on. This cannot be undone.`, "Revoke");
    if (!sure) return button.focus();
    try {
      await api("DELETE", `/api/v1/auth/api-keys/${key.id}`, { signal });
      keys = keys.map((candidate) => (candidate.id === key.id ? { ...key, revoked_at: new Date().toISOString() } : candidate));
      draw();
      // The row's button is gone: focus goes to the notice saying what happened.
      notice(status, `${key.name} revoked.`, "success").focus();
    } catch (error) {
      if (!signal.aborted) notice(status, `Could not revoke ${key.name}: ${problemText(error)}`, "error");
    }
  }

  function row(key) {
    const state = keyState(key);
    let action = null;
    if (state !== "revoked") {
      action = h("button", {
        type: "button", class: "button danger", "data-action": "revoke", "aria-label": `Revoke ${key.name}`,
      }, "Revoke");
      action.addEventListener("click", () => revoke(key, action));
    }
    return h("tr", { "data-key-id": key.id, "data-state": state },
      h("th", { scope: "row" }, key.name),
      h("td", null, h("code", null, `${key.prefix}…`)),
      h("td", null, key.role),
      h("td", null, statusBadge(state)),
      h("td", null, actorName(key.created_by), h("br"), h("span", { class: "muted" }, fmtTime(key.created_at))),
      h("td", null, key.expires_at ? fmtTime(key.expires_at) : "never"),
      h("td", null, fmtTime(key.last_used_at)),
      h("td", null, action ?? h("span", { class: "muted" }, `revoked ${fmtTime(key.revoked_at)}`)));
  }

  function draw() {
    const list = table(["Name", "Prefix", "Role", "State", "Created", "Expires", "Last used", "Actions"], keys.map(row),
      { "data-testid": "api-keys-table", "aria-label": "API keys" });
    box.replaceChildren(...(keys.length ? [] : [emptyState("No API keys yet.")]), tableScroll(list));
  }

  async function load() {
    try {
      keys = await listAll("/api/v1/auth/api-keys", signal);
    } catch (error) {
      if (!signal.aborted) notice(status, `Could not load the API keys: ${problemText(error)}`, "error");
      return;
    }
    draw();
  }

  const name = h("input", { name: "name", type: "text", required: true, maxlength: "100", autocomplete: "off" });
  const role = roleSelect({ name: "role" }, "service");
  const expires = h("input", { name: "expires_in_days", type: "number", min: "1", max: "3650", step: "1", inputmode: "numeric" });
  const submit = h("button", { type: "submit", class: "button primary" }, "Create API key");
  const form = h("form", { "data-testid": "create-api-key", class: "inline-form", "aria-labelledby": "create-key-heading" },
    field("Name", name, "Letters, digits, spaces and . : @ / - _"), field("Role", role),
    field("Expires in (days)", expires, "Leave empty for a key that never expires."), h("div", { class: "form-actions" }, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    const body = { name: name.value.trim(), role: role.value };
    if (expires.value !== "") body.expires_in_days = Number(expires.value);
    try {
      const created = await api("POST", "/api/v1/auth/api-keys", { body, signal });
      form.reset();
      role.value = "service";
      const panel = secretPanel(created, () => name.focus());
      reveal.replaceChildren(panel);
      panel.focus();
      const { key: _secret, ...view } = created;
      keys = [...keys, view];
      draw();
    } catch (error) {
      if (!signal.aborted) notice(status, `Could not create the key: ${problemText(error)}`, "error");
    } finally {
      submit.disabled = false;
    }
  });

  return {
    element: section("keys-heading", "API keys", status, reveal, box, h("h3", { id: "create-key-heading" }, "Create an API key"), form),
    load,
  };
}

/**
 * Draws the admin page, or says that the role may not use it.
 * @param {HTMLElement} main
 * @param {{query: URLSearchParams}} _params
 * @param {AbortSignal} signal
 */
export async function render(main, _params, signal) {
  main.append(h("h1", null, "Admin"));
  if (!can("users:manage")) {
    const role = session.user?.role ?? "unknown";
    main.append(h("div", { class: "not-allowed", "data-testid": "not-allowed", role: "status" },
      h("h2", null, "Not allowed"),
      h("p", null, `Managing users and API keys needs the admin role; you are signed in as ${role}.`)));
    return;
  }
  const users = usersSection(signal);
  main.append(users.element);
  const keys = can("api_keys:manage") ? keysSection(signal, users.actorName) : null;
  if (keys) main.append(keys.element);
  // Users first: the keys table names their creators by email.
  await users.load();
  if (keys) await keys.load();
}
