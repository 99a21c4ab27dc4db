// One logical call, tried on the endpoints in turn under the retry rule, each try bounded by a
// timeout. The rule is etcd's: a call is tried again only when trying again cannot apply it twice.
//
// - A read, or an idempotent write, moves on after a connection error, a timeout, 502 or 503.
// - A write that is not idempotent moves on only when it provably never reached a server that
//   could apply it: the connection was refused, or the answer was 503 `no_leader`,
//   `too_many_connections`, `starting`, `not_caught_up` or 502 `leader_unreachable`, which Cairn sends only
//   when nothing was applied. Anything after the request left is `UnknownOutcome`.
// - 504 is never tried again; 4xx neither (the same request fails the same way).

import {
  CairnError,
  UnknownOutcome,
  Unavailable,
  errorFromAnswer,
} from "./errors.js";
import type { QueryValue } from "./types.js";

/** What trying a call again could do: nothing (`read`), nothing new (`idempotent`), or apply it twice (`unsafe`). */
export type Safety = "read" | "idempotent" | "unsafe";

export interface Call {
  method: string;
  /** Already percent-encoded, from the endpoint's base: `/kv/items/a%2Fb`. */
  path: string;
  query?: Record<string, QueryValue> | undefined;
  headers?: Record<string, string> | undefined;
  /** Already serialized. */
  body?: string | undefined;
  safety: Safety;
  signal?: AbortSignal | undefined;
  /** This call's per-try timeout in ms, when it must outlast the client's (a lock's wait). */
  timeout?: number | undefined;
}

export interface Answer {
  status: number;
  headers: Headers;
  body: unknown;
}

export interface TransportOptions {
  endpoints: string[];
  token?: string | undefined;
  namespace?: string | undefined;
  timeout: number;
  retry: { attempts: number; backoff: number; maxBackoff: number };
  /** Sees every answer, successes and refusals alike, before the retry rule judges it. */
  onAnswer?: (answer: Answer, call: Call) => void;
}

/** 15 s: longer than the server's 10 s write timeout, so a slow commit comes back as the server's 504, with its request id, rather than as a bare client timeout. */
export const DEFAULT_TIMEOUT_MS = 15_000;

// Codes a 503 or 502 carries only when the node applied nothing: it had no leader to propose
// to, refused the connection's request outright, or could not reach the leader before any HTTP.
const NOTHING_APPLIED = new Set(["no_leader", "too_many_connections", "starting", "not_caught_up", "leader_unreachable"]);

// Errors raised while connecting: the request's bytes never left this process. A refused
// connection is the common one (a stopped node); the others are a name that does not resolve
// or a route that does not exist.
const NEVER_LEFT = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ENETUNREACH",
  "EHOSTUNREACH",
  "EADDRNOTAVAIL",
  "UND_ERR_CONNECT_TIMEOUT",
]);

/** How a try ended without an answer. */
export type FailureKind = "never-left" | "broken" | "timeout";

export class Transport {
  readonly endpoints: readonly string[];
  private readonly options: TransportOptions;
  /** The endpoint calls start at; it moves on when one fails in a way that allows a retry, so a dead node costs one failed try, not one per call. */
  private current = 0;

  constructor(options: TransportOptions) {
    if (options.endpoints.length === 0) throw new TypeError("Cairn client: no endpoints given");
    this.endpoints = options.endpoints.map(normalizeEndpoint);
    this.options = options;
  }

  /** The endpoint the next call starts at. */
  currentIndex(): number {
    return this.current;
  }

  /**
   * Moves past `used` unless another call already did: concurrent failures on one dead node
   * would otherwise skip a good one.
   */
  advanceFrom(used: number): void {
    if (this.current === used) this.current = (used + 1) % this.endpoints.length;
  }

  get attempts(): number {
    return this.options.retry.attempts;
  }

  /** The pause before try number `attempt` (1 for the second try), with jitter so that clients that failed together do not come back together. */
  backoff(attempt: number): number {
    const { backoff, maxBackoff } = this.options.retry;
    const ceiling = Math.min(maxBackoff, backoff * 2 ** (attempt - 1));
    return ceiling / 2 + (Math.random() * ceiling) / 2;
  }

