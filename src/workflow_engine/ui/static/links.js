// Links to the dashboard's own pages, built one way everywhere: path segments encoded, a run
// shown by the start of its id. (Not in dom.js: router.js imports dom.js.)

import { h, shortId } from "./dom.js";
import { link } from "./router.js";

/**
 * A link to a run's page, showing the start of its id (the whole id as its title).
 * @param {string} runId
 * @returns {HTMLAnchorElement}
 */
export function runLink(runId) {
  return link(`/ui/runs/${encodeURIComponent(runId)}`, h("code", { title: runId }, shortId(runId)));
}

/**
 * A link to a template's page; with `version`, to that version of it.
 * @param {string} name
 * @param {{version?: number|null, text?: (Node|string)}} [options] `text` defaults to the name
 * @returns {HTMLAnchorElement}
 */
export function templateLink(name, { version = null, text } = {}) {
  const path = `/ui/templates/${encodeURIComponent(name)}`;
  return link(version === null ? path : `${path}?version=${encodeURIComponent(version)}`, text ?? name);
}
