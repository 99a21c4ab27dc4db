// `Client`: the calls of the contract (sdk/README.md), each one HTTP request shaped here and
// sent through the transport, which owns failover and the retry rule.

import { BadRequest, CairnError, NotFound } from "./errors.js";
import { IndexTracker } from "./read-your-writes.js";
import { DEFAULT_TIMEOUT_MS, Transport, type Answer, type Call, type Safety } from "./transport.js";
import type {
  BatchOp,
  BatchResult,
  ClientOptions,
  DeleteOptions,
  Entry,
  IncrementOptions,
  Item,
  PutOptions,
  RawResponse,
  RequestOptions,
  RetryOptions,
  ScanItem,
  ScanOptions,
  WatchEvent,
  WatchOptions,
} from "./types.js";
import { watch } from "./watch.js";
import {
  Election,
  Lease,
  Lock,
  acquireLock,
  campaign,
  electionLeader,
  grantLease,
  observe,
  type ElectOptions,
  type LockOptions,
} from "./coordination.js";
import type { ElectionLeader, LeaseOptions, ObserveOptions } from "./types.js";

export class Client {
  private readonly transport: Transport;
  private readonly tracker = new IndexTracker();
  private readonly readYourWrites: boolean;

  constructor(options: ClientOptions) {
    const endpoints =
      typeof options.endpoints === "string"
        ? options.endpoints.split(",").map((e) => e.trim()).filter((e) => e !== "")
        : [...options.endpoints];
    const retry: RetryOptions = options.retry === false ? { attempts: 1 } : (options.retry ?? {});
    const attempts = retry.attempts ?? 2 * endpoints.length;
    if (!Number.isInteger(attempts) || attempts < 1) throw new TypeError("Cairn client: retry.attempts must be a whole number of at least 1");
    this.readYourWrites = options.readYourWrites ?? true;
    this.transport = new Transport({
      endpoints,
      token: options.token,
      namespace: options.namespace,
      timeout: options.timeout ?? DEFAULT_TIMEOUT_MS,
      retry: { attempts, backoff: retry.backoff ?? 100, maxBackoff: retry.maxBackoff ?? 1000 },
      onAnswer: (answer, call) => this.tracker.observeAnswer(answer, call),
    });
  }

  /** The endpoints, normalized, in the order they are tried. */
  get endpoints(): readonly string[] {
    return this.transport.endpoints;
  }

  /** The key's value, version and expiry, or null when it is absent or expired. */
  async get<T = unknown>(key: string): Promise<Entry<T> | null> {
    try {
      const answer = await this.send({ method: "GET", path: itemPath(key), query: { minVersion: this.minVersion() }, safety: "read" });
      const { value, version, expiresAt } = data<Item<T>>(answer);
      return { value, version, expiresAt };
    } catch (error) {
      if (error instanceof NotFound && error.code === "not_found") return null;
      throw error;
    }
  }

  /** Creates or replaces the key (its TTL too) and returns the stored item. */
  async put<T = unknown>(key: string, value: T, options: PutOptions = {}): Promise<Item<T>> {
    const body: Record<string, unknown> = { value };
    if (options.ttl !== undefined) body["ttlSeconds"] = options.ttl;
    if (options.ifAbsent) body["ifNotExists"] = true;
    if (options.ifVersion !== undefined) body["ifVersion"] = options.ifVersion;
    if (options.ifValue !== undefined) body["ifValue"] = options.ifValue;
    if (options.lease !== undefined) body["lease"] = typeof options.lease === "string" ? options.lease : options.lease.id;
    if (options.ifFence !== undefined) {
      const fence = options.ifFence;
      body["ifFence"] = { lock: "lock" in fence ? fence.lock : fence.name, token: fence.token };
    }
    // A put, conditional or not, leaves the same state when applied twice, so it may fail over.
    const answer = await this.send({ method: "PUT", path: itemPath(key), body: JSON.stringify(body), safety: "idempotent" });
    return data<Item<T>>(answer);
  }

  /** True when the key was deleted, false when it was absent. */
  async delete(key: string, options: DeleteOptions = {}): Promise<boolean> {
    try {
      await this.send({ method: "DELETE", path: itemPath(key), query: { ifVersion: options.ifVersion }, safety: "idempotent" });
      return true;
    } catch (error) {
      if (error instanceof NotFound && error.code === "not_found") return false;
      throw error;
    }
  }

  /**
   * Adds `delta` (default 1; negative and fractional allowed) to a number; a missing key starts at 0.
   * `ttl` (seconds) applies only when this increment creates the key, as for a rate-limit window.
   */
  async increment(key: string, delta = 1, options: IncrementOptions = {}): Promise<Item<number>> {
    // Not idempotent: tried again only when the request provably never reached a node.
    const body: { delta: number; ttlSeconds?: number } = { delta };
    if (options.ttl !== undefined) body.ttlSeconds = options.ttl;
    const answer = await this.send({
      method: "POST",
      path: `${itemPath(key)}/increment`,
      body: JSON.stringify(body),
      safety: "unsafe",
    });
    return data<Item<number>>(answer);
  }

