// Browser tests of the web console (/ui/) against a live 3-node cluster of the real binary.
// The tests share one cluster and run in order; the last one kills a follower.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { ADMIN, api, launchBrowser, login, openPage, startCluster, until } from "./harness.mjs";

let cluster;
let browser;
let ui; // the node whose console the tests use
const enc = encodeURIComponent;

before(async () => {
  cluster = await startCluster();
  ui = cluster.nodes[0];
  browser = await launchBrowser();
});

// Runs even when a test failed: kill our own children, remove their temp dir. (A failing
// test has already printed the node logs, in withPage.)
after(async () => {
  if (browser) await browser.close();
  if (cluster) {
    cluster.stop();
    cluster.cleanup();
  }
});

/** Runs `body(p)` with a fresh page; on failure prints the node logs before rethrowing. */
async function withPage(name, opts, body) {
  const p = await openPage(browser, name, opts);
  try {
    await body(p);
    p.assertClean();
  } catch (e) {
    await p.shot("failure").catch(() => {});
    console.error(cluster.logs());
    throw e;
  } finally {
    await p.close();
  }
}

// The anonymous probe the console makes before login: this node wants a token, so it is 401.
const PROBE = [401, "/cluster/status"];

test("login: a wrong token shows the API's error; the admin token gets in", { timeout: 60000 }, () =>
  withPage("login", { allow: [PROBE] }, async ({ page, shot }) => {
    await page.goto(`${ui.url}/ui/`);
    await page.locator("#token").waitFor();
    await shot("form");
    await page.locator("#token").fill("not-the-token");
    await page.getByRole("button", { name: "Log in" }).click();
    const err = page.getByRole("alert");
    await err.waitFor();
    assert.match(await err.textContent(), /Login failed: unauthorized \(HTTP 401\)/);
    await shot("wrong-token");

    await page.locator("#token").fill(ADMIN);
    await page.getByRole("button", { name: "Log in" }).click();
    await page.locator("section.browse").waitFor();
    // The bootstrap admin gets the namespace picker; the token stays in sessionStorage only.
    assert.equal(await page.locator("#namespace").inputValue(), "default");
    assert.equal(await page.evaluate(() => sessionStorage.getItem("cairn.token")), ADMIN);
    assert.equal(await page.evaluate(() => Object.keys(localStorage).filter((k) => k !== "cairn.theme").length), 0);
    assert.ok(!page.url().includes(ADMIN));
    await shot("logged-in");

    // A reload keeps the session (same tab) and the place.
    await page.goto(`${ui.url}/ui/#/cluster`);
    await page.reload();
    await page.locator("section.cluster").waitFor();

    await page.locator("#logout").click();
    await page.locator("#token").waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem("cairn.token")), null);
    await shot("logged-out");
  }));