  get timeout(): number {
    return this.options.timeout;
  }

  url(endpoint: string, path: string, query?: Record<string, QueryValue>): string {
    let url = endpoint + path;
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(query ?? {})) {
      if (value !== undefined && value !== null) params.append(name, String(value));
    }
    const text = params.toString();
    if (text !== "") url += (path.includes("?") ? "&" : "?") + text;
    return url;
  }

  headers(extra?: Record<string, string>, body?: string): Record<string, string> {
    const headers: Record<string, string> = { accept: "application/json" };
    if (this.options.token !== undefined) headers["authorization"] = `Bearer ${this.options.token}`;
    if (this.options.namespace !== undefined) headers["x-cairn-namespace"] = this.options.namespace;
    if (body !== undefined) headers["content-type"] = "application/json";
    for (const [name, value] of Object.entries(extra ?? {})) headers[name.toLowerCase()] = value;
    return headers;
  }

  /** Runs `call` under the retry rule; resolves with a 2xx answer, or throws the typed error. */
  async send(call: Call): Promise<Answer> {
    const write = call.safety !== "read";
    // Set once a try of a write may have reached a server: from then on a refusal may be the
    // answer to our own earlier try, and running out of tries leaves the outcome unknown.
    let mayHaveApplied = false;
    let last: CairnError | undefined;
    for (let attempt = 0; attempt < this.attempts; attempt++) {
      if (attempt > 0) await sleep(this.backoff(attempt), call.signal);
      const used = this.current;
      const endpoint = this.endpoints[used] as string;
      const result = await this.try(endpoint, call);

      if ("failure" in result) {
        const { failure, cause } = result;
        if (failure !== "never-left") {
          if (call.safety === "unsafe") throw unknownOutcome(failure, endpoint, cause);
          if (write) mayHaveApplied = true;
        }
        last = unavailable(failure, endpoint, cause);
        this.advanceFrom(used);
        continue;
      }

      const answer = result;
      this.options.onAnswer?.(answer, call);
      if (answer.status >= 200 && answer.status < 300) return answer;
      const error = errorFromAnswer({ ...answer, write });
      if (!retryable(answer.status, error.code, call.safety)) {
        // After a try that may have been applied, a refusal says nothing of the write's fate:
        // "condition failed" or "already gone" may even describe the state our own try made.
        throw mayHaveApplied ? unknownAfterRetry(error) : error;
      }
      // Only Cairn's own 502 says nothing was forwarded; a proxy's may come after the write.
      if (write && answer.status === 502 && !NOTHING_APPLIED.has(error.code)) mayHaveApplied = true;
      last = error;
      this.advanceFrom(used);
    }
    const error = last ?? new Unavailable({ status: null, code: "unavailable", message: "no try was made" });
    throw mayHaveApplied ? unknownAfterRetry(error) : error;
  }

  /** One try on one endpoint; the timeout covers the answer's body too. */
  private async try(endpoint: string, call: Call): Promise<Answer | { failure: FailureKind; cause: unknown }> {
    const deadline = new Deadline(call.timeout ?? this.timeout, call.signal);
    try {
      const init: RequestInit = {
        method: call.method,
        headers: this.headers(call.headers, call.body),
        signal: deadline.signal,
        // Cairn never redirects; following one would send a write somewhere we did not choose.
        redirect: "manual",
      };
      if (call.body !== undefined) init.body = call.body;
      const response = await fetch(this.url(endpoint, call.path, call.query), init);
      const text = await response.text();
      return { status: response.status, headers: response.headers, body: parseBody(text) };
    } catch (error) {
      if (call.signal?.aborted) throw call.signal.reason;
      if (deadline.timedOut) return { failure: "timeout", cause: error };
      return { failure: classifyFetchError(error), cause: error };
    } finally {
      deadline.dispose();
    }
  }
}

