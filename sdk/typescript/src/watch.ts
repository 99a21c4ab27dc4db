// `watch`: follows `GET /kv/watch` (Server-Sent Events) across endpoints. Every event id, change
// or progress, is a resume point; when a stream breaks, times out or its node drains, the watch
// reconnects to the next endpoint with `Last-Event-ID`, and every node streams the same entries
// under the same ids, so nothing is skipped or seen twice. A refusal (4xx, 410 `compacted`, a
// revoked token) ends it with the typed error.

import { CairnError, Compacted, Unauthorized, errorFromAnswer } from "./errors.js";
import { SseParser } from "./sse.js";
import { Deadline, type Transport, classifyFetchError, parseBody, sleep, unavailable } from "./transport.js";
import type { WatchEvent, WatchOptions } from "./types.js";

/**
 * Longest silence a live stream may keep before it counts as broken. The server sends a comment
 * every 15 s on an idle stream, so 40 s means two were missed: the node is gone or cut off
 * without a FIN (a partition), which a socket alone would not notice for minutes.
 */
export const WATCH_IDLE_MS = 40_000;

/** How one stream ended, when the watch goes on. */
interface Broken {
  error: CairnError;
  /** It delivered at least one id: the endpoint worked, so the failure count starts again. */
  progressed: boolean;
}

export async function* watch<T>(
  transport: Transport,
  prefix: string,
  options: WatchOptions = {},
): AsyncGenerator<WatchEvent<T>, void, undefined> {
  const { signal } = options;
  const cursor = { last: options.after ?? null };
  // Streams in a row that delivered nothing; the watch gives up with Unavailable after as many
  // as a call has tries, so a cluster that is down altogether is reported, not waited out.
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
    const broken = yield* stream<T>(transport, transport.endpoints[used] as string, prefix, options, cursor);
    if (broken === null) return; // the caller's signal
    lastError = broken.error;
    failures = broken.progressed ? 0 : failures + 1;
    transport.advanceFrom(used);
  }
}

/** One stream from one endpoint; yields its change events and says how it ended. */
async function* stream<T>(
  transport: Transport,
  endpoint: string,
  prefix: string,
  options: WatchOptions,
  cursor: { last: string | null },
): AsyncGenerator<WatchEvent<T>, Broken | null, undefined> {
  const { signal } = options;
  const deadline = new Deadline(transport.timeout, signal);
  let progressed = false;
  try {
    const query = { prefix, values: options.values ?? true };
    const extra: Record<string, string> = { accept: "text/event-stream" };
    // The header, not `after=`: the server gives it precedence, and it is what an EventSource sends.
    if (cursor.last !== null) extra["last-event-id"] = cursor.last;
    const response = await fetch(transport.url(endpoint, "/kv/watch", query), {
      headers: transport.headers(extra),
      signal: deadline.signal,
      redirect: "manual",
    });
    if (response.status !== 200 || response.body === null) {
      const body = parseBody(await response.text());
      const error = errorFromAnswer({ status: response.status, headers: response.headers, body, write: false });
      if (response.status >= 500) return { error, progressed };
      throw error;
    }
    deadline.restart(WATCH_IDLE_MS);
    const parser = new SseParser();
    const reader = response.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) {
        parser.end();
        return { error: ended(endpoint, "the stream ended"), progressed };
      }
      deadline.restart(WATCH_IDLE_MS);
      for (const event of parser.push(value)) {
        switch (event.event) {
          case "change": {
            const data = parseEvent<T>(event.data, endpoint);
            const index = event.id ?? data.index;
            if (after(index, cursor.last)) {
              cursor.last = index;
              progressed = true;
              yield { index: data.index, changes: data.changes };
            }
            break;
          }
          case "compacted":
            throw new Compacted({
              status: null,
              code: "compacted",
              message: `the history no longer reaches back to index ${cursor.last ?? "?"}; list again, then watch from the listing's index`,
              details: objectOf(parseBody(event.data)),
            });
          case "revoked":
            throw new Unauthorized({ status: null, code: "revoked", message: "the watch's token was revoked or expired" });
          case "error":
            return { error: ended(endpoint, `the node could not read its history: ${event.data}`), progressed };
          default:
            break; // `progress`: its id is taken below
        }
        if (event.id !== null && after(event.id, cursor.last)) {
          cursor.last = event.id;
          progressed = true;
        }
      }
      // An `id:` in a block without data is a resume point too, though no event came of it.
      if (parser.lastEventId !== null && after(parser.lastEventId, cursor.last)) {
        cursor.last = parser.lastEventId;
        progressed = true;
      }
    }
  } catch (error) {
    if (error instanceof CairnError) throw error;
    if (signal?.aborted) return null;
    const failure = deadline.timedOut ? "timeout" : classifyFetchError(error);
    return { error: unavailable(failure, endpoint, error), progressed };
  } finally {
    // Also reached when the caller leaves its loop: close the connection rather than leave
    // the node streaming to nobody.
    deadline.abort();
    deadline.dispose();
  }
}

/** True when `index` comes after `last`; ids are decimal log indexes. */
function after(index: string, last: string | null): boolean {
  if (last === null) return true;
  try {
    return BigInt(index) > BigInt(last);
  } catch {
    return index !== last;
  }
}

function parseEvent<T>(text: string, endpoint: string): WatchEvent<T> {
  const data = parseBody(text) as Partial<WatchEvent<T>> | null;
  if (typeof data?.index !== "string" || !Array.isArray(data.changes)) {
    throw new CairnError({ status: null, code: "invalid_response", message: `${endpoint}: a change event that is not {index, changes}: ${text.slice(0, 200)}` });
  }
  return { index: data.index, changes: data.changes };
}

function ended(endpoint: string, why: string): CairnError {
  return unavailable("broken", endpoint, new Error(why));
}

function objectOf(value: unknown): Record<string, unknown> {
  return typeof value === "object" && value !== null ? (value as Record<string, unknown>) : {};
}
