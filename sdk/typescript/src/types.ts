// The shapes callers pass in and get back, as on the wire: versions and indexes are decimal
// strings (a log index can pass 2^53), `ttl` is in seconds, `expiresAt` is RFC 3339 text or null.

/** What `get` answers for a present key. */
export interface Entry<T = unknown> {
  value: T;
  version: string;
  expiresAt: string | null;
}

/** What a write answers: the stored item. */
export interface Item<T = unknown> extends Entry<T> {
  key: string;
}

/** One item of a scan; `value` is left out when the scan asked for `values: false`. */
export interface ScanItem<T = unknown> {
  key: string;
  value?: T;
  version: string;
  expiresAt: string | null;
}

export interface PutOptions {
  /** Expire the key this many seconds from now (1 to 31536000). */
  ttl?: number | undefined;
  /** Write only if the key is at this version (compare-and-swap); else `Conflict` `version_mismatch`. */
  ifVersion?: string | undefined;
  /** Write only if the key is absent; else `Conflict` `key_exists`. */
  ifAbsent?: boolean | undefined;
  /** Write only if the stored value equals this JSON; else `Conflict` `value_mismatch`. */
  ifValue?: unknown;
  /** Attach the key to this lease (a `Lease` or its id): it is deleted with the lease. */
  lease?: string | { id: string } | undefined;
  /** Write only if `token` holds the lock `lock` when the write applies (a `Lock` or its `fence`); else `Conflict` `fenced`. */
  ifFence?: { lock: string; token: string } | { name: string; token: string } | undefined;
}

export interface DeleteOptions {
  /** Delete only if the key is at this version; else `Conflict` `version_mismatch`. */
  ifVersion?: string | undefined;
}

export interface IncrementOptions {
  /** Seconds until the key expires, applied only when this increment creates it (1 to 31536000). */
  ttl?: number | undefined;
}

export interface ScanOptions {
  /** Page size, 1 to 1000 (the server's default is 100). */
  limit?: number | undefined;
  /** Include each item's value (default true). */
  values?: boolean | undefined;
}

/** One op of a batch, in the server's shape. */
export type BatchOp =
  | {
      op: "set";
      key: string;
      value: unknown;
      ttlSeconds?: number | undefined;
      ifNotExists?: boolean | undefined;
      ifVersion?: string | undefined;
      ifValue?: unknown;
    }
  | { op: "get"; key: string }
  | { op: "delete"; key: string; ifVersion?: string | undefined; ifValue?: unknown }
  | { op: "increment"; key: string; delta?: number | undefined; ttlSeconds?: number | undefined };

/** One result of a batch, in op order: the item (set, increment, a found get), or what a get or delete found. */
export type BatchResult<T = unknown> =
  | Item<T>
  | { key: string; found: false }
  | { key: string; deleted: boolean };

export interface Change<T = unknown> {
  op: "set" | "increment" | "delete" | "expire";
  key: string;
  /** The entry's index: the key's new version after a set or an increment. */
  version: string;
  value?: T;
  expiresAt?: string | null;
}

/** One Raft entry's changes to the watched keys; a batch arrives whole, in one event. */
export interface WatchEvent<T = unknown> {
  index: string;
  changes: Change<T>[];
}

export interface WatchOptions {
  /** Start after this index (a write's version, a listing's index); default: now. */
  after?: string | undefined;
  /** Include each change's value (default true). */
  values?: boolean | undefined;
  /** Stops the watch: the iteration ends. */
  signal?: AbortSignal | undefined;
}

export interface RetryOptions {
  /** Tries in all for one call, endpoints rotating (default: twice the number of endpoints). */
  attempts?: number | undefined;
  /** First pause between tries, in ms; it doubles up to `maxBackoff` (default 100). */
  backoff?: number | undefined;
  /** Longest pause between tries, in ms (default 1000). */
  maxBackoff?: number | undefined;
}

export interface ClientOptions {
  /** Base URLs (`http://10.0.0.1:7001`), tried in order. A bare `host:port` means http. */
  endpoints: string[] | string;
  /** A token or the bootstrap admin token, sent as `Authorization: Bearer`. */
  token?: string | undefined;
  /** Sent as `X-Cairn-Namespace`. A namespace token is bound to its own. */
  namespace?: string | undefined;
  /** Per-try timeout in ms, answer body included (default 15000). */
  timeout?: number | undefined;
  /** `false`: one try, no failover. */
  retry?: RetryOptions | false | undefined;
  /** Send the highest index seen as `minVersion` on reads (default true). */
  readYourWrites?: boolean | undefined;
}

export type QueryValue = string | number | boolean | null | undefined;

export interface RequestOptions {
  query?: Record<string, QueryValue> | undefined;
  headers?: Record<string, string> | undefined;
  /** A string is sent as it is; anything else as JSON. */
  body?: unknown;
  signal?: AbortSignal | undefined;
}

/** A successful answer of `request`. */
export interface RawResponse<T = unknown> {
  status: number;
  headers: Headers;
  /** Parsed JSON, or the text when it is not JSON, or null when empty. */
  body: T;
}

/** A lease as grant and keepalive return it. */
export interface LeaseInfo {
  id: string;
  ttlSeconds: number;
  expiresAt: string;
}

/** A lease as `GET /leases/{id}` shows it. */
export interface LeaseStatus extends LeaseInfo {
  /** By the answering node's clock. */
  remainingMs: number;
  keys: string[];
}

/** An election's leader, as campaign, proclaim, leader and observe return it. */
export interface ElectionLeader<T = unknown> {
  name: string;
  token: string;
  lease: string;
  value: T;
}

export interface LeaseOptions {
  /** Renew in the background at a third of the TTL from the start (default false; see `keepAliveEvery`). */
  autoKeepAlive?: boolean | undefined;
}

export interface ObserveOptions {
  /** Stops the observation: the iteration ends. */
  signal?: AbortSignal | undefined;
}
