// The server's workflow templates, read at most once a minute: the catalog changes only when
// the server restarts, and every request counts against the user's rate limit. The runs
// filter, the templates list and a template's page share one read.

import { api } from "./api.js";
import { onSessionEnd } from "./session.js";

const FRESH_MS = 60_000;
let cached = null; // {at, list}: the list as `GET /api/v1/workflows/templates` answered it

onSessionEnd(() => {
  cached = null;
});

/**
 * Every template (`{items: [...]}`), from the last minute's read or a new one.
 * @param {AbortSignal} [signal]
 * @returns {Promise<{items: object[]}>}
 */
export async function templates(signal) {
  if (cached && Date.now() - cached.at < FRESH_MS) return cached.list;
  const list = await api("GET", "/api/v1/workflows/templates", { signal });
  cached = { at: Date.now(), list };
  return list;
}

/**
 * One template: its current version from the shared list, another version from the API.
 * @param {string} name
 * @param {string|null} version
 * @param {AbortSignal} [signal]
 */
export async function template(name, version, signal) {
  if (version === null) {
    const found = (await templates(signal)).items.find((candidate) => candidate.name === name);
    if (found) return found;
  }
  // Not listed (a 404 with the API's own problem) or an older version.
  return api("GET", `/api/v1/workflows/templates/${encodeURIComponent(name)}`,
    { query: { version }, signal });
}