test("keys: create, reject invalid JSON, edit, increment, delete with confirmation", { timeout: 60000 }, () =>
  withPage("crud", { allow: [PROBE] }, async ({ page, context, shot }) => {
    await login(page, ui);
    await page.getByRole("button", { name: "New key" }).click();
    const dlg = page.locator("dialog");
    await dlg.getByRole("textbox", { name: "Key", exact: true }).fill("app:config");
    await dlg.getByLabel("Value (JSON)").fill('{"name": "Ada", "n": 1');
    await dlg.getByRole("button", { name: "Create" }).click();
    await dlg.getByRole("alert").filter({ hasText: "Invalid JSON, nothing sent" }).waitFor();
    await shot("create-invalid");
    assert.equal((await api(ui.url, "GET", "/kv/items/app%3Aconfig")).status, 404, "invalid JSON was sent");
    await dlg.getByLabel("Value (JSON)").fill('{"name": "Ada", "n": 1}');
    await dlg.getByRole("button", { name: "Create" }).click();
    await page.waitForURL(/#\/key\/app%3Aconfig$/);
    const value = page.locator("pre.value");
    await until("the created value", async () => JSON.parse(await value.textContent()).name === "Ada");
    const v1 = await page.locator(".key-version").textContent();
    // The list (folder app: → key config) shows it too.
    await page.locator('.keylist a[data-key="app:config"]').waitFor();
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: ui.url });
    await page.getByRole("button", { name: "Copy value" }).click();
    await page.getByText("Copied.").waitFor();
    assert.deepEqual(JSON.parse(await page.evaluate(() => navigator.clipboard.readText())), { name: "Ada", n: 1 });
    await shot("created");

    await page.getByRole("button", { name: "Edit" }).click();
    const editor = page.getByLabel("Value (JSON)");
    await editor.fill("{oops");
    await page.getByRole("button", { name: "Save" }).click();
    await page.getByRole("alert").filter({ hasText: "Invalid JSON, nothing sent" }).waitFor();
    assert.equal((await api(ui.url, "GET", "/kv/items/app%3Aconfig")).json.data.version, v1);
    await shot("edit-invalid");
    await editor.fill('{"name": "Ada Lovelace", "n": 2}');
    await page.getByRole("button", { name: "Save" }).click();
    await until("the saved value", async () => (await value.textContent()).includes("Ada Lovelace"));
    const stored = (await api(ui.url, "GET", "/kv/items/app%3Aconfig")).json.data;
    assert.deepEqual(stored.value, { name: "Ada Lovelace", n: 2 });
    assert.equal(await page.locator(".key-version").textContent(), stored.version);
    assert.notEqual(stored.version, v1);
    await shot("edited");

    // Increment appears for integer values only.
    await api(ui.url, "PUT", "/kv/items/app%3Ahits", { body: { value: 41 } });
    await page.goto(`${ui.url}/ui/#/key/${enc("app:hits")}`);
    await page.getByRole("button", { name: "Increment" }).click();
    await until("the incremented value", async () => (await value.textContent()) === "42");
    assert.equal((await api(ui.url, "GET", "/kv/items/app%3Ahits")).json.data.value, 42);
    await page.goto(`${ui.url}/ui/#/key/${enc("app:config")}`);
    await value.waitFor();
    assert.equal(await page.getByRole("button", { name: "Increment" }).count(), 0);

    // Delete: Escape closes the dialog and deletes nothing; confirming deletes.
    await page.getByRole("button", { name: "Delete" }).click();
    await page.locator("dialog").waitFor();
    await shot("delete-confirm");
    await page.keyboard.press("Escape");
    await page.locator("dialog").waitFor({ state: "detached" });
    assert.equal((await api(ui.url, "GET", "/kv/items/app%3Aconfig")).status, 200);
    await page.getByRole("button", { name: "Delete" }).click();
    await page.locator("dialog").getByRole("button", { name: "Delete" }).click();
    await page.waitForURL(/#\/browse\/app%3A$/);
    await page.locator('.keylist a[data-key="app:config"]').waitFor({ state: "detached" });
    assert.equal((await api(ui.url, "GET", "/kv/items/app%3Aconfig")).status, 404);
    await shot("deleted");
  }));

test("conflict: a save on a stale version shows the stored value; overwrite on purpose works", { timeout: 60000 }, () =>
  // The 409 is the refusal under test: the console must get it and show it.
  withPage("conflict", { allow: [PROBE, [409, "/kv/items/"]] }, async ({ page, shot }) => {
    await api(ui.url, "PUT", "/kv/items/cas%3Adoc", { body: { value: { owner: "console" } } });
    await login(page, ui);
    await page.goto(`${ui.url}/ui/#/key/${enc("cas:doc")}`);
    await page.getByRole("button", { name: "Edit" }).click();
    await page.getByLabel("Value (JSON)").fill('{"owner": "me"}');
    const other = await api(ui.url, "PUT", "/kv/items/cas%3Adoc", { body: { value: { owner: "someone else" } } });
    assert.equal(other.status, 200);
    // The watch tells the editor the key moved on before the save is even tried.
    await page.getByText(`now version ${other.json.data.version}`).waitFor();
    await page.getByRole("button", { name: "Save" }).click();
    const conflict = page.locator(".conflict");
    await conflict.waitFor();
    assert.match(await conflict.textContent(), new RegExp(`version_mismatch.*now at version ${other.json.data.version}`));
    assert.match(await conflict.locator("pre").textContent(), /someone else/);
    assert.deepEqual((await api(ui.url, "GET", "/kv/items/cas%3Adoc")).json.data.value, { owner: "someone else" });
    await shot("conflict");

    await conflict.getByRole("button", { name: "Overwrite anyway" }).click();
    await page.locator(".conflict").waitFor({ state: "detached" });
    await until("the overwrite", async () => (await page.locator("pre.value").textContent()).includes('"me"'));
    const now = (await api(ui.url, "GET", "/kv/items/cas%3Adoc")).json.data;
    assert.deepEqual(now.value, { owner: "me" });
    assert.equal(await page.locator(".key-version").textContent(), now.version);
    await shot("overwritten");
  }));

