// The workflow templates this server can run: name, description, version and step count.

import { emptyState, fmtNumber, h, notice, problemText, table, tableScroll, withCodeSpans } from "./dom.js";
import { templateLink } from "./links.js";
import { templates } from "./templates.js";

/**
 * Draws the templates list.
 * @param {HTMLElement} main
 * @param {{query: URLSearchParams}} _params
 * @param {AbortSignal} signal
 */
export async function render(main, _params, signal) {
  main.append(h("h1", null, "Templates"));
  let found;
  try {
    found = await templates(signal);
  } catch (error) {
    if (!signal.aborted) notice(main, `Could not load the templates: ${problemText(error)}`, "error");
    return;
  }
  if (found.items.length === 0) {
    main.append(emptyState("This server has no workflow templates."));
    return;
  }
  const rows = found.items.map((template) => h("tr", { "data-template": template.name },
    h("th", { scope: "row" }, templateLink(template.name)),
    h("td", { class: "description" }, template.description ? withCodeSpans(template.description) : "—"),
    h("td", { class: "number" }, `v${template.version}`,
      template.versions.length > 1 ? h("span", { class: "muted" }, ` (of ${template.versions.length})`) : null),
    h("td", { class: "number" }, fmtNumber(template.steps.length))));
  const list = table(["Name", "Description", "Version", "Steps"], rows,
    { "data-testid": "templates-table", "aria-label": "Workflow templates", class: "templates-table" },
    { numeric: [2, 3] });
  main.append(tableScroll(list));
}
