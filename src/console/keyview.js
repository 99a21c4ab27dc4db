// One key: its value (pretty JSON, as text), version and expiry countdown, with Copy, Edit,
// Increment and Delete; and the Create dialog. Saves are conditional on the version the
// operator saw, so a concurrent change is shown as a conflict instead of being overwritten.

import { ApiError, call, describe, keyPath } from "./api.js";
import { confirmDialog, copyText, countdown, field, fill, formDialog, h, message, pretty } from "./dom.js";
import { parse, RawNumber } from "./json.js";
import { watch } from "./live.js";

/** Parses the editor's text; answers {value} or {error} with the parser's message. */
function parseJson(text) {
  try {
    return { value: parse(text) };
  } catch (e) {
    return { error: e.message };
  }
}

/** Reads an optional TTL field: answers {ttl} (undefined when blank) or {error}. */
function parseTtl(text) {
  const t = text.trim();
  if (!t) return { ttl: undefined };
  const n = Number(t);
  if (!Number.isInteger(n) || n < 1 || n > 31536000) return { error: "TTL must be a whole number of seconds, 1 to 31536000" };
  return { ttl: n };
}

const remainingSeconds = (expiresAt) => Math.max(1, Math.ceil((Date.parse(expiresAt) - Date.now()) / 1000));

