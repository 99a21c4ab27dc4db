//! Rocketstack (seeds 000 and 001): every example in both documents runs against the native
//! `/kv/items` API of a real three-node cluster the way that service's clients send it (a
//! Bearer API key, JSON bodies) and read it (`json.data.value`), including the cache-aside
//! function of seed 001 and the limits table of seed 000.

use crate::support::raw::{bearer, mint_token, until_token_known, Raw};
use crate::support::{deadline_in, parse_rfc3339_utc, unix_now, Cluster, Resp};
use reqwest::Method;
use serde_json::{json, Value};

const ADMIN: &str = "rocketstack-admin";

/// A client holding one base URL and `Authorization: Bearer YOUR_API_KEY`.
struct Client {
    raw: Raw,
    base: String,
    auth: String,
}

impl Client {
    fn url(&self, key: &str) -> String {
        format!("{}/kv/items/{key}", self.base)
    }

    async fn put(&self, key: &str, body: &Value) -> Resp {
        self.raw.json(Method::PUT, &self.url(key), body, &[("authorization", &self.auth)]).await
    }

    async fn get(&self, key: &str) -> Resp {
        self.raw.send(Method::GET, &self.url(key), None, &[("authorization", &self.auth)]).await
    }

    async fn delete(&self, key: &str) -> Resp {
        self.raw.send(Method::DELETE, &self.url(key), None, &[("authorization", &self.auth)]).await
    }
}

async fn cluster_and_clients() -> (Cluster, Client, Client) {
    let mut c = Cluster::in_process(3, &["--admin-token", ADMIN]);
    let leader = c.wait_for_leader(deadline_in(20)).await;
    let api_key = mint_token(&c.http, &c.url(leader), ADMIN, "rocketstack", &["read", "write"]).await;
    until_token_known(&c.ids().iter().map(|id| c.url(*id)).collect::<Vec<_>>(), &api_key, deadline_in(10)).await;
    let follower = c.follower_ids()[0];
    let client = |base: String| Client { raw: Raw::new(), base, auth: bearer(&api_key) };
    let (on_leader, on_follower) = (client(c.url(leader)), client(c.url(follower)));
    (c, on_leader, on_follower)
}

/// JavaScript truthiness of a JSON value, for `if (value) return value`.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