function retryable(status: number, code: string, safety: Safety): boolean {
  if (status !== 502 && status !== 503) return false;
  return safety !== "unsafe" || NOTHING_APPLIED.has(code);
}

/**
 * Node's fetch (undici) rejects with `TypeError("fetch failed")` and the socket's error as its
 * cause: `ECONNREFUSED` when nothing listens, `UND_ERR_SOCKET` or `ECONNRESET` when a connection
 * broke after the request went out. A name with several addresses fails with an AggregateError
 * of one error per address.
 */
export function classifyFetchError(error: unknown): FailureKind {
  const cause = (error as { cause?: unknown } | null)?.cause;
  return neverLeft(cause) ? "never-left" : "broken";
}

function neverLeft(cause: unknown): boolean {
  if (typeof cause !== "object" || cause === null) return false;
  const { code, errors } = cause as { code?: unknown; errors?: unknown };
  if (Array.isArray(errors) && errors.length > 0) return errors.every(neverLeft);
  return typeof code === "string" && NEVER_LEFT.has(code);
}

function describe(cause: unknown): string {
  const inner = (cause as { cause?: unknown } | null)?.cause;
  const code = (inner as { code?: unknown } | null)?.code;
  const message = cause instanceof Error ? cause.message : String(cause);
  return typeof code === "string" ? `${message} (${code})` : message;
}

export function unavailable(failure: FailureKind, endpoint: string, cause: unknown): Unavailable {
  const what = failure === "timeout" ? "timed out" : failure === "never-left" ? "could not connect" : "connection broke";
  return new Unavailable({
    status: null,
    code: failure === "timeout" ? "timeout" : "unreachable",
    message: `${endpoint}: ${what}: ${describe(cause)}`,
    cause,
  });
}

function unknownAfterRetry(last: CairnError): UnknownOutcome {
  return new UnknownOutcome({
    status: last.status,
    code: "unknown_outcome",
    message: `an earlier try may have been applied, and no later one succeeded (last: ${last.code}: ${last.message})`,
    requestId: last.requestId,
    cause: last,
  });
}

function unknownOutcome(failure: FailureKind, endpoint: string, cause: unknown): UnknownOutcome {
  const what = failure === "timeout" ? "timed out" : "connection broke";
  return new UnknownOutcome({
    status: null,
    code: "unknown_outcome",
    message: `${endpoint}: ${what} after the request was sent; it may or may not have been applied: ${describe(cause)}`,
    cause,
  });
}

export function parseBody(text: string): unknown {
  if (text === "") return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** Accepts `http://h:p`, `https://h:p/base` and a bare `h:p`; keeps no trailing slash. */
export function normalizeEndpoint(endpoint: string): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(endpoint) ? endpoint : `http://${endpoint}`;
  const url = new URL(withScheme);
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new TypeError(`Cairn client: endpoint ${endpoint} is not http or https`);
  }
  return (url.origin + url.pathname).replace(/\/+$/, "");
}

/**
 * A per-try timeout joined with the caller's signal. Ours, not `AbortSignal.timeout`, so that a
 * failure can tell our timeout (retry, or unknown outcome) from the caller's abort (stop).
 */
export class Deadline {
  private readonly controller = new AbortController();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readonly onAbort: () => void;
  timedOut = false;

  constructor(
    ms: number,
    private readonly outer?: AbortSignal,
  ) {
    this.onAbort = () => this.controller.abort(outer?.reason);
    if (outer?.aborted) this.controller.abort(outer.reason);
    else outer?.addEventListener("abort", this.onAbort, { once: true });
    this.restart(ms);
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Gives `ms` more from now: a stream's idle limit starts again with every chunk. */
  restart(ms: number): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timedOut = true;
      this.controller.abort(new Error(`timed out after ${ms} ms`));
    }, ms);
  }

  /** Aborts now: the caller stopped reading a stream. */
  abort(reason?: unknown): void {
    this.controller.abort(reason);
  }

  dispose(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.outer?.removeEventListener("abort", this.onAbort);
  }
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
