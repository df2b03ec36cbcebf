// One run: its status, the workflow graph coloured by step status, each step's input, output,
// attempts, tokens and cost, its log and its events — all following the run live — and the
// actions the signed-in role may take on it.

import { api, pages, sse } from "./api.js";
import {
  confirmDialog,
  debounce,
  emptyState,
  field,
  fmtCost,
  fmtDuration,
  fmtElapsed,
  fmtNumber,
  fmtTime,
  h,
  isAbort,
  jsonBlock,
  notice,
  problemText,
  shortId,
  statusBadge,
  table,
  tableScroll,
} from "./dom.js";
import { drawGraph } from "./graph.js";
import { decide } from "./page-approvals.js";
import { link, navigate } from "./router.js";
import { can } from "./session.js";

const FINISHED = new Set(["completed", "failed", "cancelled"]);
const STEP_EVENTS = new Set([
  "StepStarted",
  "StepWaiting",
  "StepCompleted",
  "StepFailed",
  "StepSkipped",
  "StepCancelled",
]);

/**
 * The run page.
 * @param {HTMLElement} main
 * @param {{id: string}} params
 * @param {AbortSignal} signal
 */
export async function render(main, params, signal) {
  const runId = params.id;
  const page = new RunPage(main, runId, signal);
  await page.start();
}

// What the run's events say about each step: its attempts, outputs and errors.
function stepHistory(events) {
  const steps = new Map();
  const attemptOf = (stepId, number) => {
    if (!steps.has(stepId)) steps.set(stepId, new Map());
    const attempts = steps.get(stepId);
    const key = number ?? 0;
    if (!attempts.has(key)) attempts.set(key, { attempt: key, events: [] });
    return attempts.get(key);
  };
  for (const event of events) {
    if (!STEP_EVENTS.has(event.event_type)) continue;
    const data = event.data || {};
    const attempt = attemptOf(data.step_id, data.attempt);
    attempt.events.push(event);
    switch (event.event_type) {
      case "StepStarted":
        attempt.started_at = event.recorded_at;
        attempt.status = "running";
        break;
      case "StepWaiting":
        attempt.status = "waiting";
        attempt.until = data.until;
        break;
      case "StepCompleted":
        Object.assign(attempt, { status: "completed", output: data.output, duration_ms: data.duration_ms });
        attempt.finished_at = event.recorded_at;
        break;
      case "StepFailed":
        Object.assign(attempt, { status: "failed", error: data.error, retry_at: data.retry_at });
        attempt.finished_at = event.recorded_at;
        break;
      case "StepSkipped":
        Object.assign(attempt, { status: "skipped", reason: data.reason });
        break;
      case "StepCancelled":
        attempt.status = "cancelled";
        attempt.finished_at = event.recorded_at;
        break;
    }
  }
  return steps;
}

// A button that acts on the run; `data-action` is what the browser tests look for.
function actionButton(action, label, onclick, kind = "") {
  const attrs = { type: "button", class: `button ${kind}`.trim(), "data-action": action, onclick };
  return h("button", attrs, label);
}

function runLink(runId) {
  return link(`/ui/runs/${runId}`, h("code", { title: runId }, shortId(runId)));
}

// A cost, unless no call was made or none of the models has a price (`LLM_PRICES`).
function costOf(figures) {
  if (!figures || !figures.calls) return "—";
  if (figures.unpriced_calls >= figures.calls) return "not priced";
  const cost = fmtCost(figures.cost_usd);
  return figures.unpriced_calls ? `${cost} + ${figures.unpriced_calls} unpriced calls` : cost;
}

function errorMessage(error) {
  if (!error) return "";
  if (typeof error === "string") return error;
  return error.message || error.class || JSON.stringify(error);
}

