// The console's only way to talk to Cairn: same-origin fetches to the public API, with the
// session's credential and namespace as headers. The token lives in sessionStorage only, so
// it dies with the tab and never lands in a URL, a log line or localStorage.

import { parse, stringify } from "./json.js";

const TOKEN_KEY = "cairn.token";
const NS_KEY = "cairn.namespace";

/** An API refusal (or a network failure, with status 0 and code `network`). */
export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

/** Who the console is talking as. Filled by `login()`/`probeAnonymous()`, read everywhere. */
export const session = {
  token: sessionStorage.getItem(TOKEN_KEY),
  anonymous: false,
  // The bootstrap admin token may pick any namespace; others stay in their own.
  bootstrap: false,
  canManageTokens: false,
  // The namespace sent in X-Cairn-Namespace; null leaves the header out (the token's own).
  namespace: null,
  // What the header shows when `namespace` is null.
  namespaceLabel: "default",
};

export function signedIn() {
  return Boolean(session.token) || session.anonymous;
}

export function setNamespace(ns) {
  session.namespace = ns;
  session.namespaceLabel = ns;
  sessionStorage.setItem(NS_KEY, ns);
}

/** Encodes a key as one path segment: `a/b` becomes `a%2Fb`, as the API wants. */
export function keyPath(key) {
  return `/kv/items/${encodeURIComponent(key)}`;
}

/**
 * Calls the API and answers `{data, headers, status}` or throws an ApiError carrying the
 * API's error code. `token: null` sends no credential (the anonymous probe).
 */
export async function call(method, path, { body, signal, token = session.token, namespace, accept } = {}) {
  const headers = { Accept: accept || "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const ns = namespace === undefined ? session.namespace : namespace;
  if (ns) headers["X-Cairn-Namespace"] = ns;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : stringify(body),
      signal,
      cache: "no-store",
      credentials: "omit",
    });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, "network", `the node did not answer (${e.message})`);
  }
  const text = await resp.text();
  let parsed = null;
  try {
    // Lossless: a value's numbers keep every digit the node sent.
    parsed = text ? parse(text) : null;
  } catch {
    // Not JSON: a proxy's error page, say. Report the status with the first bytes.
  }
  if (!resp.ok) {
    const err = parsed && parsed.error;
    // The session's own token refused: revoked or expired. The app sends the user to login.
    if (resp.status === 401 && token && token === session.token) {
      window.dispatchEvent(new CustomEvent("cairn:unauthorized", { detail: err ? err.message : "" }));
    }
    throw new ApiError(resp.status, err ? err.code : `http_${resp.status}`, err ? err.message : text.slice(0, 200), err);
  }
  return { status: resp.status, data: parsed ? parsed.data ?? parsed : null, headers: resp.headers };
}

/** True when this node serves anonymous callers (an open loopback node). */
export async function probeAnonymous() {
  try {
    await call("GET", "/cluster/status", { token: null, namespace: null });
    return true;
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return false;
    throw e;
  }
}

/** Checks a token, learns what it may do, and keeps it for the tab's life. */
export async function login(token) {
  await call("GET", "/cluster/status", { token, namespace: null });
  Object.assign(session, { token, anonymous: false });
  sessionStorage.setItem(TOKEN_KEY, token);
  await learnPowers();
}

export function useAnonymous() {
  Object.assign(session, { token: null, anonymous: true });
  return learnPowers();
}

export function logout() {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(NS_KEY);
  Object.assign(session, {
    token: null, anonymous: false, bootstrap: false, canManageTokens: false,
    namespace: null, namespaceLabel: "default",
  });
}

// Two side-effect-free reads tell the caller's powers: only the bootstrap admin may scan a
// namespace other than its own, and only an `admin` caller may list tokens.
async function learnPowers() {
  // An anonymous caller is never the bootstrap admin: no need to ask (and be refused).
  session.bootstrap = Boolean(session.token) && await answers("GET", "/kv/items?limit=1", "cairn-console-probe");
  session.canManageTokens = await answers("GET", "/admin/tokens", null);
  if (session.bootstrap) {
    setNamespace(sessionStorage.getItem(NS_KEY) || "default");
  } else {
    session.namespace = null;
    session.namespaceLabel = session.token ? await ownNamespace() : "default";
  }
}

async function answers(method, path, namespace) {
  try {
    await call(method, path, { namespace });
    return true;
  } catch (e) {
    if (e instanceof ApiError && (e.status === 403 || e.status === 401)) return false;
    throw e;
  }
}

// A namespace token's namespace is known to the node only; an admin token can read it from
// the token list (its id is the middle part of `cairn_<id>_<secret>`).
async function ownNamespace() {
  const id = /^cairn_([0-9a-f]+)_/.exec(session.token)?.[1];
  if (!id || !session.canManageTokens) return "token's namespace";
  const { data } = await call("GET", "/admin/tokens", { namespace: null });
  return data.tokens.find((t) => t.id === id)?.namespace || "token's namespace";
}

/** Human text for any error the console shows: always the API's code first. */
export function describe(err) {
  if (err instanceof ApiError) {
    const status = err.status ? ` (HTTP ${err.status})` : "";
    return `${err.code}${status}: ${err.message}`;
  }
  return String(err && err.message ? err.message : err);
}
