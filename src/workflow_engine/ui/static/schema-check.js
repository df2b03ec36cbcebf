// JSON Schema checks in the browser: the keywords workflow templates use, with messages
// meant for people. The server checks the whole schema again; this only spares a round trip
// and puts the messages on the fields that caused them.

const EMAIL = /^[^@\s]+@[^@\s]+\.[^@\s]+$/;
const DATE = /^\d{4}-\d{2}-\d{2}$/;
const DATE_TIME = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:\d{2})$/;

/**
 * Whether two JSON values are the same (as their JSON texts).
 * @param {any} a
 * @param {any} b
 * @returns {boolean}
 */
export function same(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * A count and a word, plural unless the count is 1: `3 items`.
 * @param {number} count
 * @param {string} word
 * @returns {string}
 */
export function plural(count, word) {
  return `${count} ${word}${count === 1 ? "" : "s"}`;
}

function typeMatches(type, value) {
  switch (type) {
    case "null":
      return value === null;
    case "boolean":
      return typeof value === "boolean";
    case "string":
      return typeof value === "string";
    case "number":
      return typeof value === "number" && Number.isFinite(value);
    case "integer":
      return Number.isInteger(value);
    case "array":
      return Array.isArray(value);
    case "object":
      return value !== null && typeof value === "object" && !Array.isArray(value);
    default:
      return true;
  }
}

function checkString(schema, value, add) {
  const length = [...value].length;
  if (schema.minLength !== undefined && length < schema.minLength) {
    add(schema.minLength === 1 ? "Must not be empty." : `At least ${plural(schema.minLength, "character")}.`);
  }
  if (schema.maxLength !== undefined && length > schema.maxLength) {
    add(`At most ${plural(schema.maxLength, "character")}.`);
  }
  if (schema.pattern !== undefined) {
    let pattern = null;
    try {
      pattern = new RegExp(schema.pattern, "u");
    } catch {
      // A pattern JavaScript cannot compile is left to the server to check.
    }
    if (pattern && !pattern.test(value)) add(`Must match the pattern ${schema.pattern}.`);
  }
  if (schema.format === "email" && !EMAIL.test(value)) add("Must be an email address.");
  if (schema.format === "date" && !DATE.test(value)) add("Must be a date, YYYY-MM-DD.");
  if (schema.format === "date-time" && !DATE_TIME.test(value)) {
    add("Must be a date and time with an offset, e.g. 2026-01-31T09:00:00Z.");
  }
  if (schema.format === "uri") {
    try {
      new URL(value);
    } catch {
      add("Must be an absolute URL.");
    }
  }
}

function checkNumber(schema, value, add) {
  if (schema.minimum !== undefined && value < schema.minimum) add(`At least ${schema.minimum}.`);
  if (schema.maximum !== undefined && value > schema.maximum) add(`At most ${schema.maximum}.`);
  if (schema.exclusiveMinimum !== undefined && value <= schema.exclusiveMinimum) {
    add(`More than ${schema.exclusiveMinimum}.`);
  }
  if (schema.exclusiveMaximum !== undefined && value >= schema.exclusiveMaximum) {
    add(`Less than ${schema.exclusiveMaximum}.`);
  }
  if (schema.multipleOf !== undefined && !Number.isInteger(value / schema.multipleOf)) {
    add(`A multiple of ${schema.multipleOf}.`);
  }
}

function checkArray(schema, value, path, errors, add) {
  if (schema.minItems !== undefined && value.length < schema.minItems) {
    add(`At least ${plural(schema.minItems, "item")}.`);
  }
  if (schema.maxItems !== undefined && value.length > schema.maxItems) {
    add(`At most ${plural(schema.maxItems, "item")}.`);
  }
  if (schema.uniqueItems && new Set(value.map((item) => JSON.stringify(item))).size < value.length) {
    add("Items must be unique.");
  }
  if (schema.items && typeof schema.items === "object") {
    value.forEach((item, index) => errors.push(...validate(schema.items, item, [...path, index])));
  }
}

function checkObject(schema, value, path, errors, add) {
  for (const key of schema.required ?? []) {
    if (!(key in value)) errors.push({ path: [...path, key], message: "Required." });
  }
  const properties = schema.properties ?? {};
  for (const [key, item] of Object.entries(value)) {
    if (key in properties) {
      errors.push(...validate(properties[key], item, [...path, key]));
    } else if (schema.additionalProperties === false) {
      add(`Unknown property ${key}.`);
    } else if (schema.additionalProperties && typeof schema.additionalProperties === "object") {
      errors.push(...validate(schema.additionalProperties, item, [...path, key]));
    }
  }
}

/**
 * Checks a value against a JSON Schema (the keywords workflow templates use: type, enum,
 * const, required, properties, additionalProperties, items, min/max length, items and
 * values, pattern, format email/date/date-time/uri). Keywords it does not know are left to
 * the server, which checks the whole schema again.
 * @param {object} schema
 * @param {*} value
 * @param {Array<string|number>} [path]
 * @returns {Array<{path: Array<string|number>, message: string}>}
 */
export function validate(schema, value, path = []) {
  const errors = [];
  if (!schema || typeof schema !== "object") return errors;
  const add = (message) => errors.push({ path, message });
  if (Array.isArray(schema.enum) && !schema.enum.some((option) => same(option, value))) {
    add(`Must be one of: ${schema.enum.map((option) => JSON.stringify(option)).join(", ")}.`);
    return errors;
  }
  if ("const" in schema && !same(schema.const, value)) {
    add(`Must be ${JSON.stringify(schema.const)}.`);
    return errors;
  }
  const types = [].concat(schema.type ?? []);
  if (types.length > 0 && !types.some((type) => typeMatches(type, value))) {
    add(`Must be ${types.map((type) => (type === "integer" ? "a whole number" : `a ${type}`)).join(" or ")}.`);
    return errors;
  }
  if (typeof value === "string") checkString(schema, value, add);
  else if (typeof value === "number") checkNumber(schema, value, add);
  else if (Array.isArray(value)) checkArray(schema, value, path, errors, add);
  else if (value !== null && typeof value === "object") checkObject(schema, value, path, errors, add);
  return errors;
}
