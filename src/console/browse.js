// The key list: prefix navigation with folders, breadcrumbs, a key-prefix filter, cursor
// paging ("Load more") and live updates from a watch on the listed prefix.

import { call, describe } from "./api.js";
import { fill, h, message } from "./dom.js";
import { watch } from "./live.js";

const PAGE = 100;

/** Folders end at the first `:` or `/` after the prefix, the separator included. */
function folderOf(prefix, key) {
  const rest = key.slice(prefix.length);
  const m = /[:/]/.exec(rest);
  return m ? prefix + rest.slice(0, m.index + 1) : null;
}

/** `user:1/a` → ["user:", "user:1/", "user:1/a"]: each breadcrumb's full prefix. */
function crumbs(prefix) {
  const out = [];
  const re = /[:/]/g;
  let m;
  while ((m = re.exec(prefix))) out.push(prefix.slice(0, m.index + 1));
  // A prefix may end inside a segment (`user:12`): that tail is the last crumb.
  if (prefix && out[out.length - 1] !== prefix) out.push(prefix);
  return out;
}

/** The folder a key is listed in: everything up to its last separator. */
export function parentPrefix(key) {
  const i = Math.max(key.lastIndexOf(":"), key.lastIndexOf("/"));
  return i < 0 ? "" : key.slice(0, i + 1);
}

export const browseHref = (prefix) => `#/browse/${encodeURIComponent(prefix)}`;
export const keyHref = (key) => `#/key/${encodeURIComponent(key)}`;

const newer = (a, b) => !b || BigInt(a) > BigInt(b);

