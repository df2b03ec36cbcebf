// The API client: JSON calls, paginated lists and server-sent event streams, each sending the
// session's bearer token. session.js hands the credentials over with `useCredentials`, so this
// module never imports it.

/** An error answer of the API: its HTTP status and problem+json document. */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {{title?: string, detail?: string, status?: number, errors?: any[]}} problem
   */
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.problem = problem;
  }
}

const credentials = {
  token: () => null,
  renew: async () => false,
};
const openStreams = new Set();

/**
 * Says where the bearer token comes from and how a refused one is renewed.
 * @param {{token: () => (string|null), renew: (refused: string) => Promise<boolean>}} source
 *   `token` is null when signed out; `renew` gets the token that was refused and resolves
 *   true when a new one may be tried, false when the session is over, and rejects when the
 *   refresh failed for now (a 5xx or the network: the session stays, a later call retries)
 */
export function useCredentials(source) {
  Object.assign(credentials, source);
}

/**
 * Ends every open event stream (sign-out: the server ends them too, within a second). A
 * stream never reconnects once the token is gone.
 */
export function abortStreams() {
  for (const stream of openStreams) stream.abort();
  openStreams.clear();
}

// A path with its query; null, undefined and empty values are left out.
function withQuery(path, query) {
  const params = new URLSearchParams();
  const entries = query instanceof URLSearchParams ? query.entries() : Object.entries(query || {});
  for (const [key, value] of entries) {
    if (value !== null && value !== undefined && value !== "") params.append(key, String(value));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

// Reads an answer's problem document, whatever the body holds.
async function answerError(response) {
  let problem = null;
  try {
    const text = await response.text();
    problem = text ? JSON.parse(text) : null;
  } catch {
    problem = null;
  }
  if (!problem || typeof problem !== "object") {
    problem = { status: response.status, title: response.statusText || `HTTP ${response.status}` };
  }
  return new ApiError(response.status, problem);
}

// --- the rate limit ----------------------------------------------------------------------
// The server refuses a request over the caller's rate limit before its route runs, so a
// refused request did nothing and may be sent again, whatever its method. Requests refused
// (and any sent while one waits) queue up and go one at a time, each after the wait the
// server names: a burst of refused requests then costs one retry each, not a storm.

const RATE_LIMIT_RETRIES = 4;
const LONGEST_RATE_LIMIT_WAIT = 30; // seconds; a longer wait is shown as the error it is

let line = Promise.resolve(); // the queue of throttled requests
let queued = 0;
const waitListeners = new Set();

/**
 * Calls `fn(true)` when requests start waiting for the rate limit and `fn(false)` when none
 * waits any longer (the layout shows a status while they wait).
 * @param {(waiting: boolean) => void} fn
 * @returns {() => void} removes the listener
 */
export function onRateLimitWait(fn) {
  waitListeners.add(fn);
  return () => waitListeners.delete(fn);
}

function queueChanged(change) {
  const before = queued > 0;
  queued += change;
  if (before !== queued > 0) for (const fn of waitListeners) fn(queued > 0);
}

function abortError() {
  return new DOMException("The request was aborted.", "AbortError");
}

// Resolves after `ms`, or at once when `signal` aborts.
function sleep(ms, signal) {
  return new Promise((resolve) => {
    if (signal && signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      if (signal) signal.removeEventListener("abort", done);
      resolve();
    }
    if (signal) signal.addEventListener("abort", done, { once: true });
  });
}

// Resolves when `turn` does, or earlier when `signal` aborts (a page left while it waited).
function turnOrAbort(turn, signal) {
  if (!signal) return turn;
  return new Promise((resolve) => {
    const done = () => {
      signal.removeEventListener("abort", done);
      resolve();
    };
    signal.addEventListener("abort", done, { once: true });
    turn.then(done);
  });
}

// The seconds a 429 asks to wait: its `Retry-After` header, else its problem's `retry_after`.
function secondsToWait(response, refusal) {
  const header = Number(response.headers.get("Retry-After"));
  if (Number.isFinite(header) && header > 0) return header;
  const asked = Number(refusal.problem && refusal.problem.retry_after);
  return Number.isFinite(asked) && asked > 0 ? asked : 1;
}

// Sends with `request()` once it is this request's turn in the line, waiting out 429s.
async function throughLine(request, refused, signal) {
  const before = line;
  let release;
  line = new Promise((resolve) => (release = resolve));
  queueChanged(1);
  try {
    await turnOrAbort(before, signal);
    if (signal && signal.aborted) throw abortError();
    let response = refused || (await request());
    for (let retry = 0; response.status === 429; retry += 1) {
      const refusal = await answerError(response);
      const seconds = secondsToWait(response, refusal);
      if (retry >= RATE_LIMIT_RETRIES || seconds > LONGEST_RATE_LIMIT_WAIT) throw refusal;
      await sleep(seconds * 1000, signal);
      if (signal && signal.aborted) throw abortError();
      response = await request();
    }
    return response;
  } finally {
    queueChanged(-1);
    release();
  }
}

// One request with the current token (or `token`, when given): a 429 waits its turn and is
// sent again; a 401 renews the session once and asks again. Resolves to the answer and the
// token it was sent with (a stream renews with that one, not whatever is current by then).
async function send(
  method,
  path,
  { body, query, signal, headers = {}, anonymous = false, token: given },
) {
  const url = withQuery(path, query);
  for (let attempt = 0; ; attempt += 1) {
    const token = anonymous ? null : given || credentials.token();
    // Signed out: a call would only be refused, and nothing leaves after sign-out.
    if (!anonymous && !token) throw new ApiError(401, { status: 401, title: "Signed out" });
    const sent = { Accept: "application/json", ...headers };
    if (token) sent.Authorization = `Bearer ${token}`;
    if (body !== undefined) sent["Content-Type"] = "application/json";
    const request = () =>
      fetch(url, {
        method,
        headers: sent,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
        credentials: "omit",
        cache: "no-store",
      });
    // While others wait for the rate limit, this one queues behind them instead of being
    // refused too.
    let response = queued ? await throughLine(request, null, signal) : await request();
    if (response.status === 429) response = await throughLine(request, response, signal);
    const renewable = response.status === 401 && token && !given && attempt === 0;
    if (renewable && (await credentials.renew(token))) continue;
    if (!response.ok) throw await answerError(response);
    return { response, token };
  }
}

/**
 * Calls the API.
 * @param {string} method
 * @param {string} path e.g. `/api/v1/workflows`
 * @param {{body?: any, query?: Object<string, any>, signal?: AbortSignal,
 *   anonymous?: boolean, token?: string}} [options] `anonymous`: send no token (sign-in);
 *   `token`: send this one instead of the session's, and never renew it (sign-out)
 * @returns {Promise<any>} the parsed JSON answer; null for 204
 * @throws {ApiError} on an error answer (a 401 only once renewing the session failed)
 */
export async function api(method, path, options = {}) {
  const { response } = await send(method, path, options);
  if (response.status === 204) return null;
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

/**
 * Every item of a paginated list (`{items, next_cursor}`), page after page.
 * @param {string} path
 * @param {{query?: Object<string, any>, signal?: AbortSignal}} [options]
 * @yields {any}
 */
export async function* pages(path, { query, signal } = {}) {
  let cursor = null;
  do {
    const page = await api("GET", path, { query: { ...query, cursor }, signal });
    yield* page.items;
    cursor = page.next_cursor;
  } while (cursor);
}

const FIRST_DELAY = 1000;
const LONGEST_DELAY = 30000;

/**
 * A server-sent event stream read with `fetch` (an `EventSource` cannot send the token).
 * After a dropped connection it reconnects with `Last-Event-ID`, waiting longer each time
 * (1 s doubling to 30 s, or the server's `retry`). A `closed` message (the credential ran
 * out) renews the session and reconnects; an `end` message (nothing more will come) is
 * yielded and ends the stream, as does `signal` or signing out. `Last-Event-ID` is the id of
 * the last message yielded whole: a message cut off by the drop is asked for again.
 * @param {string} path
 * @param {{query?: Object<string, any>, signal?: AbortSignal, onOpen?: () => void}} [options]
 *   `onOpen` is called after each (re)connection: a stream that starts at the present (no
 *   `Last-Event-ID` yet) misses what happened while it was away, which a page re-reads
 * @yields {{event: string, id: (string|null), data: any}} `data` parsed when it is JSON
 * @throws {ApiError} when the server refuses the stream (403, 404, 422...)
 */
export async function* sse(path, { query, signal, onOpen } = {}) {
  const stream = new AbortController();
  const stop = () => stream.abort();
  if (signal) {
    if (signal.aborted) return;
    signal.addEventListener("abort", stop);
  }
  openStreams.add(stream);
  const state = { lastId: null, base: FIRST_DELAY, delay: FIRST_DELAY };
  try {
    // Signed out (no token): nothing to resume, and no request that would only be refused.
    while (!stream.signal.aborted && credentials.token() !== null) {
      let response;
      let token;
      try {
        const headers = { Accept: "text/event-stream" };
        if (state.lastId) headers["Last-Event-ID"] = state.lastId;
        ({ response, token } = await send("GET", path, { query, signal: stream.signal, headers }));
      } catch (error) {
        if (stream.signal.aborted) return;
        // Refusals stay refusals; a dropped network or a restarting server is tried again.
        if (error instanceof ApiError && error.status < 500 && error.status !== 429) throw error;
        const asked = (error.problem && error.problem.retry_after) || 0;
        await sleep(Math.max(state.delay, asked * 1000), stream.signal);
        state.delay = Math.min(state.delay * 2, LONGEST_DELAY);
        continue;
      }
      if (onOpen) onOpen();
      let ended = false;
      try {
        for await (const message of messages(response.body, state)) {
          state.delay = state.base;
          if (message.event === "closed") {
            const refused = message.data && message.data.status === 401;
            if (refused && !(await renewedOrRetry(token))) return;
            break;
          }
          yield message;
          if (message.event === "end") {
            ended = true;
            break;
          }
        }
      } catch (error) {
        if (stream.signal.aborted) return;
        if (!(error instanceof TypeError) && error.name !== "AbortError") throw error;
      }
      if (ended) return;
      await sleep(state.delay, stream.signal);
      state.delay = Math.min(state.delay * 2, LONGEST_DELAY);
    }
  } finally {
    if (signal) signal.removeEventListener("abort", stop);
    openStreams.delete(stream);
    stream.abort();
  }
}

// After a stream's credential ran out: false when the session is over; true when the stream
// should reconnect (renewed, or the refresh failed for now and the reconnect tries again).
async function renewedOrRetry(token) {
  try {
    return await credentials.renew(token);
  } catch {
    return true;
  }
}

const LINE_END = /\r\n|\r|\n/;

// The messages of an event stream body, parsed as the HTML standard says: `field: value`
// lines, `:` comments, data lines joined with newlines, a blank line dispatching. As there,
// an `id` becomes the stream's last event id only when its message is dispatched.
async function* messages(body, state) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let message = { event: "", id: null, data: [] };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      for (;;) {
        const found = LINE_END.exec(buffer);
        // A CR last in the buffer may be the first half of a CRLF: wait for the next chunk.
        if (!found || (found[0] === "\r" && found.index === buffer.length - 1)) break;
        const line = buffer.slice(0, found.index);
        buffer = buffer.slice(found.index + found[0].length);
        if (line === "") {
          if (message.id !== null) state.lastId = message.id || null;
          if (message.data.length) yield dispatch(message);
          message = { event: "", id: null, data: [] };
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const name = colon < 0 ? line : line.slice(0, colon);
        let text = colon < 0 ? "" : line.slice(colon + 1);
        if (text.startsWith(" ")) text = text.slice(1);
        if (name === "data") message.data.push(text);
        else if (name === "event") message.event = text;
        else if (name === "id" && !text.includes("\0")) message.id = text;
        else if (name === "retry" && /^\d+$/.test(text)) {
          state.base = Number(text);
          state.delay = state.base;
        }
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

function dispatch(message) {
  const text = message.data.join("\n");
  let data = text;
  try {
    data = JSON.parse(text);
  } catch {
    data = text;
  }
  return { event: message.event || "message", id: message.id || null, data };
}
