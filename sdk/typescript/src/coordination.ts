// Leases, locks and elections (docs/api.md, "Leases", "Locks", "Elections"): handles over the
// server's calls, with the background keepalive a holder needs and the retry rules of
// docs/coordination.md. A lock or campaign is re-sent with the same lease after an unknown
// outcome (the server keeps the lease's first place and token); a revoke, release or resign
// whose earlier try may have landed counts a later 404 as done.

import { CairnError, Conflict, NotFound, UnknownOutcome, errorFromAnswer } from "./errors.js";
import { SseParser } from "./sse.js";
import { Deadline, type Answer, type Call, type Transport, classifyFetchError, parseBody, sleep, unavailable } from "./transport.js";
import type { ElectionLeader, LeaseInfo, LeaseStatus, ObserveOptions } from "./types.js";

/** What the coordination handles need of the client. */
export interface Sender {
  send(call: Call): Promise<Answer>;
  readonly transport: Transport;
}

/** The longest `wait` the server takes, in seconds. */
export const MAX_WAIT_SECONDS = 60;

/** Silence after which an observe stream counts as broken (the server comments every 15 s). */
const OBSERVE_IDLE_MS = 40_000;

export function data<T>(answer: Answer): T {
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

/** True for a 404 with `code`, also when it came after a try whose outcome was unknown. */
function isGone(error: unknown, codes: readonly string[]): boolean {
  const e = error instanceof UnknownOutcome && error.cause instanceof NotFound ? error.cause : error;
  return e instanceof NotFound && codes.includes(e.code);
}

/** The Conflict behind an error, also when the transport wrapped it as UnknownOutcome after an ambiguous try. */
function conflictOf(error: unknown, code: string): Conflict | null {
  const e = error instanceof UnknownOutcome && error.cause instanceof Conflict ? error.cause : error;
  return e instanceof Conflict && e.code === code ? e : null;
}

/** `wait` in seconds to the server's spelling, or undefined for "do not wait". */
export function waitText(wait: number | undefined): string | undefined {
  if (wait === undefined || wait === 0) return undefined;
  if (!Number.isFinite(wait) || wait < 0 || wait > MAX_WAIT_SECONDS) {
    throw new TypeError(`Cairn client: wait must be 0 to ${MAX_WAIT_SECONDS} seconds`);
  }
  return `${Math.round(wait * 1000)}ms`;
}

const path = (...segments: string[]) => segments.map((s) => `/${encodeURIComponent(s)}`).join("");

/**
 * A granted lease. Keys written with `{lease}` are deleted with it. `keepAlive()` renews it once;
 * `keepAliveEvery(ms)` renews it on a timer until the returned function is called; `revoke()`
 * ends it (and deletes its keys). `lost` resolves with the NotFound a keepalive got once the
 * lease is gone (expired or revoked elsewhere); the timer stops then.
 */
export class Lease {
  readonly id: string;
  /** The TTL in seconds. */
  readonly ttl: number;
  /** Resolves once a keepalive found the lease gone; never rejects. */
  readonly lost: Promise<CairnError>;
  /** The last error a background keepalive got (cleared by a success), for logs. */
  lastKeepAliveError: CairnError | null = null;
  private lostError: CairnError | null = null;
  private markLost!: (error: CairnError) => void;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private running = false;

  constructor(
    private readonly sender: Sender,
    info: LeaseInfo,
  ) {
    this.id = info.id;
    this.ttl = info.ttlSeconds;
    this.lost = new Promise((resolve) => (this.markLost = resolve));
  }

  /** True once a keepalive found the lease gone, or `revoke()` ended it. */
  get isLost(): boolean {
    return this.lostError !== null;
  }

  /** Restarts the TTL from now. Throws NotFound `lease_not_found` (and marks the lease lost) when it is gone. */
  async keepAlive(): Promise<LeaseInfo> {
    try {
      // Renewing twice is renewing: safe to retry on another node.
      const answer = await this.sender.send({ method: "POST", path: `/leases${path(this.id)}/keepalive`, body: "{}", safety: "idempotent" });
      return data<LeaseInfo>(answer);
    } catch (error) {
      if (isGone(error, ["lease_not_found"])) this.setLost(error as CairnError);
      throw error;
    }
  }

  /**
   * Renews the lease every `ms` (default: a third of the TTL) in the background until the
   * returned function is called or the lease is lost. Failures other than "gone" are retried at
   * the next tick; the timer does not keep a Node process alive by itself.
   */
  keepAliveEvery(ms: number = (this.ttl * 1000) / 3): () => void {
    if (!(ms > 0)) throw new TypeError("Cairn client: the keepalive interval must be above 0 ms");
    this.stopKeepAlive();
    this.running = true;
    const tick = async () => {
      if (!this.running || this.isLost) return;
      try {
        await this.keepAlive();
        this.lastKeepAliveError = null;
      } catch (error) {
        if (error instanceof CairnError) this.lastKeepAliveError = error;
      }
      if (this.running && !this.isLost) schedule();
    };
    const schedule = () => {
      this.timer = setTimeout(() => void tick(), ms);
      (this.timer as unknown as { unref?: () => void }).unref?.();
    };
    schedule();
    return () => this.stopKeepAlive();
  }

  /** Stops the background keepalive, if one runs. */
  stopKeepAlive(): void {
    this.running = false;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** The lease as the server sees it now, or null when it is gone. */
  async info(): Promise<LeaseStatus | null> {
    try {
      return data<LeaseStatus>(await this.sender.send({ method: "GET", path: `/leases${path(this.id)}`, safety: "read" }));
    } catch (error) {
      if (isGone(error, ["lease_not_found"])) return null;
      throw error;
    }
  }

  /**
   * Revokes the lease and deletes its keys; resolves with how many keys went (0 when the lease
   * was already gone). Stops the background keepalive.
   */
  async revoke(): Promise<number> {
    this.stopKeepAlive();
    let keys = 0;
    try {
      const answer = await this.sender.send({ method: "DELETE", path: `/leases${path(this.id)}`, safety: "idempotent" });
      keys = data<{ keys: number }>(answer).keys;
    } catch (error) {
      // Already gone, or gone by our own earlier try: revoked either way.
      if (!isGone(error, ["lease_not_found"])) throw error;
    }
    this.setLost(new NotFound({ status: null, code: "lease_not_found", message: `lease ${this.id} was revoked` }));
    return keys;
  }

  private setLost(error: CairnError): void {
    if (this.lostError !== null) return;
    this.lostError = error;
    this.stopKeepAlive();
    this.markLost(error);
  }
}

export async function grantLease(sender: Sender, ttl: number): Promise<Lease> {
  // Not idempotent: a second try could grant a second lease.
  const answer = await sender.send({ method: "POST", path: "/leases", body: JSON.stringify({ ttlSeconds: ttl }), safety: "unsafe" });
  return new Lease(sender, data<LeaseInfo>(answer));
}

/**
 * Sends a lock or campaign request, re-sending it with the same lease after an unknown outcome
 * (the server keeps the lease's first place), at most `attempts` times. `refusal` is the 409
 * code that means the wait ran out; it is thrown as Conflict even after an ambiguous try.
 */
async function queue(sender: Sender, call: Call, refusal: string): Promise<Answer> {
  let last: unknown;
  for (let attempt = 0; attempt < sender.transport.attempts; attempt++) {
    if (attempt > 0) await sleep(sender.transport.backoff(attempt), call.signal);
    try {
      return await sender.send(call);
    } catch (error) {
      const conflict = conflictOf(error, refusal);
      if (conflict) throw conflict;
      if (!(error instanceof UnknownOutcome)) throw error;
      last = error;
    }
  }
  throw last;
}

/** Grants a lease of `ttl` seconds kept alive at a third of it, or uses `given`. */
async function leaseFor(sender: Sender, given: Lease | undefined, ttl: number | undefined): Promise<{ lease: Lease; owned: boolean }> {
  if (given !== undefined) return { lease: given, owned: false };
  const lease = await grantLease(sender, ttl ?? 10);
  lease.keepAliveEvery();
  return { lease, owned: true };
}

export interface LockOptions {
  /** A lease of yours; else the lock grants its own (`ttl`), keeps it alive and revokes it on release. */
  lease?: Lease | undefined;
  /** TTL in seconds of the lease the lock grants itself (default 10). */
  ttl?: number | undefined;
  /** Seconds to wait in the queue (0 to 60; default 0: fail at once with Conflict `lock_held`). */
  wait?: number | undefined;
  signal?: AbortSignal | undefined;
}

/** A held lock. Fence writes with `{ifFence: lock.fence}`; `release()` lets the next waiter in. */
export class Lock {
  constructor(
    private readonly sender: Sender,
    readonly name: string,
    /** The fencing token: the log index that queued this holder. A later holder's is larger. */
    readonly token: string,
    readonly lease: Lease,
    private readonly ownsLease: boolean,
  ) {}

  /** `{lock, token}` for a put's `ifFence`. */
  get fence(): { lock: string; token: string } {
    return { lock: this.name, token: this.token };
  }

  /** Releases the lock (a lock already released counts as done); revokes the lease the lock granted itself. */
  async release(): Promise<void> {
    try {
      await this.sender.send({ method: "DELETE", path: `/locks${path(this.name, this.token)}`, safety: "idempotent" });
    } catch (error) {
      if (!isGone(error, ["not_found"])) throw error;
    } finally {
      if (this.ownsLease) await this.lease.revoke().catch(() => undefined);
    }
  }
}

export async function acquireLock(sender: Sender, name: string, options: LockOptions = {}): Promise<Lock> {
  const { lease, owned } = await leaseFor(sender, options.lease, options.ttl);
  try {
    const body: Record<string, unknown> = { lease: lease.id };
    const wait = waitText(options.wait);
    if (wait !== undefined) body["wait"] = wait;
    const answer = await queue(
      sender,
      {
        method: "POST",
        path: `/locks${path(name)}`,
        body: JSON.stringify(body),
        safety: "idempotent",
        signal: options.signal,
        timeout: (options.wait ?? 0) * 1000 + sender.transport.timeout,
      },
      "lock_held",
    );
    const held = data<{ name: string; token: string }>(answer);
    return new Lock(sender, held.name ?? name, held.token, lease, owned);
  } catch (error) {
    // Revoking the lease also leaves any queue it may still be in.
    if (owned) await lease.revoke().catch(() => undefined);
    throw error;
  }
}

export interface ElectOptions {
  /** A lease of yours; else the campaign grants its own (`ttl`), keeps it alive and revokes it on resign. */
  lease?: Lease | undefined;
  /** TTL in seconds of the lease the campaign grants itself (default 10). */
  ttl?: number | undefined;
  /** Seconds to wait until elected (0 to 60; default 60); else Conflict `not_elected`. */
  wait?: number | undefined;
  signal?: AbortSignal | undefined;
}

/** A campaign that leads. `proclaim` changes the value (Conflict `fenced` once it no longer leads). */
export class Election<T = unknown> {
  value: T;
  constructor(
    private readonly sender: Sender,
    readonly name: string,
    readonly token: string,
    readonly lease: Lease,
    value: T,
    private readonly ownsLease: boolean,
  ) {
    this.value = value;
  }

  async proclaim(value: T): Promise<ElectionLeader<T>> {
    const answer = await this.sender.send({
      method: "PUT",
      path: `/elections${path(this.name)}/proclaim`,
      body: JSON.stringify({ token: this.token, value }),
      safety: "idempotent",
    });
    this.value = value;
    return data<ElectionLeader<T>>(answer);
  }

  /** The current leader (not necessarily this one), or null. */
  leader(): Promise<ElectionLeader<T> | null> {
    return electionLeader<T>(this.sender, this.name);
  }

  /** Steps down (done too when already gone); the next candidate leads. Revokes the lease the campaign granted itself. */
  async resign(): Promise<void> {
    try {
      await this.sender.send({ method: "DELETE", path: `/elections${path(this.name)}/resign`, query: { token: this.token }, safety: "idempotent" });
    } catch (error) {
      if (!isGone(error, ["not_found"])) throw error;
    } finally {
      if (this.ownsLease) await this.lease.revoke().catch(() => undefined);
    }
  }
}

export async function campaign<T>(sender: Sender, name: string, value: T, options: ElectOptions = {}): Promise<Election<T>> {
  const { lease, owned } = await leaseFor(sender, options.lease, options.ttl);
  try {
    const body: Record<string, unknown> = { lease: lease.id, value };
    const waitSeconds = options.wait ?? MAX_WAIT_SECONDS;
    const wait = waitText(waitSeconds);
    if (wait !== undefined) body["wait"] = wait;
    const answer = await queue(
      sender,
      {
        method: "POST",
        path: `/elections${path(name)}/campaign`,
        body: JSON.stringify(body),
        safety: "idempotent",
        signal: options.signal,
        timeout: waitSeconds * 1000 + sender.transport.timeout,
      },
      "not_elected",
    );
    const led = data<ElectionLeader<T>>(answer);
    return new Election<T>(sender, led.name ?? name, led.token, lease, led.value, owned);
  } catch (error) {
    if (owned) await lease.revoke().catch(() => undefined);
    throw error;
  }
}

export async function electionLeader<T>(sender: Sender, name: string): Promise<ElectionLeader<T> | null> {
  try {
    return data<ElectionLeader<T>>(await sender.send({ method: "GET", path: `/elections${path(name)}/leader`, safety: "read" }));
  } catch (error) {
    if (error instanceof NotFound && error.code === "not_found") return null;
    throw error;
  }
}

/**
 * The election's leader now and at every change (`null` while nobody leads), from
 * `GET /elections/{name}/observe`. A broken stream reconnects to the next endpoint (the first
 * event of a new stream is the state then, so a change may be seen as a jump, never missed at
 * the end). After as many fruitless connections in a row as a call has tries, it throws.
 */
export async function* observe<T>(
  transport: Transport,
  name: string,
  options: ObserveOptions = {},
): AsyncGenerator<ElectionLeader<T> | null, void, undefined> {
  const { signal } = options;
  let failures = 0;
  let lastError: CairnError | undefined;
  while (!signal?.aborted) {
    if (failures > 0) {
      if (failures >= transport.attempts) throw lastError;
      try {
        await sleep(transport.backoff(failures), signal);
      } catch {
        return;
      }
    }
    const used = transport.currentIndex();
    const endpoint = transport.endpoints[used] as string;
    const deadline = new Deadline(transport.timeout, signal);
    let progressed = false;
    try {
      const response = await fetch(transport.url(endpoint, `/elections${path(name)}/observe`), {
        headers: transport.headers({ accept: "text/event-stream" }),
        signal: deadline.signal,
        redirect: "manual",
      });
      if (response.status !== 200 || response.body === null) {
        const body = parseBody(await response.text());
        const error = errorFromAnswer({ status: response.status, headers: response.headers, body, write: false });
        if (response.status < 500) throw error;
        lastError = error;
      } else {
        deadline.restart(OBSERVE_IDLE_MS);
        const parser = new SseParser();
        const reader = response.body.getReader();
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          deadline.restart(OBSERVE_IDLE_MS);
          for (const event of parser.push(value)) {
            if (event.event === "leader") {
              progressed = true;
              yield parseBody(event.data) as ElectionLeader<T>;
            } else if (event.event === "none") {
              progressed = true;
              yield null;
            }
          }
        }
        lastError = unavailable("broken", endpoint, new Error("the stream ended"));
      }
    } catch (error) {
      if (error instanceof CairnError) throw error;
      if (signal?.aborted) return;
      lastError = unavailable(deadline.timedOut ? "timeout" : classifyFetchError(error), endpoint, error);
    } finally {
      deadline.abort();
      deadline.dispose();
    }
    failures = progressed ? 0 : failures + 1;
    transport.advanceFrom(used);
  }
}
