// A run's log, followed live: entries as the run writes them and its steps' streamed LLM
// text, with a Follow checkbox to pause and resume reading.

import { sse } from "./api.js";
import { field, fmtTime, h, isAbort, problemText } from "./dom.js";

/** The log section of the run page: `[data-testid=run-logs]` and its Follow checkbox. */
export class LogFollower {
  /**
   * @param {string} base the run's API path, `/api/v1/workflows/{id}`
   * @param {AbortSignal} signal the page's: ends any reading
   */
  constructor(base, signal) {
    this.base = base;
    this.signal = signal;
    this.stream = null; // the AbortController of the reading under way
    this.seen = new Set(); // log ids shown: a resumed stream may repeat one
    this.lastId = undefined;
    this.deltas = new Map(); // `${step}\u0000${attempt}` → the line's message span
    this.list = h("ul", { class: "log-list", "data-testid": "run-logs", "aria-label": "Log", "aria-live": "off" });
    this.follow = h("input", { type: "checkbox", name: "follow", checked: true });
    this.follow.addEventListener("change", () => (this.follow.checked ? this.start() : this.stop()));
    this.state = h("span", { class: "muted", role: "status" });
    const toggle = field("Follow", this.follow);
    toggle.classList.add("inline");
    this.element = h(
      "section",
      { "aria-labelledby": "logs-title" },
      h("div", { class: "section-header" }, h("h2", { id: "logs-title" }, "Log"), toggle, this.state),
      this.list,
    );
  }

  /** Whether it is reading now. */
  get reading() {
    return this.stream !== null;
  }

  /** Whether the user wants it to read (the Follow checkbox). */
  get wanted() {
    return this.follow.checked;
  }

  /** Reads the log from after the last entry shown, until the run ends or `stop()`. */
  start() {
    this.stop();
    const controller = new AbortController();
    this.signal.addEventListener("abort", () => controller.abort(), { once: true, signal: controller.signal });
    this.stream = controller;
    this.read(controller);
  }

  stop() {
    if (this.stream) this.stream.abort();
    this.stream = null;
    this.state.textContent = this.follow.checked ? "" : "Paused";
  }

  async read(controller) {
    this.state.textContent = "Following";
    try {
      for await (const message of sse(`${this.base}/logs`, {
        query: { follow: true, after: this.lastId },
        signal: controller.signal,
      })) {
        const atEnd = this.list.scrollTop + this.list.clientHeight >= this.list.scrollHeight - 8;
        if (message.event === "end") {
          this.state.textContent = `The run ended (${message.data.status}): the log is complete.`;
          break;
        }
        if (message.event === "delta") this.addDelta(message.data);
        else if (message.id && message.data && typeof message.data === "object") this.addEntry(message.data);
        if (atEnd) this.list.scrollTop = this.list.scrollHeight;
      }
    } catch (error) {
      if (!isAbort(error)) this.state.textContent = `The log stopped: ${problemText(error)}`;
    } finally {
      if (this.stream === controller) this.stream = null;
    }
  }

  addEntry(entry) {
    if (this.seen.has(entry.id)) return;
    this.seen.add(entry.id);
    this.lastId = entry.id;
    this.list.append(
      h(
        "li",
        { "data-log-id": entry.id, "data-level": entry.level },
        h("span", { class: "time" }, fmtTime(entry.time)),
        h("span", { class: "level" }, entry.level),
        entry.step ? h("span", { class: "step" }, entry.step) : "",
        h("span", { class: "message" }, entry.message),
      ),
    );
  }

  // Streamed LLM text: one growing line per step attempt.
  addDelta(delta) {
    const key = `${delta.step_id}\u0000${delta.attempt}`;
    let message = this.deltas.get(key);
    if (!message) {
      message = h("span", { class: "message" });
      this.deltas.set(key, message);
      this.list.append(
        h(
          "li",
          { class: "delta", "data-step": delta.step_id, "data-attempt": delta.attempt },
          h("span", { class: "level" }, "stream"),
          h("span", { class: "step" }, delta.step_id),
          message,
        ),
      );
    }
    message.append(delta.text);
  }
}
