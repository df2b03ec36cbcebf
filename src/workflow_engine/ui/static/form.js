// Forms generated from a JSON Schema (the input schema of a workflow template).
//
// Each property becomes one labelled control named by its path (`a.b` inside nested objects);
// what a control cannot express (arrays of objects, unions, free-form objects) is edited as
// JSON in a textarea. The value is checked against the schema in the browser (schema-check.js)
// before it is sent, and the API's own 422 field errors are shown on the same fields afterwards.

import { h, problemText } from "./dom.js";
import { plural, same, validate } from "./schema-check.js";

const SCALARS = new Set(["string", "number", "integer", "boolean"]);
const REQUIRED_MESSAGE = /^'(.+)' is a required property$/;

let formCount = 0;

/** The first non-null type a schema names, or undefined. */
function typeOf(schema) {
  const types = [].concat(schema.type ?? []).filter((t) => t !== "null");
  return types[0];
}

/** How a property is edited: one of the control kinds below. */
function kindOf(schema) {
  if (Array.isArray(schema.enum) && schema.enum.length > 0) return "enum";
  const type = typeOf(schema);
  if (type === "object" && schema.properties && !schema.oneOf && !schema.anyOf) return "object";
  if (type === "array") {
    const items = schema.items ?? {};
    return SCALARS.has(typeOf(items)) && !items.enum ? "lines" : "json";
  }
  if (SCALARS.has(type) && !schema.oneOf && !schema.anyOf) return type;
  return "json";
}

// ---------------------------------------------------------------------------------------------
// Controls: one per property, each knowing how to read and write its part of the value.

function hints(schema, kind) {
  const parts = [];
  if (kind === "lines") parts.push("One item per line.");
  if (kind === "json") parts.push(`JSON${typeOf(schema) ? ` (${typeOf(schema)})` : ""}.`);
  if (schema.minLength > 1) parts.push(`At least ${plural(schema.minLength, "character")}.`);
  if (schema.maxLength !== undefined) parts.push(`At most ${plural(schema.maxLength, "character")}.`);
  const low = schema.minimum ?? schema.exclusiveMinimum;
  const high = schema.maximum ?? schema.exclusiveMaximum;
  if (low !== undefined && high !== undefined) parts.push(`From ${low} to ${high}.`);
  else if (low !== undefined) parts.push(`At least ${low}.`);
  else if (high !== undefined) parts.push(`At most ${high}.`);
  if (schema.minItems > 0) parts.push(`At least ${plural(schema.minItems, "item")}.`);
  if (schema.format) parts.push(`Format: ${schema.format}.`);
  return parts.join(" ");
}

function parseScalar(type, text) {
  if (type === "number" || type === "integer") {
    const number = Number(text);
    if (text === "" || !Number.isFinite(number)) return { error: "Enter a number." };
    if (type === "integer" && !Number.isInteger(number)) return { error: "Enter a whole number." };
    return { value: number };
  }
  if (type === "boolean") {
    if (text === "true" || text === "false") return { value: text === "true" };
    return { error: "Enter true or false." };
  }
  return { value: text };
}

function readControl(field) {
  const { kind, control, schema } = field;
  const raw = control.value;
  switch (kind) {
    case "boolean":
      return { present: true, value: control.checked };
    case "enum":
      return raw === "" ? { present: false } : { present: true, value: schema.enum[Number(raw)] };
    case "string":
      return raw === "" ? { present: false } : { present: true, value: raw };
    case "number":
    case "integer": {
      if (raw.trim() === "") return { present: false };
      const parsed = parseScalar(kind, raw.trim());
      return parsed.error ? { present: false, error: parsed.error } : { present: true, value: parsed.value };
    }
    case "lines": {
      const lines = raw.split("\n").map((line) => line.trim()).filter((line) => line !== "");
      if (lines.length === 0) return field.required ? { present: true, value: [] } : { present: false };
      const type = typeOf(schema.items ?? {}) ?? "string";
      const value = [];
      for (const [index, line] of lines.entries()) {
        const parsed = parseScalar(type, line);
        if (parsed.error) return { present: false, error: `Line ${index + 1}: ${parsed.error}` };
        value.push(parsed.value);
      }
      return { present: true, value };
    }
    default: {
      if (raw.trim() === "") return { present: false };
      try {
        return { present: true, value: JSON.parse(raw) };
      } catch (error) {
        return { present: false, error: `Not valid JSON: ${error.message}` };
      }
    }
  }
}

