// Every case of sdk/cases.json, one test each, against a live 3-node cluster this suite starts.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, test } from "node:test";

import { Client } from "../dist/index.js";
import { runCase } from "./support/case-runner.mjs";
import { hex, startCluster } from "./support/cluster.mjs";
import { deadEndpoint } from "./support/fake-server.mjs";

const { cases } = JSON.parse(readFileSync(new URL("../../cases.json", import.meta.url), "utf8"));
const run = hex(4);

let cluster;
const clients = {};

before(async () => {
  cluster = await startCluster({ size: 3 });
  const namespace = `sdk-${hex(4)}`;
  const leaderId = await cluster.leaderId();
  const leader = cluster.node(leaderId);
  const follower = cluster.nodes.find((n) => n.id !== leaderId);

  const made = await cluster.admin(leader, "POST", "/admin/tokens", { body: { namespace, permissions: ["read"] } });
  assert.equal(made.status, 201, JSON.stringify(made.body));

  clients.default = new Client({ endpoints: cluster.urls, token: cluster.adminToken, namespace });
  clients.follower = new Client({ endpoints: [follower.url], token: cluster.adminToken, namespace });
  // The reader is a client of its own, so it has not seen the default client's writes; the
  // leader first makes its reads linearizable rather than a race with a follower's apply.
  clients.reader = new Client({ endpoints: [leader.url, ...cluster.urls.filter((u) => u !== leader.url)], token: made.body.data.token, namespace });
  clients.badtoken = new Client({ endpoints: cluster.urls, token: `cairn_${hex(8)}_${hex(32)}`, namespace });
  clients.dead = new Client({ endpoints: [await deadEndpoint()], token: cluster.adminToken, namespace, retry: false });
});

after(async () => {
  await cluster?.stop();
});

assert.ok(cases.length > 0, "sdk/cases.json holds no case");
for (const [n, testCase] of cases.entries()) {
  test(`case ${n}: ${testCase.name}`, async () => {
    try {
      await runCase(testCase, { clients, prefix: `${run}-${n}:` });
    } catch (error) {
      error.message += `\n(case ${n}; node logs are in ${cluster.dir})`;
      throw error;
    }
  });
}
