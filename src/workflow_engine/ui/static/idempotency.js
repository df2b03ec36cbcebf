// Idempotency keys for requests that create something (a run, a replay): one key per
// submission, sent again when the same submission is retried, so an answer lost on the way
// back never makes a second run.

// `crypto.randomUUID` exists only in secure contexts (HTTPS, localhost); a dashboard served
// over plain HTTP inside a network still gets a random version 4 UUID.
function randomUuid() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((byte) => byte.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * Keys for one form or dialog: `keyFor(body)` gives the key of that submission — the same
 * key while the body stays the same (a retry), a new one once it changes (the API answers a
 * key reused with another body with a 422).
 * @returns {{keyFor: (body: any) => string, headersFor: (body: any) => Object<string, string>}}
 */
export function submissionKeys() {
  let last = null; // {body, key}
  const keyFor = (body) => {
    const text = JSON.stringify(body);
    if (!last || last.body !== text) last = { body: text, key: randomUuid() };
    return last.key;
  };
  return { keyFor, headersFor: (body) => ({ "Idempotency-Key": keyFor(body) }) };
}
