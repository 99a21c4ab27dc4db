// The console's entry module: session (login, namespace), theme, and hash routing between
// the views (#/browse/<prefix>, #/key/<key>, #/cluster, #/tokens, #/login), so a reload keeps
// the place.

import { ApiError, call, describe, login, logout, probeAnonymous, session, setNamespace, signedIn, useAnonymous } from "./api.js";
import { browseHref, createBrowser, keyHref, parentPrefix } from "./browse.js";
import { createCluster } from "./cluster.js";
import { fill, h, message } from "./dom.js";
import { createKeyDialog, createKeyView } from "./keyview.js";
import { createTokens } from "./tokens.js";

const THEME_KEY = "cairn.theme"; // the theme only: nothing about the session goes to localStorage

// ---- theme ----------------------------------------------------------------------------------

function effectiveTheme() {
  return document.documentElement.dataset.theme
    || (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
}

function applyTheme() {
  const saved = localStorage.getItem(THEME_KEY);
  if (saved === "light" || saved === "dark") document.documentElement.dataset.theme = saved;
  themeBtn.textContent = effectiveTheme() === "dark" ? "Light theme" : "Dark theme";
}

const themeBtn = h("button", {
  type: "button", class: "btn btn-ghost", id: "theme-toggle",
  onclick: () => {
    localStorage.setItem(THEME_KEY, effectiveTheme() === "dark" ? "light" : "dark");
    applyTheme();
  },
});

// ---- shell ----------------------------------------------------------------------------------

const main = document.getElementById("app");
const nav = h("nav", { class: "mainnav", "aria-label": "Sections" });
const sessionBox = h("div", { class: "session" });
const flash = h("div", { class: "flash-area" });
document.body.prepend(h("header", { class: "topbar" },
  h("a", { class: "brand", href: "#/browse/", text: "Cairn", "aria-label": "Cairn console: browse all keys" }), nav, sessionBox));
main.before(flash);

const namespaces = new Set(["default"]);
const nsList = h("datalist", { id: "ns-list" });

function rememberNamespaces(list) {
  for (const ns of list) namespaces.add(ns);
  fill(nsList, [...namespaces].sort().map((ns) => h("option", { value: ns })));
}

function renderShell(section) {
  const link = (href, text, name) => h("a", { href, text, "aria-current": section === name ? "page" : null });
  fill(nav, signedIn() ? [
    link(browseHref(browser.prefix ?? ""), "Browse", "browse"),
    link("#/cluster", "Cluster", "cluster"),
    session.canManageTokens ? link("#/tokens", "Tokens", "tokens") : null,
  ] : null);

  const parts = [];
  if (signedIn()) {
    if (session.bootstrap) {
      // The bootstrap admin may work in any namespace: free text, with the known ones offered.
      const input = h("input", {
        type: "text", id: "namespace", list: "ns-list", value: session.namespace, spellcheck: "false",
        autocomplete: "off", pattern: "[A-Za-z0-9._\\-]{1,64}", "aria-label": "Namespace",
      });
      const pick = (ev) => {
        ev.preventDefault();
        if (!input.checkValidity() || input.value === session.namespace) return;
        setNamespace(input.value);
        rememberNamespaces([input.value]);
        stopAll();
        location.hash = browseHref("");
        route();
      };
      parts.push(h("form", { class: "ns-form", onsubmit: pick },
        h("label", { for: "namespace", text: "Namespace" }), input, nsList,
        h("button", { type: "submit", class: "btn btn-small", text: "Use" })));
    } else {
      parts.push(h("span", { class: "who", text: `Namespace: ${session.namespaceLabel}` }));
    }
    parts.push(h("span", { class: "who", text: session.anonymous ? "anonymous" : session.bootstrap ? "admin token" : "token" }));
  }
  parts.push(themeBtn);
  if (session.token) parts.push(h("button", { type: "button", class: "btn", id: "logout", text: "Log out", onclick: doLogout }));
  else if (session.anonymous) parts.push(h("a", { class: "btn", href: "#/login", text: "Log in" }));
  fill(sessionBox, parts);
}

// ---- views ----------------------------------------------------------------------------------

const browser = createBrowser({ onCreate: openCreate });
const keyView = createKeyView({
  onDeleted: (key) => {
    flashMessage("ok", `Deleted ${key}.`);
    location.hash = browseHref(parentPrefix(key));
  },
  onMissingCreate: (key) => openCreate(key),
});
const cluster = createCluster();
const tokens = createTokens({ onNamespaces: rememberNamespaces });
const placeholder = h("section", { class: "panel keyview placeholder" },
  h("p", { class: "muted", text: "Select a key to see its value, or create one with New key." }));

async function openCreate(prefix) {
  const key = await createKeyDialog(prefix);
  if (key !== null) location.hash = keyHref(key);
}

function flashMessage(kind, text) {
  fill(flash, message(kind, text));
}

function stopAll() {
  browser.stop();
  keyView.stop();
  cluster.stop();
}

function loginView(note) {
  const input = h("input", { type: "password", id: "token", autocomplete: "off", required: true, spellcheck: "false" });
  const status = h("div", {}, note ? message("warn", note) : null);
  const form = h("form", {
    class: "panel login",
    onsubmit: async (ev) => {
      ev.preventDefault();
      fill(status, h("p", { class: "muted", text: "Checking…" }));
      try {
        await login(input.value.trim());
        // replaceState: no hashchange, so the view is built once, by afterLogin.
        history.replaceState(null, "", browseHref(""));
        await afterLogin();
      } catch (e) {
        fill(status, message("error", `Login failed: ${describe(e)}`));
        input.select();
      }
    },
  },
  h("h1", { text: "Log in to Cairn" }),
  h("p", { class: "muted", text: "Paste an access token or the bootstrap admin token. It is kept for this browser tab only." }),
  h("label", { for: "token", text: "Token" }), input, status,
  h("div", { class: "actions" }, h("button", { type: "submit", class: "btn btn-primary", text: "Log in" })));
  fill(main, form);
  input.focus();
}

async function afterLogin() {
  if (session.bootstrap || session.canManageTokens) {
    try {
      const { data } = await call("GET", "/admin/tokens", { namespace: null });
      rememberNamespaces(data.tokens.map((t) => t.namespace));
    } catch {
      // The picker still offers `default` and free text; the Tokens page reports the error.
    }
  }
  route();
}

function doLogout() {
  stopAll();
  logout();
  fill(flash);
  history.replaceState(null, "", browseHref(""));
  boot();
}

function route() {
  const hash = location.hash || "#/browse/";
  const [, section = "browse", ...rest] = hash.split("/");
  const arg = decodeURIComponent(rest.join("/"));
  if (!signedIn() || section === "login") {
    stopAll();
    renderShell("login");
    return loginView();
  }
  renderShell(section);
  if (section !== "browse" && section !== "key") browser.stop();
  if (section !== "key") keyView.stop();
  if (section !== "cluster") cluster.stop();

  if (section === "cluster") {
    fill(main, cluster.root);
    cluster.show();
  } else if (section === "tokens" && session.canManageTokens) {
    fill(main, tokens.root);
    tokens.show();
  } else if (section === "key" && arg) {
    // The list shows the key's folder (keeping its filter when that folder is already shown).
    browser.show(parentPrefix(arg), arg);
    fill(main, h("div", { class: "workspace" }, browser.root, keyView.root));
    keyView.show(arg);
  } else {
    browser.show(section === "browse" ? arg : "");
    fill(main, h("div", { class: "workspace" }, browser.root, placeholder));
  }
}

// `/` jumps to the filter, as in many consoles, unless the user is typing somewhere.
document.addEventListener("keydown", (ev) => {
  if (ev.key !== "/" || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (ev.target.closest("input, textarea, select, dialog")) return;
  if (!main.querySelector(".browse")) return;
  ev.preventDefault();
  browser.focusFilter();
});

// A call refused with 401 mid-session (the token was revoked or expired): log out, and say why.
window.addEventListener("cairn:unauthorized", (ev) => {
  if (!booted || !session.token) return;
  stopAll();
  logout();
  history.replaceState(null, "", "#/login");
  renderShell("login");
  loginView(`This session's token is no longer accepted (unauthorized: ${ev.detail}). Log in again.`);
});

window.addEventListener("hashchange", () => {
  fill(flash);
  if (signedIn()) route();
});

let booted = false; // until boot has checked the saved token, its 401 is boot's to handle

async function boot() {
  booted = false;
  applyTheme();
  let note = null;
  try {
    if (session.token) {
      try {
        await login(session.token);
      } catch (e) {
        if (!(e instanceof ApiError && e.status === 401)) throw e;
        logout();
        note = `Your saved token is no longer accepted (${describe(e)}). Log in again.`;
      }
    }
    if (!session.token && (await probeAnonymous())) await useAnonymous();
  } catch (e) {
    booted = true;
    renderShell("login");
    fill(main, message("error", `Could not reach this node: ${describe(e)}`));
    return;
  }
  booted = true;
  if (signedIn()) return afterLogin();
  renderShell("login");
  loginView(note);
}

boot();
