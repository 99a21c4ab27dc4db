// RateLimited from a real node started with --rate-limit: the class, the code and Retry-After.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { Client, RateLimited } from "../dist/index.js";
import { startCluster } from "./support/cluster.mjs";

let node;

before(async () => {
  node = await startCluster({ size: 1, extraArgs: ["--rate-limit", "5"] });
});

after(async () => {
  await node?.stop();
});

test("a burst over the node's rate limit gets RateLimited with the code and retryAfter", async () => {
  const client = new Client({ endpoints: node.urls, token: node.adminToken, namespace: "sdk-rate" });
  // The bucket holds 5 and refills at 5 a second: 20 gets at once overrun it whatever the timing.
  const outcomes = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => client.get(`k${i}`)));
  const limited = outcomes.filter((o) => o.status === "rejected").map((o) => o.reason);
  assert.ok(limited.length > 0, "no request was limited");
  for (const error of limited) {
    assert.ok(error instanceof RateLimited, `${error.name}: ${error.message}`);
    assert.equal(error.status, 429);
    assert.equal(error.code, "rate_limited");
    assert.ok(error.retryAfter > 0, `retryAfter ${error.retryAfter}`);
    assert.ok(error.requestId, "the answer's X-Request-Id");
  }
  const served = outcomes.filter((o) => o.status === "fulfilled");
  assert.ok(served.length > 0 && served.every((o) => o.value === null), "the gets within the limit were served (absent keys)");
});
