// Runs one case of sdk/cases.json exactly as its "format" says: keys and prefixes under the
// case's own prefix (stripped from what comes back), `$name.path` references, `<any>`, `$gt`,
// and typed errors by class, code and status.

import assert from "node:assert/strict";

/** Runs `testCase`; `clients` maps the names the format gives to Client instances. */
export async function runCase(testCase, { clients, prefix }) {
  const saved = {};
  for (const [n, step] of testCase.steps.entries()) {
    const where = `step ${n} (${step.call})`;
    const args = resolve(step.args ?? {}, saved);
    const client = clients[step.client ?? testCase.client ?? "default"];
    assert.ok(client, `${where}: no client named ${step.client ?? testCase.client}`);
    let result;
    let error;
    try {
      result = await call(client, step.call, args, prefix);
    } catch (e) {
      error = e;
    }
    // Saved before `expect` is resolved: a step's expectation may name its own result
    // ("$b.0.version": every op of one batch shares the first op's version).
    if (step.save !== undefined && !error) saved[step.save] = result;
    const expect = resolve(step.expect ?? {}, saved);
    if (expect.error !== undefined) {
      assert.ok(error, `${where}: expected ${expect.error}, got the result ${JSON.stringify(result)}`);
      assert.equal(error.name, expect.error, `${where}: expected ${expect.error}, got ${error.name}: ${error.message}`);
      if (expect.code !== undefined) assert.equal(error.code, expect.code, `${where}: error code`);
      if (expect.status !== undefined) assert.equal(error.status, expect.status, `${where}: error status`);
    } else {
      if (error) throw new Error(`${where}: expected success, got ${error.name} ${error.status} ${error.code}: ${error.message}`, { cause: error });
      if ("result" in expect) {
        const mismatch = match(result, expect.result, "result");
        assert.equal(mismatch, null, `${where}: ${mismatch}\n  got: ${JSON.stringify(result)}\n  expected: ${JSON.stringify(expect.result)}`);
      }
    }
  }
}

async function call(client, name, args, prefix) {
  const key = (k) => prefix + k;
  switch (name) {
    case "get":
      return client.get(key(args.key));
    case "put":
      return strip(await client.put(key(args.key), args.value, args.options ?? {}), prefix);
    case "delete":
      return client.delete(key(args.key), args.options ?? {});
    case "increment":
      return strip(await client.increment(key(args.key), ...(args.delta === undefined ? [] : [args.delta])), prefix);
    case "scan": {
      const items = [];
      for await (const item of client.scan(key(args.prefix), args.options ?? {})) items.push(strip(item, prefix));
      return items;
    }
    case "batch":
      return (await client.batch(args.ops.map((op) => ({ ...op, key: key(op.key) })))).map((r) => strip(r, prefix));
    case "watch": {
      const events = [];
      const signal = AbortSignal.timeout(10_000);
      for await (const event of client.watch(key(args.prefix), { after: args.after, signal })) {
        events.push({ ...event, changes: event.changes.map((c) => strip(c, prefix)) });
        if (events.length === args.count) break;
      }
      assert.equal(events.length, args.count, `watch: ${events.length} of ${args.count} events within 10 s`);
      return events;
    }
    case "raw": {
      const answer = await client.request(args.method, `/kv/items/${encodeURIComponent(key(args.key))}${args.suffix ?? ""}`, {
        headers: args.headers,
        body: args.body,
      });
      return { status: answer.status, body: answer.body };
    }
    case "sleep":
      await new Promise((r) => setTimeout(r, args.ms));
      return null;
    default:
      throw new Error(`unknown call ${name}`);
  }
}

/** The case's view of a key: without the run's prefix, which every key read back must carry. */
function strip(value, prefix) {
  if (value === null || typeof value !== "object" || typeof value.key !== "string") return value;
  assert.ok(value.key.startsWith(prefix), `a key read back lacks the case's prefix: ${value.key}`);
  return { ...value, key: value.key.slice(prefix.length) };
}

/** Replaces every string `$name` or `$name.a.0.b` with that saved result or a path into it. */
export function resolve(value, saved) {
  if (typeof value === "string" && value.startsWith("$")) {
    const [name, ...path] = value.slice(1).split(".");
    assert.ok(name in saved, `no saved result named ${name}`);
    let out = saved[name];
    for (const part of path) {
      assert.ok(out !== null && typeof out === "object" && part in out, `saved ${name} has no ${path.join(".")}`);
      out = out[part];
    }
    return out;
  }
  if (Array.isArray(value)) return value.map((v) => resolve(v, saved));
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, resolve(v, saved)]));
  }
  return value;
}

/** Null when `actual` matches `pattern`, else where and why it does not. */
export function match(actual, pattern, at) {
  if (pattern === "<any>") return actual === null || actual === undefined ? `${at}: absent or null, expected <any>` : null;
  if (pattern !== null && typeof pattern === "object" && !Array.isArray(pattern) && "$gt" in pattern) {
    return greater(actual, pattern.$gt) ? null : `${at}: ${JSON.stringify(actual)} is not greater than ${JSON.stringify(pattern.$gt)}`;
  }
  if (Array.isArray(pattern)) {
    if (!Array.isArray(actual)) return `${at}: expected an array`;
    if (actual.length !== pattern.length) return `${at}: ${actual.length} elements, expected ${pattern.length}`;
    for (const [i, p] of pattern.entries()) {
      const m = match(actual[i], p, `${at}[${i}]`);
      if (m) return m;
    }
    return null;
  }
  if (pattern !== null && typeof pattern === "object") {
    if (actual === null || typeof actual !== "object" || Array.isArray(actual)) return `${at}: expected an object`;
    for (const [k, p] of Object.entries(pattern)) {
      if (!(k in actual)) return `${at}.${k}: absent`;
      const m = match(actual[k], p, `${at}.${k}`);
      if (m) return m;
    }
    return null;
  }
  return actual === pattern ? null : `${at}: ${JSON.stringify(actual)}, expected ${JSON.stringify(pattern)}`;
}

function greater(actual, than) {
  const integer = (v) => (typeof v === "string" && /^-?\d+$/.test(v)) || Number.isInteger(v);
  if (integer(actual) && integer(than)) return BigInt(actual) > BigInt(than);
  const a = Number(actual);
  const b = Number(than);
  return (typeof actual === "string" || typeof actual === "number") && !Number.isNaN(a) && a > b;
}
