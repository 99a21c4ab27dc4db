// DOM helpers. Every node is built with createElement and every text set with textContent:
// stored values are shown as text, never parsed as HTML.

import { stringify } from "./json.js";

/**
 * Builds an element. `attrs` keys: `class`, `text`, `on<event>` (listeners), `dataset`,
 * boolean DOM properties given as booleans (`disabled: true`) and plain attributes (strings).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "text") el.textContent = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (typeof value === "boolean" && name in el) el[name] = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces an element's content. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A message box; `kind` is `error`, `warn`, `ok` or `info`. Errors are announced. */
export function message(kind, ...children) {
  return h("div", { class: `msg msg-${kind}`, role: kind === "error" ? "alert" : "status" }, ...children);
}

/**
 * A modal confirmation on a real <dialog>: Escape or Cancel answer false. The focus starts
 * on Cancel, so a stray Enter does not delete anything.
 */
export function confirmDialog({ title, body, confirm = "Confirm", danger = false }) {
  return new Promise((resolve) => {
    const cancelBtn = h("button", { type: "button", class: "btn", text: "Cancel", onclick: () => dlg.close("cancel") });
    const okBtn = h("button", {
      type: "button", class: danger ? "btn btn-danger" : "btn btn-primary", text: confirm,
      onclick: () => dlg.close("ok"),
    });
    const dlg = h("dialog", { class: "dialog", "aria-labelledby": "dlg-title" },
      h("h2", { id: "dlg-title", text: title }),
      h("div", { class: "dialog-body" }, body),
      h("div", { class: "actions" }, cancelBtn, okBtn));
    dlg.addEventListener("close", () => {
      dlg.remove();
      resolve(dlg.returnValue === "ok");
    });
    document.body.append(dlg);
    dlg.showModal();
    cancelBtn.focus();
  });
}

/**
 * A modal holding a form built by `build(close)`; resolves with whatever `close(result)` is
 * given, or null on Escape / Cancel.
 */
export function formDialog(title, build) {
  return new Promise((resolve) => {
    let result = null;
    const close = (value) => {
      result = value;
      dlg.close();
    };
    const dlg = h("dialog", { class: "dialog dialog-wide", "aria-labelledby": "dlg-title" },
      h("h2", { id: "dlg-title", text: title }), build(close));
    dlg.addEventListener("close", () => {
      dlg.remove();
      resolve(result);
    });
    document.body.append(dlg);
    dlg.showModal();
  });
}

/** Copies text; when the clipboard is refused, says how to copy by hand instead. */
export async function copyText(text, statusEl) {
  try {
    if (!navigator.clipboard) throw new Error("no clipboard access on this page");
    await navigator.clipboard.writeText(text);
    fill(statusEl, "Copied.");
  } catch (e) {
    fill(statusEl, `Could not copy (${e.message}): select the text and press Ctrl+C.`);
  }
}

/** "in 4 m 05 s" / "expired": a TTL countdown's text. */
export function countdown(expiresAt, now = Date.now()) {
  const ms = Date.parse(expiresAt) - now;
  if (ms <= 0) return "expired";
  let s = Math.ceil(ms / 1000);
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const hh = Math.floor(s / 3600);
  s -= hh * 3600;
  const mm = Math.floor(s / 60);
  s -= mm * 60;
  const pad = (n) => String(n).padStart(2, "0");
  if (d) return `in ${d} d ${hh} h ${pad(mm)} m`;
  if (hh) return `in ${hh} h ${pad(mm)} m ${pad(s)} s`;
  if (mm) return `in ${mm} m ${pad(s)} s`;
  return `in ${s} s`;
}

/** Pretty JSON for display and editing, numbers exactly as stored. */
export function pretty(value) {
  return stringify(value, 2);
}

/** A labelled form field. */
export function field(label, input, hint) {
  return h("label", { class: "field" }, h("span", { class: "field-label", text: label }), input,
    hint ? h("span", { class: "field-hint", text: hint }) : null);
}