export function createBrowser({ onCreate }) {
  const state = {
    prefix: null, filter: "", selected: null,
    items: new Map(), nextCursor: null, stopWatch: null, generation: 0, loading: false,
  };
  const crumbNav = h("nav", { class: "crumbs", "aria-label": "Prefix" });
  const filterInput = h("input", {
    type: "search", id: "filter", placeholder: "Filter: keys starting with…", autocomplete: "off",
    spellcheck: "false", "aria-label": "Filter keys in this folder by prefix",
  });
  const liveBadge = h("span", { class: "badge", text: "…" });
  const counts = h("p", { class: "counts", "aria-live": "polite" });
  const status = h("div");
  const list = h("ul", { class: "keylist", "aria-label": "Keys" });
  const moreBtn = h("button", { type: "button", class: "btn", text: "Load more", hidden: true });
  const root = h("section", { class: "panel browse", "aria-label": "Browse keys" },
    h("div", { class: "panel-head" },
      h("h2", { text: "Keys" }), liveBadge,
      h("button", { type: "button", class: "btn btn-primary", text: "New key", onclick: () => onCreate(state.prefix) })),
    crumbNav, filterInput, counts, status, list, moreBtn);

  let filterTimer = null;
  filterInput.addEventListener("input", () => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(() => {
      state.filter = filterInput.value;
      reload();
    }, 250);
  });
  moreBtn.addEventListener("click", () => loadPage(state.generation));
  // Up and down move between rows, as in a file manager; Enter follows the focused link.
  list.addEventListener("keydown", (ev) => {
    if (ev.key !== "ArrowDown" && ev.key !== "ArrowUp") return;
    const rows = [...list.querySelectorAll("a")];
    const i = rows.indexOf(document.activeElement);
    const next = rows[ev.key === "ArrowDown" ? i + 1 : i - 1];
    if (next) {
      next.focus();
      ev.preventDefault();
    }
  });

  const scanPrefix = () => state.prefix + state.filter;

  function reload() {
    state.generation += 1;
    state.items.clear();
    state.nextCursor = null;
    state.loading = true;
    if (state.stopWatch) state.stopWatch();
    state.stopWatch = null;
    fill(status);
    render();
    loadPage(state.generation, true);
  }

  async function loadPage(gen, first = false) {
    const q = new URLSearchParams({ prefix: scanPrefix(), limit: PAGE });
    if (state.nextCursor) q.set("cursor", state.nextCursor);
    moreBtn.disabled = true;
    state.loading = true;
    try {
      const { data, headers } = await call("GET", `/kv/items?${q}`);
      if (gen !== state.generation) return;
      for (const it of data.items) state.items.set(it.key, it);
      state.nextCursor = data.nextCursor;
      fill(status);
      // List, then watch from the listing's own index: nothing missed, nothing twice.
      if (first) startWatch(gen, headers.get("X-Cairn-Index"));
    } catch (e) {
      if (gen !== state.generation) return;
      fill(status, message("error", `Could not list keys: ${describe(e)}`));
    } finally {
      if (gen === state.generation) state.loading = false;
      moreBtn.disabled = false;
    }
    render();
  }

  function startWatch(gen, after) {
    state.stopWatch = watch({
      prefix: scanPrefix(),
      after,
      onEvents: (events) => gen === state.generation && apply(events),
      onState: (s, err) => {
        if (gen !== state.generation) return;
        liveBadge.className = `badge badge-${s === "live" ? "ok" : "warn"}`;
        liveBadge.textContent = s === "live" ? "live" : "reconnecting";
        liveBadge.title = err ? describe(err) : "Updates arrive as they happen";
        if (s === "compacted") reload();
      },
    });
  }

  function apply(events) {
    const changed = new Set();
    const last = [...state.items.keys()].sort().pop();
    for (const ev of events) {
      for (const c of ev.changes) {
        const had = state.items.get(c.key);
        if (c.op === "delete" || c.op === "expire") {
          // A delete's version is its log index, above the version of the value it removed.
          if (had && newer(c.version, had.version)) state.items.delete(c.key);
          continue;
        }
        if (had && !newer(c.version, had.version)) continue;
        // A key past the loaded pages arrives with "Load more", in order.
        if (!had && state.nextCursor && last !== undefined && c.key > last) continue;
        state.items.set(c.key, { key: c.key, version: c.version, expiresAt: c.expiresAt });
        changed.add(c.key);
      }
    }
    render(changed);
  }

  function render(flash = new Set()) {
    fill(crumbNav,
      h("a", { href: browseHref(""), text: "(all keys)", "aria-current": state.prefix === "" ? "page" : null }),
      crumbs(state.prefix).map((p, i, all) => [
        h("span", { class: "sep", "aria-hidden": "true", text: "›" }),
        h("a", { href: browseHref(p), text: p.slice(i ? all[i - 1].length : 0), "aria-current": p === state.prefix ? "page" : null }),
      ]));

    const keys = [...state.items.keys()].sort();
    const folders = new Map();
    const leaves = [];
    for (const k of keys) {
      const f = folderOf(state.prefix, k);
      if (f) folders.set(f, (folders.get(f) || 0) + 1);
      else leaves.push(k);
    }
    const focusedKey = document.activeElement?.dataset?.row;
    const rows = [];
    for (const [f, n] of folders) {
      rows.push(h("li", {}, h("a", { href: browseHref(f), class: "row row-folder", dataset: { row: `f:${f}` } },
        h("span", { class: "row-icon", "aria-hidden": "true", text: "▸" }),
        h("span", { class: "row-name", text: f.slice(state.prefix.length) }),
        h("span", { class: "row-meta", text: `${n} key${n === 1 ? "" : "s"} loaded` }))));
    }
    for (const k of leaves) {
      const it = state.items.get(k);
      rows.push(h("li", {}, h("a", {
        href: keyHref(k),
        class: `row row-key${flash.has(k) ? " flash" : ""}`,
        "aria-current": k === state.selected ? "true" : null,
        dataset: { row: `k:${k}`, key: k },
      },
      h("span", { class: "row-icon", "aria-hidden": "true", text: "•" }),
      h("span", { class: "row-name", text: k.slice(state.prefix.length) || k }),
      h("span", { class: "row-meta", text: `v${it.version}${it.expiresAt ? " · TTL" : ""}` }))));
    }
    if (!rows.length) {
      const empty = state.loading ? "Loading…" : state.filter ? "No key starts with this filter." : "No keys here.";
      rows.push(h("li", { class: "empty", text: empty }));
    }
    fill(list, rows);
    if (focusedKey) list.querySelector(`[data-row="${CSS.escape(focusedKey)}"]`)?.focus();

    const more = state.nextCursor ? " More keys on the server: Load more." : "";
    counts.textContent = `${folders.size} folder${folders.size === 1 ? "" : "s"} and ${leaves.length} key${leaves.length === 1 ? "" : "s"} shown, ${keys.length} key${keys.length === 1 ? "" : "s"} loaded.${more}`;
    moreBtn.hidden = !state.nextCursor;
  }

  return {
    root,
    get prefix() { return state.prefix; },
    /** Lists `prefix` (reloading only when it changed) and marks `selected`. */
    show(prefix, selected = null) {
      state.selected = selected;
      if (prefix !== state.prefix) {
        state.prefix = prefix;
        state.filter = "";
        filterInput.value = "";
        reload();
      } else {
        render();
      }
    },
    focusFilter() { filterInput.focus(); },
    stop() {
      state.generation += 1;
      if (state.stopWatch) state.stopWatch();
      state.stopWatch = null;
      state.prefix = null;
    },
  };
}
