// Live pages: re-reads driven by event streams, spent frugally (every request counts against
// the user's rate limit, shared by all their tabs) and never while nobody looks.

import { sse } from "./api.js";
import { debounce } from "./dom.js";

/**
 * A re-read for a live page. Each call asks for one; they run `delay` ms after the first
 * call of a burst and at most once per `gap` ms. While the tab is hidden nothing is read:
 * the page re-reads once when it is shown again, if something changed meanwhile.
 * @param {() => any} read
 * @param {{delay?: number, gap?: number, signal: AbortSignal}} options
 * @returns {() => void}
 */
export function liveReread(read, { delay = 300, gap = 3000, signal }) {
  let missed = false;
  const later = debounce(
    () => {
      if (document.hidden) missed = true;
      else read();
    },
    delay,
    { gap },
  );
  const request = () => {
    if (document.hidden) missed = true;
    else later();
  };
  const shown = () => {
    if (document.hidden || !missed) return;
    missed = false;
    later();
  };
  document.addEventListener("visibilitychange", shown);
  signal.addEventListener(
    "abort",
    () => {
      later.cancel();
      document.removeEventListener("visibilitychange", shown);
    },
    { once: true },
  );
  return request;
}

// How long a page waits for its stream to connect before reading its data anyway.
const LONGEST_OPENING_MS = 1000;

/**
 * Follows the event stream of a live page whose data is read separately. The stream starts
 * at the present, so the page reads its data once the stream is open (`opened`): nothing
 * that happens between the two is lost, and that first read needs no second one. Each later
 * (re)connection calls `reread`, as does a first connection that came too late (after
 * `opened` gave up waiting), since the page may have missed changes meanwhile.
 * @param {string} path
 * @param {{query?: Object<string, any>, signal: AbortSignal, onMessage: (message: any) => void,
 *   reread: () => void}} options
 * @returns {{opened: Promise<void>, done: Promise<void>}} `opened` resolves once the stream
 *   is open, when it ends or fails, or after a few seconds; `done` settles as `sse()` ends
 */
export function liveStream(path, { query, signal, onMessage, reread }) {
  let waiting = true;
  let release;
  const opened = new Promise((resolve) => (release = resolve));
  const stopWaiting = () => {
    waiting = false;
    release();
  };
  const timer = setTimeout(stopWaiting, LONGEST_OPENING_MS);
  const onOpen = () => {
    if (waiting) {
      clearTimeout(timer);
      stopWaiting();
    } else {
      reread();
    }
  };
  const done = (async () => {
    try {
      for await (const message of sse(path, { query, signal, onOpen })) onMessage(message);
    } finally {
      clearTimeout(timer);
      stopWaiting();
    }
  })();
  return { opened, done };
}
