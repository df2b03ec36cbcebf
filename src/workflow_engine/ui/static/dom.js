// Building the page: elements from data without ever parsing data as HTML, and the
// formatting every page shares.

const SVG_NS = "http://www.w3.org/2000/svg";
// Set as properties as well as attributes: the attribute is only the initial state.
const LIVE_PROPERTIES = new Set(["value", "checked"]);

function fill(element, attrs, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      element.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (LIVE_PROPERTIES.has(key) && key in element) {
      element[key] = value;
      if (key === "value" && element.tagName !== "SELECT") element.setAttribute(key, value);
      if (key === "checked") element.setAttribute(key, "");
    } else {
      element.setAttribute(key, value === true ? "" : String(value));
    }
  }
  return element;
}

/**
 * An HTML element. Children are appended first (so a select's `value` finds its option);
 * `on<event>` keys add listeners; `true` sets an empty attribute, `false`/null omit it.
 * @param {string} tag
 * @param {Object<string, any>|null} [attrs]
 * @param {...(Node|string|number|null|false|Array)} children
 * @returns {HTMLElement}
 */
export function h(tag, attrs, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

/**
 * An SVG element, as `h` builds HTML ones.
 * @param {string} tag
 * @param {Object<string, any>|null} [attrs]
 * @param {...(Node|string|number|null|false|Array)} children
 * @returns {SVGElement}
 */
export function svg(tag, attrs, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

/**
 * A status badge; app.css colours it by `data-status`.
 * @param {string} status
 * @param {string} [label] the text shown, when it is not the status itself
 * @returns {HTMLSpanElement}
 */
export function statusBadge(status, label) {
  const known = status || "unknown";
  return h("span", { class: "badge", "data-status": known }, label ?? known);
}

/**
 * A list of facts: `<dl>` of label/value pairs, each pair in a `<div>` (a grid cell).
 * @param {Array<[string, ...(Node|string|null)[]]>} pairs `[label, ...value]`; a falsy
 *   pair is left out
 * @param {Object<string, any>} [attrs] default `{class: "facts"}`
 * @returns {HTMLDListElement}
 */
export function facts(pairs, attrs = { class: "facts" }) {
  return h(
    "dl",
    attrs,
    pairs.filter(Boolean).map(([label, ...value]) => h("div", null, h("dt", null, label), h("dd", null, ...value))),
  );
}

/**
 * A moment in the reader's time zone, or an em dash when there is none.
 * @param {string|Date|null|undefined} value
 * @returns {string}
 */
export function fmtTime(value) {
  if (!value) return "—";
  const moment = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(moment.getTime())) return String(value);
  return moment.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

/**
 * A duration for people: `850 ms`, `12.4 s`, `3 min 5 s`, `2 h 4 min`.
 * @param {number|null|undefined} ms
 * @returns {string}
 */
export function fmtDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

/**
 * The time between two moments, `fmtDuration`-style; `until` defaults to now.
 * @param {string|null} since
 * @param {string|null} [until]
 * @returns {string}
 */
export function fmtElapsed(since, until) {
  if (!since) return "—";
  const end = until ? new Date(until) : new Date();
  return fmtDuration(end.getTime() - new Date(since).getTime());
}

const NUMBER = new Intl.NumberFormat();

/**
 * A number with the reader's digit grouping.
 * @param {number|null|undefined} value
 * @returns {string}
 */
export function fmtNumber(value) {
  return value === null || value === undefined ? "—" : NUMBER.format(value);
}

/**
 * US dollars; small amounts keep four decimals so a cheap call does not read as $0.00.
 * @param {number|null|undefined} usd
 * @returns {string}
 */
export function fmtCost(usd) {
  if (usd === null || usd === undefined) return "—";
  const digits = usd !== 0 && Math.abs(usd) < 1 ? 4 : 2;
  return `$${usd.toFixed(digits)}`;
}

/**
 * The first characters of an id, enough to tell runs apart in a list.
 * @param {string} id
 * @returns {string}
 */
export function shortId(id) {
  return String(id).slice(0, 8);
}

/**
 * JSON, indented, in a box that wraps or scrolls inside itself.
 * @param {any} value
 * @returns {HTMLPreElement}
 */
export function jsonBlock(value) {
  const text = value === undefined ? "—" : JSON.stringify(value, null, 2);
  return h("pre", { class: "json" }, text);
}

/**
 * What went wrong, for people: a problem's title and detail with its field errors, or an
 * error's message.
 * @param {any} error
 * @returns {string}
 */
export function problemText(error) {
  const problem = error && error.problem;
  if (!problem) return (error && error.message) || String(error);
  const parts = [problem.title, problem.detail].filter((part) => part && part !== "");
  let text = parts.join(": ") || `HTTP ${error.status}`;
  for (const field of problem.errors || []) {
    text += `\n${(field.loc || []).join(".")}: ${field.msg}`;
  }
  if (problem.retry_after) text += `\nTry again in ${Math.ceil(problem.retry_after)} s.`;
  return text;
}

/**
 * An error a step or run recorded (a string or `{class, message}`), as one line.
 * @param {any} error
 * @returns {string}
 */
export function errorMessage(error) {
  if (!error) return "";
  if (typeof error === "string") return error;
  return error.message || error.class || JSON.stringify(error);
}

/**
 * Shows a message at the top of `container`, replacing the notice shown there before.
 * Errors are announced at once (`role=alert`), others politely. The notice can take focus
 * (`tabindex=-1`): after an action that redraws the control it came from, focus goes there.
 * @param {HTMLElement} container
 * @param {string} text
 * @param {"error"|"info"|"success"} [kind]
 * @returns {HTMLElement}
 */
export function notice(container, text, kind = "info") {
  for (const old of container.querySelectorAll(":scope > .notice")) old.remove();
  const element = h(
    "div",
    { class: `notice notice-${kind}`, role: kind === "error" ? "alert" : "status", tabindex: "-1" },
    text,
  );
  container.prepend(element);
  return element;
}

/**
 * Asks for a confirmation in a modal `<dialog data-testid="confirm">`.
 * @param {string} title
 * @param {string} text
 * @param {string} confirmLabel
 * @returns {Promise<boolean>} true when confirmed; Escape or Cancel give false
 */
export function confirmDialog(title, text, confirmLabel) {
  const dialog = modal(title, [h("p", null, text)], [
    h("button", { type: "button", value: "cancel", class: "button" }, "Cancel"),
    h("button", { type: "button", value: "confirm", class: "button primary" }, confirmLabel),
  ]);
  dialog.setAttribute("data-testid", "confirm");
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(dialog.returnValue === "confirm");
    });
    dialog.showModal();
  });
}

