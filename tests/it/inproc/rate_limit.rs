//! The rate limiter counts each request against who its credential proves: made-up
//! credentials neither dodge the limit nor get buckets of their own, while real tokens keep
//! theirs.

use reqwest::Method;
use serde_json::json;

use crate::support::{deadline_in, until, Cluster, Resp};

const ADMIN: &str = "rate-admin";

async fn node(extra: &[&str]) -> (Cluster, String) {
    let mut c = Cluster::in_process_single(extra);
    c.wait_for_leader(deadline_in(15)).await;
    let url = c.url(1);
    (c, url)
}

/// Sends until the answer is not a 429: setup requests share the buckets under test (the
/// harness's own leader checks spend the admin's and the address's), so they wait for a refill.
async fn past_the_limit(
    c: &Cluster,
    method: Method,
    url: &str,
    body: Option<Vec<u8>>,
    headers: &[(&str, &str)],
) -> Resp {
    until(deadline_in(10), "a request the limiter lets through", async || {
        let r = c.http.must(method.clone(), url, body.clone(), headers).await;
        if r.status == 429 {
            Err(format!("{r:?}"))
        } else {
            Ok(r)
        }
    })
    .await
}

async fn get(c: &Cluster, url: &str, headers: &[(&str, &str)]) -> Resp {
    c.http.must(Method::GET, &format!("{url}/kv/items/k"), None, headers).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invented_credentials_count_against_the_address_that_sends_them() {
    let (c, url) = node(&["--admin-token", ADMIN, "--rate-limit", "2"]).await;
    // Twenty requests, each with a token id nobody issued: they used to get a fresh bucket
    // each (and 401 every time); now they share their address's bucket of two.
    let mut statuses = Vec::new();
    for i in 0..20 {
        let bearer = format!("Bearer cairn_{i:016x}_nope");
        statuses.push(get(&c, &url, &[("authorization", &bearer)]).await.status);
    }
    assert!(statuses.iter().all(|s| *s == 401 || *s == 429), "{statuses:?}");
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert!(limited >= 10, "a flood of bad credentials from one address must turn into 429s: {statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_verified_token_keeps_its_own_bucket() {
    let (c, url) = node(&["--admin-token", ADMIN, "--rate-limit", "2"]).await;
    let admin_auth = format!("Bearer {ADMIN}");
    let mint = async || {
        let body = serde_json::to_vec(&json!({"namespace": "default", "permissions": ["read"]})).unwrap();
        let auth = [("authorization", admin_auth.as_str())];
        let r = past_the_limit(&c, Method::POST, &format!("{url}/admin/tokens"), Some(body), &auth).await;
        assert_eq!(r.status, 201, "{r:?}");
        r.data()["token"].as_str().unwrap().to_string()
    };
    let (first, second) = (mint().await, mint().await);
    // The first token drains its bucket ...
    let mut first_limited = false;
    for _ in 0..10 {
        if get(&c, &url, &[("x-token", &first)]).await.status == 429 {
            first_limited = true;
            break;
        }
    }
    assert!(first_limited, "ten quick reads against a limit of two per second were never refused");
    // ... while the second, from the same address, still has its own.
    let r = get(&c, &url, &[("x-token", &second)]).await;
    assert_ne!(r.status, 429, "another token's bucket was used: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_random_key_parameter_does_not_dodge_the_limit_on_a_public_bucket() {
    let (c, url) = node(&["--rate-limit", "2"]).await;
    let created = past_the_limit(&c, Method::POST, &format!("{url}/kvdb"), Some(Vec::new()), &[]).await;
    assert_eq!(created.status, 200, "{created:?}");
    let bucket = created.text.trim().to_string();
    let mut limited = 0;
    for i in 0..20 {
        let r = c.http.must(Method::GET, &format!("{url}/kvdb/{bucket}/k?key=dodge{i}"), None, &[]).await;
        limited += usize::from(r.status == 429);
    }
    assert!(limited >= 10, "a random ?key= per request dodged the limit: {limited} of 20 refused");
}
