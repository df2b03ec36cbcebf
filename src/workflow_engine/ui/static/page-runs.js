// Runs: newest first, filtered by status, workflow and time (the filters live in the URL, so
// a filtered view can be shared), updated live from the tenant's run events.

import { api } from "./api.js";
import {
  emptyState,
  field,
  fmtDuration,
  fmtTime,
  h,
  isAbort,
  notice,
  problemText,
  statusBadge,
  table,
  tableScroll,
} from "./dom.js";
import { runLink } from "./links.js";
import { liveReread, liveStream } from "./live.js";
import { navigate } from "./router.js";
import { templates } from "./templates.js";

const STATUSES = ["queued", "running", "waiting", "completed", "failed", "cancelling", "cancelled"];
const PAGE = 50;
const MAX_PAGE = 200;
const FINAL = { WorkflowCompleted: "completed", WorkflowFailed: "failed", WorkflowCancelled: "cancelled" };
// Stream traffic that changes nothing this page shows: streamed LLM text and log lines.
const UNSHOWN = new Set(["delta", "StepLogged"]);

// `datetime-local` values are local wall-clock times; the URL and the API take RFC 3339.
function toInstant(local) {
  if (!local) return "";
  const moment = new Date(local);
  return Number.isNaN(moment.getTime()) ? "" : moment.toISOString();
}

function toLocal(instant) {
  if (!instant) return "";
  const moment = new Date(instant);
  if (Number.isNaN(moment.getTime())) return "";
  const pad = (value) => String(value).padStart(2, "0");
  return (
    `${moment.getFullYear()}-${pad(moment.getMonth() + 1)}-${pad(moment.getDate())}` +
    `T${pad(moment.getHours())}:${pad(moment.getMinutes())}`
  );
}

function durationOf(run) {
  if (!run.finished_at) return "—";
  return fmtDuration(new Date(run.finished_at) - new Date(run.created_at));
}

function row(run) {
  return h(
    "tr",
    { "data-run-id": run.workflow_id, "data-status": run.status },
    h("td", null, runLink(run.workflow_id)),
    h("td", null, run.workflow_name, h("span", { class: "muted" }, ` v${run.version}`)),
    h("td", null, statusBadge(run.status)),
    h("td", { class: "number" }, `${run.progress.completed}/${run.progress.total}`),
    h("td", { class: "nowrap" }, fmtTime(run.created_at)),
    h("td", { class: "number" }, durationOf(run)),
  );
}

/**
 * The runs page.
 * @param {HTMLElement} main
 * @param {{query: URLSearchParams}} params
 * @param {AbortSignal} signal
 */