function writeControl(field, value) {
  const { kind, control, schema } = field;
  switch (kind) {
    case "boolean":
      control.checked = value === true;
      break;
    case "enum": {
      const index = schema.enum.findIndex((option) => same(option, value));
      control.value = index < 0 ? "" : String(index);
      break;
    }
    case "lines":
      control.value = Array.isArray(value) ? value.map((item) => String(item)).join("\n") : "";
      break;
    case "json":
      control.value = value === undefined ? "" : JSON.stringify(value, null, 2);
      break;
    default:
      control.value = value === undefined || value === null ? "" : String(value);
  }
}

function makeControl(kind, schema, id, name, required, describedBy) {
  const common = { id, name, "aria-describedby": describedBy };
  if (required && kind !== "boolean") common.required = "";
  if (kind === "boolean") return h("input", { ...common, type: "checkbox" });
  if (kind === "enum") {
    const options = schema.enum.map((option, index) =>
      h("option", { value: String(index) }, typeof option === "string" ? option : JSON.stringify(option)),
    );
    const empty = h("option", { value: "" }, required ? "Choose…" : "(none)");
    return h("select", common, empty, ...options);
  }
  if (kind === "lines" || kind === "json") {
    return h("textarea", { ...common, rows: kind === "json" ? "6" : "4", spellcheck: "false" });
  }
  const attrs = { ...common, type: "text", autocomplete: "off" };
  if (kind === "number") attrs.inputmode = "decimal";
  if (kind === "integer") attrs.inputmode = "numeric";
  if (schema.format === "email") attrs.type = "email";
  if (schema.maxLength !== undefined) attrs.maxlength = String(schema.maxLength);
  return h("input", attrs);
}

/**
 * Builds the nodes of an object schema: fields for scalar properties, fieldsets for nested
 * objects. Every field is also appended to `fields` in document order.
 */
function buildNodes(schema, prefix, fields, uid) {
  const required = new Set(schema.required ?? []);
  return Object.entries(schema.properties ?? {}).map(([key, propertySchema]) => {
    const sub = propertySchema && typeof propertySchema === "object" ? propertySchema : {};
    const name = prefix ? `${prefix}.${key}` : key;
    const kind = kindOf(sub);
    const isRequired = required.has(key);
    const label = sub.title ?? key;
    if (kind === "object") {
      const node = { key, name, kind, schema: sub, required: isRequired, label };
      const legend = h("legend", {}, label, isRequired ? h("span", { class: "required-mark", "aria-hidden": "true" }, " *") : "");
      const description = sub.description ? h("p", { class: "help" }, sub.description) : "";
      node.children = buildNodes(sub, name, fields, uid);
      node.element = h("fieldset", { class: "field-group", "data-field": name }, legend, description,
        ...node.children.map((child) => child.element));
      return node;
    }
    const id = `${uid}-${name.replaceAll(".", "-")}`;
    const helpText = [sub.description, hints(sub, kind)].filter(Boolean).join(" ");
    const helpId = `${id}-help`;
    const errorId = `${id}-error`;
    const describedBy = helpText ? `${helpId} ${errorId}` : errorId;
    const control = makeControl(kind, sub, id, name, isRequired, describedBy);
    const error = h("p", { class: "field-error", id: errorId, "data-field-error": name });
    const mark = isRequired
      ? [h("span", { class: "required-mark", "aria-hidden": "true" }, " *"), h("span", { class: "visually-hidden" }, " (required)")]
      : "";
    const labelEl = h("label", { for: id }, label, mark);
    const help = helpText ? h("p", { class: "help", id: helpId }, helpText) : "";
    const element = kind === "boolean"
      ? h("div", { class: "field field-checkbox", "data-field": name }, h("div", { class: "checkbox-row" }, control, labelEl), help, error)
      : h("div", { class: "field", "data-field": name }, labelEl, control, help, error);
    const field = { key, name, kind, schema: sub, required: isRequired, label, control, error, element };
    fields.push(field);
    return field;
  });
}

function collect(nodes, problems) {
  const value = {};
  for (const node of nodes) {
    if (node.children) {
      const nested = collect(node.children, problems);
      if (node.required || Object.keys(nested).length > 0) value[node.key] = nested;
      continue;
    }
    const read = readControl(node);
    if (read.error) problems.push({ field: node, message: read.error });
    if (read.present) value[node.key] = read.value;
  }
  return value;
}