class RunPage {
  constructor(main, runId, signal) {
    this.main = main;
    this.runId = runId;
    this.signal = signal;
    this.base = `/api/v1/workflows/${runId}`;
    this.status = null;
    this.definition = null; // as the run started with it (its WorkflowTriggered event)
    this.input = null;
    this.events = [];
    this.history = new Map();
    this.usage = null;
    this.usageStale = true; // tokens and cost change when a step ends
    this.eventsUnread = false;
    this.approvals = [];
    this.selected = null;
    this.graph = null;
    this.drawn = new Map(); // section → the data it was last drawn from
    this.refresh = debounce(() => this.reload(), 300, { gap: 1500 });
    signal.addEventListener("abort", () => this.refresh.cancel());
  }

  async start() {
    try {
      this.status = await api("GET", `${this.base}/status`, { signal: this.signal });
    } catch (error) {
      if (isAbort(error)) return;
      this.main.append(h("h1", null, `Run ${shortId(this.runId)}`));
      notice(this.main, problemText(error), "error");
      return;
    }
    document.title = `Run ${shortId(this.runId)} · ${this.status.workflow_name} · workflow-engine`;
    this.layout();
    await Promise.all([this.loadEvents(), this.loadUsage(), this.loadApprovals()]);
    await this.loadSteps();
    this.paint();
    this.startLogs();
    this.followEvents();
    // Events listed after the status was read (a slow first load: the rate limit) started no
    // re-read; the stream only reports later ones. A run still going is read once more.
    if (!FINISHED.has(this.status.status)) this.refresh();
  }

  layout() {
    this.badge = h("span");
    this.actions = h("div", { class: "actions", "aria-label": "Run actions", role: "group" });
    this.facts = h("section", { "aria-label": "Run" });
    this.errorBox = h("div");
    this.approvalBox = h("div");
    this.graphBox = h("div", { class: "graph-holder" });
    this.panel = h("div", { class: "step-panel" });
    this.stepsBox = h("div");
    this.logList = h("ul", { class: "log-list", "data-testid": "run-logs", "aria-label": "Log", "aria-live": "off" });
    this.follow = h("input", { type: "checkbox", name: "follow", checked: true });
    this.follow.addEventListener("change", () => (this.follow.checked ? this.startLogs() : this.stopLogs()));
    this.logState = h("span", { class: "muted", role: "status" });
    this.timeline = h("ul", { class: "timeline", "data-testid": "run-events", "aria-label": "Events" });
    this.main.append(
      h(
        "div",
        { class: "page-header" },
        h("h1", null, "Run ", h("code", { title: this.runId }, shortId(this.runId))),
        this.badge,
        this.actions,
      ),
      this.facts,
      this.errorBox,
      this.approvalBox,
      h(
        "section",
        { "aria-labelledby": "graph-title" },
        h("h2", { id: "graph-title" }, "Steps"),
        h("p", { class: "muted" }, "Select a step in the graph or the table to see its input, output and attempts."),
        this.graphBox,
        this.panel,
        this.stepsBox,
      ),
      h(
        "section",
        { "aria-labelledby": "logs-title" },
        h("div", { class: "section-header" }, h("h2", { id: "logs-title" }, "Log"), field("Follow", this.follow), this.logState),
        this.logList,
      ),
      h(
        "section",
        { "aria-labelledby": "events-title" },
        h("h2", { id: "events-title" }, "Events"),
        this.timeline,
      ),
    );
    this.follow.parentElement.classList.add("inline");
  }

  // --- loading --------------------------------------------------------------------------

  async loadEvents() {
    try {
      for await (const event of pages(`/api/v1/events/${this.runId}`, { query: { limit: 200 }, signal: this.signal })) {
        this.addEvent(event);
      }
    } catch (error) {
      if (isAbort(error)) return;
      this.eventsUnread = true;
      notice(this.timeline.parentElement, problemText(error), "error");
    }
  }

