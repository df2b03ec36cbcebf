// Schedules: when each workflow starts next, pausing and resuming them.

import { api } from "./api.js";
import { emptyState, fmtTime, h, notice, problemText, statusBadge, table, tableScroll } from "./dom.js";
import { runLink, templateLink } from "./links.js";
import { collect } from "./lists.js";
import { can } from "./session.js";

const MAX_SCHEDULES = 1000;

function every(seconds) {
  const units = [[86400, "day"], [3600, "hour"], [60, "minute"], [1, "second"]];
  for (const [size, unit] of units) {
    if (seconds % size === 0) {
      const count = seconds / size;
      return `every ${count === 1 ? "" : `${count} `}${unit}${count === 1 ? "" : "s"}`;
    }
  }
  return `every ${seconds} s`;
}

function timing(schedule) {
  if (schedule.cron) {
    return [h("code", null, schedule.cron), h("span", { class: "muted" }, ` ${schedule.timezone}`)];
  }
  return every(schedule.interval_seconds);
}

function nextFires(schedule) {
  if (schedule.paused) return h("span", { class: "muted" }, "none while paused");
  if (schedule.next_fire_times.length === 0) return h("span", { class: "muted" }, "no more ticks");
  return h("ol", { class: "fire-times" },
    schedule.next_fire_times.map((moment) => h("li", null, h("time", { datetime: moment }, fmtTime(moment)))));
}

function lastFire(schedule) {
  if (!schedule.last_fired_at) return h("span", { class: "muted" }, "never");
  const when = h("time", { datetime: schedule.last_fired_at }, fmtTime(schedule.last_fired_at));
  if (!schedule.last_run_id) return when;
  return [when, h("br"), "run ", runLink(schedule.last_run_id)];
}

/**
 * Draws the schedules list.
 * @param {HTMLElement} main
 * @param {{query: URLSearchParams}} _params
 * @param {AbortSignal} signal
 */
export async function render(main, _params, signal) {
  main.append(h("h1", null, "Schedules"));
  const writable = can("schedules:write");
  let schedules;
  try {
    ({ items: schedules } = await collect("/api/v1/schedules", { signal, max: MAX_SCHEDULES }));
  } catch (error) {
    if (!signal.aborted) notice(main, `Could not load the schedules: ${problemText(error)}`, "error");
    return;
  }
  if (schedules.length === 0) {
    main.append(emptyState("No schedules yet. Create one with POST /api/v1/schedules (see the API reference at /swagger-ui/)."));
    return;
  }

  function row(schedule) {
    const cells = [
      h("th", { scope: "row" }, schedule.name),
      h("td", null, templateLink(schedule.workflow_name),
        schedule.workflow_version ? h("span", { class: "muted" }, ` v${schedule.workflow_version}`) : null),
      h("td", null, timing(schedule)),
      h("td", null, statusBadge(schedule.paused ? "paused" : "active")),
      h("td", null, nextFires(schedule)),
      h("td", null, lastFire(schedule)),
    ];
    if (writable) {
      const action = schedule.paused ? "resume" : "pause";
      const button = h("button", {
        type: "button", class: "button", "data-action": action,
        "aria-label": `${schedule.paused ? "Resume" : "Pause"} ${schedule.name}`,
      }, schedule.paused ? "Resume" : "Pause");
      button.addEventListener("click", () => toggle(schedule, button));
      cells.push(h("td", null, button));
    }
    return h("tr", { "data-schedule-id": schedule.id, "data-paused": String(schedule.paused) }, cells);
  }

  async function toggle(schedule, button) {
    button.disabled = true;
    try {
      const changed = await api("PATCH", `/api/v1/schedules/${schedule.id}`,
        { body: { paused: !schedule.paused }, signal });
      const fresh = row(changed);
      tbody.querySelector(`tr[data-schedule-id="${CSS.escape(schedule.id)}"]`)?.replaceWith(fresh);
      fresh.querySelector("button[data-action]")?.focus();
      notice(main, `${changed.name} ${changed.paused ? "paused" : "resumed"}.`, "success");
    } catch (error) {
      button.disabled = false;
      if (!signal.aborted) notice(main, `Could not change ${schedule.name}: ${problemText(error)}`, "error");
    }
  }

  const headings = ["Name", "Workflow", "When", "State", "Next fire times", "Last fired"];
  if (writable) headings.push("Actions");
  const list = table(headings, schedules.map(row), { "data-testid": "schedules-table", "aria-label": "Schedules" });
  const tbody = list.querySelector("tbody");
  main.append(tableScroll(list));
}
