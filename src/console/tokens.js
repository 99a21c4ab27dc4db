// Access tokens: create (the secret is shown once, by the create answer, and never again),
// list, revoke. Shown only to callers for whom `GET /admin/tokens` works.

import { call, describe, session } from "./api.js";
import { confirmDialog, copyText, field, fill, h, message } from "./dom.js";

const PERMS = ["read", "write", "admin"];

export function createTokens({ onNamespaces }) {
  const created = h("div");
  const status = h("div");
  const body = h("tbody");
  const ns = h("input", { type: "text", id: "token-ns", required: true, spellcheck: "false", autocomplete: "off", pattern: "[A-Za-z0-9._\\-]{1,64}" });
  const perms = PERMS.map((p) => h("input", { type: "checkbox", value: p, checked: p === "read" }));
  const nsHint = h("span", { class: "field-hint" });
  const ttl = h("input", { type: "text", inputmode: "numeric", placeholder: "never expires" });
  const form = h("form", { class: "token-form", onsubmit: (ev) => { ev.preventDefault(); create(); } },
    h("h3", { text: "Create a token" }),
    h("label", { class: "field" }, h("span", { class: "field-label", text: "Namespace" }), ns, nsHint),
    h("fieldset", { class: "perms" }, h("legend", { text: "Permissions" }),
      perms.map((cb) => h("label", { class: "check" }, cb, ` ${cb.value}`))),
    field("TTL in seconds (optional)", ttl, "1 to 31536000. Blank: never expires."),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "btn btn-primary", text: "Create token" })));
  const root = h("section", { class: "panel tokens", "aria-label": "Access tokens" },
    h("div", { class: "panel-head" }, h("h2", { text: "Access tokens" })),
    created, form, status,
    h("div", { class: "table-wrap" }, h("table", { class: "token-list" },
      h("caption", { class: "sr-only", text: "Live tokens" }),
      h("thead", {}, h("tr", {}, ["Id", "Namespace", "Permissions", "Created", "Expires", ""].map((t) => h("th", { scope: "col", text: t })))),
      body)));

  async function load() {
    try {
      const { data } = await call("GET", "/admin/tokens", { namespace: null });
      onNamespaces(data.tokens.map((t) => t.namespace));
      fill(body, data.tokens.length ? data.tokens.map(row) : h("tr", {}, h("td", { colspan: "6", class: "muted", text: "No tokens." })));
    } catch (e) {
      fill(status, message("error", `Could not list tokens: ${describe(e)}`));
    }
  }

  function row(t) {
    return h("tr", { dataset: { token: t.id } },
      h("td", {}, h("code", { text: t.id })),
      h("td", { text: t.namespace }),
      h("td", { text: t.permissions.join(", ") }),
      h("td", { text: t.createdAt }),
      h("td", { text: t.expiresAt || "never" }),
      h("td", {}, h("button", { type: "button", class: "btn btn-small btn-danger", text: "Revoke", onclick: () => revoke(t) })));
  }

  async function create() {
    const permissions = perms.filter((cb) => cb.checked).map((cb) => cb.value);
    if (!permissions.length) return fill(status, message("error", "Pick at least one permission; nothing sent."));
    const req = { namespace: ns.value, permissions };
    const t = ttl.value.trim();
    if (t) {
      const n = Number(t);
      if (!Number.isInteger(n) || n < 1 || n > 31536000) return fill(status, message("error", "TTL must be a whole number of seconds, 1 to 31536000; nothing sent."));
      req.ttlSeconds = n;
    }
    try {
      const { data } = await call("POST", "/admin/tokens", { namespace: null, body: req });
      fill(status);
      showSecret(data);
      await load();
    } catch (e) {
      fill(status, message("error", `Not created: ${describe(e)}`));
    }
  }

  // The secret stays on screen until dismissed, and is then gone for good: the node keeps
  // only its hash.
  function showSecret(t) {
    const copyStatus = h("span", { class: "muted", "aria-live": "polite" });
    const secret = h("code", { class: "secret", tabindex: "0", text: t.token });
    fill(created, h("div", { class: "msg msg-ok secret-box", role: "status" },
      h("p", {}, h("strong", { text: `Token ${t.id} created` }), ` for namespace ${t.namespace} (${t.permissions.join(", ")}). `,
        "Copy the secret now: it is shown only this once."),
      secret,
      h("div", { class: "actions" },
        h("button", { type: "button", class: "btn", text: "Copy secret", onclick: () => copyText(t.token, copyStatus) }),
        h("button", { type: "button", class: "btn", text: "Done, hide it", onclick: () => fill(created) }),
        copyStatus)));
    secret.focus();
  }

  async function revoke(t) {
    const ok = await confirmDialog({
      title: "Revoke this token?",
      body: h("p", { text: `Revoke token ${t.id} (${t.namespace}: ${t.permissions.join(", ")})? Every client using it is refused from then on.` }),
      confirm: "Revoke", danger: true,
    });
    if (!ok) return;
    try {
      await call("DELETE", `/admin/tokens/${encodeURIComponent(t.id)}`, { namespace: null });
      fill(status, message("ok", `Token ${t.id} revoked.`));
      await load();
    } catch (e) {
      fill(status, message("error", `Not revoked: ${describe(e)}`));
    }
  }

  return {
    root,
    show() {
      ns.value = session.namespaceLabel;
      ns.readOnly = !session.bootstrap;
      nsHint.textContent = session.bootstrap ? "Any namespace (the admin token may create tokens anywhere)." : "Your token's own namespace.";
      fill(created);
      fill(status);
      load();
    },
  };
}