  addEvent(event) {
    if (this.events.some((known) => known.position === event.position)) return false;
    this.events.push(event);
    if (event.event_type === "WorkflowTriggered" && event.data) {
      this.definition = event.data.definition || null;
      this.input = event.data.input ?? null;
    }
    this.history = stepHistory(this.events);
    if (/^Step(Completed|Failed)$|^Workflow/.test(event.event_type)) this.usageStale = true;
    this.timeline.append(this.eventItem(event));
    return true;
  }

  // The graph's steps: from the run's own definition, else from the catalog's template.
  async loadSteps() {
    let steps = this.definition && this.definition.steps;
    if (!steps) {
      try {
        const template = await api("GET", `/api/v1/workflows/templates/${this.status.workflow_name}`, {
          query: { version: this.status.version },
          signal: this.signal,
        });
        steps = template.steps;
      } catch {
        steps = this.status.steps.map((step) => ({ id: step.id, uses: step.uses, needs: [] }));
      }
    }
    this.steps = steps.map((step) => ({ id: step.id, uses: step.uses, needs: step.needs || [], with: step.with }));
    this.graph = drawGraph(this.steps, { testid: "run-graph", onSelect: (id) => this.select(id) });
    this.graphBox.replaceChildren(this.graph.element);
  }

  // Per-step tokens and cost; not asked for while the run has made no LLM call (one request
  // fewer against the rate limit).
  async loadUsage() {
    if (!this.usageStale) return;
    if (!this.status.llm_usage || !this.status.llm_usage.calls) {
      this.usage = null;
      return;
    }
    this.usageStale = false;
    try {
      this.usage = await api("GET", `${this.base}/usage`, { signal: this.signal });
    } catch {
      this.usage = null; // tokens and cost show as unknown
    }
  }

  async loadApprovals() {
    const waiting = this.status.steps.some((step) => step.status === "waiting" && step.uses === "approval");
    if (!waiting) {
      this.approvals = [];
      return;
    }
    try {
      const found = [];
      const query = { workflow_name: this.status.workflow_name, limit: 200 };
      for await (const item of pages("/api/v1/approvals", { query, signal: this.signal })) {
        if (item.workflow_id === this.runId) found.push(item);
      }
      this.approvals = found;
    } catch {
      this.approvals = [];
    }
  }

  async reload() {
    try {
      this.status = await api("GET", `${this.base}/status`, { signal: this.signal });
      await Promise.all([this.loadUsage(), this.loadApprovals()]);
      this.paint();
      if (this.follow.checked && !this.logStream && !FINISHED.has(this.status.status)) this.startLogs();
    } catch (error) {
      if (!isAbort(error)) notice(this.main, problemText(error), "error");
    }
  }

  // --- drawing --------------------------------------------------------------------------

  // Redraws a section only when what it shows changed, so focus and scroll stay put.
  changed(section, data) {
    const key = JSON.stringify(data);
    if (this.drawn.get(section) === key) return false;
    this.drawn.set(section, key);
    return true;
  }

  paint() {
    const run = this.status;
    const badge = statusBadge(run.status);
    badge.setAttribute("data-testid", "run-status");
    this.badge.replaceChildren(badge);
    if (this.changed("actions", [run.status])) this.drawActions();
    if (this.changed("facts", [run, this.usage && this.usage.totals])) this.drawFacts();
    if (this.changed("error", run.error)) {
      this.errorBox.replaceChildren(
        run.error
          ? h(
              "section",
              { class: "run-error", "aria-label": "Error" },
              h("h2", null, "Error"),
              h("p", null, errorMessage(run.error)),
              jsonBlock(run.error),
            )
          : "",
      );
    }
    if (this.changed("approvals", this.approvals)) this.drawApprovals();
    if (this.graph) {
      this.graph.update(Object.fromEntries(run.steps.map((step) => [step.id, step.status])));
      this.graph.select(this.selected);
    }
    if (this.changed("steps", [run.steps, this.usage])) this.drawSteps();
    if (this.selected && this.changed("panel", this.panelData())) this.drawPanel();
  }

