//! Leases: grant, keepalive, show, list, revoke; keys attached with `"lease"` go with their
//! lease (revoked or expired) on every node, a plain write takes a key off its lease, and bad
//! lease requests get 4xx codes.

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{deadline_in, until, Cluster, Http, Resp};

async fn call(http: &Http, method: Method, url: String, body: Option<Value>) -> Resp {
    http.must(method, &url, body.map(|b| serde_json::to_vec(&b).unwrap()), &[]).await
}

async fn grant(http: &Http, base: &str, ttl: u64) -> String {
    let r = call(http, Method::POST, format!("{base}/leases"), Some(json!({"ttlSeconds": ttl}))).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.data()["ttlSeconds"], ttl, "{r:?}");
    r.data()["id"].as_str().unwrap_or_else(|| panic!("a lease id is a string: {r:?}")).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_lease_deletes_its_keys_and_a_plain_write_detaches_a_key() {
    let mut c = Cluster::in_process(3, &[]);
    c.wait_for_leader(deadline_in(20)).await;
    let (http, leader) = (&c.http, c.leader_url());
    let id = grant(http, &leader, 60).await;

    for key in ["svc/a", "svc/b", "svc/c"] {
        let r = http.put(&leader, key, &json!({"value": key, "lease": id})).await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    // A plain write takes svc/c off the lease again.
    let r = http.put(&leader, "svc/c", &json!({"value": "kept"})).await;
    assert_eq!(r.status, 200, "{r:?}");
    http.put(&leader, "other", &json!({"value": 1})).await.ok();

    let shown = call(http, Method::GET, format!("{leader}/leases/{id}"), None).await;
    assert_eq!(shown.status, 200, "{shown:?}");
    assert_eq!(shown.data()["keys"], json!(["svc/a", "svc/b"]), "{shown:?}");
    let remaining = shown.data()["remainingMs"].as_u64().unwrap_or_else(|| panic!("remainingMs: {shown:?}"));
    assert!(remaining > 0 && remaining <= 60_000, "{shown:?}");

    let kept = call(http, Method::POST, format!("{leader}/leases/{id}/keepalive"), None).await;
    assert_eq!(kept.status, 200, "{kept:?}");
    assert_eq!(kept.data()["id"], id.as_str(), "{kept:?}");

    let listed = call(http, Method::GET, format!("{leader}/leases"), None).await;
    assert_eq!(listed.status, 200, "{listed:?}");
    assert_eq!(listed.data()["leases"][0]["id"], id.as_str(), "{listed:?}");

    let revoked = call(http, Method::DELETE, format!("{leader}/leases/{id}"), None).await;
    assert_eq!(revoked.status, 200, "{revoked:?}");
    assert_eq!(revoked.data()["keys"], 2, "{revoked:?}");
    for key in ["svc/a", "svc/b"] {
        assert_eq!(http.get(&leader, key).await.status, 404, "{key} goes with its lease");
    }
    assert_eq!(http.get(&leader, "svc/c").await.data()["value"], "kept");
    assert_eq!(http.get(&leader, "other").await.status, 200);

    // Gone: every lease call now says so, and a write naming it is refused.
    for (method, url) in [
        (Method::GET, format!("{leader}/leases/{id}")),
        (Method::POST, format!("{leader}/leases/{id}/keepalive")),
        (Method::DELETE, format!("{leader}/leases/{id}")),
    ] {
        let r = call(http, method, url, None).await;
        assert_eq!((r.status, r.error_code()), (404, Some("lease_not_found")), "{r:?}");
    }
    let r = http.put(&leader, "late", &json!({"value": 1, "lease": id})).await;
    assert_eq!((r.status, r.error_code()), (404, Some("lease_not_found")), "{r:?}");
    assert_eq!(http.get(&leader, "late").await.status, 404, "a refused write stores nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_takes_its_keys_on_every_node() {
    let mut c = Cluster::in_process(3, &[]);
    c.wait_for_leader(deadline_in(20)).await;
    let (http, leader) = (&c.http, c.leader_url());
    let id = grant(http, &leader, 1).await;
    let mut last = 0;
    for key in ["eph/1", "eph/2"] {
        last = http.put(&leader, key, &json!({"value": 1, "lease": id.as_str()})).await.ok().version();
    }
    let urls: Vec<String> = c.ids().into_iter().map(|i| c.url(i)).collect();
    let urls = &urls;
    until(deadline_in(15), "both keys to be gone on every node once the lease expired", async || {
        for url in urls {
            for key in ["eph/1", "eph/2"] {
                let r = http.try_get_query(url, key, "consistency=stale").await?;
                // A node that has not applied the writes yet proves nothing by its 404.
                if r.status != 404 || r.applied_index() < last {
                    return Err(format!("{url} {key}: {} at {}", r.status, r.applied_index()));
                }
            }
        }
        Ok(())
    })
    .await;
    let r = call(http, Method::GET, format!("{leader}/leases/{id}"), None).await;
    assert_eq!((r.status, r.error_code()), (404, Some("lease_not_found")), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lease_requests_get_clear_codes() {
    let mut c = Cluster::in_process(1, &[]);
    c.wait_for_leader(deadline_in(20)).await;
    let (http, url) = (&c.http, c.leader_url());
    for body in [json!({}), json!({"ttlSeconds": 0}), json!({"ttlSeconds": "10"}), json!({"ttlSeconds": 1.5})] {
        let r = call(http, Method::POST, format!("{url}/leases"), Some(body.clone())).await;
        assert_eq!((r.status, r.error_code()), (400, Some("invalid_ttl")), "{body}: {r:?}");
    }
    let r = call(http, Method::POST, format!("{url}/leases"), Some(json!({"ttlSeconds": 5, "ttl": 5}))).await;
    assert_eq!((r.status, r.error_code()), (400, Some("unknown_field")), "{r:?}");
    for id in ["x", "-1", "12345678901234567890", "1.0"] {
        let r = call(http, Method::POST, format!("{url}/leases/{id}/keepalive"), None).await;
        assert_eq!((r.status, r.error_code()), (400, Some("invalid_id")), "{id}: {r:?}");
    }
    for lease in [json!("x"), json!(-1), json!(true), json!({})] {
        let r = http.put(&url, "k", &json!({"value": 1, "lease": lease})).await;
        assert_eq!((r.status, r.error_code()), (400, Some("invalid_id")), "{lease}: {r:?}");
    }
    let r = http.put(&url, "k", &json!({"value": 1, "lease": "999"})).await;
    assert_eq!((r.status, r.error_code()), (404, Some("lease_not_found")), "{r:?}");
}

/// Watchers see a revoked lease's keys go, all at one index: the one entry that revoked it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_sees_a_leases_keys_deleted_in_one_entry() {
    let mut c = Cluster::in_process(1, &[]);
    c.wait_for_leader(deadline_in(20)).await;
    let (http, url) = (&c.http, c.leader_url());
    let id = grant(http, &url, 60).await;
    let mut after = 0;
    for key in ["reg/a", "reg/b", "reg/c"] {
        after = http.put(&url, key, &json!({"value": 1, "lease": id})).await.ok().version();
    }
    let revoked = call(http, Method::DELETE, format!("{url}/leases/{id}"), None).await;
    assert_eq!(revoked.data()["keys"], 3, "{revoked:?}");
    let poll = http
        .must(
            Method::GET,
            &format!("{url}/kv/watch?prefix=reg/&after={after}&wait=5s"),
            None,
            &[("accept", "application/json")],
        )
        .await;
    assert_eq!(poll.status, 200, "{poll:?}");
    let events = poll.body["events"].as_array().cloned().unwrap_or_default();
    assert_eq!(events.len(), 1, "one entry: {poll:?}");
    let changes: Vec<(String, String)> = events[0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ch| (ch["op"].as_str().unwrap().to_string(), ch["key"].as_str().unwrap().to_string()))
        .collect();
    let want: Vec<(String, String)> =
        ["reg/a", "reg/b", "reg/c"].iter().map(|k| ("delete".into(), k.to_string())).collect();
    assert_eq!(changes, want, "{poll:?}");
}
