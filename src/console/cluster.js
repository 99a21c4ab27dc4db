// The cluster panel: one row per member from `GET /cluster/nodes` (the serving node asks its
// peers, since the page may only talk to its own origin), polled every 2 s. Request rates come
// from the difference of each node's request counter between two polls.

import { call, describe, session } from "./api.js";
import { confirmDialog, field, fill, h, message } from "./dom.js";

const POLL_MS = 2000;

export function createCluster() {
  const status = h("div");
  const updated = h("span", { class: "muted", "aria-live": "off" });
  const body = h("tbody");
  const table = h("table", { class: "nodes" },
    h("caption", { class: "sr-only", text: "Cluster members" }),
    h("thead", {}, h("tr", {}, ["Node", "Address", "State", "Role", "Term", "Leader", "Last log", "Applied", "Lag", "Health", "Ready", "Req/s", ""]
      .map((t) => h("th", { scope: "col", text: t })))),
    body);
  const adminBox = h("div");
  const root = h("section", { class: "panel cluster", "aria-label": "Cluster" },
    h("div", { class: "panel-head" }, h("h2", { text: "Cluster" }), updated),
    status, h("div", { class: "table-wrap" }, table), adminBox);

  let timer = null;
  let generation = 0;
  let prev = new Map(); // node id → {requests, at}

  async function poll(gen) {
    try {
      const { data } = await call("GET", "/cluster/nodes", { namespace: null });
      if (gen !== generation) return;
      fill(status);
      render(data);
      updated.textContent = `Answered by node ${data.answeredBy} at ${new Date().toLocaleTimeString()}; refreshes every 2 s.`;
    } catch (e) {
      if (gen !== generation) return;
      fill(status, message("error", `Could not read the cluster: ${describe(e)}`));
    }
    if (gen === generation) timer = setTimeout(() => poll(gen), POLL_MS);
  }

  function render(data) {
    const now = performance.now();
    const leader = data.nodes.find((n) => n.up && n.status?.role === "leader");
    const leaderLast = leader?.status?.lastLogIndex;
    const next = new Map();
    const rows = data.nodes.map((n) => {
      const s = n.status || {};
      let rate = "–";
      if (typeof n.requests === "number") {
        const p = prev.get(n.id);
        if (p) rate = (Math.max(0, n.requests - p.requests) / ((now - p.at) / 1000)).toFixed(1);
        next.set(n.id, { requests: n.requests, at: now });
      }
      const lag = n.up && leaderLast !== undefined && s.appliedIndex !== undefined ? leaderLast - s.appliedIndex : null;
      const role = s.role || "unknown";
      return h("tr", { class: n.up ? "" : "node-down", dataset: { node: n.id } },
        h("th", { scope: "row", text: String(n.id) }),
        h("td", {}, h("code", { text: n.addr })),
        h("td", {}, n.up
          ? h("span", { class: "badge badge-ok", text: "up" })
          : h("span", { class: "badge badge-down", text: "down", title: n.error || "" })),
        h("td", {}, n.up ? h("span", { class: `role role-${role}`, text: role + (n.voter ? "" : " (non-voter)") }) : "–"),
        h("td", { text: s.term ?? "–" }),
        h("td", { text: s.leader ?? (n.up ? "none" : "–") }),
        h("td", { text: s.lastLogIndex ?? "–" }),
        h("td", { text: s.appliedIndex ?? "–" }),
        h("td", { class: lag > 100 ? "warn-text" : "", text: lag ?? "–" }),
        h("td", { text: n.health ?? "–" }),
        h("td", { text: n.ready === undefined ? "–" : n.ready ? "ready" : `not ready${n.notReady ? `: ${n.notReady}` : ""}` }),
        h("td", { text: rate }),
        h("td", {}, session.bootstrap
          ? h("button", { type: "button", class: "btn btn-small btn-danger", text: "Remove", onclick: () => removeMember(n) })
          : null));
    });
    prev = next;
    // The rows are rebuilt every poll: put the focus back on the same row's button.
    const focused = document.activeElement?.closest?.("tr[data-node]")?.dataset.node;
    fill(body, rows);
    if (focused) body.querySelector(`tr[data-node="${focused}"] button`)?.focus();
    const down = data.nodes.filter((n) => !n.up);
    if (down.length) {
      status.append(message("error", down.map((n) => `Node ${n.id} (${n.addr}) is down: ${n.error || n.health || "no answer"}.`).join(" ")));
    }
  }

  // Membership changes are cluster-wide: only the bootstrap admin sees these controls.
  function renderAdmin() {
    if (!session.bootstrap) return fill(adminBox, h("p", { class: "muted", text: "Read-only: membership changes need the bootstrap admin token." }));
    const id = h("input", { type: "text", inputmode: "numeric", required: true });
    const addr = h("input", { type: "text", required: true, placeholder: "127.0.0.1:7004" });
    const out = h("div");
    fill(adminBox, h("form", {
      class: "inline-form",
      onsubmit: async (ev) => {
        ev.preventDefault();
        const ok = await confirmDialog({ title: "Add a member?", body: h("p", { text: `Add node ${id.value} at ${addr.value} to the cluster?` }), confirm: "Add member" });
        if (!ok) return;
        try {
          await call("POST", "/cluster/members", { namespace: null, body: { id: Number(id.value), addr: addr.value } });
          fill(out, message("ok", `Node ${id.value} added.`));
        } catch (e) {
          fill(out, message("error", `Not added: ${describe(e)}`));
        }
      },
    }, h("h3", { text: "Add a member" }), field("Node id", id), field("Address", addr),
    h("button", { type: "submit", class: "btn", text: "Add member" })), out);
  }

  async function removeMember(n) {
    const ok = await confirmDialog({
      title: "Remove this member?",
      body: h("p", { text: `Remove node ${n.id} (${n.addr}) from the cluster? Its id cannot be used again.` }),
      confirm: "Remove", danger: true,
    });
    if (!ok) return;
    try {
      await call("DELETE", `/cluster/members/${encodeURIComponent(n.id)}`, { namespace: null });
    } catch (e) {
      fill(status, message("error", `Not removed: ${describe(e)}`));
    }
  }

  return {
    root,
    show() {
      if (timer !== null) return;
      generation += 1;
      prev = new Map();
      renderAdmin();
      updated.textContent = "Asking every node…";
      poll(generation);
    },
    stop() {
      generation += 1;
      clearTimeout(timer);
      timer = null;
    },
  };
}