  // What the step panel shows: redrawn when any of it changes.
  panelData() {
    const attempts = [...(this.history.get(this.selected)?.values() || [])];
    return [
      this.selected,
      this.status.status,
      this.stepOf(this.selected),
      attempts.map((attempt) => attempt.events.length),
      this.usage,
    ];
  }

  drawActions() {
    const run = this.status;
    const buttons = [];
    if (can("workflows:run") && !FINISHED.has(run.status)) {
      buttons.push(actionButton("cancel", "Cancel run", () => this.cancel(), "danger"));
    }
    if (can("workflows:run") && (run.status === "failed" || run.status === "cancelled")) {
      buttons.push(actionButton("retry", "Retry", () => this.retry(), "primary"));
    }
    this.actions.replaceChildren(...buttons);
  }

  drawFacts() {
    const run = this.status;
    const totals = this.usage && this.usage.totals;
    const fact = (label, ...value) => h("div", null, h("dt", null, label), h("dd", null, ...value));
    const related = [];
    if (run.parent) {
      related.push(fact("Started by", runLink(run.parent.workflow_id), ` (step ${run.parent.step})`));
    }
    if (run.replay_of) {
      const of = run.replay_of;
      related.push(fact("Replay of", runLink(of.workflow_id), ` from ${of.from_step}`));
    }
    const children = (run.children || []).map((child) =>
      h(
        "li",
        null,
        runLink(child.workflow_id),
        ` ${child.workflow_name} (step ${child.step}) `,
        statusBadge(child.status),
      ),
    );
    const replays = (run.replays || []).map((replay) =>
      h("li", null, runLink(replay.workflow_id), ` from ${replay.from_step} `, statusBadge(replay.status)),
    );
    this.facts.replaceChildren(
      h(
        "dl",
        { class: "facts" },
        fact("Workflow", link(`/ui/templates/${run.workflow_name}`, run.workflow_name), ` v${run.version}`),
        fact("Run id", h("code", null, run.workflow_id)),
        fact("Progress", `${run.progress.completed}/${run.progress.total} steps`),
        fact("Created", fmtTime(run.created_at)),
        fact("Started", fmtTime(run.started_at)),
        fact("Finished", fmtTime(run.finished_at)),
        fact("Duration", run.started_at ? fmtElapsed(run.started_at, run.finished_at) + (run.finished_at ? "" : " so far") : "—"),
        fact("LLM tokens", totals ? fmtNumber(totals.total_tokens) : fmtNumber(run.llm_usage.total_tokens)),
        fact("LLM cost", costOf(totals)),
        ...related,
      ),
      children.length ? h("div", null, h("h3", null, "Child runs"), h("ul", null, children)) : "",
      replays.length ? h("div", null, h("h3", null, "Replays"), h("ul", null, replays)) : "",
    );
  }

  drawApprovals() {
    if (!this.approvals.length) {
      this.approvalBox.replaceChildren();
      return;
    }
    const mayDecide = can("workflows:approve");
    this.approvalBox.replaceChildren(
      h(
        "section",
        { class: "approval-panel", "aria-labelledby": "approval-title" },
        h("h2", { id: "approval-title" }, "Waiting for approval"),
        ...this.approvals.map((approval) =>
          h(
            "div",
            { class: "approval", "data-step": approval.step },
            h("p", null, h("strong", null, approval.step), approval.message ? `: ${approval.message}` : ""),
            jsonBlock(approval.proposal),
            mayDecide
              ? h(
                  "div",
                  { class: "actions" },
                  actionButton("approve", "Approve", () => this.decide(approval, "approve"), "primary"),
                  actionButton("reject", "Reject", () => this.decide(approval, "reject")),
                )
              : h("p", { class: "muted" }, "Your role may not decide approvals."),
          ),
        ),
      ),
    );
  }

