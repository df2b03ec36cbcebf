// A run's steps: what its events say about each step's attempts (folded in one event at a
// time), the steps table and the selected step's panel.

import {
  emptyState,
  errorMessage,
  facts,
  fmtCost,
  fmtDuration,
  fmtNumber,
  fmtTime,
  h,
  jsonBlock,
  statusBadge,
  table,
  tableScroll,
} from "./dom.js";

const STEP_EVENTS = new Set([
  "StepStarted",
  "StepWaiting",
  "StepCompleted",
  "StepFailed",
  "StepSkipped",
  "StepCancelled",
]);

/** Each step's attempts, their outputs and errors, built from the run's events in order. */
export class StepHistory {
  constructor() {
    this.steps = new Map(); // step id → Map(attempt number → attempt)
    this.counts = new Map(); // step id → how many of its events were folded in
  }

  /**
   * Folds one event in (in constant time: a run with thousands of events stays cheap).
   * @param {{event_type: string, data?: object, recorded_at: string}} event
   */
  add(event) {
    if (!STEP_EVENTS.has(event.event_type)) return;
    const data = event.data || {};
    const attempt = this.attemptOf(data.step_id, data.attempt);
    this.counts.set(data.step_id, (this.counts.get(data.step_id) || 0) + 1);
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

  attemptOf(stepId, number) {
    if (!this.steps.has(stepId)) this.steps.set(stepId, new Map());
    const attempts = this.steps.get(stepId);
    const key = number ?? 0;
    if (!attempts.has(key)) attempts.set(key, { attempt: key });
    return attempts.get(key);
  }

  /**
   * A step's attempts, first to last (attempt 0: an output reused from the replayed run).
   * @param {string} stepId
   * @returns {object[]}
   */
  attempts(stepId) {
    return [...(this.steps.get(stepId)?.values() || [])].sort((a, b) => a.attempt - b.attempt);
  }

  /**
   * A step's last completed attempt (it holds the output), if any.
   * @param {string} stepId
   * @returns {object|undefined}
   */
  completed(stepId) {
    return this.attempts(stepId).findLast((attempt) => attempt.status === "completed");
  }

  /**
   * How many of a step's events were folded in: what the panel shows changed when it did.
   * @param {string} stepId
   * @returns {number}
   */
  count(stepId) {
    return this.counts.get(stepId) || 0;
  }
}

/**
 * A cost, unless no call was made or none of the models has a price (`LLM_PRICES`).
 * @param {{calls: number, unpriced_calls: number, cost_usd: number}|null} figures
 * @returns {string}
 */
export function costOf(figures) {
  if (!figures || !figures.calls) return "—";
  if (figures.unpriced_calls >= figures.calls) return "not priced";
  const cost = fmtCost(figures.cost_usd);
  return figures.unpriced_calls ? `${cost} + ${figures.unpriced_calls} unpriced calls` : cost;
}

/**
 * One step's LLM figures from the run's usage (`GET …/usage`), summed over its models.
 * @param {{steps: object[]}|null} usage
 * @param {string} stepId
 * @returns {{total_tokens: number, cost_usd: number, calls: number, unpriced_calls: number}|null}
 */
export function stepUsage(usage, stepId) {
  if (!usage) return null;
  return usage.steps
    .filter((row) => row.step_id === stepId)
    .reduce(
      (sum, row) => ({
        total_tokens: sum.total_tokens + row.total_tokens,
        cost_usd: sum.cost_usd + row.cost_usd,
        calls: sum.calls + row.calls,
        unpriced_calls: sum.unpriced_calls + row.unpriced_calls,
      }),
      { total_tokens: 0, cost_usd: 0, calls: 0, unpriced_calls: 0 },
    );
}

function tokensOf(used) {
  return used && used.calls ? fmtNumber(used.total_tokens) : "—";
}

/**
 * The steps table (`table[data-testid=run-steps]`), in its scrolling box.
 * @param {object[]} steps the run status's steps
 * @param {object|null} usage
 * @param {(stepId: string) => void} onSelect
 * @returns {HTMLElement}
 */
export function stepsTable(steps, usage, onSelect) {
  const rows = steps.map((step) => {
    const used = stepUsage(usage, step.id);
    return h(
      "tr",
      { "data-step": step.id, "data-status": step.status },
      h("td", null, h("button", { type: "button", class: "link-button", onclick: () => onSelect(step.id) }, step.id)),
      h("td", null, h("code", null, step.uses)),
      h("td", null, statusBadge(step.status)),
      h("td", { class: "number" }, String(step.attempts)),
      h("td", { class: "number" }, fmtDuration(step.duration_ms)),
      h("td", { class: "error-cell" }, errorMessage(step.error)),
      h("td", { class: "number" }, tokensOf(used)),
      h("td", { class: "number" }, costOf(used)),
    );
  });
  const headings = ["Step", "Uses", "Status", "Attempts", "Duration", "Error", "Tokens", "Cost"];
  const attrs = { "data-testid": "run-steps", "aria-label": "Steps" };
  return tableScroll(table(headings, rows, attrs, { numeric: [3, 4, 6, 7] }));
}

function attemptItem(attempt) {
  return h(
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
  );
}

/**
 * The selected step's panel (`[data-testid=step-detail]`): facts, input (its `with` and the
 * outputs it needs), output and attempts.
 * @param {{step: object, written: {needs: string[], with?: any}, history: StepHistory,
 *   stepOf: (id: string) => object|undefined, usage: object|null, runInput: any,
 *   eventsUnread: boolean, actions: HTMLElement[]}} view
 * @returns {HTMLElement}
 */
export function stepPanel({ step, written, history, stepOf, usage, runInput, eventsUnread, actions }) {
  const attempts = history.attempts(step.id);
  const last = history.completed(step.id);
  const used = stepUsage(usage, step.id);

  const input = h(
    "div",
    { "data-testid": "step-input" },
    h("h4", null, "Input"),
    h("p", { class: "muted" }, "The step's `with`, as written; resolved at run time."),
    written.with === undefined ? emptyState("The definition is not available.") : jsonBlock(written.with),
    ...written.needs.map((need) => {
      const output = history.completed(need);
      return h(
        "div",
        null,
        h("h5", null, `Output of ${need}`),
        output ? jsonBlock(output.output) : emptyState(`${need} has no output (${stepOf(need)?.status || "unknown"}).`),
      );
    }),
    JSON.stringify(written.with || {}).includes("input.")
      ? h("div", null, h("h5", null, "Run input"), jsonBlock(runInput))
      : "",
  );
  const skipped = attempts.find((attempt) => attempt.status === "skipped");
  let missing = `No output: the step is ${step.status}.`;
  if (eventsUnread) missing = "The run's events could not be read: reload the page to see the output.";
  else if (skipped) missing = `Skipped: ${skipped.reason || "its condition was false"}.`;
  const output = h(
    "div",
    { "data-testid": "step-output" },
    h("h4", null, "Output"),
    last ? jsonBlock(last.output) : emptyState(missing),
  );
  const attemptItems = attempts
    .filter((attempt) => attempt.attempt > 0 || attempt.status === "completed")
    .map(attemptItem);
  const attemptList = h(
    "div",
    { "data-testid": "step-attempts" },
    h("h4", null, "Attempts"),
    attemptItems.length ? h("ol", { class: "attempts" }, attemptItems) : emptyState("Not started yet."),
  );
  return h(
    "div",
    { class: "panel", "data-testid": "step-detail", "data-step": step.id },
    h(
      "div",
      { class: "section-header" },
      h("h3", { tabindex: "-1" }, step.id),
      statusBadge(step.status),
      h("div", { class: "actions" }, actions),
    ),
    facts([
      ["Uses", h("code", null, step.uses)],
      ["Needs", written.needs.join(", ") || "—"],
      ["Attempts", String(step.attempts)],
      ["Started", fmtTime(step.started_at)],
      ["Finished", fmtTime(step.finished_at)],
      ["Duration", fmtDuration(step.duration_ms)],
      ["Tokens", tokensOf(used)],
      ["Cost", costOf(used)],
    ]),
    step.error ? h("div", { class: "step-error" }, h("h4", null, "Error"), jsonBlock(step.error)) : "",
    h("div", { class: "step-io" }, input, output),
    attemptList,
  );
}