/**
 * A modal dialog (not yet shown) whose buttons close it with their `value` as its
 * `returnValue`; a button with `data-keep-open` only fires its own listeners.
 * @param {string} title
 * @param {Node[]} body
 * @param {HTMLButtonElement[]} buttons
 * @returns {HTMLDialogElement}
 */
export function modal(title, body, buttons) {
  const heading = h("h2", { id: uniqueId("dialog-title") }, title);
  const dialog = h(
    "dialog",
    { class: "dialog", "aria-labelledby": heading.id },
    heading,
    ...body,
    h("div", { class: "actions" }, ...buttons),
  );
  for (const button of buttons) {
    if (!button.hasAttribute("data-keep-open")) {
      button.addEventListener("click", () => dialog.close(button.value));
    }
  }
  dialog.addEventListener("cancel", () => {
    dialog.returnValue = "cancel";
  });
  document.body.append(dialog);
  return dialog;
}

let counter = 0;

/**
 * An id no other element of the page has, for `for`/`aria-*` references.
 * @param {string} prefix
 * @returns {string}
 */
export function uniqueId(prefix) {
  counter += 1;
  return `${prefix}-${counter}`;
}

/**
 * A labelled form control: `<div class="field"><label for>…</label>control</div>`.
 * @param {string} label
 * @param {HTMLElement} control gets an id when it has none
 * @param {string} [help]
 * @returns {HTMLDivElement}
 */