test("live: writes made through the API appear in the list and the open key without reload", { timeout: 60000 }, () =>
  withPage("live", { allow: [PROBE] }, async ({ page, shot }) => {
    await api(ui.url, "PUT", "/kv/items/live%3Aa", { body: { value: 1 } });
    await login(page, ui);
    await page.goto(`${ui.url}/ui/#/browse/${enc("live:")}`);
    await page.locator('.keylist a[data-key="live:a"]').waitFor();
    await page.locator(".browse .badge-ok").waitFor();
    // Written on another node than the one serving the console.
    await api(cluster.nodes[1].url, "PUT", "/kv/items/live%3Ab", { body: { value: "from elsewhere" } });
    await page.locator('.keylist a[data-key="live:b"]').waitFor({ timeout: 10000 });
    await shot("list-updated");

    await page.locator('.keylist a[data-key="live:b"]').click();
    const value = page.locator("pre.value");
    await until("the opened key", async () => (await value.textContent()) === '"from elsewhere"');
    const w = await api(cluster.nodes[2].url, "PUT", "/kv/items/live%3Ab", { body: { value: { changed: true } } });
    await until("the live value", async () => (await value.textContent()).includes('"changed": true'), { timeoutMs: 10000 });
    assert.equal(await page.locator(".key-version").textContent(), w.json.data.version);
    await shot("key-updated");

    await api(ui.url, "DELETE", "/kv/items/live%3Aa");
    await page.locator('.keylist a[data-key="live:a"]').waitFor({ state: "detached", timeout: 10000 });
    await shot("list-deleted");
  }));

test("values are shown as text, never as HTML", { timeout: 60000 }, () =>
  withPage("xss", { allow: [PROBE] }, async ({ page, shot }) => {
    const evil = '<script>alert(1)</script><img src=x onerror="alert(2)">';
    await api(ui.url, "PUT", `/kv/items/${enc("xss:<img src=x onerror=alert(3)>")}`, { body: { value: evil } });
    await login(page, ui);
    await page.goto(`${ui.url}/ui/#/browse/${enc("xss:")}`);
    const row = page.locator(".keylist a.row-key");
    await row.waitFor();
    assert.equal(await row.locator(".row-name").textContent(), "<img src=x onerror=alert(3)>");
    await row.click();
    const value = page.locator("pre.value");
    await value.waitFor();
    assert.equal(await value.textContent(), JSON.stringify(evil));
    assert.equal(await page.locator("main script, main img, header img").count(), 0);
    assert.equal(await page.evaluate(() => document.querySelectorAll("script").length), 1, "only the console's own module");
    await shot("as-text");
  }));

test("numbers keep every digit, shown and saved back", { timeout: 60000 }, () =>
  withPage("numbers", { allow: [PROBE] }, async ({ page, shot }) => {
    const put = await api(ui.url, "PUT", "/kv/items/num%3Abig", { raw: '{"value": {"big": 12345678901234567890123, "price": 2.50, "n": 7}}' });
    assert.equal(put.status, 200);
    await login(page, ui);
    await page.goto(`${ui.url}/ui/#/key/${enc("num:big")}`);
    const value = page.locator("pre.value");
    await until("the exact digits", async () => /"big": 12345678901234567890123,\s+"price": 2\.50,/.test(await value.textContent()));
    await page.getByRole("button", { name: "Edit" }).click();
    const editor = page.getByLabel("Value (JSON)");
    await editor.fill((await editor.inputValue()).replace('"n": 7', '"n": 8'));
    await page.getByRole("button", { name: "Save" }).click();
    await until("the saved value", async () => (await value.textContent()).includes('"n": 8'));
    const stored = (await api(ui.url, "GET", "/kv/items/num%3Abig")).text;
    assert.match(stored, /"value":\{"big":12345678901234567890123,"price":2\.50,"n":8\}/);
    await shot("exact");
  }));

