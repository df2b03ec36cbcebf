// One run: its status, the workflow graph coloured by step status, each step's input, output,
// attempts, tokens and cost, its log and its events — all following the run live — and the
// actions the signed-in role may take on it.

import { api, sse } from "./api.js";
import {
  confirmDialog,
  errorMessage,
  facts,
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
} from "./dom.js";
import { drawGraph } from "./graph.js";
import { submissionKeys } from "./idempotency.js";
import { runLink, templateLink } from "./links.js";
import { collect } from "./lists.js";
import { liveReread } from "./live.js";
import { decide } from "./page-approvals.js";
import { navigate } from "./router.js";
import { LogFollower } from "./run-logs.js";
import { StepHistory, costOf, stepPanel, stepsTable } from "./run-steps.js";
import { can } from "./session.js";

const FINISHED = new Set(["completed", "failed", "cancelled"]);
const EVENTS_PAGE = 200;
// While a run goes on, its tokens and cost are read again at most this often: the status is
// re-read every 1.5 s at most, and reading both each time would outspend the rate limit.
const USAGE_GAP_MS = 10_000;

/**
 * The run page.
 * @param {HTMLElement} main
 * @param {{id: string}} params
 * @param {AbortSignal} signal
 */
export async function render(main, params, signal) {
  const page = new RunPage(main, params.id, signal);
  await page.start();
}

// A button that acts on the run; `data-action` is what the browser tests look for.
function actionButton(action, label, onclick, kind = "") {
  const attrs = { type: "button", class: `button ${kind}`.trim(), "data-action": action, onclick };
  return h("button", attrs, label);
}

// An event of the timeline; its data is drawn when first opened (a run may have thousands).
function eventItem(event) {
  const data = event.data || {};
  const detail = [];
  if (data.step_id) detail.push(h("span", { class: "step" }, data.step_id));
  if (data.attempt) detail.push(h("span", { class: "muted" }, `attempt ${data.attempt}`));
  if (data.error) detail.push(h("span", { class: "error-text" }, errorMessage(data.error)));
  const details = h("details", null, h("summary", null, "Data"));
  details.addEventListener("toggle", () => details.open && details.append(jsonBlock(data)), { once: true });
  return h(
    "li",
    { "data-position": event.position, "data-type": event.event_type },
    h("span", { class: "time" }, fmtTime(event.recorded_at)),
    h("span", { class: "type" }, event.event_type),
    ...detail,
    details,
  );
}

class RunPage {
  constructor(main, runId, signal) {
    this.main = main;
    this.runId = runId;
    this.signal = signal;
    this.base = `/api/v1/workflows/${encodeURIComponent(runId)}`;
    this.status = null;
    this.definition = null; // as the run started with it (its WorkflowTriggered event)
    this.input = null;
    this.positions = new Set(); // of the events shown: the stream may repeat one
    this.lastPosition = undefined;
    this.history = new StepHistory();
    this.usage = null;
    this.usageStale = true; // tokens and cost change when a step ends
    this.usageReadAt = 0;
    this.eventsUnread = false;
    this.ended = false; // an event said the run ended
    this.approvals = [];
    this.approvalsOf = null; // the waiting approval steps the approvals were read for
    this.selected = null;
    this.graph = null;
    this.steps = [];
    this.drawn = new Map(); // section → the data it was last drawn from
    this.replayKeys = submissionKeys();
    this.logs = new LogFollower(this.base, signal);
    this.refresh = liveReread(() => this.reload(), { gap: 1500, signal });
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
    // The first page of events holds the run's definition: enough to draw the graph, the
    // steps and the status; later pages fill in the history behind them.
    const rest = await this.loadFirstEvents();
    await Promise.all([this.loadUsage(), this.loadApprovals()]);
    await this.loadSteps();
    this.paint();
    this.logs.start();
    await this.loadMoreEvents(rest);
    this.followEvents();
    // The status was read before the events were listed: events in between started no
    // re-read (the stream resumes after the listed ones). Read it again if they say more.
    if (this.statusBehind()) this.refresh();
  }

