// The retry rule, endpoint by endpoint, against scripted fake nodes that count what reached them.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  CairnError,
  Client,
  Conflict,
  NotFound,
  RateLimited,
  Unavailable,
  UnknownOutcome,
} from "../dist/index.js";
import { deadEndpoint, fail, fakeServer, item, ok } from "./support/fake-server.mjs";

/** Fake nodes that `t` closes when it ends. */
async function nodes(t, ...handlers) {
  const servers = await Promise.all(handlers.map((h) => fakeServer(h)));
  t.after(() => Promise.all(servers.map((s) => s.close())));
  return servers;
}

const client = (endpoints, options = {}) =>
  new Client({ endpoints, token: "tok", namespace: "ns", retry: { backoff: 1, maxBackoff: 5 }, ...options });

test("Node's fetch reports a refused connection as ECONNREFUSED and a dropped one as UND_ERR_SOCKET", async (t) => {
  // The transport's rule rests on these two shapes; check them rather than trust them.
  const dead = await deadEndpoint();
  const refused = await fetch(dead).catch((e) => e);
  assert.ok(refused instanceof TypeError);
  assert.equal(refused.cause?.code, "ECONNREFUSED");

  const [dropper] = await nodes(t, () => "drop");
  const dropped = await fetch(dropper.url, { method: "POST", body: "{}" }).catch((e) => e);
  assert.ok(dropped instanceof TypeError);
  assert.ok(["UND_ERR_SOCKET", "ECONNRESET"].includes(dropped.cause?.code), `cause code ${dropped.cause?.code}`);
  assert.equal(dropper.count(), 1, "the request reached the server before it dropped");
});

test("504 is UnknownOutcome and is not retried", async (t) => {
  const [a, b] = await nodes(t, () => fail(504, "unknown_outcome"), () => ok(item("k", 1, "7")));
  const error = await client([a.url, b.url]).put("k", 1).catch((e) => e);
  assert.ok(error instanceof UnknownOutcome, String(error));
  assert.equal(error.status, 504);
  assert.equal(error.code, "unknown_outcome");
  assert.equal(error.requestId, "fake-req-1");
  assert.equal(a.count() + b.count(), 1);
});

test("504 on a read is UnknownOutcome too, never retried", async (t) => {
  const [a, b] = await nodes(t, () => fail(504, "unknown_outcome"), () => ok(item("k", 1, "7")));
  const error = await client([a.url, b.url]).get("k").catch((e) => e);
  assert.ok(error instanceof UnknownOutcome);
  assert.equal(b.count(), 0);
});

test("429 is RateLimited with the server's Retry-After, not retried", async (t) => {
  const [a, b] = await nodes(t, () => fail(429, "rate_limited", {}, { "retry-after": "3" }), () => ok(item("k", 1, "7")));
  const error = await client([a.url, b.url]).get("k").catch((e) => e);
  assert.ok(error instanceof RateLimited, String(error));
  assert.equal(error.retryAfter, 3);
  assert.equal(error.status, 429);
  assert.equal(error.code, "rate_limited");
  assert.equal(b.count(), 0);
});

test("503 no_leader moves a conditional put and an increment to the next endpoint", async (t) => {
  const [a, b] = await nodes(
    t,
    () => fail(503, "no_leader", {}, { "retry-after": "1" }),
    (r) => (r.path.endsWith("/increment") ? ok(item("n", 5, "9")) : ok(item("k", 2, "8"))),
  );
  const c = client([a.url, b.url]);
  assert.deepEqual(await c.put("k", 2, { ifVersion: "7" }), item("k", 2, "8"));
  assert.deepEqual(JSON.parse(b.requests[0].body), { value: 2, ifVersion: "7" });
  // The client now starts at b, so send the increment to a first by a fresh client.
  const fresh = client([a.url, b.url]);
  assert.deepEqual(await fresh.increment("n", 5), item("n", 5, "9"));
  assert.equal(a.count(), 2);
  assert.equal(b.count(), 2);
  assert.deepEqual(JSON.parse(b.requests[1].body), { delta: 5 });
  await fresh.increment("n", 1, { ttl: 60 });
  assert.deepEqual(JSON.parse(b.requests[2].body), { delta: 1, ttlSeconds: 60 });
});

test("503 starting (a node still opening its data) moves an increment to the next endpoint", async (t) => {
  const [a, b] = await nodes(t, () => fail(503, "starting", {}, { "retry-after": "1" }), () => ok(item("n", 1, "3")));
  assert.equal((await client([a.url, b.url]).increment("n")).value, 1);
  assert.equal(a.count(), 1);
  assert.equal(b.count(), 1);
});

test("502 leader_unreachable moves an increment on; 507 stops every call", async (t) => {
  const [a, b] = await nodes(t, () => fail(502, "leader_unreachable"), () => ok(item("n", 1, "3")));
  assert.equal((await client([a.url, b.url]).increment("n")).value, 1);

  const [full, other] = await nodes(t, () => fail(507, "insufficient_storage"), () => ok(item("k", 1, "3")));
  const error = await client([full.url, other.url]).put("k", 1).catch((e) => e);
  assert.ok(error instanceof Unavailable);
  assert.equal(error.status, 507);
  assert.equal(other.count(), 0, "every node forwards to the same leader, so another try is pointless");
});