test("tokens: create (secret shown once), listed, revoke with confirmation", { timeout: 60000 }, () =>
  withPage("tokens", { allow: [PROBE] }, async ({ page, shot }) => {
    await login(page, ui);
    await page.getByRole("link", { name: "Tokens" }).click();
    await page.locator("section.tokens").waitFor();
    await page.locator("#token-ns").fill("team-a");
    await page.getByLabel("write").check();
    await page.getByLabel("TTL in seconds (optional)").fill("3600");
    await page.getByRole("button", { name: "Create token" }).click();
    const secret = page.locator(".secret");
    await secret.waitFor();
    const token = await secret.textContent();
    assert.match(token, /^cairn_[0-9a-f]+_[0-9a-f]+$/);
    const id = token.split("_")[1];
    await page.locator(`tr[data-token="${id}"]`).waitFor();
    assert.match(await page.locator(`tr[data-token="${id}"]`).textContent(), /team-a.*read, write/);
    await shot("created");
    // The token works, in its namespace.
    assert.equal((await api(ui.url, "GET", "/kv/items?limit=1", { token })).status, 200);
    // Shown once: after Done it is gone from the page, and the list never carries it.
    await page.getByRole("button", { name: "Done, hide it" }).click();
    assert.equal(await page.getByText(token).count(), 0);

    await page.locator(`tr[data-token="${id}"]`).getByRole("button", { name: "Revoke" }).click();
    await page.locator("dialog").getByRole("button", { name: "Revoke" }).click();
    await page.locator(`tr[data-token="${id}"]`).waitFor({ state: "detached" });
    await until("the revoked token to be refused", async () => (await api(ui.url, "GET", "/kv/items?limit=1", { token })).status === 401);
    await shot("revoked");
  }));

test("phone width: panels stack", { timeout: 60000 }, () =>
  withPage("phone", { allow: [PROBE], viewport: { width: 390, height: 844 } }, async ({ page, shot }) => {
    await api(ui.url, "PUT", "/kv/items/phone%3Aone", { body: { value: { fits: "on a phone" } } });
    await login(page, ui);
    await shot("list");
    await page.goto(`${ui.url}/ui/#/key/${enc("phone:one")}`);
    await page.locator("pre.value").waitFor();
    const list = await page.locator("section.browse").boundingBox();
    const key = await page.locator("section.keyview").boundingBox();
    assert.ok(key.y + key.height <= list.y, "the open key comes first, the list below it");
    assert.ok(list.width <= 390 && key.width <= 390);
    // Nothing wider than the screen: no sideways scrolling of the page.
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 390, `the page is ${width} px wide`);
    await shot("key");
    await page.getByRole("link", { name: "Cluster" }).click();
    await page.locator("table.nodes tbody tr").first().waitFor();
    await shot("cluster");
  }));

