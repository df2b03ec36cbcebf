// Whole lists from the API's paginated endpoints (`{items, next_cursor}`), up to a bound: a
// page shows a few hundred rows, never an unbounded number of requests.

import { api } from "./api.js";

/**
 * Every item of a paginated list, page after page, up to `max` items.
 * @param {string} path
 * @param {{query?: Object<string, any>, signal?: AbortSignal, max?: number, limit?: number}}
 *   [options] `limit`: items per request (the API's largest page is 200)
 * @returns {Promise<{items: any[], first: any, complete: boolean}>} `first`: the first page
 *   as answered (some lists carry totals beside their items); `complete`: false when `max`
 *   cut the list short
 */
export async function collect(path, { query, signal, max = 1000, limit = 200 } = {}) {
  const items = [];
  let first = null;
  let cursor = null;
  do {
    const page = await api("GET", path, { query: { ...query, limit, cursor }, signal });
    first ??= page;
    items.push(...page.items);
    cursor = page.next_cursor;
    if (items.length >= max) {
      const complete = !cursor && items.length === max;
      items.length = max;
      return { items, first, complete };
    }
  } while (cursor);
  return { items, first, complete: true };
}