export function field(label, control, help) {
  if (!control.id) control.id = uniqueId("field");
  const hint = help ? h("p", { class: "help", id: `${control.id}-help` }, help) : null;
  if (hint) control.setAttribute("aria-describedby", hint.id);
  return h("div", { class: "field" }, h("label", { for: control.id }, label), control, hint);
}

/**
 * A text whose Markdown code spans (`like this`) become `<code>` elements; nothing else of
 * Markdown is read. Text stays text: the parts become text nodes, never markup.
 * @param {string} text
 * @returns {(string|HTMLElement)[]} children for `h`
 */
export function withCodeSpans(text) {
  const parts = String(text).split("`");
  // An odd number of backticks leaves the last one unpaired: it is shown as written.
  const unpaired = parts.length % 2 === 0 ? parts.pop() : null;
  const children = parts.map((part, index) => (index % 2 ? h("code", null, part) : part));
  if (unpaired !== null) children.push(`\`${unpaired}`);
  return children.filter((child) => child !== "");
}

/**
 * Says that there is nothing to show.
 * @param {string} text
 * @returns {HTMLParagraphElement}
 */
export function emptyState(text) {
  return h("p", { class: "empty" }, text);
}

/**
 * Wraps a table so that it scrolls inside its box, never the page; the box is focusable so
 * keyboard users can scroll it too.
 * @param {HTMLTableElement} table
 * @returns {HTMLDivElement}
 */
export function tableScroll(table) {
  const name =
    table.getAttribute("aria-label") || table.querySelector("caption")?.textContent || "Table";
  return h("div", { class: "table-scroll", tabindex: "0", role: "region", "aria-label": name }, table);
}

/**
 * A table from column headings and rows of cells.
 * @param {string[]} headings
 * @param {HTMLTableRowElement[]} rows
 * @param {Object<string, any>} [attrs]
 * @param {{numeric?: number[]}} [options] `numeric`: the indexes of the columns whose
 *   headings align with their figures (class `number`)
 * @returns {HTMLTableElement}
 */
export function table(headings, rows, attrs, { numeric = [] } = {}) {
  const heading = (text, index) =>
    h("th", { scope: "col", class: numeric.includes(index) ? "number" : null }, text);
  return h("table", attrs, h("thead", null, h("tr", null, headings.map(heading))), h("tbody", null, rows));
}

/**
 * Calls `fn` once for a burst of calls: `ms` after the first call of the burst, and never
 * sooner than `gap` ms after its previous call (live pages re-read at most so often: the API
 * rate-limits). Calls while one is pending join it, with their latest arguments, so a
 * steady stream of calls still gets one every `gap` ms instead of none until it pauses.
 * @param {Function} fn
 * @param {number} ms
 * @param {{gap?: number}} [options]
 * @returns {Function & {cancel: Function}}
 */
export function debounce(fn, ms, { gap = 0 } = {}) {
  let timer = null;
  let last = 0;
  let latest = [];
  const call = (...args) => {
    latest = args;
    if (timer !== null) return;
    const wait = Math.max(ms, last + gap - Date.now());
    timer = setTimeout(() => {
      timer = null;
      last = Date.now();
      fn(...latest);
    }, wait);
  };
  call.cancel = () => {
    clearTimeout(timer);
    timer = null;
  };
  return call;
}

/**
 * Whether an error only says that the work was aborted (the user left the page).
 * @param {any} error
 * @returns {boolean}
 */
export function isAbort(error) {
  return Boolean(error) && error.name === "AbortError";
}
