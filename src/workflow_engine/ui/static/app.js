// The dashboard's entry point: sign-in when there is no session, else the layout (header,
// main menu, <main>) and the router.

import { onRateLimitWait } from "./api.js";
import { field, h, problemText } from "./dom.js";
import { link, startRouter, stopRouter } from "./router.js";
import { can, onRoleChange, onSessionEnd, session, signIn, signOut, uiConfig } from "./session.js";

const NAV = [
  { key: "runs", label: "Runs", path: "/ui/runs" },
  { key: "approvals", label: "Approvals", path: "/ui/approvals" },
  { key: "templates", label: "Templates", path: "/ui/templates" },
  { key: "schedules", label: "Schedules", path: "/ui/schedules" },
  { key: "usage", label: "Usage", path: "/ui/usage" },
  { key: "services", label: "Services", path: "/ui/services" },
  { key: "admin", label: "Admin", path: "/ui/admin", permission: "users:manage" },
];

const app = document.getElementById("app");

// Shown in the header (or on the sign-in form) while requests wait for the rate limit: the
// pages then finish loading by themselves, a little later.
const rateLimitStatus = h("p", { class: "rate-limit-status", role: "status", "data-testid": "rate-limit-status" });
onRateLimitWait((waiting) => {
  rateLimitStatus.textContent = waiting ? "Waiting for the rate limit…" : "";
  rateLimitStatus.classList.toggle("active", waiting);
});

function showSignIn(reason) {
  stopRouter();
  document.title = "Sign in · workflow-engine";
  const email = h("input", { name: "email", type: "email", autocomplete: "username", required: true });
  const password = h("input", {
    name: "password",
    type: "password",
    autocomplete: "current-password",
    required: true,
  });
  const submit = h("button", { type: "submit", class: "button primary" }, "Sign in");
  const message = h("div", { class: "sign-in-message" });
  const form = h(
    "form",
    { "data-testid": "sign-in", class: "sign-in", "aria-labelledby": "sign-in-title" },
    h("h1", { id: "sign-in-title" }, "Sign in"),
    h("p", { class: "muted" }, "workflow-engine dashboard"),
    message,
    rateLimitStatus,
    field("Email", email),
    field("Password", password),
    submit,
  );
  if (reason === "expired") {
    message.append(h("p", { class: "notice notice-info", role: "status" }, "Your session ended: please sign in again."));
  }
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    message.replaceChildren();
    try {
      await signIn(email.value.trim(), password.value);
      showLayout();
    } catch (error) {
      const text = error.status === 401 ? "Wrong email or password." : problemText(error);
      message.append(h("p", { class: "notice notice-error", role: "alert" }, text));
      submit.disabled = false;
      password.select();
    }
  });
  app.replaceChildren(h("main", { id: "main", tabindex: "-1", class: "sign-in-page" }, form));
  email.focus();
}

function showLayout() {
  const main = h("main", { id: "main", tabindex: "-1" });
  const links = new Map();
  const items = NAV.filter((item) => !item.permission || can(item.permission)).map((item) => {
    const anchor = link(item.path, item.label);
    links.set(item.key, anchor);
    return h("li", null, anchor);
  });
  const menuButton = h(
    "button",
    { type: "button", class: "menu-button", "aria-expanded": "false", "aria-controls": "main-nav" },
    "Menu",
  );
  const nav = h("nav", { id: "main-nav", "aria-label": "Main", class: "main-nav" }, h("ul", null, items));
  const setMenu = (open) => {
    menuButton.setAttribute("aria-expanded", String(open));
    nav.classList.toggle("open", open);
  };
  menuButton.addEventListener("click", () => setMenu(menuButton.getAttribute("aria-expanded") !== "true"));
  nav.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && nav.classList.contains("open")) {
      setMenu(false);
      menuButton.focus();
    }
  });
  const who = session.user.email || session.user.name || session.user.id;
  const header = h(
    "header",
    { class: "site-header" },
    h("div", { class: "brand" }, link("/ui/", "workflow-engine"), h("span", { class: "version" }, uiConfig().version)),
    menuButton,
    nav,
    rateLimitStatus,
    h(
      "div",
      { class: "account" },
      h("span", { class: "who", title: `${who} (${session.user.role})` }, who),
      h("button", { type: "button", class: "button", onclick: () => signOut() }, "Sign out"),
    ),
  );
  app.replaceChildren(header, main);
  startRouter(main, (route) => {
    setMenu(false);
    for (const [key, anchor] of links) {
      if (route && route.nav === key) anchor.setAttribute("aria-current", "page");
      else anchor.removeAttribute("aria-current");
    }
  });
}

// The shell's "Skip to content" link focuses <main> without putting `#main` in the URL: a
// fragment in the history would be one more entry for Back to step through.
function skipToContent(event) {
  const main = document.getElementById("main");
  if (!main) return;
  event.preventDefault();
  main.focus();
}

document.querySelector("a.skip-link")?.addEventListener("click", skipToContent);
onSessionEnd((reason) => showSignIn(reason));
// What the nav and the pages offer depends on the role: draw them again for the new one.
onRoleChange(() => showLayout());
showSignIn();