#[track_caller]
fn assert_expires_in(resp: &Resp, seconds: f64) {
    let at = resp.data()["expiresAt"].as_str().unwrap_or_else(|| panic!("no expiresAt in {resp:?}"));
    let at = parse_rfc3339_utc(at).unwrap_or_else(|| panic!("expiresAt is not RFC 3339: {resp:?}"));
    let delta = at - unix_now();
    assert!(
        (seconds - 30.0..=seconds + 5.0).contains(&delta),
        "expiresAt {delta:.0}s ahead, want ~{seconds}: {resp:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_000_quickstart_ttl_and_limits_examples() {
    let (_c, leader, follower) = cluster_and_clients().await;

    // 1. Set a value (sent to a follower, which forwards it).
    let value = json!({"theme": "dark", "notifications": true});
    let put = follower.put("user-123-prefs", &json!({"value": value})).await.ok();
    assert_eq!(put.data()["value"], value, "{put:?}");

    // 2. Get a value: {key, value, version, expiresAt: null} under `data`.
    let got = leader.get("user-123-prefs").await.ok();
    let data = got.data();
    assert_eq!(data["key"], "user-123-prefs");
    assert_eq!(data["value"], value);
    assert!(data["version"].as_str().is_some_and(|v| v.parse::<u64>().is_ok()), "version is a string: {got:?}");
    assert!(data.get("expiresAt").is_some_and(Value::is_null), "{got:?}");

    // 3. Delete a value: removed immediately.
    leader.delete("user-123-prefs").await.ok();
    leader.get("user-123-prefs").await.assert_error(404, "not_found");

    // TTL: a 1-hour session.
    let session = json!({"value": {"userId": "usr_456", "authenticated": true}, "ttlSeconds": 3600});
    let put = leader.put("session-abc123", &session).await.ok();
    assert_expires_in(&put, 3600.0);
    assert_expires_in(&leader.get("session-abc123").await.ok(), 3600.0);

    // Limits & quotas: key 512 bytes, value 1 MB, TTL 1 s to 365 days.
    leader.put(&"k".repeat(512), &json!({"value": 1})).await.ok();
    leader.put(&"k".repeat(513), &json!({"value": 1})).await.assert_error(400, "invalid_key");
    let just_fits = "v".repeat((1 << 20) - 2); // plus two quotes: exactly 1 MiB of JSON
    leader.put("big", &json!({"value": just_fits})).await.ok();
    let too_big = "v".repeat((1 << 20) - 1);
    leader.put("big", &json!({"value": too_big})).await.assert_error(413, "value_too_large");
    for ttl in [1, 31_536_000] {
        leader.put("ttl", &json!({"value": 1, "ttlSeconds": ttl})).await.ok();
    }
    for ttl in [0, 31_536_001] {
        leader.put("ttl", &json!({"value": 1, "ttlSeconds": ttl})).await.assert_error(400, "invalid_ttl");
    }

    // Atomic operations: set-if-not-exists and compare-and-swap.
    leader.put("lock", &json!({"value": "a", "ifNotExists": true})).await.ok();
    leader.put("lock", &json!({"value": "b", "ifNotExists": true})).await.assert_error(409, "key_exists");
    let v = leader.get("lock").await.ok().version().to_string();
    leader.put("lock", &json!({"value": "c", "ifVersion": v})).await.ok();
    leader.put("lock", &json!({"value": "d", "ifVersion": v})).await.assert_error(409, "version_mismatch");
}

/// The cache-aside function of seed 001, line for line: GET; if `r.ok`, return
/// `json.data?.value` when truthy; otherwise compute and PUT with `ttlSeconds: 3600`.
async fn get_cached(client: &Client, key: &str, computes: &mut u32) -> Value {
    let r = client.get(&format!("cache-{key}")).await;
    if (200..300).contains(&r.status) {
        let value = &r.body["data"]["value"];
        if truthy(value) {
            return value.clone();
        }
    } else {
        // A miss is not ok, and its body has no `data` either, so `data?.value` is undefined.
        assert!(r.body.get("data").is_none(), "{r:?}");
    }
    *computes += 1;
    let computed = json!({"computedFor": key, "n": *computes});
    client.put(&format!("cache-{key}"), &json!({"value": computed, "ttlSeconds": 3600})).await.ok();
    computed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_001_session_and_cache_aside_examples() {
    let (_c, leader, follower) = cluster_and_clients().await;

    // 1. Set a session entry with a 24-hour TTL.
    let session =
        json!({"userId": "usr_abc123", "cart": [{"sku": "item_1", "qty": 2}], "lastActive": 1_767_225_600_000u64});
    let put = follower.put("session-usr_abc123", &json!({"value": session, "ttlSeconds": 86400})).await.ok();
    assert_expires_in(&put, 86400.0);

    // 2. Get the value: `data.data?.value` is { userId, cart, lastActive }.
    let res = leader.get("session-usr_abc123").await.ok();
    assert_eq!(res.body["data"]["value"], session, "{res:?}");

    // 3. Delete when done.
    leader.delete("session-usr_abc123").await.ok();
    leader.get("session-usr_abc123").await.assert_error(404, "not_found");

    // Cache-aside: the first call computes and stores, the second is served from the cache.
    let mut computes = 0;
    let first = get_cached(&leader, "report", &mut computes).await;
    assert_eq!(computes, 1);
    let second = get_cached(&leader, "report", &mut computes).await;
    assert_eq!(computes, 1, "the second call must hit the cache");
    assert_eq!(first, second);
    assert_expires_in(&leader.get("cache-report").await.ok(), 3600.0);
}
