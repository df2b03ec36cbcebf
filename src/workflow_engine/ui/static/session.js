// Who is signed in. The tokens live in this module's variables only — never in storage, a
// cookie or a URL — so a reload asks to sign in again (docs/ui.md).

import { abortStreams, api, useCredentials } from "./api.js";

let tokens = null; // {access, refresh}
let refreshing = null; // the one refresh under way: refresh tokens are single-use
const endListeners = new Set();
const roleListeners = new Set();
let roleMatrix = null;

/** The signed-in caller (`GET /api/v1/auth/me`), null when signed out. */
export const session = { user: null };

/**
 * The shell's `ui-config`: the server version and each role's permissions.
 * @returns {{version: string, roles: Object<string, string[]>}}
 */
export function uiConfig() {
  if (roleMatrix === null) {
    const element = document.getElementById("ui-config");
    roleMatrix = element ? JSON.parse(element.textContent) : { version: "", roles: {} };
  }
  return roleMatrix;
}

/**
 * Whether the signed-in role has a permission (the matrix the API enforces).
 * @param {string} permission e.g. `workflows:run`
 * @returns {boolean}
 */
export function can(permission) {
  const role = session.user && session.user.role;
  return Boolean(role) && (uiConfig().roles[role] || []).includes(permission);
}

/**
 * Calls `fn` when the session ends: signed out, or a refresh was refused.
 * @param {(reason: string) => void} fn
 * @returns {() => void} removes the listener
 */
export function onSessionEnd(fn) {
  endListeners.add(fn);
  return () => endListeners.delete(fn);
}

/**
 * Calls `fn` when a refresh shows that the signed-in user's role changed (an admin changed
 * it): what the layout offers depends on the role.
 * @param {(user: object) => void} fn
 * @returns {() => void} removes the listener
 */
export function onRoleChange(fn) {
  roleListeners.add(fn);
  return () => roleListeners.delete(fn);
}

// Forgets the session here: no call or stream sends its token any more, open streams end,
// and the listeners draw the sign-in form (which stops the page).
function end(reason) {
  const wasSignedIn = tokens !== null;
  tokens = null;
  session.user = null;
  abortStreams();
  if (wasSignedIn) for (const fn of endListeners) fn(reason);
}

async function adopt(answer) {
  tokens = { access: answer.access_token, refresh: answer.refresh_token };
  try {
    session.user = await api("GET", "/api/v1/auth/me");
  } catch (error) {
    tokens = null;
    throw error;
  }
}

/**
 * Signs in with the login API.
 * @param {string} email
 * @param {string} password
 * @returns {Promise<void>}
 * @throws {import("./api.js").ApiError} e.g. 401 for a wrong email or password
 */
export async function signIn(email, password) {
  const answer = await api("POST", "/api/v1/auth/login", {
    body: { email, password },
    anonymous: true,
  });
  await adopt(answer);
}

/**
 * Signs out: ends the session here first (streams aborted, the page stopped, no call sends
 * the token any more), then revokes it on the server, which ends its streams too.
 * @returns {Promise<void>}
 */
export async function signOut() {
  const held = tokens;
  end("signed-out");
  if (held) await revoke(held);
}

// Revokes a session on the server. Its access token may have run out meanwhile: the refresh
// token then buys one that can say so. Failures are left be: the server ends the session
// when the refresh token expires.
async function revoke({ access, refresh }) {
  try {
    await api("POST", "/api/v1/auth/logout", { token: access });
    return;
  } catch (error) {
    if (error.status !== 401) return;
  }
  try {
    const renewed = await api("POST", "/api/v1/auth/refresh", {
      body: { refresh_token: refresh },
      anonymous: true,
    });
    await api("POST", "/api/v1/auth/logout", { token: renewed.access_token });
  } catch {
    // Refused (revoked or expired already) or unreachable: nothing more to do here.
  }
}

const REFRESH_RETRY_DELAYS = [1000, 2000, 4000, 8000]; // ms, after a 5xx or network failure

// Whether the server refused the refresh token itself (spent, revoked, expired): only then is
// the session over. Anything else (a 5xx, a 429 waited out too long, the network) may pass.
function refusedForGood(error) {
  return error.status === 400 || error.status === 401;
}

function pause(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// Exchanges the refresh token `spent` for a new pair, trying again with growing pauses while
// the failure may pass. Resolves to the answer, or null when the session ended meanwhile
// (signed out, or another refresh replaced `spent`).
async function exchange(spent) {
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await api("POST", "/api/v1/auth/refresh", {
        body: { refresh_token: spent },
        anonymous: true,
      });
    } catch (error) {
      if (refusedForGood(error) || attempt >= REFRESH_RETRY_DELAYS.length) throw error;
    }
    await pause(REFRESH_RETRY_DELAYS[attempt]);
    if (tokens === null || tokens.refresh !== spent) return null;
  }
}

// Re-reads the caller after a refresh: a new token carries the user's current role, which an
// admin may have changed (that is what outdated the old token).
async function rereadUser() {
  const before = session.user;
  let user;
  try {
    user = await api("GET", "/api/v1/auth/me");
  } catch {
    return; // the next refresh reads it again
  }
  if (tokens === null || session.user !== before) return;
  session.user = user;
  if (!before || before.role !== user.role) for (const fn of roleListeners) fn(user);
}

// A refused access token: the first caller refreshes, the others wait for that refresh.
async function renew(refused) {
  if (tokens === null) return false;
  if (tokens.access !== refused) return true; // refreshed meanwhile: try the new one
  if (refreshing === null) {
    const spent = tokens.refresh;
    refreshing = exchange(spent)
      .then((answer) => {
        // Signed out (or replaced) while the refresh was under way: the new pair is not
        // ours to keep; revoke it rather than leave a live session behind.
        if (answer === null || tokens === null || tokens.refresh !== spent) {
          if (answer) revoke({ access: answer.access_token, refresh: answer.refresh_token });
          return false;
        }
        tokens = { access: answer.access_token, refresh: answer.refresh_token };
        rereadUser();
        return true;
      })
      .catch((error) => {
        if (!refusedForGood(error)) throw error; // the session stays: a later call retries
        if (tokens !== null && tokens.refresh === spent) end("expired");
        return false;
      })
      .finally(() => {
        refreshing = null;
      });
  }
  return refreshing;
}

useCredentials({ token: () => (tokens ? tokens.access : null), renew });
