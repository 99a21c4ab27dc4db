//! `GET /openapi.json` and the dialects' `GET /openapi/{dialect}.json` against the router:
//! every client route the code mounts is in its document, every described operation is
//! served, and each document matches its checked-in copy in `docs/`, so a change to an API
//! shows up in review.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use reqwest::Method;
use serde_json::Value;

use crate::support::{deadline_in, Cluster};

/// Peer RPCs, and the web console's files (pages for a browser, not API operations).
const NOT_DESCRIBED: &[&str] = &["/raft/", "/ui"];

/// The documents: where each is served, its checked-in copy, the path prefixes of the routes
/// it describes (every other route is the native document's), and a floor on how many
/// operations the source scan must find for it, so a regex that stopped matching cannot make
/// the test pass by finding nothing.
struct Doc {
    url: &'static str,
    file: &'static str,
    prefixes: &'static [&'static str],
    floor: usize,
}

static DOCS: &[Doc] = &[
    Doc { url: "/openapi.json", file: "docs/openapi.json", prefixes: &[], floor: 18 },
    Doc {
        url: "/openapi/saasignal.json",
        file: "docs/openapi-saasignal.json",
        prefixes: &["/infra/", "/openapi/saasignal.json"],
        floor: 9,
    },
    Doc {
        url: "/openapi/echovalue.json",
        file: "docs/openapi-echovalue.json",
        prefixes: &["/echovalue/", "/openapi/echovalue.json"],
        floor: 4,
    },
    Doc {
        url: "/openapi/kvdb.json",
        file: "docs/openapi-kvdb.json",
        prefixes: &["/kvdb", "/openapi/kvdb.json"],
        floor: 16,
    },
];

/// The document a mounted path belongs to.
fn doc_of(path: &str) -> &'static Doc {
    DOCS.iter().find(|d| d.prefixes.iter().any(|p| path.starts_with(p))).unwrap_or(&DOCS[0])
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The text of a call from just after its opening parenthesis to its closing one.
fn call_args(text: &str) -> &str {
    let mut depth = 1;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 1 => return &text[..i],
            ')' => depth -= 1,
            _ => {}
        }
    }
    text
}

/// Every `(METHOD, path)` that `.route("path", get(..).put(..))` mounts under `src/api`, read
/// from the source: axum's router cannot list its routes. A route call may span lines, and
/// may name a local method router (`let bucket_level = || get(..)...;`), which is looked up.
/// The `{*rest}` catch-alls answer the dialect's own 404 and are not API; a `{*key}` tail is
/// described as `{key}`.
fn mounted_routes() -> BTreeSet<(String, String)> {
    let route = regex::Regex::new(r#"\.route\(\s*"([^"]+)","#).unwrap();
    let method = regex::Regex::new(r"\b(get|put|post|delete|patch|head)\(").unwrap();
    let local = regex::Regex::new(r"^\s*([a-z_]+)\(\)\s*,?\s*$").unwrap();
    let mut files = Vec::new();
    rust_files(&repo().join("src/api"), &mut files);
    let mut routes = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        // Unit tests mount throwaway routes.
        let text = text.split("#[cfg(test)]").next().unwrap();
        for m in route.captures_iter(text) {
            let path = m[1].to_string();
            if NOT_DESCRIBED.iter().any(|p| path.starts_with(p)) || path.contains("{*rest}") {
                continue;
            }
            let mut args = call_args(&text[m.get(0).unwrap().end()..]);
            if let Some(l) = local.captures(args) {
                let def = format!("let {} = ", &l[1]);
                let at = text.find(&def).unwrap_or_else(|| panic!("{}: no `{def}`", file.display()));
                args = &text[at..at + text[at..].find("};").unwrap()];
            }
            let methods: Vec<_> = method.captures_iter(args).map(|c| c[1].to_uppercase()).collect();
            assert!(!methods.is_empty(), "{}: no method found for {path}", file.display());
            for mth in methods {
                routes.insert((mth, path.replace("{*key}", "{key}")));
            }
        }
    }
    routes
}

fn described(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for mth in ["get", "put", "post", "delete", "patch", "head"] {
            if item.get(mth).is_some() {
                ops.insert((mth.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

async fn cluster() -> (Cluster, String) {
    let mut cluster = Cluster::in_process_single(&[]);
    cluster.wait_for_leader(deadline_in(15)).await;
    let url = cluster.url(1);
    (cluster, url)
}

async fn served_document(c: &Cluster, url: &str, doc: &Doc) -> Value {
    let r = c.http.must(Method::GET, &format!("{url}{}", doc.url), None, &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    r.body.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mounted_route_is_described_and_every_described_one_is_served() {
    let (c, url) = cluster().await;
    let mounted = mounted_routes();
    for doc in DOCS {
        let served = served_document(&c, &url, doc).await;
        assert_eq!(served["openapi"], "3.1.0");
        let mine: BTreeSet<_> = mounted.iter().filter(|(_, p)| std::ptr::eq(doc_of(p), doc)).cloned().collect();
        assert!(mine.len() >= doc.floor, "{}: found only {mine:?}", doc.url);
        let described = described(&served);
        let missing: Vec<_> = mine.difference(&described).collect();
        assert!(missing.is_empty(), "mounted but not in {}: {missing:?}", doc.url);
        // The other way: each described operation reaches a handler (its own answer, not the
        // router's or a dialect's catch-all 404, nor a 405). Path parameters get harmless values.
        for (mth, path) in &described {
            let concrete = path
                .replace("{key}", "openapi-probe")
                .replace("{id}", "999")
                .replace("{group}", "openapi")
                .replace("{bucket}", "openapiprobe");
            let mut target = format!("{url}{concrete}");
            if path == "/kv/watch" {
                target.push_str("?wait=500ms");
            }
            let method = Method::from_bytes(mth.as_bytes()).unwrap();
            let r = c.http.must(method, &target, None, &[("accept", "application/json")]).await;
            let code = r.error_code().unwrap_or("");
            let catch_all =
                code == "no_route" || r.text.contains("no such route") || r.text.starts_with("Not found: the path is");
            assert!(
                !catch_all && r.status != 405 && code != "method_not_allowed",
                "{mth} {path} is in {} but not served: {r:?}",
                doc.url
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_description_matches_its_checked_in_copy() {
    let (c, url) = cluster().await;
    for doc in DOCS {
        let text = c.http.must(Method::GET, &format!("{url}{}", doc.url), None, &[]).await.text;
        let file = repo().join(doc.file);
        if std::env::var_os("CAIRN_UPDATE_OPENAPI").is_some() {
            std::fs::write(&file, format!("{text}\n")).unwrap();
        }
        let checked_in = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            checked_in.trim_end() == text,
            "{} differs from what the server describes at {}: review the change, then run \
             `CAIRN_UPDATE_OPENAPI=1 cargo test --test it openapi` to update it",
            doc.file,
            doc.url
        );
    }
}
