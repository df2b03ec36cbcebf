// Who is signed in. The tokens live in this module's variables only — never in storage, a
// cookie or a URL — so a reload asks to sign in again (docs/ui.md).

import { abortStreams, api, useCredentials } from "./api.js";

let tokens = null; // {access, refresh}
let refreshing = null; // the one refresh under way: refresh tokens are single-use
const endListeners = new Set();
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
 * Signs out: revokes the session on the server (which ends its streams) and forgets the
 * tokens; open streams are aborted here at once.
 * @returns {Promise<void>}
 */
export async function signOut() {
  const access = tokens && tokens.access;
  abortStreams();
  if (access) {
    try {
      await api("POST", "/api/v1/auth/logout");
    } catch {
      // Revoked or expired already: either way the session is over.
    }
  }
  end("signed-out");
}

// A refused access token: the first caller refreshes, the others wait for that refresh.
async function renew(refused) {
  if (tokens === null) return false;
  if (tokens.access !== refused) return true; // refreshed meanwhile: try the new one
  if (refreshing === null) {
    const spent = tokens.refresh;
    refreshing = api("POST", "/api/v1/auth/refresh", {
      body: { refresh_token: spent },
      anonymous: true,
    })
      .then((answer) => {
        tokens = { access: answer.access_token, refresh: answer.refresh_token };
        return true;
      })
      .catch(() => {
        end("expired");
        return false;
      })
      .finally(() => {
        refreshing = null;
      });
  }
  return refreshing;
}

useCredentials({ token: () => (tokens ? tokens.access : null), renew });
