// Leases, locks and elections against a live 3-node cluster this suite starts: keys go with
// their lease, a lock is exclusive and hands off in order, a stale fencing token is refused, and
// an election's leadership passes to the waiting candidate on resign. Every wait has a deadline;
// nothing asserts on timing.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { Client, Conflict, Lease, NotFound } from "../dist/index.js";
import { hex, startCluster, waitFor } from "./support/cluster.mjs";

let cluster;
let kv;

before(async () => {
  cluster = await startCluster({ size: 3 });
  await cluster.leaderId();
  kv = new Client({ endpoints: cluster.urls, token: cluster.adminToken, namespace: `sdk-${hex(4)}` });
});

after(async () => {
  await cluster?.stop();
});

/** Settles with `promise`, or fails the test after `ms`. */
function within(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

test("keys attached to a lease vanish when it is revoked; a keepalive then finds it lost", async () => {
  const lease = await kv.lease(30);
  assert.ok(lease instanceof Lease);
  assert.match(lease.id, /^\d+$/);
  await kv.put("svc/a", { addr: "10.0.0.5" }, { lease });
  await kv.put("svc/b", 1, { lease: lease.id });
  await kv.put("svc/keep", 2);
  const info = await lease.info();
  assert.deepEqual([...info.keys].sort(), ["svc/a", "svc/b"]);
  const renewed = await lease.keepAlive();
  assert.equal(renewed.id, lease.id);
  assert.equal(renewed.ttlSeconds, 30);

  assert.equal(await lease.revoke(), 2);
  assert.equal(await kv.get("svc/a"), null);
  assert.equal(await kv.get("svc/b"), null);
  assert.equal((await kv.get("svc/keep")).value, 2);
  assert.equal(await lease.info(), null);
  assert.equal(lease.isLost, true);
  // A second revoke is done, not an error.
  assert.equal(await lease.revoke(), 0);

  const other = await kv.lease(30);
  const byId = new Client({ endpoints: cluster.urls, token: cluster.adminToken, namespace: "elsewhere" });
  // In another namespace the lease reads as absent: lease_not_found is a NotFound.
  const error = await byId.put("k", 1, { lease: other.id }).catch((e) => e);
  assert.ok(error instanceof NotFound, String(error));
  assert.equal(error.code, "lease_not_found");
  await other.revoke();
  const gone = await other.keepAlive().catch((e) => e);
  assert.ok(gone instanceof NotFound, String(gone));
  assert.equal(gone.code, "lease_not_found");
});

test("a background keepalive reports the lease lost once it is revoked elsewhere", async () => {
  const lease = await kv.lease(3);
  const stop = lease.keepAliveEvery(100);
  try {
    await kv.request("DELETE", `/leases/${lease.id}`);
    const error = await within(15_000, "the lease to be reported lost", lease.lost);
    assert.ok(error instanceof NotFound);
    assert.equal(error.code, "lease_not_found");
    assert.equal(lease.isLost, true);
  } finally {
    stop();
  }
});

test("a lock is exclusive, hands off in order on release, and fences a stale token", async () => {
  const name = `job-${hex(3)}`;
  const first = await kv.lock(name, { ttl: 10 });
  assert.match(first.token, /^\d+$/);
  assert.equal(first.name, name);

  // Exclusive: a second taker that will not wait is refused with lock_held.
  const refused = await kv.lock(name, { ttl: 10 }).catch((e) => e);
  assert.ok(refused instanceof Conflict, String(refused));
  assert.equal(refused.code, "lock_held");

  // The holder's fenced write lands.
  await kv.put(`${name}/out`, "first", { ifFence: first });

  // Two waiters queue in order; the lock goes to the first of them on release.
  const secondP = kv.lock(name, { ttl: 10, wait: 30 });
  await waitFor("the second waiter to queue", async () => ((await kv.request("GET", `/locks/${name}`)).body.data.waiting >= 1 ? true : undefined), 15_000);
  const thirdP = kv.lock(name, { ttl: 10, wait: 30 });
  await waitFor("the third waiter to queue", async () => ((await kv.request("GET", `/locks/${name}`)).body.data.waiting >= 2 ? true : undefined), 15_000);
  const order = [];
  secondP.then(() => order.push("second"));
  thirdP.then(() => order.push("third"));

  await first.release();
  const second = await within(30_000, "the second waiter to hold", secondP);
  assert.deepEqual(order, ["second"], "the waiter that queued first holds first");
  assert.ok(BigInt(second.token) > BigInt(first.token), "a later holder has a larger token");
  const holder = (await kv.request("GET", `/locks/${name}`)).body.data.holder;
  assert.equal(holder.token, second.token);

  // The old holder's token is stale: its write is fenced.
  const fenced = await kv.put(`${name}/out`, "stale", { ifFence: first.fence }).catch((e) => e);
  assert.ok(fenced instanceof Conflict, String(fenced));
  assert.equal(fenced.code, "fenced");
  assert.equal((await kv.get(`${name}/out`)).value, "first");

  await second.release();
  const third = await within(30_000, "the third waiter to hold", thirdP);
  assert.deepEqual(order, ["second", "third"]);
  await kv.put(`${name}/out`, "third", { ifFence: third });
  await third.release();
  // Releasing again is done, not an error; the lock is free.
  await third.release();
  assert.equal((await kv.request("GET", `/locks/${name}`)).body.data.holder, null);
});

test("a lock held on a lease of one's own; revoking the lease hands the lock on", async () => {
  const name = `own-${hex(3)}`;
  const lease = await kv.lease(30);
  const lock = await kv.lock(name, { lease });
  assert.equal(lock.lease, lease);
  const waiting = kv.lock(name, { ttl: 10, wait: 30 });
  await waitFor("the waiter to queue", async () => ((await kv.request("GET", `/locks/${name}`)).body.data.waiting >= 1 ? true : undefined), 15_000);
  await lease.revoke();
  const next = await within(30_000, "the waiter to hold", waiting);
  assert.ok(BigInt(next.token) > BigInt(lock.token));
  const fenced = await kv.put(`${name}/x`, 1, { ifFence: lock }).catch((e) => e);
  assert.ok(fenced instanceof Conflict);
  assert.equal(fenced.code, "fenced");
  await next.release();
});

test("an election: the first campaign leads, observe follows it, resign hands over to the waiting candidate", async () => {
  const name = `el-${hex(3)}`;
  assert.equal(await kv.leader(name), null);

  const firstLease = await kv.lease(60);
  const secondLease = await kv.lease(60);
  const first = await kv.elect(name, "node-a", { lease: firstLease });
  assert.match(first.token, /^\d+$/);
  assert.equal((await kv.leader(name)).value, "node-a");

  // A second candidate that will not wait is not elected.
  const refused = await kv.elect(name, "node-x", { ttl: 10, wait: 0 }).catch((e) => e);
  assert.ok(refused instanceof Conflict, String(refused));
  assert.equal(refused.code, "not_elected");

  const controller = new AbortController();
  const stream = kv.observe(name, { signal: controller.signal })[Symbol.asyncIterator]();
  const next = () => within(15_000, "an observe event", stream.next());
  try {
    const seen = (await next()).value;
    assert.equal(seen.token, first.token);
    assert.equal(seen.value, "node-a");

    const proclaimed = await first.proclaim("node-a2");
    assert.equal(proclaimed.value, "node-a2");
    assert.equal((await next()).value.value, "node-a2");

    // The second candidate waits behind the first. Its lease is never renewed in the background,
    // and neither is the first's, so the only entry after `baseline` is its campaign: once the
    // leader has applied past it, the candidate is queued.
    const leaderNode = new Client({ endpoints: [cluster.node(await cluster.leaderId()).url], token: cluster.adminToken });
    const applied = async () => BigInt((await leaderNode.request("GET", "/cluster/status")).body.data.appliedIndex);
    const baseline = await applied();
    const secondP = kv.elect(name, "node-b", { lease: secondLease, wait: 30 });
    await waitFor("the second candidate to queue", async () => ((await applied()) > baseline ? true : undefined), 15_000);
    const resigned = await kv.request("DELETE", `/elections/${name}/resign`, { query: { token: first.token } });
    assert.equal(resigned.body.data.resigned, true);
    const second = await within(30_000, "the second candidate to lead", secondP);
    assert.equal(second.value, "node-b");
    assert.ok(BigInt(second.token) > BigInt(first.token));
    assert.ok(BigInt(second.token) < BigInt(resigned.headers.get("x-cairn-applied-index")), "it was queued before the resign");

    // observe shows the new leader (after a `none` perhaps, if the stream saw the gap).
    let event;
    do event = (await next()).value;
    while (event === null || event.token !== second.token);
    assert.equal(event.value, "node-b");

    const stale = await first.proclaim("again").catch((e) => e);
    assert.ok(stale instanceof Conflict, String(stale));
    assert.equal(stale.code, "fenced");

    await second.resign();
    // resign is done again after the first resigned through a raw request: a 404 counts as done.
    await first.resign();
    do event = (await next()).value;
    while (event !== null);
    assert.equal(await kv.leader(name), null);
  } finally {
    controller.abort();
    await stream.return?.();
    await firstLease.revoke();
    await secondLease.revoke();
  }
});
