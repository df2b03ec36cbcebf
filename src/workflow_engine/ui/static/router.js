// Client-side routing on real URLs: the server answers the same shell for every page path,
// and this module picks the page module from `location.pathname`.

import { h, isAbort, notice, problemText } from "./dom.js";

// The pages, in matching order; `nav` names the main-menu entry a page belongs to. The server
// answers the shell for the same paths (`PAGES` in ui/routes.py; a test compares the two).
const ROUTES = [
  { pattern: /^\/ui\/(?:runs)?$/, module: "./page-runs.js", title: "Runs", nav: "runs" },
  {
    pattern: /^\/ui\/runs\/([^/]+)$/,
    keys: ["id"],
    module: "./page-run.js",
    title: "Run",
    nav: "runs",
  },
  { pattern: /^\/ui\/approvals$/, module: "./page-approvals.js", title: "Approvals", nav: "approvals" },
  { pattern: /^\/ui\/templates$/, module: "./page-templates.js", title: "Templates", nav: "templates" },
  {
    pattern: /^\/ui\/templates\/([^/]+)$/,
    keys: ["name"],
    module: "./page-template.js",
    title: "Template",
    nav: "templates",
  },
  { pattern: /^\/ui\/schedules$/, module: "./page-schedules.js", title: "Schedules", nav: "schedules" },
  { pattern: /^\/ui\/usage$/, module: "./page-usage.js", title: "Usage", nav: "usage" },
  { pattern: /^\/ui\/services$/, module: "./page-services.js", title: "Services", nav: "services" },
  { pattern: /^\/ui\/admin$/, module: "./page-admin.js", title: "Admin", nav: "admin" },
];

let outlet = null; // {main, onRoute}
let current = null; // the shown page's AbortController
let shown = null; // the path and query the shown page was drawn for

// The route for a path and its parameters; null when none matches, or when a parameter is
// not a valid percent-encoding (`/ui/runs/%E0%A4%A`): that is no page either.
function match(pathname) {
  for (const route of ROUTES) {
    const found = route.pattern.exec(pathname);
    if (found) {
      const params = {};
      try {
        (route.keys || []).forEach((key, index) => {
          params[key] = decodeURIComponent(found[index + 1]);
        });
      } catch (error) {
        if (error instanceof URIError) return null;
        throw error;
      }
      return { route, params };
    }
  }
  return null;
}

function here() {
  return location.pathname + location.search;
}

/**
 * Goes to a dashboard path without reloading. With `replace` and the same pathname (only
 * the query changes), the URL is replaced and the page is NOT rendered again: that is how a
 * page records its own state (filters) in a shareable URL.
 * @param {string} path e.g. `/ui/runs/0d1e…` or `/ui/runs?status=failed`
 * @param {{replace?: boolean}} [options]
 */
export function navigate(path, { replace = false } = {}) {
  const target = new URL(path, location.origin);
  if (replace && target.pathname === location.pathname) {
    history.replaceState(null, "", target.pathname + target.search + target.hash);
    shown = here(); // the page drew this state itself
    return;
  }
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  render({ focus: true });
}

/**
 * A link to a dashboard path: a real `<a href>` (open in a new tab works) whose plain click
 * or Enter routes without a reload.
 * @param {string} path
 * @param {...(Node|string)} children
 * @returns {HTMLAnchorElement}
 */
export function link(path, ...children) {
  return h(
    "a",
    {
      href: path,
      onclick: (event) => {
        const plain = !event.ctrlKey && !event.metaKey && !event.shiftKey && !event.altKey;
        if (event.button === 0 && plain) {
          event.preventDefault();
          navigate(path);
        }
      },
    },
    ...children,
  );
}

/**
 * Starts routing into `main`: renders the current path now, and again on every navigation.
 * @param {HTMLElement} main the `<main>` element pages render into
 * @param {(route: object|null) => void} [onRoute] told of each page shown (the nav marks it)
 */
export function startRouter(main, onRoute) {
  outlet = { main, onRoute: onRoute || (() => {}) };
  render({ focus: false });
}

/**
 * Stops routing: aborts the shown page (its streams and timers).
 */
export function stopRouter() {
  if (current) current.abort();
  current = null;
  outlet = null;
  shown = null;
}

// A history move that changes only the fragment (the skip link's `#main`, or Back from it)
// stays on the page as drawn: drawing it again would drop its state and re-send its requests.
addEventListener("popstate", () => {
  if (here() === shown) return;
  render({ focus: true });
});

async function render({ focus }) {
  if (!outlet) return;
  const { main, onRoute } = outlet;
  if (current) current.abort();
  const controller = new AbortController();
  current = controller;
  shown = here();
  main.replaceChildren();
  const found = match(location.pathname);
  onRoute(found ? found.route : null);
  document.title = `${found ? found.route.title : "Not found"} · workflow-engine`;
  if (focus) main.focus();
  if (!found) {
    main.append(h("h1", null, "Page not found"));
    notice(main, `There is no dashboard page at ${location.pathname}.`, "error");
    return;
  }
  let page;
  try {
    page = await import(found.route.module);
  } catch (error) {
    if (controller.signal.aborted) return;
    main.append(h("h1", null, found.route.title));
    notice(main, `This page could not be loaded (${found.route.module}): ${error.message}`, "error");
    return;
  }
  if (controller.signal.aborted) return;
  const params = { ...found.params, query: new URLSearchParams(location.search) };
  try {
    await page.render(main, params, controller.signal);
  } catch (error) {
    if (controller.signal.aborted || isAbort(error)) return;
    notice(main, problemText(error), "error");
  }
}
