//! saasignal (seed 003) at `/infra/kv`: every curl and SDK example of the seed against a real
//! three-node cluster, then the key rules, value and TTL limits, `if_not_exists`, scans with
//! cursors, batch atomicity and the `{"code", "message"}` error style on one node, and that no
//! field or parameter a route does not take is ever silently dropped.

use crate::support::raw::{bearer, mint_token, query_escape, until_token_known, Raw};
use crate::support::{deadline_in, encode_key, parse_rfc3339_utc, unix_now, Cluster, Resp};
use reqwest::Method;
use serde_json::{json, Value};

const ADMIN: &str = "saasignal-admin";

struct Client {
    raw: Raw,
    base: String,
    auth: String,
}

impl Client {
    fn url(&self, path: &str) -> String {
        format!("{}/infra/kv{path}", self.base)
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let auth = [("authorization", self.auth.as_str())];
        match body {
            Some(b) => self.raw.json(method, &self.url(path), &b, &auth).await,
            None => self.raw.send(method, &self.url(path), None, &auth).await,
        }
    }

    async fn put(&self, key: &str, body: Value) -> Resp {
        self.call(Method::PUT, &format!("/{}", encode_key(key)), Some(body)).await
    }

    async fn get(&self, key: &str) -> Resp {
        self.call(Method::GET, &format!("/{}", encode_key(key)), None).await
    }
}

#[track_caller]
fn assert_error(resp: &Resp, status: u16, code: &str) {
    assert_eq!(resp.status, status, "{resp:?}");
    assert_eq!(resp.body["code"], code, "saasignal errors are {{code, message}}: {resp:?}");
    assert!(resp.body["message"].is_string(), "{resp:?}");
}

#[track_caller]
fn assert_expires_in(resp: &Resp, seconds: f64) {
    let at = resp.body["expires_at"].as_str().unwrap_or_else(|| panic!("no expires_at: {resp:?}"));
    let delta = parse_rfc3339_utc(at).expect("RFC 3339") - unix_now();
    assert!((seconds - 30.0..=seconds + 5.0).contains(&delta), "expires {delta:.0}s ahead, want ~{seconds}");
}

