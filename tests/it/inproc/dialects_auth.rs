//! Tokens and namespaces across the dialects, on a node started with `--admin-token`: every
//! dialect route refuses missing or unknown tokens (401) and tokens without the permission
//! (403), each in its own error style; namespaces stay isolated across dialects while one
//! namespace's keys are shared by all of them; inside a KVdb bucket its own keys govern.

use crate::support::raw::{basic, bearer, mint_token, Raw};
use crate::support::{deadline_in, encode_key, Cluster, Resp};
use reqwest::Method;
use serde_json::{json, Value};

const ADMIN: &str = "dialects-admin";

struct Node {
    _cluster: Cluster,
    raw: Raw,
    base: String,
}

impl Node {
    async fn call(&self, method: Method, path: &str, body: Option<&[u8]>, headers: &[(&str, &str)]) -> Resp {
        self.raw.send(method, &format!("{}{path}", self.base), body, headers).await
    }

    async fn json(&self, method: Method, path: &str, body: Value, auth: &str) -> Resp {
        self.raw.json(method, &format!("{}{path}", self.base), &body, &[("authorization", auth)]).await
    }
}

struct Tokens {
    a_rw: String,
    a_ro: String,
    a_admin: String,
    b_rw: String,
    b_admin: String,
}

async fn setup() -> (Node, Tokens) {
    setup_with(&[]).await
}

async fn setup_with(extra: &[&str]) -> (Node, Tokens) {
    let args: Vec<&str> = ["--admin-token", ADMIN].iter().chain(extra).copied().collect();
    let mut c = Cluster::in_process_single(&args);
    c.wait_for_leader(deadline_in(15)).await;
    let base = c.url(1);
    let mint = async |ns: &str, perms: &[&str]| mint_token(&c.http, &base, ADMIN, ns, perms).await;
    let tokens = Tokens {
        a_rw: mint("team-a", &["read", "write"]).await,
        a_ro: mint("team-a", &["read"]).await,
        a_admin: mint("team-a", &["read", "write", "admin"]).await,
        b_rw: mint("team-b", &["read", "write"]).await,
        b_admin: mint("team-b", &["read", "write", "admin"]).await,
    };
    (Node { _cluster: c, raw: Raw::new(), base }, tokens)
}

#[track_caller]
fn saasignal_error(r: &Resp, status: u16, code: &str) {
    assert_eq!((r.status, r.body["code"].as_str()), (status, Some(code)), "{r:?}");
}

