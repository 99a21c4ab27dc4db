//! Tokens that expire (`expiresAt` or `ttlSeconds` on `POST /admin/tokens`): accepted until
//! the replicated clock reaches their expiry, then refused with the same 401 as a token that
//! never existed, on the leader and on followers; the bad ways to ask for one; the listing.

use std::time::{Duration, SystemTime};

use crate::support::{deadline_in, parse_rfc3339_utc, unix_now, until, Cluster, Http, Resp};
use reqwest::Method;
use serde_json::{json, Value};

const ADMIN: &str = "test-admin-token";
const ADMIN_AUTH: &str = "Bearer test-admin-token";

async fn create(http: &Http, url: &str, body: Value) -> Resp {
    let body = Some(serde_json::to_vec(&body).unwrap());
    http.must(Method::POST, &format!("{url}/admin/tokens"), body, &[("authorization", ADMIN_AUTH)]).await
}

/// A created token's text, after checking the create succeeded.
fn token_of(created: &Resp) -> String {
    assert_eq!(created.status, 201, "{created:?}");
    created.data()["token"].as_str().unwrap().to_string()
}

/// A stale read of key `k` on `url` with `token`: the node answering checks the token itself.
async fn read_with(http: &Http, url: &str, token: &str) -> Result<Resp, String> {
    http.send(Method::GET, &format!("{url}/kv/items/k?consistency=stale"), None, &[("x-token", token)]).await
}

/// What a token that never existed gets; an expired token must get exactly this.
async fn unknown_token_answer(http: &Http, url: &str) -> (u16, Value) {
    let r = read_with(http, url, "cairn_0123456789abcdef_00").await.unwrap();
    r.assert_error(401, "unauthorized");
    (r.status, r.body)
}

fn rfc3339_in(secs: u64) -> String {
    humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(secs)).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_with_a_ttl_works_then_is_refused_like_an_unknown_one_and_leaves_the_listing() {
    let mut c = Cluster::in_process_single(&["--admin-token", ADMIN]);
    c.wait_for_leader(deadline_in(15)).await;
    let url = c.url(1);
    let http = &c.http;

    let lasting = create(
        http,
        &url,
        json!({"namespace": "default", "permissions": ["read"], "expiresAt": rfc3339_in(3600), "ttlSeconds": null}),
    )
    .await;
    token_of(&lasting);
    let plain = create(http, &url, json!({"namespace": "default", "permissions": ["read"]})).await;
    token_of(&plain);
    assert!(plain.data()["expiresAt"].is_null(), "{plain:?}");
    let listed = list(http, &url).await;
    let id_of = |r: &Resp| r.data()["id"].as_str().unwrap().to_string();
    assert_eq!(listed.get(&id_of(&lasting)), Some(&lasting.data()["expiresAt"]), "{listed:?}");
    assert_eq!(listed.get(&id_of(&plain)), Some(&Value::Null), "{listed:?}");

    // Counted from the create: expiry is due 1 s after it, refused within another tick or so.
    let expiry_deadline = deadline_in(10);
    let brief = create(http, &url, json!({"namespace": "default", "permissions": ["read"], "ttlSeconds": 1})).await;
    let token = token_of(&brief);
    // Accepted until the replicated clock passes its expiry, which takes the leader's next
    // expiry tick after it: this read comes well before.
    read_with(http, &url, &token).await.unwrap().assert_error(404, "not_found");
    let expires_at = brief.data()["expiresAt"].as_str().unwrap_or_else(|| panic!("no expiresAt: {brief:?}"));
    let at = parse_rfc3339_utc(expires_at).unwrap_or_else(|| panic!("expiresAt is not RFC 3339 UTC: {brief:?}"));
    // A sanity bound only (catches wrong units or epochs), not a timing assertion.
    assert!((at - unix_now()).abs() < 120.0, "expiresAt {expires_at} is far from now");

    let unknown = unknown_token_answer(http, &url).await;
    let refused = until(expiry_deadline, "the expired token to be refused", async || {
        let r = read_with(http, &url, &token).await?;
        match r.status {
            401 => Ok(r),
            404 => Err(format!("still accepted: {r:?}")),
            _ => panic!("unexpected answer: {r:?}"),
        }
    })
    .await;
    assert_eq!((refused.status, refused.body), unknown, "an expired token must look unknown");
    let listed = list(http, &url).await;
    assert!(!listed.contains_key(&id_of(&brief)), "an expired token is not listed: {listed:?}");
    assert!(listed.contains_key(&id_of(&lasting)) && listed.contains_key(&id_of(&plain)), "{listed:?}");
    let revoke = format!("{url}/admin/tokens/{}", id_of(&brief));
    http.must(Method::DELETE, &revoke, None, &[("authorization", ADMIN_AUTH)]).await.assert_error(404, "not_found");
}