export async function render(main, params, signal) {
  const query = params.query;
  const filters = {
    status: query.get("status") || "",
    workflow_name: query.get("workflow") || "",
    since: query.get("since") || "",
    until: query.get("until") || "",
  };

  const status = h(
    "select",
    { name: "status" },
    h("option", { value: "" }, "Any status"),
    STATUSES.map((value) => h("option", { value }, value)),
  );
  status.value = filters.status;
  const workflow = h("select", { name: "workflow" }, h("option", { value: "" }, "Any workflow"));
  if (filters.workflow_name) {
    workflow.append(h("option", { value: filters.workflow_name }, filters.workflow_name));
    workflow.value = filters.workflow_name;
  }
  const since = h("input", { type: "datetime-local", name: "since", value: toLocal(filters.since) });
  const until = h("input", { type: "datetime-local", name: "until", value: toLocal(filters.until) });
  const clear = h("button", { type: "button", class: "button" }, "Clear filters");
  const form = h(
    "form",
    { class: "filters", "aria-label": "Filter runs" },
    field("Status", status),
    field("Workflow", workflow),
    field("Created after", since),
    field("Created before", until),
    h("div", { class: "field" }, clear),
  );
  form.addEventListener("submit", (event) => event.preventDefault());

  const runsTable = table(
    ["Run", "Workflow", "Status", "Progress", "Created", "Duration"],
    [],
    { "data-testid": "runs-table", "aria-label": "Runs" },
    { numeric: [3, 5] },
  );
  const body = runsTable.tBodies[0];
  const more = h("button", { type: "button", class: "button", hidden: true }, "Load more");
  const results = h("div", { class: "results" });
  const live = h("span", { class: "muted live", role: "status" }, "");
  main.append(
    h("div", { class: "page-header" }, h("h1", null, "Runs"), live),
    h("section", { "aria-label": "Filters" }, form),
    results,
    h("div", { class: "toolbar" }, more),
  );

  const view = { cursor: null, items: [] };

  const asked = () => ({
    status: filters.status,
    workflow_name: filters.workflow_name,
    since: filters.since,
    until: filters.until,
  });

  const showRows = (items) => {
    view.items = items;
    body.replaceChildren(...items.map(row));
    if (items.length === 0) {
      results.replaceChildren(emptyState("No runs match these filters."));
    } else if (!results.contains(runsTable)) {
      results.replaceChildren(tableScroll(runsTable));
    }
    more.hidden = !view.cursor;
  };

  // The newest runs again, in one request. Rows shown that are older than that page's last
  // (loaded with "Load more", or pushed off the page by new runs) stay below it, and so does
  // the cursor after them: the list is newest first, a new run never comes between them.
  const reload = async () => {
    const limit = Math.min(Math.max(view.items.length, PAGE), MAX_PAGE);
    try {
      const page = await api("GET", "/api/v1/workflows", { query: { ...asked(), limit }, signal });
      const fresh = new Set(page.items.map((run) => run.workflow_id));
      const last = page.items.at(-1);
      const older = page.next_cursor && last
        ? view.items.filter((run) => !fresh.has(run.workflow_id) && Date.parse(run.created_at) <= Date.parse(last.created_at))
        : [];
      if (!older.length) view.cursor = page.next_cursor;
      showRows([...page.items, ...older]);
    } catch (error) {
      if (!isAbort(error)) notice(main, problemText(error), "error");
    }
  };

  more.addEventListener("click", async () => {
    more.disabled = true;
    try {
      const page = await api("GET", "/api/v1/workflows", {
        query: { ...asked(), limit: PAGE, cursor: view.cursor },
        signal,
      });
      view.cursor = page.next_cursor;
      const shown = new Set(view.items.map((run) => run.workflow_id));
      showRows([...view.items, ...page.items.filter((run) => !shown.has(run.workflow_id))]);
    } catch (error) {
      if (!isAbort(error)) notice(main, problemText(error), "error");
    } finally {
      more.disabled = false;
    }
  });

  const applyFilters = () => {
    filters.status = status.value;
    filters.workflow_name = workflow.value;
    filters.since = toInstant(since.value);
    filters.until = toInstant(until.value);
    const shared = new URLSearchParams();
    if (filters.status) shared.set("status", filters.status);
    if (filters.workflow_name) shared.set("workflow", filters.workflow_name);
    if (filters.since) shared.set("since", filters.since);
    if (filters.until) shared.set("until", filters.until);
    const search = shared.toString();
    navigate(`/ui/runs${search ? `?${search}` : ""}`, { replace: true });
    view.items = [];
    reload();
  };
  for (const control of [status, workflow, since, until]) {
    control.addEventListener("change", applyFilters);
  }
  clear.addEventListener("click", () => {
    status.value = "";
    workflow.value = "";
    since.value = "";
    until.value = "";
    applyFilters();
  });

  templates(signal)
    .then((list) => {
      for (const template of list.items) {
        if (template.name !== filters.workflow_name) {
          workflow.append(h("option", { value: template.name }, template.name));
        }
      }
    })
    .catch(() => {}); // the filter still works with the name from the URL

  const stream = follow(body, reload, live, signal);
  await stream.opened; // read once the stream is open: nothing in between is lost
  await reload();
}

// Run events: a final one updates its row at once; others that change what the table shows
// re-read it (throttled, and not while the tab is hidden), as does each reconnection.
function follow(body, reload, live, signal) {
  const onMessage = (message) => {
    if (UNSHOWN.has(message.event) || !message.data || !message.data.aggregate_id) return;
    const final = FINAL[message.event];
    const row = final && body.querySelector(`tr[data-run-id="${CSS.escape(message.data.aggregate_id)}"]`);
    if (row) {
      row.setAttribute("data-status", final);
      row.children[2].replaceChildren(statusBadge(final));
    }
    refresh();
  };
  const refresh = liveReread(reload, { gap: 3000, signal });
  const query = { aggregate_type: "runs" };
  const stream = liveStream("/api/v1/events/stream", { query, signal, onMessage, reread: refresh });
  live.textContent = "Live";
  stream.done.then(
    () => signal.aborted || (live.textContent = ""),
    (error) => isAbort(error) || (live.textContent = `Live updates stopped: ${problemText(error)}`),
  );
  return stream;
}