export function createKeyView({ onDeleted, onMissingCreate }) {
  const root = h("section", { class: "panel keyview", "aria-label": "Key" });
  const state = {
    key: null, item: null, mode: "view", latest: null, stopWatch: null, timer: null,
    generation: 0, draft: "", draftTtl: "", flash: false, saving: false,
  };

  function stop() {
    state.generation += 1;
    if (state.stopWatch) state.stopWatch();
    state.stopWatch = null;
    clearInterval(state.timer);
    state.timer = null;
  }

  async function show(key) {
    stop();
    Object.assign(state, { key, item: null, mode: "loading", latest: null, flash: false });
    const gen = state.generation;
    render();
    let after;
    try {
      const { data, headers } = await call("GET", keyPath(key));
      after = headers.get("X-Cairn-Index");
      if (gen !== state.generation) return;
      state.item = data;
      state.mode = "view";
    } catch (e) {
      if (gen !== state.generation) return;
      if (e instanceof ApiError && e.code === "not_found") state.mode = "missing";
      else {
        state.mode = "error";
        state.error = e;
      }
    }
    render();
    // Watch the key itself (the prefix also matches longer keys; those are skipped).
    state.stopWatch = watch({
      prefix: key,
      after,
      onEvents: (events) => gen === state.generation && apply(events),
      onState: (s, err) => {
        if (gen !== state.generation) return;
        if (s === "compacted") show(key);
        else live.textContent = s === "live" ? "" : `Live updates interrupted (${describe(err)}); retrying.`;
      },
    });
    state.timer = setInterval(tick, 1000);
  }

  const live = h("p", { class: "live-note", "aria-live": "polite" });

  function apply(events) {
    for (const ev of events) {
      for (const c of ev.changes) {
        if (c.key !== state.key) continue;
        const current = state.latest || state.item;
        if (current && BigInt(c.version) <= BigInt(current.version)) continue;
        const next = c.op === "delete" || c.op === "expire"
          ? { deleted: true, version: c.version }
          : { key: c.key, value: c.value, version: c.version, expiresAt: c.expiresAt };
        if (state.saving) {
          // Most likely our own write, seen by the watch before the PUT's answer: the answer
          // settles the view; anything newer is compared against it then.
          state.latest = next;
        } else if (state.mode === "edit" || state.mode === "conflict") {
          // Never replace what the operator is typing; say what changed, and let the save
          // turn into a conflict that shows it.
          state.latest = next;
        } else {
          state.item = next.deleted ? null : next;
          state.mode = next.deleted ? "missing" : "view";
          state.flash = true;
        }
      }
    }
    if (!state.saving) render();
  }

  function tick() {
    const el = root.querySelector("[data-countdown]");
    if (el) el.textContent = countdown(el.dataset.countdown);
  }

  async function save(ifVersion, value, ttl) {
    const body = { value };
    if (ttl !== undefined) body.ttlSeconds = ttl;
    if (ifVersion) body.ifVersion = ifVersion;
    else body.ifNotExists = true;
    const gen = state.generation;
    state.saving = true;
    try {
      const { data } = await call("PUT", keyPath(state.key), { body });
      if (gen !== state.generation) return;
      // A change the watch saw that is newer than our write wins.
      const newer = state.latest && BigInt(state.latest.version) > BigInt(data.version) ? state.latest : null;
      const item = newer ? (newer.deleted ? null : newer) : data;
      Object.assign(state, { item, mode: item ? "view" : "missing", latest: null, flash: true });
      render();
      root.querySelector(".key-actions button")?.focus();
    } catch (e) {
      if (gen !== state.generation) return;
      if (e instanceof ApiError && (e.code === "version_mismatch" || e.code === "key_exists")) {
        await showConflict(e);
      } else {
        fill(root.querySelector(".edit-status"), message("error", `Not saved: ${describe(e)}`));
      }
    } finally {
      state.saving = false;
    }
  }

  async function showConflict(err) {
    const gen = state.generation;
    let latest;
    try {
      latest = (await call("GET", keyPath(state.key))).data;
    } catch (e) {
      if (!(e instanceof ApiError && e.code === "not_found")) {
        fill(root.querySelector(".edit-status"), message("error", `Not saved: ${describe(err)}; and reading the key failed: ${describe(e)}`));
        return;
      }
      latest = { deleted: true };
    }
    if (gen !== state.generation) return;
    Object.assign(state, { mode: "conflict", latest, conflictCode: err.code });
    render();
    root.querySelector(".conflict button")?.focus();
  }

  function render() {
    const { key, item } = state;
    const title = h("h2", { class: "key-title" }, h("span", { class: "sr-only", text: "Key " }), h("code", { text: key }));
    if (state.mode === "loading") return fill(root, title, h("p", { class: "muted", text: "Loading…" }));
    if (state.mode === "error") return fill(root, title, message("error", `Could not read the key: ${describe(state.error)}`));
    if (state.mode === "missing") {
      return fill(root, title, live,
        message("warn", "not_found: this key is absent or expired (it may have been deleted)."),
        h("div", { class: "actions" }, h("button", {
          type: "button", class: "btn", text: "Create it", onclick: () => onMissingCreate(key),
        })));
    }
    const meta = h("dl", { class: "meta" },
      h("dt", { text: "Version" }), h("dd", { class: "key-version", text: item.version }),
      h("dt", { text: "Expires" }),
      item.expiresAt
        ? h("dd", {}, h("time", { datetime: item.expiresAt, text: item.expiresAt }), " (",
          h("span", { class: "countdown", dataset: { countdown: item.expiresAt }, text: countdown(item.expiresAt) }), ")")
        : h("dd", { text: "never" }));

    if (state.mode === "view") {
      const copyStatus = h("span", { class: "muted", "aria-live": "polite" });
      // Integers only: the node adds exactly in 64 bits (a RawNumber may be one past 2^53).
      const isInt = (typeof item.value === "number" && Number.isSafeInteger(item.value))
        || (item.value instanceof RawNumber && /^-?\d+$/.test(item.value.text));
      fill(root, title, meta, live,
        h("div", { class: "actions key-actions" },
          h("button", { type: "button", class: "btn btn-primary", text: "Edit", onclick: startEdit }),
          h("button", { type: "button", class: "btn", text: "Copy value", onclick: () => copyText(pretty(item.value), copyStatus) }),
          isInt ? h("button", { type: "button", class: "btn", text: "Increment", onclick: increment }) : null,
          h("button", { type: "button", class: "btn btn-danger", text: "Delete", onclick: remove }),
          copyStatus),
        h("div", { class: "action-status" }),
        h("pre", { class: `value${state.flash ? " flash" : ""}`, tabindex: "0", "aria-label": "Value" , text: pretty(item.value) }));
      state.flash = false;
      return;
    }

    // Edit and conflict share the editor, so the operator's text survives a conflict.
    const editor = h("textarea", {
      class: "editor", rows: "14", spellcheck: "false",
      oninput: (ev) => { state.draft = ev.target.value; },
    });
    editor.value = state.draft;
    const ttl = h("input", { type: "text", inputmode: "numeric", class: "ttl", oninput: (ev) => { state.draftTtl = ev.target.value; } });
    ttl.value = state.draftTtl;
    const submit = (ifVersion) => {
      const status = root.querySelector(".edit-status");
      const parsed = parseJson(editor.value);
      if (parsed.error) return fill(status, message("error", `Invalid JSON, nothing sent: ${parsed.error}`));
      const t = parseTtl(ttl.value);
      if (t.error) return fill(status, message("error", `${t.error}; nothing sent.`));
      fill(status);
      return save(ifVersion, parsed.value, t.ttl);
    };
    let notice = null;
    if (state.mode === "edit" && state.latest) {
      notice = message("warn", state.latest.deleted
        ? "This key was deleted while you edit it. Saving will show a conflict."
        : `This key changed while you edit it (now version ${state.latest.version}). Saving will show a conflict.`);
    }
    let conflict = null;
    if (state.mode === "conflict") {
      const l = state.latest;
      conflict = h("div", { class: "conflict" },
        message("warn", l.deleted
          ? `${state.conflictCode}: the key was deleted after you opened version ${item.version}. Your edit is not saved.`
          : `${state.conflictCode}: the key changed after you opened version ${item.version}. It is now at version ${l.version}. Your edit is not saved.`),
        l.deleted ? null : h("div", {}, h("h3", { text: `Stored value, version ${l.version}` }),
          h("pre", { class: "value conflict-value", text: pretty(l.value) })),
        h("div", { class: "actions" },
          h("button", { type: "button", class: "btn", text: "Reload", onclick: () => show(state.key) }),
          h("button", {
            type: "button", class: "btn btn-danger", text: "Overwrite anyway",
            // Still conditional: on the version just shown, so a third writer is not lost.
            onclick: () => submit(l.deleted ? null : l.version),
          })));
    }
    fill(root, title, meta, notice, conflict,
      h("form", { class: "edit", onsubmit: (ev) => { ev.preventDefault(); submit(item.version); } },
        field(state.mode === "conflict" ? "Your edit (not saved)" : "Value (JSON)", editor),
        field("TTL in seconds (optional)", ttl, item.expiresAt
          ? "Prefilled with the time left. Blank: the key never expires."
          : "Blank: the key never expires."),
        h("div", { class: "edit-status" }),
        h("div", { class: "actions" },
          state.mode === "edit" ? h("button", { type: "submit", class: "btn btn-primary", text: "Save" }) : null,
          h("button", { type: "button", class: "btn", text: "Cancel", onclick: () => show(state.key) }))));
    if (state.mode === "edit") editor.focus();
  }

  function startEdit() {
    Object.assign(state, {
      mode: "edit", latest: null, draft: pretty(state.item.value),
      draftTtl: state.item.expiresAt ? String(remainingSeconds(state.item.expiresAt)) : "",
    });
    render();
  }

  async function increment() {
    try {
      const { data } = await call("POST", `${keyPath(state.key)}/increment`, { body: {} });
      Object.assign(state, { item: data, flash: true });
      render();
    } catch (e) {
      fill(root.querySelector(".action-status"), message("error", `Not incremented: ${describe(e)}`));
    }
  }

  async function remove() {
    const { key, item } = state;
    const ok = await confirmDialog({
      title: "Delete this key?",
      body: [h("p", {}, "Delete ", h("code", { text: key }), ` at version ${item.version}? This cannot be undone.`)],
      confirm: "Delete", danger: true,
    });
    if (!ok) return;
    try {
      await call("DELETE", `${keyPath(key)}?ifVersion=${encodeURIComponent(item.version)}`);
      onDeleted(key);
    } catch (e) {
      fill(root.querySelector(".action-status"), message("error", `Not deleted: ${describe(e)}`));
    }
  }

  return { root, show, stop };
}