test("keyboard, filter, paging, TTL countdown, themes", { timeout: 60000 }, () =>
  withPage("keyboard", { allow: [PROBE] }, async ({ page, shot }) => {
    // 120 keys: more than one page of 100.
    const ops = [];
    for (let i = 0; i < 120; i++) ops.push({ op: "set", key: `page:${String(i).padStart(3, "0")}`, value: i });
    assert.equal((await api(ui.url, "POST", "/kv/batch", { body: { ops: ops.slice(0, 100) } })).status, 200);
    assert.equal((await api(ui.url, "POST", "/kv/batch", { body: { ops: ops.slice(100) } })).status, 200);
    await api(ui.url, "PUT", "/kv/items/page%3Attl", { body: { value: "soon gone", ttlSeconds: 300 } });
    await login(page, ui);
    await page.goto(`${ui.url}/ui/#/browse/${enc("page:")}`);
    const counts = page.locator(".counts");
    await until("the first page", async () => /100 keys shown, 100 keys loaded\. More keys on the server/.test(await counts.textContent()));
    await page.getByRole("button", { name: "Load more" }).click();
    await until("the second page", async () => /121 keys shown, 121 keys loaded\.$/.test(await counts.textContent()));
    assert.equal(await page.getByRole("button", { name: "Load more" }).isVisible(), false);
    await shot("paged");

    // "/" jumps to the filter; the filter narrows the scan by key prefix.
    await page.locator("body").click({ position: { x: 5, y: 400 } });
    await page.keyboard.press("/");
    assert.equal(await page.evaluate(() => document.activeElement.id), "filter");
    await page.keyboard.type("11");
    await until("the filtered list", async () => /0 folders and 10 keys shown, 10 keys loaded\.$/.test(await counts.textContent()));
    // Arrow keys move between rows; Enter opens the focused key.
    await page.locator(".keylist a").first().focus();
    await page.keyboard.press("ArrowDown");
    assert.equal(await page.evaluate(() => document.activeElement.dataset.key), "page:111");
    // The focus ring is visible on the focused row.
    assert.notEqual(await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle), "none");
    await shot("focus");
    await page.keyboard.press("Enter");
    await page.waitForURL(/#\/key\/page%3A111$/);
    await until("the opened key", async () => (await page.locator("pre.value").textContent()) === "111");

    await page.goto(`${ui.url}/ui/#/key/${enc("page:ttl")}`);
    const cd = page.locator(".countdown");
    await until("a live countdown", async () => /^in 4 m [0-5]\d s$/.test(await cd.textContent()));
    const first = await cd.textContent();
    await until("the countdown to move", async () => (await cd.textContent()) !== first, { timeoutMs: 3000 });

    // Themes: the toggle flips the palette and is remembered (the theme only) across reloads.
    const before = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    await page.locator("#theme-toggle").click();
    const afterToggle = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    assert.notEqual(afterToggle, before);
    const theme = await page.evaluate(() => localStorage.getItem("cairn.theme"));
    assert.match(theme, /^(dark|light)$/);
    await page.reload();
    await page.locator("pre.value").waitFor();
    assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), theme);
    await shot(`theme-${theme}`);
  }));

test("namespaces: the admin's picker switches namespaces", { timeout: 60000 }, () =>
  withPage("namespace", { allow: [PROBE] }, async ({ page, shot }) => {
    await api(ui.url, "PUT", "/kv/items/only-in-b", { body: { value: "b" }, namespace: "team-b" });
    await login(page, ui);
    await page.locator("#namespace").fill("team-b");
    await page.locator("#namespace").press("Enter");
    await page.locator('.keylist a[data-key="only-in-b"]').waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem("cairn.namespace")), "team-b");
    // A key written in default does not show here, and one written in team-b shows live.
    await api(ui.url, "PUT", "/kv/items/only-in-default", { body: { value: 1 } });
    await api(ui.url, "PUT", "/kv/items/live-in-b", { body: { value: 2 }, namespace: "team-b" });
    await page.locator('.keylist a[data-key="live-in-b"]').waitFor();
    assert.equal(await page.locator('.keylist a[data-key="only-in-default"]').count(), 0);
    await shot("team-b");
  }));

test("a read-only namespace token: no picker, no Tokens page, read-only cluster; revoked, it is sent to login", { timeout: 60000 }, () =>
  // This token may not name another namespace (403 on the console's bootstrap-admin probe)
  // nor list tokens (403): both are how the console learns what to offer, and the last 401
  // is the revoked token being refused, which the test provokes on purpose.
  withPage("reader", { allow: [PROBE, [403, "/kv/items"], [403, "/admin/tokens"], [401, "/kv/"]] }, async ({ page, shot }) => {
    await api(ui.url, "PUT", "/kv/items/shared", { body: { value: "for readers" }, namespace: "team-r" });
    const made = await api(ui.url, "POST", "/admin/tokens", { body: { namespace: "team-r", permissions: ["read"] } });
    assert.equal(made.status, 201);
    const { token, id } = made.json.data;
    await login(page, ui, token);
    await page.locator('.keylist a[data-key="shared"]').waitFor();
    assert.equal(await page.locator("#namespace").count(), 0);
    assert.equal(await page.getByRole("link", { name: "Tokens" }).count(), 0);
    assert.match(await page.locator(".topbar").textContent(), /token/);
    await page.getByRole("link", { name: "Cluster" }).click();
    await page.getByText("Read-only: membership changes need the bootstrap admin token.").waitFor();
    await page.locator("table.nodes tbody tr").first().waitFor();
    assert.equal(await page.getByRole("button", { name: "Remove" }).count(), 0);
    await shot("cluster-read-only");

    assert.equal((await api(ui.url, "DELETE", `/admin/tokens/${id}`)).status, 200);
    await page.goto(`${ui.url}/ui/#/key/shared`);
    await page.getByText("This session's token is no longer accepted").waitFor();
    await page.locator("#token").waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem("cairn.token")), null);
    await shot("revoked");
  }));

