// The watch's resume rule against scripted fake nodes: Last-Event-ID on the next endpoint, no
// event skipped or repeated, typed refusals, and a clean stop on the caller's signal.

import assert from "node:assert/strict";
import { test } from "node:test";

import { Client, Compacted, Unauthorized, Unavailable } from "../dist/index.js";
import { deadEndpoint, fail, fakeServer } from "./support/fake-server.mjs";

const change = (index, key) => ({ index: String(index), changes: [{ op: "set", key, version: String(index), value: index, expiresAt: null }] });
const frame = (id, event, data) => `id: ${id}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`;

/** A handler that opens an event stream, writes `frames`, then drops, ends or stays open. */
const streaming = (frames, then = "drop") => (request, res) => {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
  res.write(": hello\n\n");
  for (const f of frames) res.write(f);
  if (then === "drop") setTimeout(() => res.socket?.destroy(), 20);
  if (then === "end") res.end();
  return undefined;
};

async function nodes(t, ...handlers) {
  const servers = await Promise.all(handlers.map((h) => fakeServer(h)));
  t.after(() => Promise.all(servers.map((s) => s.close())));
  return servers;
}

const client = (endpoints) => new Client({ endpoints, token: "tok", retry: { backoff: 1, maxBackoff: 5 } });

async function take(iterator, n) {
  const out = [];
  for await (const event of iterator) {
    out.push(event);
    if (out.length === n) break;
  }
  return out;
}

test("a broken stream resumes on the next endpoint with Last-Event-ID, skipping nothing and repeating nothing", async (t) => {
  const [a, b] = await nodes(
    t,
    streaming([frame(5, "progress", { index: "5" }), frame(6, "change", change(6, "w/a")), 'id: 7\nevent: change\ndata: {"inde']),
    // b repeats 6 (as a node resuming from an older point could) before 7 and 8.
    streaming([frame(6, "change", change(6, "w/a")), frame(7, "change", change(7, "w/b")), frame(8, "progress", { index: "8" }), frame(9, "change", change(9, "w/c"))], "open"),
  );
  const events = await take(client([a.url, b.url]).watch("w/", { after: "4" }), 3);
  assert.deepEqual(events.map((e) => e.index), ["6", "7", "9"]);
  assert.deepEqual(events[0], change(6, "w/a"));
  assert.equal(a.requests[0].headers["last-event-id"], "4");
  assert.equal(a.requests[0].query.prefix, "w/");
  assert.equal(a.requests[0].query.values, "true");
  assert.equal(a.requests[0].headers.accept, "text/event-stream");
  assert.equal(b.requests[0].headers["last-event-id"], "6", "the half-sent event 7 is no resume point");
});

test("a progress id is a resume point, and a stream that ends cleanly (a drain) is resumed too", async (t) => {
  const [a, b] = await nodes(t, streaming([frame(12, "progress", { index: "12" })], "end"), streaming([frame(13, "change", change(13, "k"))], "open"));
  const [event] = await take(client([a.url, b.url]).watch(""), 1);
  assert.equal(event.index, "13");
  assert.equal(a.requests[0].headers["last-event-id"], undefined, "a watch from now sends no resume point");
  assert.equal(b.requests[0].headers["last-event-id"], "12");
});

test("a node that cannot serve it (refused, 503) is passed over", async (t) => {
  const dead = await deadEndpoint();
  const [busy, good] = await nodes(t, () => fail(503, "not_caught_up"), streaming([frame(3, "change", change(3, "k"))], "open"));
  const [event] = await take(client([dead, busy.url, good.url]).watch("", { after: "2" }), 1);
  assert.equal(event.index, "3");
  assert.equal(good.requests[0].headers["last-event-id"], "2");
});

test("410 before the stream is Compacted with both indexes", async (t) => {
  const [a] = await nodes(t, () => fail(410, "compacted", { compactedIndex: "100", currentIndex: "250" }));
  const error = await take(client([a.url]).watch("", { after: "5" }), 1).catch((e) => e);
  assert.ok(error instanceof Compacted, String(error));
  assert.equal(error.status, 410);
  assert.equal(error.compactedIndex, "100");
  assert.equal(error.currentIndex, "250");
  assert.equal(a.count(), 1, "a refusal is not retried");
});

test("event: compacted mid-stream is Compacted; event: revoked is Unauthorized", async (t) => {
  const [a] = await nodes(t, streaming([frame(7, "compacted", { compactedIndex: "9", currentIndex: "20" })], "open"));
  const error = await take(client([a.url]).watch(""), 1).catch((e) => e);
  assert.ok(error instanceof Compacted);
  assert.equal(error.compactedIndex, "9");
  assert.equal(error.currentIndex, "20");

  const [r] = await nodes(t, streaming(["event: revoked\ndata: {}\n\n"], "open"));
  assert.ok((await take(client([r.url]).watch(""), 1).catch((e) => e)) instanceof Unauthorized);
});

test("a watch that no endpoint serves gives up with Unavailable after retry.attempts streams", async (t) => {
  const [a] = await nodes(t, () => fail(503, "watchers_full"));
  const error = await take(client([a.url]).watch(""), 1).catch((e) => e);
  assert.ok(error instanceof Unavailable);
  assert.equal(error.code, "watchers_full");
  assert.equal(a.count(), 2);
});

test("the caller's signal ends the iteration and closes the stream", async (t) => {
  let closed;
  const closedPromise = new Promise((resolve) => (closed = resolve));
  const [a] = await nodes(t, (request, res) => {
    res.socket.on("close", closed);
    return streaming([frame(3, "change", change(3, "k"))], "open")(request, res);
  });
  const controller = new AbortController();
  const seen = [];
  for await (const event of client([a.url]).watch("", { signal: controller.signal })) {
    seen.push(event.index);
    controller.abort();
  }
  assert.deepEqual(seen, ["3"]);
  await closedPromise;
  assert.equal(a.count(), 1);
});

test("leaving the loop closes the stream", async (t) => {
  let closed;
  const closedPromise = new Promise((resolve) => (closed = resolve));
  const [a] = await nodes(t, (request, res) => {
    res.socket.on("close", closed);
    return streaming([frame(3, "change", change(3, "k")), frame(4, "change", change(4, "k"))], "open")(request, res);
  });
  assert.equal((await take(client([a.url]).watch(""), 1))[0].index, "3");
  await closedPromise;
});
