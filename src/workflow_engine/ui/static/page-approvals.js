// The approvals inbox: every approval step waiting for a decision in the tenant, oldest first,
// with approve (perhaps with an edited proposal) and reject (with a reason). The decision
// dialog is shared with the run page.

import { api } from "./api.js";
import {
  emptyState,
  field,
  fmtTime,
  h,
  isAbort,
  jsonBlock,
  modal,
  notice,
  problemText,
  shortId,
  table,
  tableScroll,
} from "./dom.js";
import { runLink } from "./links.js";
import { collect } from "./lists.js";
import { liveReread, liveStream } from "./live.js";
import { can } from "./session.js";

// Events after which the inbox may have changed.
const CHANGES = /^(Approval|StepWaiting$|Workflow(Completed|Failed|Cancelled|CancelRequested)$)/;

// JSON text with object keys sorted: equal for values equal as JSON.
function canonical(value) {
  return JSON.stringify(value, (_key, item) =>
    item && typeof item === "object" && !Array.isArray(item)
      ? Object.fromEntries(Object.entries(item).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : item,
  );
}

// The proposal as edited, when it differs from the original as JSON (whitespace, layout and
// key order are not edits); undefined when unchanged. Throws a SyntaxError for non-JSON.
function editedProposal(text, original) {
  const value = JSON.parse(text);
  return canonical(value) === canonical(original ?? null) ? undefined : value;
}

/**
 * Asks for a decision on a waiting approval and sends it. Approving shows the proposal as
 * JSON to edit: sent as `data` only when changed, so an unedited approval keeps the proposal
 * as it was. Rejecting asks for a reason.
 * @param {{workflow_id: string, step: string, proposal: any, message?: string}} approval
 * @param {"approve"|"reject"} kind
 * @returns {Promise<object|null>} the decision, or null when the dialog was cancelled
 */
export function decide(approval, kind) {
  const approving = kind === "approve";
  const original = JSON.stringify(approval.proposal ?? null, null, 2);
  const data = h("textarea", { name: "data", rows: "8", spellcheck: "false" }, original);
  const comment = h("textarea", { name: "comment", rows: "3", required: !approving });
  const error = h("div", { class: "dialog-error" });
  const refuse = (text) => error.replaceChildren(h("p", { class: "notice notice-error", role: "alert" }, text));
  const confirm = h(
    "button",
    { type: "button", class: approving ? "button primary" : "button danger", "data-keep-open": true, value: "confirm" },
    approving ? "Approve" : "Reject",
  );
  const body = [
    approval.message ? h("p", null, approval.message) : null,
    h("p", { class: "muted" }, `Run ${shortId(approval.workflow_id)}, step ${approval.step}`),
    error,
    approving
      ? field(
          "Proposal (JSON)",
          data,
          "Edit it to approve a changed version; left as it is, the proposal is approved unchanged.",
        )
      : null,
    field(approving ? "Comment (optional)" : "Reason", comment),
  ].filter(Boolean);
  const dialog = modal(approving ? "Approve" : "Reject", body, [
    h("button", { type: "button", class: "button", value: "cancel" }, "Cancel"),
    confirm,
  ]);
  return new Promise((resolve) => {
    let decided = null;
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(decided);
    });
    confirm.addEventListener("click", async () => {
      const request = { step: approval.step };
      if (comment.value.trim()) request.comment = comment.value.trim();
      if (!approving && !request.comment) {
        refuse("Say why you reject it.");
        comment.setAttribute("aria-invalid", "true");
        comment.focus();
        return;
      }
      if (approving) {
        try {
          const edited = editedProposal(data.value, approval.proposal);
          if (edited !== undefined) request.data = edited;
        } catch (problem) {
          refuse(`The proposal is not valid JSON: ${problem.message}`);
          data.setAttribute("aria-invalid", "true");
          data.focus();
          return;
        }
      }
      confirm.disabled = true;
      try {
        decided = await api("POST", `/api/v1/workflows/${approval.workflow_id}/${kind}`, { body: request });
        dialog.close("confirm");
      } catch (problem) {
        refuse(problemText(problem));
        confirm.disabled = false;
      }
    });
    dialog.showModal();
  });
}

function approvalRow(approval, onDecided) {
  const actions = [];
  if (can("workflows:approve")) {
    for (const kind of ["approve", "reject"]) {
      actions.push(
        h(
          "button",
          {
            type: "button",
            class: kind === "approve" ? "button primary" : "button",
            "data-action": kind,
            onclick: async () => {
              if (await decide(approval, kind)) onDecided(kind === "approve" ? "Approved." : "Rejected.");
            },
          },
          kind === "approve" ? "Approve" : "Reject",
        ),
      );
    }
  }
  return h(
    "tr",
    { "data-run-id": approval.workflow_id, "data-step": approval.step },
    h("td", null, runLink(approval.workflow_id)),
    h("td", null, approval.workflow_name),
    h("td", null, approval.step),
    h("td", { class: "proposal" }, approval.message ? h("p", null, approval.message) : null, jsonBlock(approval.proposal)),
    h("td", { class: "nowrap" }, fmtTime(approval.requested_at)),
    h("td", { class: "nowrap" }, approval.expires_at ? fmtTime(approval.expires_at) : "never"),
    h("td", null, h("div", { class: "actions" }, actions)),
  );
}

/**
 * The approvals page.
 * @param {HTMLElement} main
 * @param {object} params
 * @param {AbortSignal} signal
 */
export async function render(main, params, signal) {
  const results = h("div");
  main.append(
    h("div", { class: "page-header" }, h("h1", null, "Approvals")),
    h("p", { class: "muted" }, "Approval steps waiting for a decision, oldest first."),
    results,
  );

  const load = async () => {
    try {
      const { items } = await collect("/api/v1/approvals", { signal });
      if (items.length === 0) {
        results.replaceChildren(emptyState("Nothing waits for approval."));
        return;
      }
      // The row and its buttons go: focus goes to the notice saying what was decided.
      const decided = (text) => {
        notice(main, text, "success").focus();
        load();
      };
      const headings = ["Run", "Workflow", "Step", "Proposal", "Requested", "Expires", "Actions"];
      const list = table(headings, items.map((item) => approvalRow(item, decided)), {
        "data-testid": "approvals-table",
        "aria-label": "Approvals",
      });
      results.replaceChildren(tableScroll(list));
    } catch (error) {
      if (!isAbort(error)) notice(main, problemText(error), "error");
    }
  };
  const refresh = liveReread(load, { gap: 3000, signal });
  const stream = liveStream("/api/v1/events/stream", {
    signal,
    reread: refresh,
    onMessage: (message) => CHANGES.test(message.event) && refresh(),
  });
  stream.done.catch((error) => {
    if (!isAbort(error)) notice(main, `Live updates stopped: ${problemText(error)}`, "info");
  });
  await stream.opened; // read once the stream is open: nothing in between is lost
  await load();
}
