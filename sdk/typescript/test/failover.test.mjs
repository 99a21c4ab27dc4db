// Failover under load: strong reads, compare-and-swap writes and increments run against a
// 3-node cluster while its leader is SIGKILLed. Reads and conditional writes must carry on, and
// no increment may be applied twice: acknowledged <= final value <= acknowledged + unknown.
// A watch of the counter streams from the leader when it dies and must resume elsewhere with
// every increment once, in order.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { Client, Conflict, UnknownOutcome, Unavailable } from "../dist/index.js";
import { hex, startCluster, waitFor } from "./support/cluster.mjs";

const RUN_MS = 6_000;
const KILL_AT_MS = 1_500;

let cluster;

before(async () => {
  cluster = await startCluster({ size: 3 });
});

after(async () => {
  await cluster?.stop();
});

test("killing the leader mid-run: reads and CAS writes carry on, no increment applies twice, the watch misses none", async (t) => {
  const namespace = `sdk-${hex(4)}`;
  const client = new Client({ endpoints: cluster.urls, token: cluster.adminToken, namespace });
  const strongGet = async (key) => (await client.request("GET", `/kv/items/${key}`, { query: { consistency: "strong" } })).body.data;

  await client.put("read-me", "x");
  let casVersion = (await client.put("cas", 0)).version;

  // A client of its own with the leader first, so its stream is on the node that dies,
  // whatever the other calls' failures do to their client's endpoint.
  const leaderUrl = cluster.node(await cluster.leaderId()).url;
  const watcher = new Client({ endpoints: [leaderUrl, ...cluster.urls.filter((u) => u !== leaderUrl)], token: cluster.adminToken, namespace });
  const stopWatch = new AbortController();
  const watched = [];
  const watching = (async () => {
    for await (const event of watcher.watch("counter", { after: casVersion, signal: stopWatch.signal })) {
      for (const change of event.changes) watched.push(change.value);
    }
  })();

  const start = Date.now();
  const end = start + RUN_MS;
  let killed = false;
  const unexpected = [];
  const stats = {
    gets: { before: 0, after: 0, failed: 0 },
    cas: { before: 0, after: 0, unknown: 0, conflicts: 0, failed: 0 },
    increments: { acknowledged: 0, unknown: 0, unavailable: 0, after: 0 },
  };
  const phase = () => (killed ? "after" : "before");
  const note = (where, error) => unexpected.push(`${where}: ${error.name} ${error.status} ${error.code}: ${error.message}`);

  const reads = (async () => {
    while (Date.now() < end) {
      try {
        assert.equal((await strongGet("read-me")).value, "x");
        stats.gets[phase()]++;
      } catch (error) {
        if (error instanceof Unavailable) stats.gets.failed++;
        else note("get", error);
      }
    }
  })();

  const compareAndSwaps = (async () => {
    // Set by an UnknownOutcome: that write may have applied, so until the version is read
    // again a Conflict may be our own write and is no error.
    let unknownSinceRead = false;
    let n = 0;
    while (Date.now() < end) {
      try {
        casVersion = (await client.put("cas", ++n, { ifVersion: casVersion })).version;
        stats.cas[phase()]++;
        continue;
      } catch (error) {
        if (error instanceof UnknownOutcome) {
          stats.cas.unknown++;
          unknownSinceRead = true;
        } else if (error instanceof Conflict && unknownSinceRead) {
          stats.cas.conflicts++;
        } else if (error instanceof Unavailable) {
          stats.cas.failed++;
          continue;
        } else {
          note("conditional put", error);
          continue;
        }
      }
      // A strong read after the unknown: any entry of the old leader that is ever to commit
      // has committed once the new leader serves one, so the version read here is final.
      try {
        casVersion = (await strongGet("cas")).version;
        unknownSinceRead = false;
      } catch (error) {
        if (!(error instanceof Unavailable)) note("re-read", error);
      }
    }
  })();

  const increments = (async () => {
    while (Date.now() < end) {
      try {
        await client.increment("counter");
        stats.increments.acknowledged++;
        if (killed) stats.increments.after++;
      } catch (error) {
        if (error instanceof UnknownOutcome) stats.increments.unknown++;
        else if (error instanceof Unavailable) stats.increments.unavailable++;
        else note("increment", error);
      }
    }
  })();

  const kill = (async () => {
    await new Promise((r) => setTimeout(r, KILL_AT_MS));
    const leader = await cluster.leaderId();
    await cluster.kill(leader);
    killed = true;
    t.diagnostic(`killed node ${leader} (the leader) at ${Date.now() - start} ms`);
  })();

  await Promise.all([reads, compareAndSwaps, increments, kill]);

  const counter = await waitFor("a strong read of the counter", async () => {
    try {
      return (await strongGet("counter")).value;
    } catch (error) {
      if (error instanceof Unavailable) return undefined;
      throw error;
    }
  });
  t.diagnostic(JSON.stringify({ ...stats, counter }));

  await waitFor("the watch to reach the final counter", async () => (watched.at(-1) === counter ? true : undefined), 10_000).catch(() => {});
  stopWatch.abort();
  await watching;
  assert.deepEqual(watched, Array.from({ length: counter }, (_, i) => i + 1), "the watch saw every increment once, in order");

  assert.deepEqual(unexpected, [], "only Unavailable, UnknownOutcome, and Conflict after an unknown outcome");
  assert.ok(stats.gets.after > 0, "strong reads succeeded after the kill");
  assert.ok(stats.cas.after > 0, "conditional puts succeeded after the kill");
  assert.ok(stats.increments.after > 0, "increments succeeded after the kill");
  const { acknowledged, unknown } = stats.increments;
  assert.ok(counter >= acknowledged, `counter ${counter} lost acknowledged increments (${acknowledged})`);
  assert.ok(counter <= acknowledged + unknown, `counter ${counter} > ${acknowledged} acknowledged + ${unknown} unknown: an increment applied twice`);
});