  outputMissing(step, skipped) {
    if (this.eventsUnread) return "The run's events could not be read: reload the page to see the output.";
    if (skipped) return `Skipped: ${skipped.reason || "its condition was false"}.`;
    return `No output: the step is ${step.status}.`;
  }

  stepOf(stepId) {
    return this.status.steps.find((step) => step.id === stepId);
  }

  stepUsage(stepId) {
    if (!this.usage) return null;
    const rows = this.usage.steps.filter((row) => row.step_id === stepId);
    return rows.reduce(
      (sum, row) => ({
        total_tokens: sum.total_tokens + row.total_tokens,
        cost_usd: sum.cost_usd + row.cost_usd,
        calls: sum.calls + row.calls,
        unpriced_calls: sum.unpriced_calls + row.unpriced_calls,
      }),
      { total_tokens: 0, cost_usd: 0, calls: 0, unpriced_calls: 0 },
    );
  }

  drawSteps() {
    const rows = this.status.steps.map((step) => {
      const used = this.stepUsage(step.id);
      return h(
        "tr",
        { "data-step": step.id, "data-status": step.status },
        h("td", null, h("button", { type: "button", class: "link-button", onclick: () => this.select(step.id) }, step.id)),
        h("td", null, h("code", null, step.uses)),
        h("td", null, statusBadge(step.status)),
        h("td", { class: "number" }, String(step.attempts)),
        h("td", { class: "number" }, fmtDuration(step.duration_ms)),
        h("td", { class: "error-cell" }, errorMessage(step.error)),
        h("td", { class: "number" }, used && used.calls ? fmtNumber(used.total_tokens) : "—"),
        h("td", { class: "number" }, costOf(used)),
      );
    });
    const list = table(["Step", "Uses", "Status", "Attempts", "Duration", "Error", "Tokens", "Cost"], rows, {
      "data-testid": "run-steps",
      "aria-label": "Steps",
    });
    for (const index of [3, 4, 6, 7]) list.tHead.rows[0].cells[index].classList.add("number");
    this.stepsBox.replaceChildren(tableScroll(list));
  }

  select(stepId) {
    this.selected = stepId;
    if (this.graph) this.graph.select(stepId);
    this.drawn.delete("panel");
    this.drawPanel();
    this.drawn.set("panel", "forced");
    const heading = this.panel.querySelector("h3");
    if (heading) heading.focus();
  }

