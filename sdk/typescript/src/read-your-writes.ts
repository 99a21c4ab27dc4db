// The highest index this client has seen, sent as `minVersion` on reads so that a read a
// follower serves never shows a state older than the client's own last write or read.

import type { Answer, Call } from "./transport.js";

export class IndexTracker {
  // BigInt: an index is a u64 on the server, past what a double holds exactly.
  private highest = 0n;

  /** The index to send as `minVersion`, or undefined before anything was seen. */
  get minVersion(): string | undefined {
    return this.highest > 0n ? this.highest.toString() : undefined;
  }

  observe(index: unknown): void {
    if (typeof index !== "string" || !/^\d+$/.test(index)) return;
    const value = BigInt(index);
    if (value > this.highest) this.highest = value;
  }

  /**
   * What an answer says about the cluster's state: a read's `X-Cairn-Index` (a 404 too: the key
   * was absent at that index), and on a write's success its `X-Cairn-Applied-Index` and the
   * versions it returned (a delete returns none).
   */
  observeAnswer(answer: Answer, call: Call): void {
    this.observe(answer.headers.get("x-cairn-index") ?? undefined);
    if (call.method === "GET" || answer.status < 200 || answer.status >= 300) return;
    this.observe(answer.headers.get("x-cairn-applied-index") ?? undefined);
    const data = (answer.body as { data?: unknown } | null)?.data;
    const results = (data as { results?: unknown } | null)?.results;
    for (const item of Array.isArray(results) ? results : [data]) {
      this.observe((item as { version?: unknown } | null)?.version);
    }
  }
}