/// `GET /admin/tokens` as the admin: id → `expiresAt`.
async fn list(http: &Http, url: &str) -> std::collections::BTreeMap<String, Value> {
    let r = http.must(Method::GET, &format!("{url}/admin/tokens"), None, &[("authorization", ADMIN_AUTH)]).await.ok();
    let tokens = r.data()["tokens"].as_array().unwrap_or_else(|| panic!("{r:?}"));
    tokens
        .iter()
        .map(|t| {
            assert!(t.get("expiresAt").is_some(), "every listed token shows expiresAt: {t}");
            (t["id"].as_str().unwrap().to_string(), t["expiresAt"].clone())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_expiry_requests_are_checked() {
    let mut c = Cluster::in_process_single(&["--admin-token", ADMIN]);
    c.wait_for_leader(deadline_in(15)).await;
    let url = c.url(1);
    let base = || json!({"namespace": "default", "permissions": ["read"]});
    let with = |field: &str, v: Value| {
        let mut b = base();
        b[field] = v;
        b
    };

    let past = with("expiresAt", json!("2020-01-01T00:00:00Z"));
    create(&c.http, &url, past).await.assert_error(400, "invalid_ttl");
    let mut both = with("expiresAt", json!(rfc3339_in(3600)));
    both["ttlSeconds"] = json!(60);
    create(&c.http, &url, both).await.assert_error(400, "invalid_ttl");
    for bad in
        [json!("tomorrow"), json!(1_900_000_000), json!("2999-01-01T00:00:00+02:00"), json!("0000-01-01T00:00:00Z")]
    {
        create(&c.http, &url, with("expiresAt", bad)).await.assert_error(400, "invalid_ttl");
    }
    for bad in [json!(0), json!(-1), json!(1.5), json!("60"), json!(u64::MAX)] {
        create(&c.http, &url, with("ttlSeconds", bad)).await.assert_error(400, "invalid_ttl");
    }
    create(&c.http, &url, with("expiresIn", json!(60))).await.assert_error(400, "unknown_field");

    let at = rfc3339_in(7200);
    let created = create(&c.http, &url, with("expiresAt", json!(at))).await;
    token_of(&created);
    let echoed = created.data()["expiresAt"].as_str().unwrap();
    assert_eq!(parse_rfc3339_utc(echoed), parse_rfc3339_utc(&at), "{created:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refused_on_followers_too() {
    let mut c = Cluster::in_process(3, &["--admin-token", ADMIN]);
    c.wait_for_leader(deadline_in(20)).await;
    let leader = c.leader_url();
    let http = &c.http;

    let expiry_deadline = deadline_in(15);
    let created =
        create(http, &leader, json!({"namespace": "default", "permissions": ["read"], "ttlSeconds": 1})).await;
    let token = token_of(&created);
    let created_at = created.applied_index();
    let followers: Vec<(u64, String)> = c.follower_ids().into_iter().map(|id| (id, c.url(id))).collect();
    let unknown = unknown_token_answer(http, &followers[0].1).await;

    // A follower's 401 is an expiry only once an earlier answer showed it had applied the
    // create (before that, the token is merely not replicated yet). Each follower judges by its
    // own applied clock.
    for (id, url) in &followers {
        let mut caught_up = false;
        let refused = until(expiry_deadline, &format!("node {id} to refuse the expired token"), async || {
            let had_token = caught_up;
            let r = read_with(http, url, &token).await?;
            match r.status {
                401 if had_token => Ok(r),
                401 | 404 => {
                    caught_up |= r.applied_index() >= created_at;
                    Err(format!("node {id}: {r:?}"))
                }
                _ => panic!("node {id}: unexpected answer: {r:?}"),
            }
        })
        .await;
        assert_eq!((refused.status, refused.body), unknown, "node {id}: like an unknown token");
    }
}
