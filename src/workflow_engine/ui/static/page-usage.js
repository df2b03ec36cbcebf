// LLM usage: tokens and cost per day as a chart, per model and per workflow as tables, and
// what today's budgets leave.

import { barChart } from "./chart.js";
import { emptyState, fmtCost, fmtNumber, h, notice, problemText, table, tableScroll, uniqueId } from "./dom.js";
import { collect } from "./lists.js";
import { navigate } from "./router.js";

const RANGES = [7, 14, 30, 90, 366];
const DEFAULT_DAYS = 14;
const DAY_MS = 86_400_000;
const MAX_ROWS = 20_000; // a year of days × models × workflows, with room to spare

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

function dayLabel(day) {
  return new Date(`${day}T00:00:00Z`).toLocaleDateString(undefined, { month: "short", day: "numeric", timeZone: "UTC" });
}

function daysBetween(first, last) {
  const days = [];
  for (let t = Date.parse(`${first}T00:00:00Z`); t <= Date.parse(`${last}T00:00:00Z`); t += DAY_MS) {
    days.push(isoDay(new Date(t)));
  }
  return days;
}

/** Every row of the range, page after page, with the first page's totals and budgets. */
async function fetchUsage(days, signal) {
  const last = new Date();
  const first = new Date(last.getTime() - (days - 1) * DAY_MS);
  const query = { from: isoDay(first), to: isoDay(last) };
  const { items, first: answer } = await collect("/api/v1/usage", { query, signal, max: MAX_ROWS });
  return { ...answer, items };
}

function emptyFigures() {
  return { calls: 0, failed_calls: 0, prompt_tokens: 0, completion_tokens: 0, total_tokens: 0, cost_usd: 0, unpriced_calls: 0 };
}

function addFigures(into, row) {
  for (const key of Object.keys(into)) into[key] += row[key] ?? 0;
  return into;
}

function groupBy(items, keyOf) {
  const groups = new Map();
  for (const item of items) {
    const key = keyOf(item);
    groups.set(key, addFigures(groups.get(key) ?? emptyFigures(), item));
  }
  return [...groups].sort((a, b) => b[1].total_tokens - a[1].total_tokens || a[0].localeCompare(b[0]));
}

function figuresTable(title, keyHeading, groups, testid) {
  const rows = groups.map(([key, figures]) => h("tr", null,
    h("th", { scope: "row" }, key),
    h("td", { class: "number" }, fmtNumber(figures.calls),
      figures.failed_calls ? h("span", { class: "muted" }, ` (${fmtNumber(figures.failed_calls)} failed)`) : null),
    h("td", { class: "number" }, fmtNumber(figures.prompt_tokens)),
    h("td", { class: "number" }, fmtNumber(figures.completion_tokens)),
    h("td", { class: "number" }, fmtNumber(figures.total_tokens)),
    h("td", { class: "number" }, fmtCost(figures.cost_usd),
      figures.unpriced_calls ? h("span", { class: "muted" }, ` + ${fmtNumber(figures.unpriced_calls)} unpriced`) : null)));
  const list = table([keyHeading, "Calls", "Prompt tokens", "Completion tokens", "Total tokens", "Cost"], rows,
    { "data-testid": testid, "aria-label": title, class: "figures-table" }, { numeric: [1, 2, 3, 4, 5] });
  const id = uniqueId("usage");
  return h("section", { class: "panel", "aria-labelledby": id }, h("h2", { id }, title),
    groups.length ? null : emptyState("No LLM calls in this range."), tableScroll(list));
}

function budgetCard(title, budget, format) {
  const limited = budget.limit !== null && budget.limit !== undefined;
  const id = uniqueId("budget");
  const body = limited
    ? [
      h("p", { class: "budget-figures" }, `${format(budget.used)} used of ${format(budget.limit)}; `,
        h("strong", null, `${format(budget.remaining)} left`)),
      h("progress", { max: String(budget.limit), value: String(Math.min(budget.used, budget.limit)), "aria-labelledby": id }),
      budget.setting ? h("p", { class: "help" }, `Set by ${budget.setting}.`) : null,
    ]
    : [h("p", { class: "budget-figures" }, `${format(budget.used)} used; no limit.`)];
  return h("div", { class: "budget" }, h("h3", { id }, title), body);
}

