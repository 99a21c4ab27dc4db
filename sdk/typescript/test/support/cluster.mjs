// Real Cairn nodes for the tests: spawned from the built binary on free loopback ports, in a
// fresh temp dir. Only these child processes are ever signalled, and every wait has a deadline.

import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../..");

/** `CAIRN_BIN`, else the repo's debug build. */
export function cairnBin() {
  const bin = process.env.CAIRN_BIN || path.join(REPO_ROOT, "target/debug/cairn");
  if (!existsSync(bin)) {
    throw new Error(`no cairn binary at ${bin}: run \`cargo build\` at the repo root, or set CAIRN_BIN`);
  }
  return bin;
}

export const hex = (bytes) => randomBytes(bytes).toString("hex");

/** `n` distinct ports the kernel handed out, all held at once so none repeats, then released. */
export async function freePorts(n) {
  const servers = await Promise.all(
    Array.from({ length: n }, () => new Promise((resolve, reject) => {
      const s = net.createServer();
      s.once("error", reject);
      s.listen(0, "127.0.0.1", () => resolve(s));
    })),
  );
  const ports = servers.map((s) => s.address().port);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` every 100 ms until it returns a value other than undefined, or throws at the deadline. */
export async function waitFor(what, check, deadlineMs = 30_000) {
  const end = Date.now() + deadlineMs;
  let last;
  while (Date.now() < end) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    await sleep(100);
  }
  throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}${last ? `: ${last.message}` : ""}`);
}

// Children still alive when the test process exits (a crash, a failed assertion in a hook) are
// killed with it, so no node outlives its suite.
const live = new Set();
process.on("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

/**
 * Starts `size` nodes as one cluster (a single node when `size` is 1), with an admin token and
 * a cluster secret; resolves once every node answers `/ready`. `extraArgs` go to every node.
 */
export async function startCluster({ size = 3, extraArgs = [] } = {}) {
  const bin = cairnBin();
  const dir = mkdtempSync(path.join(tmpdir(), "cairn-sdk-ts-"));
  const ports = await freePorts(size);
  const adminToken = hex(16);
  // One secret for all: peers authenticate each other's Raft RPCs with it.
  const clusterSecret = hex(16);
  const peers = ports.map((p, i) => `${i + 1}=127.0.0.1:${p}`).join(",");
  const nodes = ports.map((port, i) => {
    const id = i + 1;
    const log = path.join(dir, `node${id}.log`);
    const fd = openSync(log, "a");
    const args = ["serve", "--id", String(id), "--listen", `127.0.0.1:${port}`, "--data-dir", path.join(dir, `node${id}`)];
    if (size > 1) args.push("--peers", peers);
    args.push("--admin-token", adminToken, "--cluster-secret", clusterSecret, ...extraArgs);
    const child = spawn(bin, args, { stdio: ["ignore", fd, fd] });
    closeSync(fd);
    live.add(child);
    const exited = new Promise((resolve) => child.once("exit", (code, signal) => {
      live.delete(child);
      resolve({ code, signal });
    }));
    return { id, port, url: `http://127.0.0.1:${port}`, child, exited, log, alive: true };
  });
  const cluster = {
    dir,
    nodes,
    adminToken,
    urls: nodes.map((n) => n.url),
    /** The admin token's request to one node, for the harness's own set-up calls. */
    async admin(node, method, route, { body, namespace } = {}) {
      const headers = { authorization: `Bearer ${adminToken}` };
      if (namespace) headers["x-cairn-namespace"] = namespace;
      const response = await fetch(node.url + route, { method, headers, body: body && JSON.stringify(body), signal: AbortSignal.timeout(10_000) });
      const text = await response.text();
      return { status: response.status, body: text ? JSON.parse(text) : null };
    },
    /** The id every live node agrees leads, once they do. */
    async leaderId(deadlineMs = 30_000) {
      return waitFor("an agreed leader", async () => {
        const seen = await Promise.all(nodes.filter((n) => n.alive).map(async (n) => (await cluster.admin(n, "GET", "/cluster/status")).body?.data?.leader));
        return seen.length > 0 && seen.every((l) => l != null && l === seen[0]) ? seen[0] : undefined;
      }, deadlineMs);
    },
    node(id) {
      return nodes.find((n) => n.id === id);
    },
    /** SIGKILL one of our own nodes and wait for it to be gone. */
    async kill(id) {
      const node = cluster.node(id);
      node.alive = false;
      node.child.kill("SIGKILL");
      await node.exited;
    },
    logs() {
      return nodes.map((n) => `--- node ${n.id} ---\n${readFileSync(n.log, "utf8").slice(-4000)}`).join("\n");
    },
    /** SIGTERM, a deadline, then SIGKILL: our children only. Then the temp dir goes. */
    async stop() {
      await Promise.all(nodes.map(async (n) => {
        if (n.child.exitCode !== null || n.child.signalCode !== null) return;
        n.child.kill("SIGTERM");
        const timer = setTimeout(() => n.child.kill("SIGKILL"), 10_000);
        await n.exited;
        clearTimeout(timer);
      }));
      rmSync(dir, { recursive: true, force: true });
    },
  };

  try {
    await Promise.all(nodes.map((n) => waitFor(`node ${n.id} /ready`, async () => {
      if (n.child.exitCode !== null) throw new Error(`node ${n.id} exited with ${n.child.exitCode}`);
      const response = await fetch(`${n.url}/ready`, { signal: AbortSignal.timeout(2_000) });
      await response.arrayBuffer();
      return response.status === 200 ? true : undefined;
    })));
  } catch (error) {
    const logs = cluster.logs();
    await cluster.stop();
    throw new Error(`${error.message}\n${logs}`);
  }
  return cluster;
}