#[track_caller]
fn text_error(r: &Resp, status: u16) {
    assert_eq!(r.status, status, "{r:?}");
    assert!(r.header("content-type").is_some_and(|c| c.starts_with("text/plain")), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dialect_route_checks_the_token_and_its_permission() {
    let (n, t) = setup().await;
    let (ro, rw) = (bearer(&t.a_ro), bearer(&t.a_rw));
    let nobody: [(&str, &str); 0] = [];
    let unknown = [("authorization", "Bearer cairn_nope_nope")];

    // saasignal: reads with `read`, writes with `write`; 401 without or with an unknown token.
    let writes: [(Method, &str, Value); 5] = [
        (Method::PUT, "/infra/kv/k", json!({"value": 1})),
        (Method::DELETE, "/infra/kv/k", json!({})),
        (Method::POST, "/infra/kv/k/increment", json!({})),
        (Method::POST, "/infra/kv", json!({"ops": [{"op": "set", "key": "k", "value": 1}]})),
        (Method::POST, "/infra/kv", json!({"ops": [{"op": "delete", "key": "k"}]})),
    ];
    for (m, path, body) in writes {
        saasignal_error(&n.json(m.clone(), path, body.clone(), &ro).await, 403, "forbidden");
        let body = serde_json::to_vec(&body).unwrap();
        saasignal_error(&n.call(m.clone(), path, Some(&body), &nobody).await, 401, "unauthorized");
        saasignal_error(&n.call(m, path, Some(&body), &unknown).await, 401, "unauthorized");
    }
    n.json(Method::PUT, "/infra/kv/k", json!({"value": 1}), &rw).await.ok();
    n.call(Method::GET, "/infra/kv/k", None, &[("authorization", &ro)]).await.ok();
    n.call(Method::GET, "/infra/kv?prefix=k", None, &[("authorization", &ro)]).await.ok();
    n.json(Method::POST, "/infra/kv", json!({"ops": [{"op": "get", "key": "k"}]}), &ro).await.ok();
    for path in ["/infra/kv/k", "/infra/kv"] {
        saasignal_error(&n.call(Method::GET, path, None, &nobody).await, 401, "unauthorized");
        saasignal_error(&n.call(Method::GET, path, None, &unknown).await, 401, "unauthorized");
    }

    // echovalue: x-token; reads with `read`, POST and DELETE with `write`.
    let (ro_x, rw_x) = ([("x-token", t.a_ro.as_str())], [("x-token", t.a_rw.as_str())]);
    for m in [Method::POST, Method::DELETE] {
        text_error(&n.call(m.clone(), "/echovalue/kv/default/k", Some(b"v"), &ro_x).await, 403);
        text_error(&n.call(m.clone(), "/echovalue/kv/default/k", Some(b"v"), &nobody).await, 401);
        text_error(&n.call(m, "/echovalue/kv/default/k", Some(b"v"), &[("x-token", "nope")]).await, 401);
    }
    n.call(Method::POST, "/echovalue/kv/default/k", Some(b"v"), &rw_x).await.ok();
    assert_eq!(n.call(Method::GET, "/echovalue/kv/default/k", None, &ro_x).await.ok().text, "v");
    let r = n.call(Method::GET, "/echovalue/kv/default/k", None, &nobody).await;
    text_error(&r, 401);
    assert!(r.text.starts_with("Invalid token"), "{r:?}");

    // KVdb: creating a bucket needs `write` in a namespace (Basic auth with the token as user).
    let create = async |form: &[u8], auth: Option<String>| {
        let mut h = vec![("content-type", "application/x-www-form-urlencoded")];
        let auth = auth.unwrap_or_default();
        if !auth.is_empty() {
            h.push(("authorization", &auth));
        }
        n.call(Method::POST, "/kvdb", Some(form), &h).await
    };
    text_error(&create(b"", None).await, 401);
    text_error(&create(b"", Some(basic("cairn_nope_nope"))).await, 401);
    text_error(&create(b"", Some(basic(&t.a_ro))).await, 403);
    let bucket = create(b"secret_key=s", Some(basic(&t.a_rw))).await.ok().text;
    let open = create(b"", Some(bearer(&t.a_rw))).await.ok().text;

    // Inside a bucket its own keys govern, not Cairn tokens: a public bucket needs none, ...
    n.call(Method::PUT, &format!("/kvdb/{open}/k"), Some(b"v"), &nobody).await.ok();
    assert_eq!(n.call(Method::GET, &format!("/kvdb/{open}/k"), None, &nobody).await.ok().text, "v");
    // ... a namespace token without `admin` is just a wrong key for a protected bucket, ...
    let list = format!("/kvdb/{bucket}/");
    text_error(&n.call(Method::GET, &list, None, &[("authorization", &basic(&t.a_rw))]).await, 401);
    text_error(&n.call(Method::GET, &list, None, &[("authorization", &basic(&t.b_admin))]).await, 401);
    text_error(&n.call(Method::GET, &list, None, &nobody).await, 403);
    n.call(Method::GET, &list, None, &[("authorization", &basic("s"))]).await.ok();
    // ... while operators (the admin token, `admin` on the bucket's namespace) act as its secret key.
    n.call(Method::GET, &list, None, &[("authorization", &basic(&t.a_admin))]).await.ok();
    n.call(Method::GET, &list, None, &[("authorization", &bearer(ADMIN))]).await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_are_isolated_across_dialects_and_shared_within_one() {
    let (n, t) = setup().await;
    let (a, b) = (bearer(&t.a_rw), bearer(&t.b_rw));

    // The same key name in two namespaces, through saasignal.
    n.json(Method::PUT, "/infra/kv/shared", json!({"value": "from a"}), &a).await.ok();
    n.json(Method::PUT, "/infra/kv/shared", json!({"value": "from b"}), &b).await.ok();
    let get = async |path: &str, auth: &str| n.call(Method::GET, path, None, &[("authorization", auth)]).await;
    assert_eq!(get("/infra/kv/shared", &a).await.ok().body["value"], "from a");
    assert_eq!(get("/infra/kv/shared", &b).await.ok().body["value"], "from b");

    // echovalue writes in team-a; team-b sees nothing through any dialect.
    n.call(Method::POST, "/echovalue/kv/default/mykey", Some(b"hello world"), &[("x-token", &t.a_rw)]).await.ok();
    text_error(&n.call(Method::GET, "/echovalue/kv/default/mykey", None, &[("x-token", &t.b_rw)]).await, 404);
    saasignal_error(&get(&format!("/infra/kv/{}", encode_key("default/mykey")), &b).await, 404, "not_found");
    get(&format!("/kv/items/{}", encode_key("default/mykey")), &b).await.assert_error(404, "not_found");

    // Within team-a, every dialect sees the same key: echovalue's group is a key prefix.
    let ss = get(&format!("/infra/kv/{}", encode_key("default/mykey")), &a).await.ok();
    assert_eq!(ss.body["value"], "hello world");
    let native = get(&format!("/kv/items/{}", encode_key("default/mykey")), &a).await.ok();
    assert_eq!(native.data()["value"], "hello world");
    n.json(Method::PUT, "/infra/kv/default%2Fcount", json!({"value": 41}), &a).await.ok();
    let ev = n.call(Method::GET, "/echovalue/kv/default/count", None, &[("x-token", &t.a_rw)]).await;
    assert_eq!(ev.ok().text, "41");

    // A KVdb bucket lives in its creator's namespace, but its records and keys are private:
    // no other API lists, reads or writes them (issue 13, part 5).
    let form = [("content-type", "application/x-www-form-urlencoded"), ("authorization", a.as_str())];
    let id = n.call(Method::POST, "/kvdb", Some(b"secret_key=s3cret"), &form).await.ok().text;
    n.call(Method::PUT, &format!("/kvdb/{id}/hits"), Some(b"7"), &[]).await.ok();
    let names = |r: Resp, field: &str| -> Vec<String> {
        let list = if field == "keys" { r.body["keys"].clone() } else { r.data()["items"].clone() };
        let list = list.as_array().unwrap().clone();
        list.iter().map(|k| k.as_str().or(k["key"].as_str()).unwrap().to_string()).collect()
    };
    let ss_keys = names(get("/infra/kv?limit=1000", &a).await.ok(), "keys");
    let native_keys = names(get("/kv/items?limit=1000", &a).await.ok(), "items");
    for keys in [&ss_keys, &native_keys] {
        assert!(!keys.is_empty() && keys.iter().all(|k| !k.contains(&id)), "no bucket records listed: {keys:?}");
    }
    let private = [format!("%01kvdb%2F{id}"), format!("%01kvdb%2F{id}%2Fhits")];
    for k in &private {
        saasignal_error(&get(&format!("/infra/kv/{k}"), &a).await, 400, "bad_request");
        let w = n.json(Method::PUT, &format!("/infra/kv/{k}"), json!({"value": "{}"}), &a).await;
        saasignal_error(&w, 400, "bad_request");
        get(&format!("/kv/items/{k}"), &a).await.assert_error(400, "invalid_key");
        let w = n.json(Method::PUT, &format!("/kv/items/{k}"), json!({"value": {}}), &a).await;
        w.assert_error(400, "invalid_key");
    }
    let batch = json!({"ops": [{"op": "set", "key": format!("\u{1}kvdb/{id}"), "value": {}}]});
    n.json(Method::POST, "/kv/batch", batch, &a).await.assert_error(400, "invalid_key");
    let admin_batch = json!({"ops": [{"op": "get", "key": format!("\u{1}kvdb/{id}/hits")}]});
    n.json(Method::POST, "/kv/batch", admin_batch, &bearer(ADMIN)).await.assert_error(400, "invalid_key");
    // The bucket is untouched and still guarded by its own key.
    assert_eq!(n.call(Method::GET, &format!("/kvdb/{id}/hits"), None, &[]).await.ok().text, "7");
    let listed = n.call(Method::GET, &format!("/kvdb/{id}/"), None, &[("authorization", &basic("s3cret"))]).await;
    assert_eq!(listed.ok().text, "hits\n");

    // Scans of one namespace never list the other's keys.
    let a_keys = get("/infra/kv", &a).await.ok().body["keys"].clone();
    let b_keys = get("/infra/kv", &b).await.ok().body["keys"].clone();
    assert_eq!(b_keys, json!(["shared"]), "{b_keys}");
    assert!(a_keys.as_array().unwrap().len() > 1);

    // An admin picks a namespace with X-Cairn-Namespace; a token cannot leave its own.
    let admin = bearer(ADMIN);
    let admin_in_b = [("authorization", admin.as_str()), ("x-cairn-namespace", "team-b")];
    assert_eq!(n.call(Method::GET, "/infra/kv/shared", None, &admin_in_b).await.ok().body["value"], "from b");
    let a_in_b = [("authorization", a.as_str()), ("x-cairn-namespace", "team-b")];
    saasignal_error(&n.call(Method::GET, "/infra/kv/shared", None, &a_in_b).await, 403, "forbidden");
    let a_in_b = [("x-token", t.a_rw.as_str()), ("x-cairn-namespace", "team-b")];
    text_error(&n.call(Method::GET, "/echovalue/kv/g/k", None, &a_in_b).await, 403);
}

/// Every bucket costs its own namespace one key (its policy record); the private lookup
/// records count against no shared quota, so one tenant filling its quota with buckets leaves
/// every other tenant free to create them (issue 13, part 6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_count_against_their_own_namespaces_quota() {
    let (n, t) = setup_with(&["--max-keys-per-namespace", "3"]).await;
    let create = async |token: &str| {
        let h = [("content-type", "application/x-www-form-urlencoded"), ("authorization", &basic(token))];
        n.call(Method::POST, "/kvdb", Some(b""), &h).await
    };
    let first = create(&t.a_rw).await.ok().text;
    n.call(Method::PUT, &format!("/kvdb/{first}/k"), Some(b"v"), &[]).await.ok();
    create(&t.a_rw).await.ok();
    // team-a now holds 3 keys: two policy records and one bucket key.
    let full = create(&t.a_rw).await;
    text_error(&full, 403);
    assert!(full.text.contains("maximum number of keys"), "{full:?}");
    text_error(&n.call(Method::PUT, &format!("/kvdb/{first}/k2"), Some(b"v"), &[]).await, 403);
    // team-b is unaffected, up to its own three.
    for _ in 0..3 {
        create(&t.b_rw).await.ok();
    }
    text_error(&create(&t.b_rw).await, 403);
}
