// The service registry: each instance's health, its last check and its latency history.

import { ApiError, api } from "./api.js";
import { sparkline } from "./chart.js";
import { confirmDialog, emptyState, fmtNumber, fmtTime, h, notice, problemText, statusBadge, table, tableScroll } from "./dom.js";
import { collect } from "./lists.js";
import { can } from "./session.js";

const MAX_SERVICES = 500;
const HISTORY_POINTS = 30;
const HISTORY_CONCURRENCY = 2;

function latencyText(ms) {
  return ms === null || ms === undefined ? "—" : `${fmtNumber(Math.round(ms * 10) / 10)} ms`;
}

/** Whether a check passed (older answers without `passed`: whether it has no error). */
function passed(check) {
  return typeof check.passed === "boolean" ? check.passed : !check.error;
}

/**
 * The service's recent checks, oldest first; null when the server keeps no history.
 * (A 429 is waited out by api.js.)
 */
async function history(service, signal) {
  try {
    const answer = await api("GET", `/api/v1/registry/services/${encodeURIComponent(service.id)}/checks`,
      { query: { limit: HISTORY_POINTS }, signal });
    const checks = Array.isArray(answer) ? answer : answer?.items ?? [];
    return checks.slice(0, HISTORY_POINTS).reverse();
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
}

/**
 * Loads each row's history once the row is on screen (or nearly), at most
 * HISTORY_CONCURRENCY at a time: one request per service counts against the caller's rate
 * limit, so a long registry must not spend it all at once.
 * @param {HTMLTableElement} list
 * @param {Object[]} services
 * @param {(service: Object, cell: HTMLElement) => Promise<void>} load
 * @param {AbortSignal} signal
 */
function loadWhenVisible(list, services, load, signal) {
  const byId = new Map(services.map((service) => [String(service.id), service]));
  const waiting = [];
  let running = 0;
  const next = async () => {
    if (running >= HISTORY_CONCURRENCY || !waiting.length || signal.aborted) return;
    running += 1;
    const row = waiting.shift();
    try {
      await load(byId.get(row.getAttribute("data-service-id")), row.querySelector("td.history"));
    } finally {
      running -= 1;
      next();
    }
  };
  const observer = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (!entry.isIntersecting) continue;
      observer.unobserve(entry.target);
      waiting.push(entry.target);
    }
    for (let worker = running; worker < HISTORY_CONCURRENCY; worker += 1) next();
  }, { rootMargin: "200px 0px" });
  for (const row of list.querySelectorAll("tr[data-service-id]")) observer.observe(row);
  signal.addEventListener("abort", () => observer.disconnect(), { once: true });
  return observer;
}

/** An empty sparkline (every row has one) with a word on why it is empty. */
function noHistory(label, word) {
  return [sparkline([], { testid: "latency-history", label }), h("span", { class: "muted small" }, word)];
}

function checkTitle(check) {
  const outcome = passed(check) ? "passed" : `failed${check.error ? ` (${check.error})` : ""}`;
  return `${fmtTime(check.checked_at)}: ${outcome}, ${latencyText(check.latency_ms)}`;
}

function historyChart(service, checks) {
  if (checks === undefined) return noHistory("Loading the latency history…", "loading…");
  if (checks === null) return noHistory("No latency history: this server keeps none.", "no history");
  if (checks.length === 0) return noHistory("No checks yet.", "no checks yet");
  const points = checks.map((check) => ({
    value: typeof check.latency_ms === "number" ? check.latency_ms : null,
    ok: passed(check),
    title: checkTitle(check),
  }));
  const latencies = points.map((point) => point.value).filter((value) => value !== null);
  const failed = points.filter((point) => !point.ok).length;
  const summary = latencies.length
    ? `min ${latencyText(Math.min(...latencies))}, max ${latencyText(Math.max(...latencies))}, latest ${latencyText(latencies.at(-1))}`
    : "no latencies";
  const label = `Latency of ${service.service_name}'s last ${points.length} checks: ${summary}; ${failed} failed.`;
  return sparkline(points, { testid: "latency-history", label });
}

function lastCheck(service) {
  const check = service.last_check;
  if (!check) return h("span", { class: "muted" }, "never");
  return [h("time", { datetime: check.at }, fmtTime(check.at)),
    check.error ? h("div", { class: "check-error" }, check.error) : null];
}