test("an increment whose connection drops after the request was read is UnknownOutcome, not retried", async (t) => {
  const [a, b] = await nodes(t, () => "drop", () => ok(item("n", 1, "3")));
  const error = await client([a.url, b.url]).increment("n").catch((e) => e);
  assert.ok(error instanceof UnknownOutcome, String(error));
  assert.equal(error.status, null);
  assert.equal(a.count(), 1);
  assert.equal(b.count(), 0);
});

test("a batch holding an increment is not retried after a drop; one without is", async (t) => {
  const [a, b] = await nodes(t, () => "drop", () => ok({ results: [item("a", 1, "4")] }));
  const unsafe = await client([a.url, b.url])
    .batch([{ op: "set", key: "a", value: 1 }, { op: "increment", key: "n" }])
    .catch((e) => e);
  assert.ok(unsafe instanceof UnknownOutcome);
  assert.equal(b.count(), 0);
  const results = await client([a.url, b.url]).batch([{ op: "set", key: "a", value: 1 }]);
  assert.deepEqual(results, [item("a", 1, "4")]);
  assert.equal(b.count(), 1);
});

test("a get whose connection drops is retried on the next endpoint", async (t) => {
  const [a, b] = await nodes(t, () => "drop", () => ok(item("k", "v", "3")));
  assert.deepEqual(await client([a.url, b.url]).get("k"), { value: "v", version: "3", expiresAt: null });
  assert.equal(a.count(), 1);
  assert.equal(b.count(), 1);
});

test("a refused connection moves an increment to the next endpoint", async (t) => {
  const dead = await deadEndpoint();
  const [b] = await nodes(t, () => ok(item("n", 1, "3")));
  assert.equal((await client([dead, b.url]).increment("n")).value, 1);
  assert.equal(b.count(), 1);
});

test("a put whose connection dropped, then refused on retry, is UnknownOutcome", async (t) => {
  // The first try may have been applied, so a 409 on the retry may be our own write.
  const [a, b] = await nodes(t, () => "drop", () => fail(409, "version_mismatch"));
  const error = await client([a.url, b.url]).put("k", 2, { ifVersion: "7" }).catch((e) => e);
  assert.ok(error instanceof UnknownOutcome, String(error));
  assert.ok(error.cause instanceof Conflict);
  assert.equal(b.count(), 1);
});

test("a delete whose connection dropped, then found no node to serve it, is UnknownOutcome, not Unavailable", async (t) => {
  const [a, b] = await nodes(t, () => "drop", () => fail(503, "no_leader"));
  const error = await client([a.url, b.url]).delete("k").catch((e) => e);
  assert.ok(error instanceof UnknownOutcome, String(error));
  assert.ok(error.cause instanceof Unavailable);
  assert.equal(a.count() + b.count(), 4);
});

test("a timeout moves a read on, and makes an increment UnknownOutcome", async (t) => {
  const [slow, b] = await nodes(t, () => "hang", (r) => (r.method === "GET" ? ok(item("k", 1, "3")) : ok(item("n", 1, "4"))));
  const read = await client([slow.url, b.url], { timeout: 200 }).get("k");
  assert.equal(read.value, 1);
  const error = await client([slow.url, b.url], { timeout: 200 }).increment("n").catch((e) => e);
  assert.ok(error instanceof UnknownOutcome, String(error));
  assert.equal(b.requests.filter((r) => r.method === "POST").length, 0);
});

test("every endpoint failing is Unavailable after retry.attempts tries, twice the endpoints by default", async (t) => {
  const [a, b] = await nodes(t, () => fail(503, "no_leader"), () => fail(503, "no_leader"));
  const error = await client([a.url, b.url]).get("k").catch((e) => e);
  assert.ok(error instanceof Unavailable);
  assert.equal(error.code, "no_leader");
  assert.equal(a.count() + b.count(), 4);

  const dead = await deadEndpoint();
  const none = await client([dead], { retry: false }).get("k").catch((e) => e);
  assert.ok(none instanceof Unavailable, String(none));
  assert.equal(none.status, null);
});

test("a failed endpoint is skipped by the calls after it", async (t) => {
  const dead = await deadEndpoint();
  const [b] = await nodes(t, () => ok(item("k", 1, "3")));
  const c = client([dead, b.url]);
  await c.get("k");
  await c.get("k");
  await c.get("k");
  assert.equal(b.count(), 3);
});