/** The Create dialog. Answers the new key's name, or null when cancelled. */
export function createKeyDialog(prefix) {
  return formDialog("New key", (close) => {
    const key = h("input", { type: "text", required: true, spellcheck: "false", autocomplete: "off" });
    key.value = prefix;
    const value = h("textarea", { class: "editor", rows: "8", spellcheck: "false", placeholder: "{\"name\": \"Ada\"}" });
    const ttl = h("input", { type: "text", inputmode: "numeric" });
    const status = h("div");
    const form = h("form", {
      class: "edit",
      onsubmit: async (ev) => {
        ev.preventDefault();
        if (!key.value) return fill(status, message("error", "A key is needed; nothing sent."));
        const parsed = parseJson(value.value);
        if (parsed.error) return fill(status, message("error", `Invalid JSON, nothing sent: ${parsed.error}`));
        const t = parseTtl(ttl.value);
        if (t.error) return fill(status, message("error", `${t.error}; nothing sent.`));
        const body = { value: parsed.value, ifNotExists: true };
        if (t.ttl !== undefined) body.ttlSeconds = t.ttl;
        try {
          await call("PUT", keyPath(key.value), { body });
          close(key.value);
        } catch (e) {
          fill(status, message("error", `Not created: ${describe(e)}`));
        }
      },
    },
    field("Key", key),
    field("Value (JSON)", value),
    field("TTL in seconds (optional)", ttl, "Blank: the key never expires."),
    status,
    h("div", { class: "actions" },
      h("button", { type: "button", class: "btn", text: "Cancel", onclick: () => close(null) }),
      h("button", { type: "submit", class: "btn btn-primary", text: "Create" })));
    queueMicrotask(() => key.focus());
    return form;
  });
}