function fill(nodes, value) {
  const source = value && typeof value === "object" && !Array.isArray(value) ? value : {};
  for (const node of nodes) {
    const own = source[node.key] !== undefined ? source[node.key] : node.schema.default;
    if (node.children) fill(node.children, own);
    else writeControl(node, own);
  }
}

/** The deepest field whose path starts the error's path, and the rest of the path. */
function fieldFor(fields, path) {
  let best = null;
  for (const field of fields) {
    const parts = field.name.split(".");
    if (parts.length <= path.length && parts.every((part, i) => part === String(path[i]))) {
      if (!best || parts.length > best.parts.length) best = { field, parts };
    }
  }
  if (!best) return { field: null, rest: path };
  return { field: best.field, rest: path.slice(best.parts.length) };
}

function pathText(path) {
  return path.map((part, i) => (typeof part === "number" ? `[${part}]` : `${i ? "." : ""}${part}`)).join("");
}

/**
 * A form for values of a JSON Schema of type object. Controls are named by property path,
 * errors go to `[data-field-error=<name>]` with `aria-invalid` on the control, and an error
 * summary (`role=alert`) lists them; the first invalid control takes focus.
 * @param {object} schema the JSON Schema (type object with properties)
 * @param {object|null} initialValue prefill; each property missing from it takes its default
 * @param {{onSubmit: (value: object) => Promise<void>, submitLabel?: string, testid?: string,
 *          errorPrefix?: Array<string>}} options `onSubmit` may throw an `ApiError`: its
 *   field errors whose `loc` starts with `errorPrefix` (default `["body", "data"]`) are shown
 *   on the fields they name.
 * @returns {HTMLFormElement}
 */