test("minVersion carries the highest index seen: a write's version, then a read's X-Cairn-Index", async (t) => {
  const [a] = await nodes(t, (r, _res, n) => {
    if (r.method === "PUT") return ok(item("k", 1, "42"));
    return ok(item("k", 1, "42"), { "x-cairn-index": n === 3 ? "57" : "40" });
  });
  const c = client([a.url]);
  await c.put("k", 1);
  await c.get("k");
  assert.equal(a.requests[1].query.minVersion, "42");
  await c.get("k"); // answers X-Cairn-Index 57
  await c.get("k");
  assert.equal(a.requests[3].query.minVersion, "57");

  const off = client([a.url], { readYourWrites: false });
  await off.put("k", 1);
  await off.get("k");
  assert.equal(a.requests.at(-1).query.minVersion, undefined);
});

test("a delete's X-Cairn-Applied-Index counts, and scans send minVersion on every page", async (t) => {
  const [a] = await nodes(t, (r) => {
    if (r.method === "DELETE") return ok({ key: "k", deleted: true }, { "x-cairn-applied-index": "61" });
    if (r.query.cursor === undefined) return ok({ items: [item("p/1", 1, "5")], nextCursor: "cC8x" });
    return ok({ items: [item("p/2", 2, "6")], nextCursor: null });
  });
  const c = client([a.url]);
  assert.equal(await c.delete("k"), true);
  const items = [];
  for await (const i of c.scan("p/", { limit: 1 })) items.push(i);
  assert.deepEqual(items.map((i) => i.key), ["p/1", "p/2"]);
  const pages = a.requests.filter((r) => r.path === "/kv/items");
  assert.deepEqual(pages.map((p) => [p.query.prefix, p.query.limit, p.query.cursor, p.query.values, p.query.minVersion]), [
    ["p/", "1", undefined, "true", "61"],
    ["p/", "1", "cC8x", "true", "61"],
  ]);
});

test("a 500 on a write is UnknownOutcome; on a read it is a plain CairnError", async (t) => {
  const [a, b] = await nodes(t, () => fail(500, "storage_error"), () => ok(item("k", 1, "3")));
  const write = await client([a.url, b.url]).put("k", 1).catch((e) => e);
  assert.ok(write instanceof UnknownOutcome, String(write));
  assert.equal(write.status, 500);
  const read = await client([a.url, b.url]).get("k").catch((e) => e);
  assert.ok(read instanceof CairnError && !(read instanceof UnknownOutcome));
  assert.equal(read.code, "storage_error");
  assert.equal(b.count(), 0);
});

test("409 version_mismatch carries currentVersion when the server gives it", async (t) => {
  const [a] = await nodes(t, () => fail(409, "version_mismatch", { currentVersion: "12" }));
  const error = await client([a.url]).put("k", 1, { ifVersion: "7" }).catch((e) => e);
  assert.ok(error instanceof Conflict);
  assert.equal(error.currentVersion, "12");
  assert.equal(error.code, "version_mismatch");
  assert.equal(error.message, "version_mismatch (fake)");
});

test("requests carry the credential, the namespace, and the key as one encoded path segment", async (t) => {
  const [a] = await nodes(t, (r) => (r.method === "GET" ? fail(404, "not_found") : fail(404, "not_found")));
  const c = client([a.url]);
  assert.equal(await c.get("dir/sub/ké y?#%"), null);
  assert.equal(await c.delete("k", { ifVersion: "3" }), false);
  assert.equal(a.requests[0].rawPath, "/kv/items/dir%2Fsub%2Fk%C3%A9%20y%3F%23%25");
  assert.equal(a.requests[0].headers.authorization, "Bearer tok");
  assert.equal(a.requests[0].headers["x-cairn-namespace"], "ns");
  assert.equal(a.requests[1].query.ifVersion, "3");
  // A 404 that is not a missing key (a wrong base path) is not mistaken for one.
  const [wrong] = await nodes(t, () => fail(404, "no_route"));
  assert.ok((await client([wrong.url]).get("k").catch((e) => e)) instanceof NotFound);
});

test("request() sends a raw body as given and answers status and parsed body", async (t) => {
  const [a] = await nodes(t, (r) => (r.body === "{not json" ? fail(400, "invalid_json") : ok({ echoed: JSON.parse(r.body) })));
  const c = client([a.url]);
  const answer = await c.request("put", "/kv/items/k", { body: { value: 1 }, headers: { "If-Match": '"3"' }, query: { x: 1 } });
  assert.equal(answer.status, 200);
  assert.deepEqual(answer.body, { data: { echoed: { value: 1 } } });
  assert.equal(a.requests[0].headers["if-match"], '"3"');
  assert.equal(a.requests[0].query.x, "1");
  const error = await c.request("PUT", "/kv/items/k", { body: "{not json" }).catch((e) => e);
  assert.equal(error.name, "BadRequest");
  assert.equal(error.code, "invalid_json");
});

test("the caller's AbortSignal stops a call without a retry", async (t) => {
  const [slow, b] = await nodes(t, () => "hang", () => ok(item("k", 1, "3")));
  const controller = new AbortController();
  const pending = client([slow.url, b.url]).request("GET", "/kv/items/k", { signal: controller.signal });
  setTimeout(() => controller.abort(new Error("stop")), 50);
  await assert.rejects(pending, /stop/);
  assert.equal(b.count(), 0);
});