  /** Every live item under `prefix`, in key order, fetched a page (`limit` items) at a time. */
  async *scan<T = unknown>(prefix: string, options: ScanOptions = {}): AsyncGenerator<ScanItem<T>, void, undefined> {
    let cursor: string | null = null;
    do {
      const query = {
        prefix,
        limit: options.limit,
        values: options.values ?? true,
        cursor: cursor ?? undefined,
        minVersion: this.minVersion(),
      };
      const answer = await this.send({ method: "GET", path: "/kv/items", query, safety: "read" });
      const page = data<{ items: ScanItem<T>[]; nextCursor: string | null }>(answer);
      yield* page.items;
      cursor = page.nextCursor;
    } while (cursor !== null);
  }

  /** Runs the ops atomically, in order, as one entry; one result per op, in the server's shape. */
  async batch<T = unknown>(ops: BatchOp[]): Promise<BatchResult<T>[]> {
    const safety: Safety = ops.some((op) => op.op === "increment") ? "unsafe" : "idempotent";
    const answer = await this.send({ method: "POST", path: "/kv/batch", body: JSON.stringify({ ops }), safety });
    return data<{ results: BatchResult<T>[] }>(answer).results;
  }

  /**
   * Every change under `prefix` after `options.after` (default: from now), one event per entry.
   * It reconnects by itself; end it with `options.signal` or by leaving the loop.
   */
  watch<T = unknown>(prefix: string, options: WatchOptions = {}): AsyncGenerator<WatchEvent<T>, void, undefined> {
    return watch<T>(this.transport, prefix, options);
  }

  /**
   * Grants a lease of `ttl` seconds. Keys put with `{lease}` are deleted with it. Keep it alive
   * with `keepAlive()` or `keepAliveEvery(ms)` (or `{autoKeepAlive: true}`), end it with `revoke()`.
   */
  async lease(ttl: number, options: LeaseOptions = {}): Promise<Lease> {
    const lease = await grantLease(this.coordination, ttl);
    if (options.autoKeepAlive) lease.keepAliveEvery();
    return lease;
  }

  /**
   * Takes the fair lock `name`, waiting up to `wait` seconds in its queue (default: not at all);
   * `Conflict` `lock_held` when the wait runs out. Without `lease`, it grants its own of `ttl`
   * seconds (default 10), kept alive until `release()`.
   */
  lock(name: string, options: LockOptions = {}): Promise<Lock> {
    return acquireLock(this.coordination, name, options);
  }

  /**
   * Campaigns in election `name` with `value`, waiting up to `wait` seconds (default 60) to lead;
   * `Conflict` `not_elected` when the wait runs out. Without `lease`, it grants its own of `ttl`
   * seconds (default 10), kept alive until `resign()`.
   */
  elect<T = unknown>(name: string, value: T, options: ElectOptions = {}): Promise<Election<T>> {
    return campaign<T>(this.coordination, name, value, options);
  }

  /** The election's leader, or null when nobody leads. */
  leader<T = unknown>(name: string): Promise<ElectionLeader<T> | null> {
    return electionLeader<T>(this.coordination, name);
  }

  /** The election's leader now and at every change (null while nobody leads). End it with `signal` or by leaving the loop. */
  observe<T = unknown>(name: string, options: ObserveOptions = {}): AsyncGenerator<ElectionLeader<T> | null, void, undefined> {
    return observe<T>(this.transport, name, options);
  }

  private get coordination() {
    return { send: (call: Call) => this.send(call), transport: this.transport };
  }

  /**
   * A request of your own through the client's endpoints, credentials and retry rule (GET is a
   * read, PUT and DELETE idempotent, anything else unsafe). `path` is sent as given, so encode
   * keys in it (`encodeURIComponent`). Resolves with a 2xx answer; throws the typed error otherwise.
   */
  async request<T = unknown>(method: string, path: string, options: RequestOptions = {}): Promise<RawResponse<T>> {
    const upper = method.toUpperCase();
    const safety: Safety =
      upper === "GET" || upper === "HEAD" ? "read" : upper === "PUT" || upper === "DELETE" ? "idempotent" : "unsafe";
    const body = options.body === undefined ? undefined : typeof options.body === "string" ? options.body : JSON.stringify(options.body);
    const answer = await this.send({
      method: upper,
      path: path.startsWith("/") ? path : `/${path}`,
      query: options.query,
      headers: options.headers,
      body,
      safety,
      signal: options.signal,
    });
    return { status: answer.status, headers: answer.headers, body: answer.body as T };
  }

  private send(call: Call): Promise<Answer> {
    return this.transport.send(call);
  }

  private minVersion(): string | undefined {
    return this.readYourWrites ? this.tracker.minVersion : undefined;
  }
}

/** `/kv/items/{key}` with the key as one path segment: `a/b` is `a%2Fb`. */
function itemPath(key: string): string {
  // URL parsers collapse `.` and `..` as dot-segments even percent-encoded, so the request
  // would reach another route; the server refuses these keys in a path anyway.
  if (key === "" || key === "." || key === "..") {
    throw new BadRequest({ status: null, code: "invalid_key", message: `the key ${JSON.stringify(key)} cannot be addressed in a path` });
  }
  return `/kv/items/${encodeURIComponent(key)}`;
}

function data<T>(answer: Answer): T {
  const body = answer.body as { data?: unknown } | null;
  if (typeof body !== "object" || body === null || body.data === undefined) {
    throw new CairnError({
      status: answer.status,
      code: "invalid_response",
      message: "the answer has no data envelope: is this endpoint a Cairn node?",
      requestId: answer.headers.get("x-request-id"),
    });
  }
  return body.data as T;
}
