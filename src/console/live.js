// Live updates through the watch long poll (`Accept: application/json`). EventSource cannot
// send an Authorization header and the token must never go into a URL, so this is a fetch
// loop: each poll resumes `after` the index the previous one returned, so no change is missed
// or seen twice, and an error backs off (1 s, doubling to 15 s) instead of hammering a node.

import { ApiError, call } from "./api.js";

const MAX_BACKOFF_MS = 15000;

/**
 * Follows the changes under `prefix` after log index `after`. `onEvents(events)` gets each
 * non-empty batch; `onState("live" | "retrying" | "compacted", err)` reports the connection.
 * Answers a function that stops the loop (aborting the poll in flight).
 */
export function watch({ prefix, after, onEvents, onState }) {
  const abort = new AbortController();
  let index = after;
  let backoff = 1000;
  // The first poll answers at once, so "live" is shown only once the node has answered.
  let wait = "0s";

  const sleep = (ms) => new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    abort.signal.addEventListener("abort", () => { clearTimeout(t); resolve(); }, { once: true });
  });

  (async () => {
    while (!abort.signal.aborted) {
      const q = new URLSearchParams({ prefix, wait });
      // Without a known index (the key was absent), the node starts at its applied index.
      if (index !== undefined && index !== null) q.set("after", index);
      try {
        const { data } = await call("GET", `/kv/watch?${q}`, { signal: abort.signal });
        backoff = 1000;
        wait = "25s";
        onState("live");
        index = data.index;
        if (data.events.length) onEvents(data.events);
      } catch (e) {
        if (abort.signal.aborted) return;
        // The node no longer keeps history back to `index`: the owner must list again and
        // start a new watch from that listing's index.
        if (e instanceof ApiError && e.code === "compacted") {
          onState("compacted", e);
          return;
        }
        onState("retrying", e);
        await sleep(backoff);
        backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
      }
    }
  })();

  return () => abort.abort();
}