function serviceCell(service) {
  const tags = service.tags.length ? h("div", { class: "tags" }, service.tags.map((tag) => h("span", { class: "tag" }, tag))) : null;
  return h("th", { scope: "row" }, service.service_name, tags);
}

/**
 * Draws the services page.
 * @param {HTMLElement} main
 * @param {{query: URLSearchParams}} _params
 * @param {AbortSignal} signal
 */
export async function render(main, _params, signal) {
  const writable = can("registry:write");
  // The one line announced when the list is (re)loaded; the table itself is no live region
  // (a screen reader would read all of it again).
  const summary = h("p", { class: "lead", role: "status" });
  const refresh = h("button", { type: "button", class: "button" }, "Refresh");
  const content = h("div");
  main.append(h("h1", null, "Services"), h("div", { class: "toolbar" }, summary, refresh), content);

  async function deregister(service, button) {
    const sure = await confirmDialog(`Deregister ${service.service_name}?`,
      `The instance at ${service.service_url} leaves the registry with its check history; it can register again.`, "Deregister");
    if (!sure) return button.focus();
    try {
      await api("DELETE", `/api/v1/registry/deregister/${encodeURIComponent(service.id)}`, { signal });
      notice(main, `${service.service_name} deregistered.`, "success").focus(); // its row goes
      await load();
    } catch (error) {
      if (!signal.aborted) notice(main, `Could not deregister ${service.service_name}: ${problemText(error)}`, "error").focus();
    }
  }

  function row(service, checks) {
    const cells = [
      serviceCell(service),
      h("td", { class: "url" }, service.service_url),
      h("td", null, statusBadge(service.status)),
      h("td", null, lastCheck(service)),
      h("td", { class: "number" }, latencyText(service.last_check?.latency_ms)),
      h("td", { class: "history" }, historyChart(service, checks)),
    ];
    if (writable) {
      const button = h("button", { type: "button", class: "button danger", "data-action": "deregister",
        "aria-label": `Deregister ${service.service_name} at ${service.service_url}` }, "Deregister");
      button.addEventListener("click", () => deregister(service, button));
      cells.push(h("td", null, button));
    }
    return h("tr", { "data-service-id": service.id, "data-health": service.status }, cells);
  }

  let shown = null; // the observer loading the histories of the table drawn last

  async function load() {
    refresh.disabled = true;
    try {
      const { items: services } = await collect("/api/v1/registry/services", { signal, max: MAX_SERVICES });
      const health = await api("GET", "/api/v1/registry/health", { signal }).catch(() => null);
      if (health) {
        const counts = Object.entries(health.totals).filter(([, count]) => count > 0)
          .map(([status, count]) => `${fmtNumber(count)} ${status}`);
        summary.textContent = `${counts.join(", ") || "No services"}; checked every ${health.check_interval_seconds} s.`;
      } else {
        summary.textContent = `${fmtNumber(services.length)} services.`;
      }
      if (services.length === 0) {
        content.replaceChildren(emptyState("No services are registered. Services register with POST /api/v1/registry/register."));
        return;
      }
      const headings = ["Service", "URL", "Health", "Last check", "Latency", "Latency history"];
      if (writable) headings.push("Actions");
      const list = table(headings, services.map((service) => row(service, undefined)),
        { "data-testid": "services-table", "aria-label": "Registered services" }, { numeric: [4] });
      content.replaceChildren(tableScroll(list));
      // The table shows at once; the sparklines of the rows on screen follow.
      shown?.disconnect();
      shown = loadWhenVisible(list, services, async (service, cell) => {
        let checks;
        try {
          checks = await history(service, signal);
        } catch (error) {
          if (signal.aborted) return;
          const reason = `No latency history: ${problemText(error)}`;
          cell?.replaceChildren(...noHistory(reason, reason));
          return;
        }
        cell?.replaceChildren(...[historyChart(service, checks)].flat());
      }, signal);
    } catch (error) {
      if (!signal.aborted) notice(main, `Could not load the services: ${problemText(error)}`, "error");
    } finally {
      refresh.disabled = false;
    }
  }

  refresh.addEventListener("click", load);
  await load();
}