async fn single() -> (Cluster, Client) {
    let mut c = Cluster::in_process_single(&[]);
    c.wait_for_leader(deadline_in(15)).await;
    let client = Client { raw: Raw::new(), base: c.url(1), auth: String::new() };
    (c, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_seed_example_runs_on_a_three_node_cluster() {
    let mut c = Cluster::in_process(3, &["--admin-token", ADMIN]);
    let leader = c.wait_for_leader(deadline_in(20)).await;
    let sk_live = mint_token(&c.http, &c.url(leader), ADMIN, "project-1", &["read", "write"]).await;
    until_token_known(&c.ids().iter().map(|id| c.url(*id)).collect::<Vec<_>>(), &sk_live, deadline_in(10)).await;
    let on = |id: u64| Client { raw: Raw::new(), base: c.url(id), auth: bearer(&sk_live) };
    let (ss, via_follower) = (on(leader), on(c.follower_ids()[0]));

    // Set Value: curl -X PUT .../infra/kv/{key} -d '{"value":{"example":"data"}}'
    let put = via_follower.put("example", json!({"value": {"example": "data"}})).await.ok();
    assert_eq!(put.body, json!({"key": "example", "value": {"example": "data"}, "expires_at": null}));
    // await ss.infra.kv.set('session:u_123', { userId: 'u_123', role: 'admin' }, { ttl: 86400 })
    let value = json!({"userId": "u_123", "role": "admin"});
    let put = via_follower.put("session:u_123", json!({"value": value, "ttl": 86400})).await.ok();
    assert_eq!(put.body["key"], "session:u_123");
    assert_eq!(put.body["value"], value);
    assert_expires_in(&put, 86400.0);

    // Get Value: curl .../infra/kv/{key}; entry.value, entry.expires_at
    let entry = ss.get("session:u_123").await.ok();
    assert_eq!(entry.body["key"], "session:u_123");
    assert_eq!(entry.body["value"], value);
    assert_expires_in(&entry, 86400.0);

    // Increment Value: curl -X POST .../increment -d '{}' → 200 with "status": "ok".
    let inc = via_follower.call(Method::POST, "/hits/increment", Some(json!({}))).await.ok();
    assert_eq!((inc.body["status"].clone(), inc.body["value"].clone()), (json!("ok"), json!(1)), "{inc:?}");
    // const { value } = await ss.infra.kv.increment(`ratelimit:${userId}`, { ttl: 60 })
    for expected in 1..=3 {
        let r = ss.call(Method::POST, "/ratelimit:u_123/increment", Some(json!({"ttl": 60}))).await.ok();
        assert_eq!(r.body["value"], expected, "{r:?}");
        assert_expires_in(&r, 60.0);
    }

    // Scan Keys: curl .../infra/kv → 200 with "status": "ok";
    // ss.infra.kv.scan({ prefix: 'session:', limit: 50 }) → result.keys, result.next_cursor
    let all = ss.call(Method::GET, "", None).await.ok();
    assert_eq!(all.body["status"], "ok");
    assert_eq!(all.body["keys"], json!(["example", "hits", "ratelimit:u_123", "session:u_123"]), "{all:?}");
    let result = ss.call(Method::GET, "?prefix=session:&limit=50", None).await.ok();
    assert_eq!(result.body["keys"], json!(["session:u_123"]));
    assert!(result.body["next_cursor"].is_null(), "{result:?}");

    // Batch Operations: curl -X POST .../infra/kv -d '{"ops":[]}' → 200.
    let empty = via_follower.call(Method::POST, "", Some(json!({"ops": []}))).await.ok();
    assert_eq!(empty.body, json!({"results": []}));
    // ss.infra.kv.batch([get config:flags, set session:new (ttl 3600), delete session:old])
    ss.put("config:flags", json!({"value": {"dark_mode": true}})).await.ok();
    ss.put("session:old", json!({"value": 1})).await.ok();
    let ops = json!({"ops": [
        {"op": "get", "key": "config:flags"},
        {"op": "set", "key": "session:new", "value": {"userId": "u_456"}, "ttl": 3600},
        {"op": "delete", "key": "session:old"},
    ]});
    let results = via_follower.call(Method::POST, "", Some(ops)).await.ok();
    let r = &results.body["results"];
    assert_eq!((r[0]["key"].clone(), r[0]["value"].clone()), (json!("config:flags"), json!({"dark_mode": true})));
    assert_eq!((r[1]["key"].clone(), r[1]["value"].clone()), (json!("session:new"), json!({"userId": "u_456"})));
    assert_eq!(r[2], json!({"key": "session:old", "value": null, "status": "ok"}));
    assert!(r.as_array().unwrap().iter().all(|x| x["status"] == "ok"), "{results:?}");
    assert_expires_in(&ss.get("session:new").await.ok(), 3600.0);

    // Delete Key: curl -X DELETE .../infra/kv/{key}; await ss.infra.kv.delete('session:u_123')
    via_follower.call(Method::DELETE, "/session:u_123", None).await.ok();
    assert_error(&ss.get("session:u_123").await, 404, "not_found");
    assert_error(&ss.call(Method::DELETE, "/session:u_123", None).await, 404, "not_found");

    // Error responses: 401 Unauthorized.
    let stranger = Client { raw: Raw::new(), base: c.url(leader), auth: bearer("sk_live_unknown") };
    assert_error(&stranger.get("example").await, 401, "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_follow_the_seed_pattern_and_values_and_ttls_their_limits() {
    let (_c, ss) = single().await;
    ss.put(&"é".repeat(512), json!({"value": 1})).await.ok();
    assert_error(&ss.put(&"k".repeat(513), json!({"value": 1})).await, 400, "bad_request");
    // (`..` alone cannot be sent: URL parsers resolve it as a dot-segment.)
    for bad in ["a..b", "x..", "tab\there", "del\u{7f}", "nul\u{0}"] {
        assert_error(&ss.put(bad, json!({"value": 1})).await, 400, "bad_request");
        assert_error(&ss.get(bad).await, 400, "bad_request");
    }
    assert_error(&ss.call(Method::GET, "?prefix=a..", None).await, 400, "bad_request");
    ss.put("a.b/c:d", json!({"value": "dots, slash and colon are fine"})).await.ok();

    // value: required, any JSON (null included), at most 256 KB serialized.
    assert_error(&ss.put("v", json!({"ttl": 5})).await, 400, "bad_request");
    ss.put("v", json!({"value": null})).await.ok();
    ss.put("v", json!({"value": "x".repeat(256 * 1024 - 2)})).await.ok();
    assert_error(&ss.put("v", json!({"value": "x".repeat(256 * 1024 - 1)})).await, 400, "bad_request");
    let raw = ss.raw.send(Method::PUT, &ss.url("/v"), Some(b"{not json"), &[]).await;
    assert_error(&raw, 400, "bad_request");

    // ttl: an integer > 0 and ≤ 9007199254740991.
    for bad in [json!(0), json!(-1), json!(1.5), json!("60"), json!(9_007_199_254_740_992u64)] {
        assert_error(&ss.put("t", json!({"value": 1, "ttl": bad})).await, 400, "bad_request");
    }
    // An integer spelled `3600.0` is that integer (JSON Schema's `integer`, the description's
    // word; schemathesis found it refused), on a PUT, an increment and a batch set alike.
    assert_expires_in(&ss.put("t", json!({"value": 1, "ttl": 3600.0})).await.ok(), 3600.0);
    let inc = ss.call(Method::POST, "/t-inc/increment", Some(json!({"ttl": 3600.0}))).await.ok();
    assert_expires_in(&inc, 3600.0);
    let ops = json!({"ops": [{"op": "set", "key": "t-batch", "value": 1, "ttl": 3600.0}]});
    let batch = ss.call(Method::POST, "", Some(ops)).await.ok();
    assert_eq!(batch.body["results"][0]["status"], "ok", "{batch:?}");
    let far = ss.put("t", json!({"value": 1, "ttl": 9_007_199_254_740_991u64})).await.ok();
    assert!(far.body["expires_at"].as_str().is_some_and(|s| s.starts_with('3')), "clamped to ~1000 years: {far:?}");
    ss.call(Method::GET, "/t", None).await.ok();
    let native = ss.raw.send(Method::GET, &format!("{}/kv/items/t", ss.base), None, &[]).await.ok();
    assert!(native.data()["expiresAt"].is_string(), "{native:?}");

    // if_not_exists: 409 conflict when the key exists.
    ss.put("once", json!({"value": 1, "if_not_exists": true})).await.ok();
    let again = ss.put("once", json!({"value": 2, "if_not_exists": true})).await;
    assert_error(&again, 409, "conflict");
    assert_eq!(ss.get("once").await.ok().body["value"], 1);
    assert_error(&ss.put("once", json!({"value": 2, "if_not_exists": "yes"})).await, 400, "bad_request");

    // increment: delta default 1, negative and fractional; non-numbers conflict.
    let inc = |body: Value| ss.call(Method::POST, "/n/increment", Some(body));
    assert_eq!(inc(json!({"delta": 5})).await.ok().body["value"], 5);
    assert_eq!(inc(json!({"delta": -2})).await.ok().body["value"], 3);
    assert_eq!(inc(json!({"delta": 0.5})).await.ok().body["value"], 3.5);
    let empty_body = ss.raw.send(Method::POST, &ss.url("/n/increment"), None, &[]).await.ok();
    assert_eq!(empty_body.body["value"], 4.5);
    assert_error(&inc(json!({"delta": "1"})).await, 400, "bad_request");
    assert_error(&ss.call(Method::POST, "/v/increment", Some(json!({}))).await, 409, "conflict");

    // Wrong methods and unknown paths keep the error style.
    assert_error(&ss.call(Method::PATCH, "/v", None).await, 405, "method_not_allowed");
    assert_error(&ss.call(Method::GET, "/v/nested/path", None).await, 404, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_cursors_visit_every_key_once_in_order() {
    let (_c, ss) = single().await;
    let mut want: Vec<String> = (0..25).map(|i| format!("user:{i:02}")).collect();
    for k in &want {
        ss.put(k, json!({"value": k})).await.ok();
    }
    ss.put("other", json!({"value": 0})).await.ok();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("?prefix=user:&limit=7&cursor={c}"),
            None => "?prefix=user:&limit=7".into(),
        };
        let page = ss.call(Method::GET, &q, None).await.ok();
        seen.extend(page.body["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()));
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    want.sort();
    assert_eq!(seen, want);
    assert_error(&ss.call(Method::GET, "?limit=0", None).await, 400, "bad_request");
    assert_error(&ss.call(Method::GET, "?limit=1001", None).await, 400, "bad_request");
    assert_error(&ss.call(Method::GET, "?cursor=***", None).await, 400, "bad_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_fails_midway_applies_nothing() {
    let (_c, ss) = single().await;
    ss.put("taken", json!({"value": "old"})).await.ok();
    ss.put("doomed", json!({"value": "still here"})).await.ok();
    let ops = json!({"ops": [
        {"op": "set", "key": "fresh", "value": 1},
        {"op": "delete", "key": "doomed"},
        {"op": "set", "key": "taken", "value": "new", "if_not_exists": true},
        {"op": "set", "key": "never", "value": 2},
    ]});
    let r = ss.call(Method::POST, "", Some(ops)).await;
    assert_error(&r, 409, "conflict");
    assert_eq!(r.body["index"], 2, "{r:?}");
    assert_error(&ss.get("fresh").await, 404, "not_found");
    assert_error(&ss.get("never").await, 404, "not_found");
    assert_eq!(ss.get("doomed").await.ok().body["value"], "still here");
    assert_eq!(ss.get("taken").await.ok().body["value"], "old");

    // Gets see earlier ops of the same batch; a missing key reads as not_found.
    let ops = json!({"ops": [
        {"op": "set", "key": "a", "value": 1},
        {"op": "get", "key": "a"},
        {"op": "get", "key": "missing"},
        {"op": "delete", "key": "missing"},
    ]});
    let r = ss.call(Method::POST, "", Some(ops)).await.ok();
    assert_eq!(r.body["results"][1]["value"], 1);
    assert_eq!(r.body["results"][2], json!({"key": "missing", "value": null, "status": "not_found"}));
    assert_eq!(r.body["results"][3]["status"], "not_found");

    // Malformed batches: over 100 ops, unknown op, set without value, bad key; with the index.
    let many: Vec<Value> = (0..101).map(|i| json!({"op": "get", "key": format!("k{i}")})).collect();
    assert_error(&ss.call(Method::POST, "", Some(json!({"ops": many}))).await, 400, "bad_request");
    let hundred: Vec<Value> = (0..100).map(|i| json!({"op": "set", "key": format!("k{i}"), "value": i})).collect();
    assert_eq!(ss.call(Method::POST, "", Some(json!({"ops": hundred}))).await.ok().body["results"][99]["value"], 99);
    for op in [json!({"op": "incr", "key": "a"}), json!({"op": "set", "key": "a"}), json!({"op": "get", "key": "a..b"})]
    {
        let r = ss.call(Method::POST, "", Some(json!({"ops": [{"op": "get", "key": "a"}, op]}))).await;
        assert_error(&r, 400, "bad_request");
        assert_eq!(r.body["index"], 1, "{r:?}");
    }
    assert_error(&ss.call(Method::POST, "", Some(json!({"ops": "all"}))).await, 400, "bad_request");
}

/// A 400 `unknown_field` in saasignal's style whose message names `field`.
#[track_caller]
fn assert_unknown(resp: &Resp, field: &str) {
    assert_error(resp, 400, "unknown_field");
    assert!(
        resp.body["message"].as_str().is_some_and(|m| m.contains(&format!("`{field}`"))),
        "names {field}: {resp:?}"
    );
}

/// Nothing sent is silently dropped: a body field or query parameter the seed does not give a
/// route (a misspelled `if_not_exists`, the native `ifNotExists`, a `ttl` on a get op) is 400
/// `unknown_field` naming it, and nothing is applied. The credential `?key=` and Cairn's
/// `?consistency=` on reads still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_and_parameters_are_refused_naming_them() {
    let mut c = Cluster::in_process_single(&["--admin-token", ADMIN]);
    c.wait_for_leader(deadline_in(15)).await;
    let token = mint_token(&c.http, &c.url(1), ADMIN, "strict", &["read", "write"]).await;
    let ss = Client { raw: Raw::new(), base: c.url(1), auth: bearer(&token) };
    ss.put("k", json!({"value": "first"})).await.ok();
    ss.call(Method::POST, "/n/increment", Some(json!({"delta": 5}))).await.ok();

    let cases: [(Method, &str, Option<Value>, &str); 12] = [
        (Method::PUT, "/k", Some(json!({"value": "second", "if_not_exist": true})), "if_not_exist"),
        (Method::PUT, "/k", Some(json!({"value": "second", "ifNotExists": true})), "ifNotExists"),
        (Method::PUT, "/k", Some(json!({"valeu": "second"})), "valeu"),
        (Method::PUT, "/k?ttl=60", Some(json!({"value": "second"})), "ttl"),
        (Method::DELETE, "/k", Some(json!({"if_version": 1})), "if_version"),
        (Method::DELETE, "/k?force=true", None, "force"),
        (Method::POST, "/n/increment", Some(json!({"delta": 1, "if_not_exists": true})), "if_not_exists"),
        (Method::POST, "/n/increment?delta=2", Some(json!({})), "delta"),
        (Method::GET, "/k?consistancy=strong", None, "consistancy"),
        (Method::GET, "?prefix=k&limt=5", None, "limt"),
        (Method::POST, "", Some(json!({"ops": [{"op": "delete", "key": "k"}], "atomic": true})), "atomic"),
        (Method::POST, "?atomic=true", Some(json!({"ops": [{"op": "delete", "key": "k"}]})), "atomic"),
    ];
    for (method, path, body, field) in cases {
        assert_unknown(&ss.call(method, path, body).await, field);
    }

    // Batch ops: a field outside the op's kind, with the op's index; no op is applied.
    let ops = [
        (json!({"op": "set", "key": "k", "value": "second", "ifNotExists": true}), "ifNotExists"),
        (json!({"op": "get", "key": "k", "ttl": 5}), "ttl"),
        (json!({"op": "delete", "key": "k", "value": null}), "value"),
    ];
    for (op, field) in ops {
        let batch = json!({"ops": [{"op": "set", "key": "a", "value": 1}, op]});
        let r = ss.call(Method::POST, "", Some(batch)).await;
        assert_unknown(&r, field);
        assert_eq!(r.body["index"], 1, "{r:?}");
    }

    assert_eq!(ss.get("k").await.ok().body["value"], "first");
    assert_eq!(ss.call(Method::GET, "/n", None).await.ok().body["value"], 5);
    assert_error(&ss.get("a").await, 404, "not_found");
    // `?key=` carries the credential; `consistency` is Cairn's on both read routes.
    let by_query = Client { raw: Raw::new(), base: c.url(1), auth: String::new() };
    let key = query_escape(&token);
    assert_eq!(
        by_query.call(Method::GET, &format!("/k?key={key}&consistency=strong"), None).await.ok().body["value"],
        "first"
    );
    let page = format!("?key={key}&prefix=k&cursor=&limit=5&consistency=stale");
    assert_eq!(by_query.call(Method::GET, &page, None).await.ok().body["keys"], json!(["k"]));
}