  // Whether the listed events tell of a later state than the status read: the run ended, or
  // a step's last attempt is in another state than the step.
  statusBehind() {
    if (this.ended && !FINISHED.has(this.status.status)) return true;
    return this.status.steps.some((step) => {
      const last = this.history.attempts(step.id).at(-1);
      return Boolean(last && last.status && last.status !== step.status);
    });
  }

  layout() {
    // The run's status, announced when it changes; focus comes here after an action.
    this.statusLine = h("p", { class: "run-status-line", role: "status", "aria-atomic": "true", tabindex: "-1" });
    this.actions = h("div", { class: "actions", "aria-label": "Run actions", role: "group" });
    this.facts = h("section", { "aria-label": "Run" });
    this.errorBox = h("div");
    this.approvalBox = h("div");
    this.graphBox = h("div", { class: "graph-holder" });
    this.panel = h("div", { class: "step-panel" });
    this.stepsBox = h("div");
    this.timeline = h("ul", { class: "timeline", "data-testid": "run-events", "aria-label": "Events" });
    this.main.append(
      h(
        "div",
        { class: "page-header" },
        h("h1", null, "Run ", h("code", { title: this.runId }, shortId(this.runId))),
        this.statusLine,
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
      this.logs.element,
      h("section", { "aria-labelledby": "events-title" }, h("h2", { id: "events-title" }, "Events"), this.timeline),
    );
  }

  // --- loading --------------------------------------------------------------------------

  eventsPage(cursor) {
    return api("GET", `/api/v1/events/${encodeURIComponent(this.runId)}`, {
      query: { limit: EVENTS_PAGE, cursor },
      signal: this.signal,
    });
  }

  eventsFailed(error) {
    if (isAbort(error)) return;
    this.eventsUnread = true;
    notice(this.timeline.parentElement, problemText(error), "error");
  }

  /** Reads the first page of events; resolves to the cursor of the next, if any. */
  async loadFirstEvents() {
    try {
      const page = await this.eventsPage(null);
      this.addEvents(page.items);
      return page.next_cursor;
    } catch (error) {
      this.eventsFailed(error);
      return null;
    }
  }

  /** Reads the remaining pages one after another, drawing what changed after each. */
  async loadMoreEvents(cursor) {
    try {
      while (cursor && !this.signal.aborted) {
        const page = await this.eventsPage(cursor);
        this.addEvents(page.items);
        cursor = page.next_cursor;
        this.paint();
      }
    } catch (error) {
      this.eventsFailed(error);
    }
  }

  addEvents(events) {
    const items = [];
    for (const event of events) if (this.addEvent(event)) items.push(eventItem(event));
    this.timeline.append(...items);
  }

  // Folds one event in; false when it was shown already.
  addEvent(event) {
    if (this.positions.has(event.position)) return false;
    this.positions.add(event.position);
    if (this.lastPosition === undefined || event.position > this.lastPosition) this.lastPosition = event.position;
    if (event.event_type === "WorkflowTriggered" && event.data) {
      this.definition = event.data.definition || null;
      this.input = event.data.input ?? null;
    }
    this.history.add(event);
    if (/^Workflow(Completed|Failed|Cancelled)$/.test(event.event_type)) this.ended = true;
    if (/^Step(Completed|Failed)$|^Workflow/.test(event.event_type)) this.usageStale = true;
    return true;
  }

  // The graph's steps: from the run's own definition, else from the catalog's template.
  async loadSteps() {
    let steps = this.definition && this.definition.steps;
    if (!steps) {
      try {
        const name = encodeURIComponent(this.status.workflow_name);
        const template = await api("GET", `/api/v1/workflows/templates/${name}`, {
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
  // fewer against the rate limit), nor more often than USAGE_GAP_MS while it goes on.
  async loadUsage() {
    if (!this.usageStale) return;
    if (!this.status.llm_usage || !this.status.llm_usage.calls) {
      this.usage = null;
      return;
    }
    const going = !FINISHED.has(this.status.status);
    if (going && this.usage && Date.now() - this.usageReadAt < USAGE_GAP_MS) return;
    this.usageStale = false;
    this.usageReadAt = Date.now();
    try {
      this.usage = await api("GET", `${this.base}/usage`, { signal: this.signal });
    } catch {
      this.usage = null; // tokens and cost show as unknown
    }
  }

  // Read only when the set of approval steps waiting changed: a decision or a new wait
  // changes a step's status too.
  async loadApprovals() {
    const waiting = this.status.steps
      .filter((step) => step.status === "waiting" && step.uses === "approval")
      .map((step) => `${step.id}:${step.attempts}`)
      .join(" ");
    if (waiting === this.approvalsOf) return;
    this.approvalsOf = waiting;
    if (!waiting) {
      this.approvals = [];
      return;
    }
    try {
      const query = { workflow_name: this.status.workflow_name };
      const { items } = await collect("/api/v1/approvals", { query, signal: this.signal });
      this.approvals = items.filter((item) => item.workflow_id === this.runId);
    } catch {
      this.approvals = [];
      this.approvalsOf = null; // tried again at the next re-read
    }
  }

  async reload() {
    try {
      this.status = await api("GET", `${this.base}/status`, { signal: this.signal });
      await Promise.all([this.loadUsage(), this.loadApprovals()]);
      this.paint();
      if (this.logs.wanted && !this.logs.reading && !FINISHED.has(this.status.status)) this.logs.start();
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
    if (this.changed("status", run.status)) {
      const badge = statusBadge(run.status);
      badge.setAttribute("data-testid", "run-status");
      this.statusLine.replaceChildren(h("span", { class: "visually-hidden" }, "Run status: "), badge);
    }
    if (this.changed("actions", [run.status])) this.drawActions();
    if (this.changed("facts", [run, this.usage && this.usage.totals])) this.drawFacts();
    if (this.changed("error", run.error)) this.drawError();
    if (this.changed("approvals", this.approvals)) this.drawApprovals();
    if (this.graph) {
      this.graph.update(Object.fromEntries(run.steps.map((step) => [step.id, step.status])));
      this.graph.select(this.selected);
    }
    if (this.changed("steps", [run.steps, this.usage])) {
      this.stepsBox.replaceChildren(stepsTable(run.steps, this.usage, (id) => this.select(id)));
    }
    if (this.selected && this.changed("panel", this.panelData())) this.drawPanel();
  }

  // What the step panel shows: redrawn when any of it changes.
  panelData() {
    const needs = this.written(this.selected).needs;
    return [
      this.selected,
      this.status.status,
      this.stepOf(this.selected),
      [this.selected, ...needs].map((id) => this.history.count(id)),
      this.usage,
      this.eventsUnread,
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
    const duration = run.started_at
      ? fmtElapsed(run.started_at, run.finished_at) + (run.finished_at ? "" : " so far")
      : "—";
    const children = (run.children || []).map((child) =>
      h("li", null, runLink(child.workflow_id), ` ${child.workflow_name} (step ${child.step}) `, statusBadge(child.status)),
    );
    const replays = (run.replays || []).map((replay) =>
      h("li", null, runLink(replay.workflow_id), ` from ${replay.from_step} `, statusBadge(replay.status)),
    );
    this.facts.replaceChildren(
      facts([
        ["Workflow", templateLink(run.workflow_name), ` v${run.version}`],
        ["Run id", h("code", null, run.workflow_id)],
        ["Progress", `${run.progress.completed}/${run.progress.total} steps`],
        ["Created", fmtTime(run.created_at)],
        ["Started", fmtTime(run.started_at)],
        ["Finished", fmtTime(run.finished_at)],
        ["Duration", duration],
        ["LLM tokens", fmtNumber(totals ? totals.total_tokens : run.llm_usage.total_tokens)],
        ["LLM cost", costOf(totals)],
        run.parent && ["Started by", runLink(run.parent.workflow_id), ` (step ${run.parent.step})`],
        run.replay_of && ["Replay of", runLink(run.replay_of.workflow_id), ` from ${run.replay_of.from_step}`],
      ]),
      children.length ? h("div", null, h("h3", null, "Child runs"), h("ul", null, children)) : "",
      replays.length ? h("div", null, h("h3", null, "Replays"), h("ul", null, replays)) : "",
    );
  }

  drawError() {
    const error = this.status.error;
    this.errorBox.replaceChildren(
      error
        ? h(
            "section",
            { class: "run-error", "aria-label": "Error" },
            h("h2", null, "Error"),
            h("p", null, errorMessage(error)),
            jsonBlock(error),
          )
        : "",
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

  stepOf(stepId) {
    return this.status.steps.find((step) => step.id === stepId);
  }

  written(stepId) {
    return this.steps.find((item) => item.id === stepId) || { needs: [] };
  }

  select(stepId) {
    this.selected = stepId;
    if (this.graph) this.graph.select(stepId);
    this.drawPanel();
    this.drawn.set("panel", JSON.stringify(this.panelData()));
    const heading = this.panel.querySelector("h3");
    if (heading) heading.focus();
  }

  drawPanel() {
    const step = this.stepOf(this.selected);
    if (!step) {
      this.panel.replaceChildren();
      return;
    }
    const actions = [];
    if (can("workflows:run") && FINISHED.has(this.status.status)) {
      actions.push(actionButton("replay", "Replay from this step", () => this.replay(step.id)));
    }
    this.panel.replaceChildren(
      stepPanel({
        step,
        written: this.written(step.id),
        history: this.history,
        stepOf: (id) => this.stepOf(id),
        usage: this.usage,
        runInput: this.input,
        eventsUnread: this.eventsUnread,
        actions,
      }),
    );
  }

  // --- live -----------------------------------------------------------------------------

  // The stream resumes after the last event listed (and after the last one it gave when it
  // reconnects), so it misses none: no re-read on (re)connection.
  async followEvents() {
    const query = { aggregate_id: this.runId, after: this.lastPosition };
    try {
      for await (const message of sse("/api/v1/events/stream", { query, signal: this.signal })) {
        if (message.event === "delta" || !message.data || message.data.position === undefined) continue;
        if (!this.addEvent(message.data)) continue;
        this.timeline.append(eventItem(message.data));
        if (message.data.event_type !== "StepLogged") this.refresh();
      }
    } catch (error) {
      if (!isAbort(error)) notice(this.timeline.parentElement, `Live updates stopped: ${problemText(error)}`, "error");
    }
  }

  // --- actions --------------------------------------------------------------------------

  // After an action the buttons are redrawn: focus goes to the status line, which says
  // what became of the run (announced as it changes), or to the notice saying why the
  // action failed. At once: the buttons go when the re-read is drawn.
  async act(run) {
    try {
      await run();
      this.statusLine.focus();
      await this.reload();
    } catch (error) {
      if (!isAbort(error)) notice(this.main, problemText(error), "error").focus();
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
    if (!decided) return;
    notice(this.main, kind === "approve" ? "Approved." : "Rejected.", "success").focus();
    await this.reload();
  }

  async replay(stepId) {
    const sure = await confirmDialog(
      `Replay from ${stepId}?`,
      `A new run of ${this.status.workflow_name} executes ${stepId} and the steps after it; ` +
        "the steps before it reuse this run's outputs.",
      "Replay",
    );
    if (!sure) return;
    const body = { from_step: stepId };
    try {
      const replay = await api("POST", `${this.base}/replay`, {
        body,
        headers: this.replayKeys.headersFor(body),
        signal: this.signal,
      });
      navigate(`/ui/runs/${encodeURIComponent(replay.workflow_id)}`);
    } catch (error) {
      if (!isAbort(error)) notice(this.panel.firstElementChild || this.main, problemText(error), "error").focus();
    }
  }
}