  drawPanel() {
    const stepId = this.selected;
    const step = this.stepOf(stepId);
    const written = this.steps.find((item) => item.id === stepId) || { needs: [] };
    if (!step) {
      this.panel.replaceChildren();
      return;
    }
    const attempts = [...(this.history.get(stepId)?.values() || [])].sort((a, b) => a.attempt - b.attempt);
    const last = [...attempts].reverse().find((attempt) => attempt.status === "completed");
    const used = this.stepUsage(stepId);
    const fact = (label, value) => h("div", null, h("dt", null, label), h("dd", null, value));

    const input = h(
      "div",
      { "data-testid": "step-input" },
      h("h4", null, "Input"),
      h("p", { class: "muted" }, "The step's `with`, as written; resolved at run time."),
      written.with === undefined ? emptyState("The definition is not available.") : jsonBlock(written.with),
      ...written.needs.map((need) => {
        const output = [...(this.history.get(need)?.values() || [])].reverse().find((a) => a.status === "completed");
        return h(
          "div",
          null,
          h("h5", null, `Output of ${need}`),
          output ? jsonBlock(output.output) : emptyState(`${need} has no output (${this.stepOf(need)?.status || "unknown"}).`),
        );
      }),
      JSON.stringify(written.with || {}).includes("input.")
        ? h("div", null, h("h5", null, "Run input"), jsonBlock(this.input))
        : "",
    );
    const skipped = attempts.find((attempt) => attempt.status === "skipped");
    const output = h(
      "div",
      { "data-testid": "step-output" },
      h("h4", null, "Output"),
      last
        ? jsonBlock(last.output)
        : emptyState(this.outputMissing(step, skipped)),
    );
    const attemptItems = attempts
      .filter((attempt) => attempt.attempt > 0 || attempt.status === "completed")
      .map((attempt) =>
        h(
          "li",
          { "data-attempt": attempt.attempt, "data-status": attempt.status || "pending" },
          h("strong", null, attempt.attempt ? `Attempt ${attempt.attempt}` : "Reused"),
          " ",
          statusBadge(attempt.status || "pending"),
          ` started ${fmtTime(attempt.started_at)}`,
          attempt.duration_ms !== undefined ? `, ${fmtDuration(attempt.duration_ms)}` : "",
          attempt.retry_at ? `, retry at ${fmtTime(attempt.retry_at)}` : "",
          attempt.until ? `, waits until ${fmtTime(attempt.until)}` : "",
          attempt.error ? jsonBlock(attempt.error) : "",
        ),
      );
    const attemptList = h(
      "div",
      { "data-testid": "step-attempts" },
      h("h4", null, "Attempts"),
      attemptItems.length ? h("ol", { class: "attempts" }, attemptItems) : emptyState("Not started yet."),
    );
    const actions = [];
    if (can("workflows:run") && FINISHED.has(this.status.status)) {
      actions.push(actionButton("replay", "Replay from this step", () => this.replay(stepId)));
    }
    this.panel.replaceChildren(
      h(
        "div",
        { class: "panel", "data-testid": "step-detail", "data-step": stepId },
        h(
          "div",
          { class: "section-header" },
          h("h3", { tabindex: "-1" }, stepId),
          statusBadge(step.status),
          h("div", { class: "actions" }, actions),
        ),
        h(
          "dl",
          { class: "facts" },
          fact("Uses", h("code", null, step.uses)),
          fact("Needs", written.needs.join(", ") || "—"),
          fact("Attempts", String(step.attempts)),
          fact("Started", fmtTime(step.started_at)),
          fact("Finished", fmtTime(step.finished_at)),
          fact("Duration", fmtDuration(step.duration_ms)),
          fact("Tokens", used && used.calls ? fmtNumber(used.total_tokens) : "—"),
          fact("Cost", costOf(used)),
        ),
        step.error ? h("div", { class: "step-error" }, h("h4", null, "Error"), jsonBlock(step.error)) : "",
        h("div", { class: "step-io" }, input, output),
        attemptList,
      ),
    );
  }

  eventItem(event) {
    const data = event.data || {};
    const detail = [];
    if (data.step_id) detail.push(h("span", { class: "step" }, data.step_id));
    if (data.attempt) detail.push(h("span", { class: "muted" }, `attempt ${data.attempt}`));
    if (data.error) detail.push(h("span", { class: "error-text" }, errorMessage(data.error)));
    return h(
      "li",
      { "data-position": event.position, "data-type": event.event_type },
      h("span", { class: "time" }, fmtTime(event.recorded_at)),
      h("span", { class: "type" }, event.event_type),
      ...detail,
      h("details", null, h("summary", null, "Data"), jsonBlock(data)),
    );
  }

  // --- live -----------------------------------------------------------------------------

  async followEvents() {
    const after = this.events.length ? Math.max(...this.events.map((event) => event.position)) : undefined;
    try {
      for await (const message of sse("/api/v1/events/stream", {
        query: { aggregate_id: this.runId, after },
        signal: this.signal,
      })) {
        if (message.event === "delta" || !message.data || message.data.position === undefined) continue;
        if (this.addEvent(message.data)) this.refresh();
      }
    } catch (error) {
      if (!isAbort(error)) notice(this.timeline.parentElement, `Live updates stopped: ${problemText(error)}`, "error");
    }
  }

  startLogs() {
    this.stopLogs();
    const controller = new AbortController();
    this.signal.addEventListener("abort", () => controller.abort());
    this.logStream = controller;
    this.readLogs(controller);
  }

