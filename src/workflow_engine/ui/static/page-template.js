// One workflow template: its description, its graph (select a step to see it), its input
// schema and, for roles that may start runs, a form generated from that schema.

import { api } from "./api.js";
import { facts, h, jsonBlock, notice, problemText, withCodeSpans } from "./dom.js";
import { schemaForm } from "./form.js";
import { drawGraph } from "./graph.js";
import { submissionKeys } from "./idempotency.js";
import { templateLink } from "./links.js";
import { link, navigate } from "./router.js";
import { can } from "./session.js";
import { template as fetchTemplate } from "./templates.js";

/** What the template says about one step; `with`, `retry` and `timeout` when the API gives them. */
function stepDetail(step) {
  return [
    h("h3", { tabindex: "-1" }, `Step ${step.id}`),
    facts(
      [
        ["Uses", h("code", null, step.uses)],
        ["Needs", step.needs.length ? step.needs.join(", ") : "nothing: starts with the run"],
        step.if && ["Runs if", h("code", null, step.if)],
        step.timeout && ["Timeout", `${step.timeout} s per attempt`],
        step.retry && ["Retry", jsonBlock(step.retry)],
        step.with !== undefined && ["With", jsonBlock(step.with)],
      ],
      { class: "step-facts" },
    ),
  ];
}

function versionLinks(template) {
  if (template.versions.length < 2) return null;
  return h("p", { class: "muted" }, "Versions: ", template.versions.map((version, index) => [
    index ? ", " : "",
    version === template.version
      ? h("strong", { "aria-current": "page" }, `v${version}`)
      : templateLink(template.name, { version, text: `v${version}` }),
  ]));
}

function triggerSection(template, pinned) {
  const heading = h("h2", { id: "trigger-heading" }, "Start a run");
  if (!can("workflows:run")) {
    return h("section", { class: "panel", "aria-labelledby": "trigger-heading" }, heading,
      h("p", { class: "muted" }, "Your role may read templates but not start runs."));
  }
  const lead = template.example_input
    ? "Prefilled with the template's example. Fields marked * are required."
    : "Fields marked * are required.";
  const keys = submissionKeys();
  const form = schemaForm(template.input_schema, template.example_input, {
    submitLabel: "Start run",
    testid: "trigger-form",
    onSubmit: async (data) => {
      const body = { workflow_name: template.name, data };
      if (pinned) body.version = template.version;
      // Pressing Start run again after an answer got lost returns the run already made.
      const run = await api("POST", "/api/v1/workflows/trigger", { body, headers: keys.headersFor(body) });
      navigate(`/ui/runs/${encodeURIComponent(run.workflow_id)}`);
    },
  });
  return h("section", { class: "panel", "aria-labelledby": "trigger-heading" }, heading,
    h("p", { class: "help" }, lead), form);
}

/**
 * Draws one template's page.
 * @param {HTMLElement} main
 * @param {{name: string, query: URLSearchParams}} params
 * @param {AbortSignal} signal
 */
export async function render(main, params, signal) {
  const name = params.name;
  const version = params.query?.get("version") || null;
  main.append(h("p", { class: "breadcrumb" }, link("/ui/templates", "Templates"), " / ", name));
  let template;
  try {
    template = await fetchTemplate(name, version, signal);
  } catch (error) {
    if (signal.aborted) return;
    main.append(h("h1", null, name));
    notice(main, `Could not load this template: ${problemText(error)}`, "error");
    return;
  }
  document.title = `${template.name} · Templates · workflow-engine`;

  const panel = h("div", { class: "step-panel", "data-testid": "template-step" },
    h("p", { class: "muted" }, "Select a step in the graph (click, or Tab to it and press Enter) to see what it does."));
  // The selected node is marked (`aria-pressed`), and focus moves to the panel's heading,
  // as on the run page: the panel is read from there, not announced as a live region.
  const graph = drawGraph(template.steps, {
    testid: "template-graph",
    onSelect: (stepId) => {
      const step = template.steps.find((candidate) => candidate.id === stepId);
      if (!step) return;
      graph.select(stepId);
      panel.replaceChildren(...stepDetail(step));
      panel.querySelector("h3").focus();
    },
  });

  main.append(
    h("h1", null, template.name, " ", h("span", { class: "muted" }, `v${template.version}`)),
    versionLinks(template) ?? "",
    h("p", { class: "lead" }, template.description ? withCodeSpans(template.description) : "No description."),
    h("section", { class: "panel", "aria-labelledby": "graph-heading" },
      h("h2", { id: "graph-heading" }, `Graph (${template.steps.length} step${template.steps.length === 1 ? "" : "s"})`),
      graph.element,
      panel),
    triggerSection(template, Boolean(version)),
    h("section", { class: "panel", "aria-labelledby": "schema-heading" },
      h("h2", { id: "schema-heading" }, "Input schema"),
      h("details", null, h("summary", null, "JSON Schema of the run's input"), jsonBlock(template.input_schema))),
  );
}