test("open node: no login needed; anonymous works in default", { timeout: 60000 }, async () => {
  const open = await startCluster({ size: 1, open: true });
  try {
    await withPage("open-node", {}, async ({ page, shot }) => {
      await api(open.nodes[0].url, "PUT", "/kv/items/hello", { body: { value: "world" }, token: null });
      await page.goto(`${open.nodes[0].url}/ui/`);
      await page.locator('.keylist a[data-key="hello"]').waitFor();
      assert.match(await page.locator(".topbar").textContent(), /anonymous/);
      assert.equal(await page.locator("#namespace").count(), 0, "no namespace picker for anonymous");
      await page.getByRole("link", { name: "Log in" }).waitFor();
      await shot("anonymous");
    });
  } finally {
    open.stop();
    open.cleanup();
  }
});

test("cluster: every node is listed, and a SIGKILLed follower shows as down", { timeout: 60000 }, () =>
  withPage("cluster", { allow: [PROBE] }, async ({ page, shot }) => {
    await login(page, ui);
    await page.getByRole("link", { name: "Cluster" }).click();
    const rows = page.locator("table.nodes tbody tr");
    await until("three nodes with a leader", async () =>
      (await rows.count()) === 3 && (await page.locator(".role-leader").count()) === 1);
    const leaderId = (await cluster.leader()).id;
    for (const n of cluster.nodes) {
      const cells = await page.locator(`tr[data-node="${n.id}"] > *`).allTextContents();
      // Node, Address, State, Role, Term, Leader, Last log, Applied, Lag, Health, Ready, Req/s
      assert.equal(cells[1], `127.0.0.1:${n.port}`);
      assert.equal(cells[2], "up");
      assert.equal(cells[3], n.id === leaderId ? "leader" : "follower");
      assert.equal(cells[5], String(leaderId));
      assert.match(cells[8], /^\d+$/, "lag");
      assert.equal(cells[9], "ok");
      assert.equal(cells[10], "ready");
    }
    // Rates need two polls.
    await until("a request rate", async () => /\d+\.\d/.test(await page.locator('tr[data-node="1"] td').nth(10).textContent()));
    await shot("healthy");

    const leader = await cluster.leader();
    const victim = cluster.nodes.find((n) => n !== leader && n !== ui);
    await cluster.kill(victim);
    const row = page.locator(`tr[data-node="${victim.id}"]`);
    await until("the killed node to show as down", async () => (await row.getAttribute("class")) === "node-down", { timeoutMs: 15000 });
    assert.match(await row.textContent(), /down/);
    await page.getByRole("alert").filter({ hasText: `Node ${victim.id}` }).waitFor();
    await shot("node-down");

    // The bootstrap admin may remove the dead member (after confirming); two voters remain.
    await row.getByRole("button", { name: "Remove" }).click();
    const dlg = page.locator("dialog");
    await dlg.getByText(`Remove node ${victim.id}`).waitFor();
    await shot("remove-confirm");
    await dlg.getByRole("button", { name: "Remove" }).click();
    await row.waitFor({ state: "detached", timeout: 15000 });
    assert.equal(await rows.count(), 2);
    const members = (await cluster.status(ui)).members.map((m) => m.id);
    assert.ok(!members.includes(victim.id), `members after removal: ${members}`);
    await shot("removed");
  }));