  stopLogs() {
    if (this.logStream) this.logStream.abort();
    this.logStream = null;
    this.logState.textContent = this.follow.checked ? "" : "Paused";
  }

  async readLogs(controller) {
    const entries = this.logList.querySelectorAll("li[data-log-id]");
    const after = entries.length ? entries[entries.length - 1].getAttribute("data-log-id") : undefined;
    this.logState.textContent = "Following";
    try {
      for await (const message of sse(`${this.base}/logs`, {
        query: { follow: true, after },
        signal: controller.signal,
      })) {
        const atEnd = this.logList.scrollTop + this.logList.clientHeight >= this.logList.scrollHeight - 8;
        if (message.event === "end") {
          this.logState.textContent = `The run ended (${message.data.status}): the log is complete.`;
          break;
        }
        if (message.event === "delta") this.addDelta(message.data);
        else if (message.id && message.data && typeof message.data === "object") this.addLogEntry(message.data);
        if (atEnd) this.logList.scrollTop = this.logList.scrollHeight;
      }
    } catch (error) {
      if (!isAbort(error)) this.logState.textContent = `The log stopped: ${problemText(error)}`;
    } finally {
      if (this.logStream === controller) this.logStream = null;
    }
  }

  addLogEntry(entry) {
    if (this.logList.querySelector(`li[data-log-id="${CSS.escape(entry.id)}"]`)) return;
    this.logList.append(
      h(
        "li",
        { "data-log-id": entry.id, "data-level": entry.level },
        h("span", { class: "time" }, fmtTime(entry.time)),
        h("span", { class: "level" }, entry.level),
        entry.step ? h("span", { class: "step" }, entry.step) : "",
        h("span", { class: "message" }, entry.message),
      ),
    );
  }

  // Streamed LLM text: one growing line per step attempt.
  addDelta(delta) {
    const selector = `li.delta[data-step="${CSS.escape(delta.step_id)}"][data-attempt="${delta.attempt}"]`;
    let line = this.logList.querySelector(selector);
    if (!line) {
      line = h(
        "li",
        { class: "delta", "data-step": delta.step_id, "data-attempt": delta.attempt },
        h("span", { class: "level" }, "stream"),
        h("span", { class: "step" }, delta.step_id),
        h("span", { class: "message" }),
      );
      this.logList.append(line);
    }
    line.querySelector(".message").append(delta.text);
  }

  // --- actions --------------------------------------------------------------------------

  async act(run) {
    try {
      await run();
      await this.reload();
    } catch (error) {
      if (!isAbort(error)) notice(this.main, problemText(error), "error");
    }
  }

  async cancel() {
    const sure = await confirmDialog(
      "Cancel this run?",
      "Steps not started never start; running steps are interrupted within about a second.",
      "Cancel run",
    );
    if (sure) await this.act(() => api("POST", `${this.base}/cancel`, { signal: this.signal }));
  }

  async retry() {
    await this.act(() => api("POST", `${this.base}/retry`, { signal: this.signal }));
  }

  async decide(approval, kind) {
    const decided = await decide(approval, kind);
    if (decided) {
      notice(this.main, kind === "approve" ? "Approved." : "Rejected.", "success");
      await this.reload();
    }
  }

  async replay(stepId) {
    const sure = await confirmDialog(
      `Replay from ${stepId}?`,
      `A new run of ${this.status.workflow_name} executes ${stepId} and the steps after it; ` +
        "the steps before it reuse this run's outputs.",
      "Replay",
    );
    if (!sure) return;
    try {
      const replay = await api("POST", `${this.base}/replay`, { body: { from_step: stepId }, signal: this.signal });
      navigate(`/ui/runs/${replay.workflow_id}`);
    } catch (error) {
      if (!isAbort(error)) notice(this.panel.firstElementChild || this.main, problemText(error), "error");
    }
  }
}