export function schemaForm(schema, initialValue, { onSubmit, submitLabel = "Submit", testid, errorPrefix = ["body", "data"] }) {
  formCount += 1;
  const uid = `sf${formCount}`;
  const fields = [];
  const rootSchema = schema && typeof schema === "object" ? schema : { type: "object" };
  const nodes = buildNodes(rootSchema, "", fields, uid);
  const hasProperties = nodes.length > 0;

  const summary = h("div", { class: "form-summary", role: "alert", tabindex: "-1", hidden: "" });
  const fieldsBox = h("div", { class: "form-fields" }, ...nodes.map((node) => node.element));

  const jsonId = `${uid}-json`;
  const jsonField = { name: "", label: "Input (JSON)", kind: "json" };
  jsonField.control = h("textarea", {
    id: jsonId, name: "input-json", rows: "12", spellcheck: "false",
    "aria-describedby": `${jsonId}-help ${jsonId}-error`,
  });
  jsonField.error = h("p", { class: "field-error", id: `${jsonId}-error`, "data-field-error": "input-json" });
  const jsonBox = h("div", { class: "field form-json", hidden: "" },
    h("label", { for: jsonId }, "Input (JSON)"),
    jsonField.control,
    h("p", { class: "help", id: `${jsonId}-help` }, "The whole input as a JSON object. Ctrl+Enter starts the run."),
    jsonField.error);

  let jsonMode = !hasProperties;
  const submit = h("button", { type: "submit", class: "button primary" }, submitLabel);
  const toggle = h("button", { type: "button", class: "button", "aria-pressed": String(jsonMode) }, "Edit as JSON");
  const reset = h("button", { type: "button", class: "button" }, initialValue ? "Reset to example" : "Reset");
  const actions = h("div", { class: "form-actions" }, submit, hasProperties ? toggle : "", reset);
  const form = h("form", { class: "schema-form", novalidate: "", ...(testid ? { "data-testid": testid } : {}) },
    summary, fieldsBox, jsonBox, actions);

  function clearErrors() {
    summary.hidden = true;
    summary.replaceChildren();
    for (const field of [...fields, jsonField]) {
      field.error.textContent = "";
      field.control.removeAttribute("aria-invalid");
    }
  }

  function showErrors(problems, lead) {
    const byField = new Map();
    const general = [];
    for (const problem of problems) {
      if (!problem.field) {
        general.push(problem.message);
        continue;
      }
      const messages = byField.get(problem.field) ?? [];
      messages.push(problem.message);
      byField.set(problem.field, messages);
    }
    const items = [];
    const order = jsonMode ? [jsonField] : fields;
    for (const field of order.filter((candidate) => byField.has(candidate))) {
      const messages = byField.get(field);
      field.error.textContent = messages.join(" ");
      field.control.setAttribute("aria-invalid", "true");
      items.push(h("li", {}, `${field.label}: ${messages.join(" ")}`));
    }
    for (const message of general) items.push(h("li", {}, message));
    const count = problems.length;
    summary.replaceChildren(
      h("p", {}, lead ?? `The input has ${plural(count, "problem")}; nothing was sent.`),
      items.length ? h("ul", {}, ...items) : "",
    );
    summary.hidden = false;
    const first = order.find((field) => byField.has(field));
    (first ? first.control : summary).focus?.();
    if (!first) summary.scrollIntoView?.({ block: "nearest" });
  }

  /** Places schema errors (paths into the value) on fields, or on the JSON editor. */
  function placeErrors(errors) {
    return errors.map(({ path, message }) => {
      if (jsonMode) {
        const where = pathText(path);
        return { field: jsonField, message: where ? `${where}: ${message}` : message };
      }
      const { field, rest } = fieldFor(fields, path);
      if (!field) {
        const where = pathText(path);
        return { field: null, message: where ? `${where}: ${message}` : message };
      }
      const where = pathText(rest);
      return { field, message: where ? `${where.replace(/^\./, "")}: ${message}` : message };
    });
  }

  function currentValue(problems) {
    if (!jsonMode) return collect(nodes, problems);
    const text = jsonField.control.value.trim();
    if (text === "") return {};
    try {
      return JSON.parse(text);
    } catch (error) {
      problems.push({ field: jsonField, message: `Not valid JSON: ${error.message}` });
      return undefined;
    }
  }

  function setJsonMode(on) {
    clearErrors();
    if (on) {
      jsonField.control.value = JSON.stringify(collect(nodes, []), null, 2);
    } else {
      const problems = [];
      const value = currentValue(problems);
      if (problems.length) {
        showErrors(problems, "Fix the JSON before switching back to the form.");
        return;
      }
      fill(nodes, value);
    }
    jsonMode = on;
    fieldsBox.hidden = on;
    jsonBox.hidden = !on;
    toggle.setAttribute("aria-pressed", String(on));
    toggle.textContent = on ? "Edit as form" : "Edit as JSON";
    (on ? jsonField.control : fields[0]?.control)?.focus();
  }

  function serverProblems(error) {
    const problems = [];
    for (const item of error?.problem?.errors ?? []) {
      const loc = Array.isArray(item.loc) ? item.loc : [];
      if (!errorPrefix.every((part, i) => loc[i] === part)) {
        problems.push({ field: null, message: `${loc.join(".")}: ${item.msg}` });
        continue;
      }
      const path = loc.slice(errorPrefix.length);
      const missing = REQUIRED_MESSAGE.exec(item.msg ?? "");
      if (missing) path.push(missing[1]);
      problems.push(...placeErrors([{ path, message: missing ? "Required." : item.msg }]));
    }
    return problems;
  }

  async function handleSubmit(event) {
    event.preventDefault();
    if (submit.disabled) return;
    clearErrors();
    const problems = [];
    const value = currentValue(problems);
    if (value !== undefined) {
      // A control whose text did not parse already has its error; the schema would only add
      // "Required." for the value it could not give.
      const unreadable = new Set(problems.map((problem) => problem.field));
      problems.push(...placeErrors(validate(rootSchema, value)).filter((problem) => !unreadable.has(problem.field)));
    }
    if (problems.length) {
      showErrors(problems);
      return;
    }
    submit.disabled = true;
    form.setAttribute("aria-busy", "true");
    try {
      await onSubmit(value);
    } catch (error) {
      const problems = serverProblems(error);
      const problem = error?.problem;
      const reason = problem ? [problem.title, problem.detail].filter(Boolean).join(": ") : problemText(error);
      showErrors(problems, `The server refused the input: ${reason}`);
    } finally {
      submit.disabled = false;
      form.removeAttribute("aria-busy");
    }
  }

  form.addEventListener("submit", handleSubmit);
  toggle.addEventListener("click", () => setJsonMode(!jsonMode));
  reset.addEventListener("click", () => {
    clearErrors();
    fill(nodes, initialValue);
    if (jsonMode) jsonField.control.value = JSON.stringify(collect(nodes, []), null, 2);
  });
  jsonField.control.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      form.requestSubmit(submit);
    }
  });

  fill(nodes, initialValue);
  if (jsonMode) {
    fieldsBox.hidden = true;
    jsonBox.hidden = false;
    jsonField.control.value = JSON.stringify(initialValue ?? {}, null, 2);
  }
  return form;
}
