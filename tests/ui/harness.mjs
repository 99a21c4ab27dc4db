// Test harness for the console's browser tests: a live 3-node Cairn cluster of the real
// binary on free loopback ports, Debian's Chromium through playwright-core, polling helpers
// with deadlines, screenshots, and a guard that fails a test on any page or console error.

import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, existsSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
export const shotDir = path.join(repoRoot, "target", "console-screenshots");
export const ADMIN = "console-test-admin-secret";

// Every node this process started, so that even a run cut short (a test timeout, an uncaught
// error) kills its own children, and only those, on the way out.
const children = new Set();
process.on("exit", () => {
  for (const proc of children) proc.kill("SIGKILL");
});

/** Polls `fn` until it answers a truthy value, or fails with `what` after `timeoutMs`. */
export async function until(what, fn, { timeoutMs = 10000, everyMs = 100 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${last.message})` : ""}`);
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** A free loopback port: bind port 0, read the port, close. */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Calls a node's API from Node (the "someone else" writing beside the console). */
export async function api(base, method, p, { body, raw, token = ADMIN, namespace } = {}) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (namespace) headers["X-Cairn-Namespace"] = namespace;
  if (body !== undefined || raw !== undefined) headers["Content-Type"] = "application/json";
  // `raw` sends body text as written (numbers JSON.stringify could not spell).
  const resp = await fetch(base + p, { method, headers, body: raw ?? (body === undefined ? undefined : JSON.stringify(body)) });
  const text = await resp.text();
  return { status: resp.status, text, json: text ? JSON.parse(text) : null };
}

/**
 * Starts `size` nodes (with `--admin-token` unless `open`) and waits (at most 20 s) until
 * they agree on a leader. An open node on loopback serves anonymous callers.
 */
export async function startCluster({ size = 3, open = false } = {}) {
  const bin = path.resolve(repoRoot, process.env.CAIRN_BIN || "target/debug/cairn");
  assert.ok(existsSync(bin), `no cairn binary at ${bin}: run cargo build or set CAIRN_BIN`);
  const dir = mkdtempSync(path.join(tmpdir(), "cairn-console-test-"));
  const ports = [];
  for (let i = 0; i < size; i++) ports.push(await freePort());
  const peers = ports.map((p, i) => `${i + 1}=127.0.0.1:${p}`).join(",");
  const nodes = ports.map((port, i) => {
    const id = i + 1;
    const log = path.join(dir, `node${id}.log`);
    const fd = openSync(log, "w");
    const args = ["serve", "--id", String(id), "--listen", `127.0.0.1:${port}`, "--data-dir", path.join(dir, `data${id}`)];
    if (size > 1) args.push("--peers", peers);
    if (!open) args.push("--admin-token", ADMIN);
    const proc = spawn(bin, args, { stdio: ["ignore", fd, fd] });
    return { id, port, url: `http://127.0.0.1:${port}`, proc, log, exited: false };
  });
  for (const n of nodes) {
    children.add(n.proc);
    n.proc.on("exit", () => {
      n.exited = true;
      children.delete(n.proc);
    });
  }

  const cluster = {
    dir, nodes,
    async status(n) {
      return (await api(n.url, "GET", "/cluster/status", { token: open ? null : ADMIN })).json.data;
    },
    /** The node every node names as leader, once they agree. */
    async leader(timeoutMs = 20000) {
      const id = await until("the nodes to agree on a leader", async () => {
        const live = nodes.filter((n) => !n.exited);
        const seen = await Promise.all(live.map((n) => cluster.status(n)));
        const l = seen[0].leader;
        return l && seen.every((s) => s.leader === l) ? l : null;
      }, { timeoutMs, everyMs: 200 });
      return nodes[id - 1];
    },
    kill(n) {
      n.proc.kill("SIGKILL");
      return until(`node ${n.id} to exit`, () => n.exited, { timeoutMs: 5000 });
    },
    stop() {
      for (const n of nodes) if (!n.exited) n.proc.kill("SIGKILL");
    },
    logs() {
      return nodes.map((n) => `---- node ${n.id} (${n.log}) ----\n${readFileSync(n.log, "utf8").split("\n").slice(-40).join("\n")}`).join("\n");
    },
    cleanup() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await cluster.leader();
  } catch (e) {
    cluster.stop();
    throw new Error(`${e.message}\n${cluster.logs()}`);
  }
  return cluster;
}

export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

/**
 * A fresh context and page that records every page error, console error (CSP violations
 * included) and dialog. Chromium logs an HTTP error answer to fetch as "Failed to load
 * resource: ... status of N"; `allow` lists the [status, path] pairs a test expects (each a
 * refusal the console is meant to get and show), and anything else fails the test.
 */
export async function openPage(browser, testName, { allow = [], viewport = { width: 1280, height: 800 } } = {}) {
  const context = await browser.newContext({ viewport });
  // Every wait fails within 10 s unless a test asks for longer.
  context.setDefaultTimeout(10000);
  const page = await context.newPage();
  const problems = [];
  const dialogs = [];
  page.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`));
  page.on("dialog", (d) => {
    dialogs.push(`${d.type()}: ${d.message()}`);
    d.dismiss().catch(() => {});
  });
  page.on("console", (m) => {
    if (m.type() !== "error") return;
    const text = m.text();
    const status = /^Failed to load resource: the server responded with a status of (\d+)/.exec(text)?.[1];
    const url = m.location()?.url || "";
    const p = url ? new URL(url).pathname : "";
    if (status && allow.some(([s, prefix]) => String(s) === status && p.startsWith(prefix))) return;
    problems.push(`console error: ${text} (${url})`);
  });
  mkdirSync(shotDir, { recursive: true });
  let step = 0;
  return {
    page, context, dialogs,
    /** Saves target/console-screenshots/<test>-<nn>-<step>.png. */
    async shot(name) {
      step += 1;
      await page.screenshot({ path: path.join(shotDir, `${testName}-${String(step).padStart(2, "0")}-${name}.png`), fullPage: true });
    },
    /** Fails on any page error, unexpected console error, or JS dialog (alert/confirm). */
    assertClean() {
      assert.deepEqual(problems, [], "page or console errors");
      assert.deepEqual(dialogs, [], "unexpected JavaScript dialogs");
    },
    close: () => context.close(),
  };
}

/** Opens the console on `node` and logs in with `token`, waiting for the key list. */
export async function login(page, node, token = ADMIN) {
  await page.goto(`${node.url}/ui/`);
  await page.locator("#token").fill(token);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.locator("section.browse").waitFor({ timeout: 10000 });
}
