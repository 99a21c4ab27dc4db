//! `GET /openapi.json` against the router: every client route the code mounts is described,
//! every described operation is served, and the description matches the checked-in
//! `docs/openapi.json`, so a change to the API shows up in review.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use reqwest::Method;
use serde_json::Value;

use crate::support::{deadline_in, Cluster};

/// Routes that are not the client API the description covers: the peer RPCs, and the dialects,
/// which follow their hosted services' own APIs (docs/dialects.md).
const NOT_DESCRIBED: &[&str] = &["/raft/", "/kvdb", "/echovalue/", "/infra/"];

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

/// Every `(METHOD, path)` that `.route("path", get(..).put(..))` mounts under `src/api`, read
/// from the source: axum's router cannot list its routes.
fn mounted_routes() -> BTreeSet<(String, String)> {
    let route = regex::Regex::new(r#"\.route\(\s*"([^"]+)",([^\n]*)"#).unwrap();
    let method = regex::Regex::new(r"\b(get|put|post|delete|patch|head)\(").unwrap();
    let mut files = Vec::new();
    rust_files(&repo().join("src/api"), &mut files);
    let mut routes = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        // Unit tests mount throwaway routes.
        let text = text.split("#[cfg(test)]").next().unwrap();
        for m in route.captures_iter(text) {
            let path = m[1].to_string();
            if NOT_DESCRIBED.iter().any(|p| path.starts_with(p)) {
                continue;
            }
            let methods: Vec<_> = method.captures_iter(&m[2]).map(|c| c[1].to_uppercase()).collect();
            assert!(!methods.is_empty(), "{}: no method found for {path}", file.display());
            for mth in methods {
                routes.insert((mth, path.clone()));
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

async fn served_document() -> (Cluster, String, Value) {
    let mut cluster = Cluster::in_process_single(&[]);
    cluster.wait_for_leader(deadline_in(15)).await;
    let url = cluster.url(1);
    let r = cluster.http.must(Method::GET, &format!("{url}/openapi.json"), None, &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    let doc = r.body.clone();
    (cluster, url, doc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mounted_route_is_described_and_every_described_one_is_served() {
    let (c, url, doc) = served_document().await;
    assert_eq!(doc["openapi"], "3.1.0");
    let mounted = mounted_routes();
    // A floor, so a regex that stopped matching cannot make this pass by finding nothing.
    assert!(mounted.len() >= 18, "found only {mounted:?}");
    let described = described(&doc);
    let missing: Vec<_> = mounted.difference(&described).collect();
    assert!(missing.is_empty(), "mounted but not in /openapi.json: {missing:?}");
    // The other way: each described operation reaches a handler (its own answer, not the
    // router's 404 `no_route` or 405). Path parameters get harmless values.
    for (mth, path) in &described {
        let concrete = path.replace("{key}", "openapi-probe").replace("{id}", "999");
        let mut target = format!("{url}{concrete}");
        if path == "/kv/watch" {
            target.push_str("?wait=500ms");
        }
        let method = Method::from_bytes(mth.as_bytes()).unwrap();
        let r = c.http.must(method, &target, None, &[("accept", "application/json")]).await;
        let code = r.error_code().unwrap_or("");
        assert!(code != "no_route" && code != "method_not_allowed", "{mth} {path} is described but not served: {r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_description_matches_the_checked_in_copy() {
    let (c, url, _) = served_document().await;
    let text = c.http.must(Method::GET, &format!("{url}/openapi.json"), None, &[]).await.text;
    let file = repo().join("docs/openapi.json");
    if std::env::var_os("CAIRN_UPDATE_OPENAPI").is_some() {
        std::fs::write(&file, format!("{text}\n")).unwrap();
    }
    let checked_in = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        checked_in.trim_end() == text,
        "docs/openapi.json differs from what the server describes: review the change, then run \
         `CAIRN_UPDATE_OPENAPI=1 cargo test --test it openapi` to update it"
    );
}