function chartFor(answer, width) {
  const byDay = new Map();
  for (const item of answer.items) byDay.set(item.day, addFigures(byDay.get(item.day) ?? emptyFigures(), item));
  const series = daysBetween(answer.from, answer.to).map((day) => {
    const figures = byDay.get(day) ?? emptyFigures();
    return {
      label: dayLabel(day),
      values: { prompt: figures.prompt_tokens, completion: figures.completion_tokens },
      note: fmtCost(figures.cost_usd),
    };
  });
  return barChart(series, {
    testid: "usage-chart",
    title: `LLM tokens per day (UTC), ${answer.from} to ${answer.to}`,
    stack: [{ key: "prompt", label: "Prompt tokens" }, { key: "completion", label: "Completion tokens" }],
    unit: " tokens",
    categoryLabel: "Day",
    totalLabel: "Total tokens",
    noteLabel: "Cost",
    width,
  });
}

/**
 * Draws the usage page; the range is `?days=` (default 14).
 * @param {HTMLElement} main
 * @param {{query: URLSearchParams}} params
 * @param {AbortSignal} signal
 */
export async function render(main, params, signal) {
  const asked = Number(params.query?.get("days"));
  let days = RANGES.includes(asked) ? asked : DEFAULT_DAYS;
  const select = h("select", { id: "usage-days", name: "days" },
    RANGES.map((count) => h("option", { value: String(count) }, count === 366 ? "Last year" : `Last ${count} days`)));
  select.value = String(days);
  const content = h("div", { class: "usage-content", "aria-busy": "true" });
  // The one line announced when a range is loaded; the chart and tables are no live region.
  const said = h("p", { class: "visually-hidden", role: "status" });
  main.append(
    h("h1", null, "Usage"),
    h("p", { class: "lead" }, "Tokens and estimated cost of every LLM call the workflows made, per UTC day."),
    h("div", { class: "toolbar" }, h("label", { for: "usage-days" }, "Range"), select, said),
    content,
  );

  async function load() {
    content.setAttribute("aria-busy", "true");
    let answer;
    try {
      answer = await fetchUsage(days, signal);
    } catch (error) {
      if (signal.aborted) return;
      content.replaceChildren();
      notice(content, `Could not load the usage: ${problemText(error)}`, "error");
      content.removeAttribute("aria-busy");
      return;
    }
    const width = Math.max(320, Math.min(1400, content.clientWidth || 640));
    const totals = answer.totals;
    content.replaceChildren(
      h("p", { class: "usage-totals" },
        h("strong", null, `${fmtNumber(totals.total_tokens)} tokens`),
        ` (${fmtNumber(totals.prompt_tokens)} prompt, ${fmtNumber(totals.completion_tokens)} completion), `,
        h("strong", null, fmtCost(totals.cost_usd)), ` over ${fmtNumber(totals.calls)} calls`,
        totals.failed_calls ? `, ${fmtNumber(totals.failed_calls)} failed` : "",
        totals.unpriced_calls ? `; ${fmtNumber(totals.unpriced_calls)} calls of models without a price are not in the cost` : "",
        "."),
      h("section", { class: "panel", "aria-label": "Tokens per day" }, chartFor(answer, width)),
      h("section", { class: "panel", "aria-labelledby": "budgets-heading" },
        h("h2", { id: "budgets-heading" }, `Today's budgets (${answer.budgets.day}, UTC)`),
        h("div", { class: "budgets" },
          budgetCard("Tokens", answer.budgets.tokens, fmtNumber),
          budgetCard("Cost", answer.budgets.cost_usd, fmtCost))),
      figuresTable("Per model", "Provider / model", groupBy(answer.items, (item) => `${item.provider} / ${item.model}`), "usage-by-model"),
      figuresTable("Per workflow", "Workflow", groupBy(answer.items, (item) => item.workflow_name), "usage-by-workflow"),
    );
    content.removeAttribute("aria-busy");
    said.textContent = `Showing ${answer.from} to ${answer.to}: ${fmtNumber(totals.total_tokens)} tokens.`;
  }

  select.addEventListener("change", () => {
    days = Number(select.value);
    navigate(`/ui/usage?days=${days}`, { replace: true });
    load();
  });
  await load();
}
