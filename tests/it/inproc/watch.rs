//! `GET /kv/watch` on one node: what each write becomes on the stream (one entry, one event;
//! sets, increments, deletes, batches, TTL expiries), the prefix and namespace filter, resume
//! with `Last-Event-ID`, 410 below the kept history, long polls, list-then-watch through
//! `X-Cairn-Index`, the caps, and a revoked token ending its stream.

use std::time::Instant;

use crate::support::sse::{self, ops_of};
use crate::support::{deadline_in, Cluster, Http};
use reqwest::Method;
use serde_json::{json, Value};

const ADMIN: &str = "watch-admin-token";
const ADMIN_AUTH: &str = "Bearer watch-admin-token";

fn auth() -> [(&'static str, &'static str); 1] {
    [("authorization", ADMIN_AUTH)]
}

async fn put(http: &Http, url: &str, key: &str, body: Value) -> u64 {
    let r = http
        .must(Method::PUT, &format!("{url}/kv/items/{key}"), Some(serde_json::to_vec(&body).unwrap()), &auth())
        .await
        .ok();
    r.version()
}

async fn send(http: &Http, method: Method, url: &str, body: Value) -> Value {
    let r = http.must(method, url, Some(serde_json::to_vec(&body).unwrap()), &auth()).await;
    assert!((200..300).contains(&r.status), "{r:?}");
    r.body
}

fn owned(ops: &[(&str, &str)]) -> Vec<(String, String)> {
    ops.iter().map(|(o, k)| (o.to_string(), k.to_string())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_under_the_prefix_is_one_event_with_the_entrys_index() {
    let mut c = Cluster::in_process_single(&["--admin-token", ADMIN]);
    c.wait_for_leader(deadline_in(15)).await;
    let url = c.url(1);
    let http = &c.http;
    let mut stream = sse::open(&format!("{url}/kv/watch?prefix=app/"), &auth()).await.expect("stream opens");
    // A fresh watch first says where it starts.
    let first = stream.next(Instant::now() + std::time::Duration::from_secs(10)).await.expect("progress");
    assert_eq!(first.event, "progress", "{first:?}");
    let start = first.id.unwrap();

    let v1 = put(http, &url, "app%2Fa", json!({"value": {"n": 1}})).await;
    put(http, &url, "other", json!({"value": 1})).await;
    let r = send(http, Method::POST, &format!("{url}/kv/items/app%2Fcount/increment"), json!({"delta": 5})).await;
    let v3: u64 = r["data"]["version"].as_str().unwrap().parse().unwrap();
    http.must(Method::DELETE, &format!("{url}/kv/items/app%2Fa"), None, &auth()).await.ok();
    let batch = json!({"ops": [
        {"op": "set", "key": "app/b", "value": 1},
        {"op": "set", "key": "elsewhere", "value": 2},
        {"op": "set", "key": "app/short", "value": 3, "ttlSeconds": 1},
    ]});
    send(http, Method::POST, &format!("{url}/kv/batch"), batch).await;
    // A refused batch changes nothing, so it is no event.
    let refused = json!({"ops": [{"op": "set", "key": "app/c", "value": 1}, {"op": "set", "key": "app/b", "value": 9, "ifVersion": "1"}]});
    let r =
        http.must(Method::POST, &format!("{url}/kv/batch"), Some(serde_json::to_vec(&refused).unwrap()), &auth()).await;
    assert_eq!(r.status, 409, "{r:?}");

    let got = stream.changes(5, deadline_in(20)).await;
    assert_eq!(got.len(), 5, "{got:?}");
    assert_eq!(got[0], (v1, owned(&[("set", "app/a")])));
    assert_eq!(got[1], (v3, owned(&[("increment", "app/count")])));
    assert_eq!(got[2].1, owned(&[("delete", "app/a")]));
    // One batch, one event, holding only its watched keys.
    assert_eq!(got[3].1, owned(&[("set", "app/b"), ("set", "app/short")]));
    assert_eq!(got[4].1, owned(&[("expire", "app/short")]));
    let ids: Vec<u64> = got.iter().map(|(i, _)| *i).collect();
    assert!(start < ids[0] && ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {start} {ids:?}");

    // Resuming after any id gives exactly what followed it.
    let mut resumed =
        sse::open(&format!("{url}/kv/watch?prefix=app/"), &[auth()[0], ("last-event-id", &ids[1].to_string())])
            .await
            .expect("resume");
    let again = resumed.changes(3, deadline_in(20)).await;
    assert_eq!(again, got[2..].to_vec());

    // The same history as a long poll, and values as stored.
    let poll = http
        .must(
            Method::GET,
            &format!("{url}/kv/watch?prefix=app/&after={start}&wait=1s"),
            None,
            &[auth()[0], ("accept", "application/json")],
        )
        .await
        .ok();
    let events = poll.body["events"].as_array().unwrap();
    let polled: Vec<(u64, Vec<(String, String)>)> =
        events.iter().map(|e| (e["index"].as_str().unwrap().parse().unwrap(), ops_of(e))).collect();
    assert_eq!(polled, got);
    assert_eq!(events[0]["changes"][0]["value"], json!({"n": 1}));
    assert!(poll.body["index"].as_str().unwrap().parse::<u64>().unwrap() >= ids[4], "{poll:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_below_the_kept_history_gets_410_and_a_listing_index_resumes_without_a_gap() {
    let mut c = Cluster::in_process_single(&["--admin-token", ADMIN, "--watch-history-entries", "5"]);
    c.wait_for_leader(deadline_in(15)).await;
    let url = c.url(1);
    let http = &c.http;
    for i in 0..10 {
        put(http, &url, &format!("k{i}"), json!({"value": i})).await;
    }
    match sse::open(&format!("{url}/kv/watch?after=1"), &auth()).await {
        Err((410, body)) => {
            assert_eq!(body["error"]["code"], "compacted", "{body}");
            let compacted: u64 = body["error"]["compactedIndex"].as_str().unwrap().parse().unwrap();
            let current: u64 = body["error"]["currentIndex"].as_str().unwrap().parse().unwrap();
            assert!(compacted > 1 && compacted + 5 >= current, "{body}");
        }
        Err(other) => panic!("expected 410 compacted, got {other:?}"),
        Ok(_) => panic!("a resume below the history must be refused before any byte"),
    }
    // List, then watch from the listing's index: the next write is the first event.
    let list = http.must(Method::GET, &format!("{url}/kv/items?prefix=k"), None, &auth()).await.ok();
    let index = list.header("x-cairn-index").expect("X-Cairn-Index on a scan").to_string();
    assert_eq!(list.data()["items"].as_array().unwrap().len(), 10);
    let mut stream =
        sse::open(&format!("{url}/kv/watch?prefix=k&after={index}"), &auth()).await.expect("watch from the listing");
    let v = put(http, &url, "k10", json!({"value": 10})).await;
    assert_eq!(stream.changes(1, deadline_in(20)).await, vec![(v, owned(&[("set", "k10")]))]);
    let got = http.must(Method::GET, &format!("{url}/kv/items/k10"), None, &auth()).await.ok();
    assert!(got.header("x-cairn-index").is_some_and(|i| i.parse::<u64>().unwrap() >= v));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_are_capped_per_namespace_and_a_revoked_token_ends_its_stream() {
    let mut c = Cluster::in_process_single(&["--admin-token", ADMIN, "--max-watchers-per-namespace", "1"]);
    c.wait_for_leader(deadline_in(15)).await;
    let url = c.url(1);
    let http = &c.http;
    let created =
        send(http, Method::POST, &format!("{url}/admin/tokens"), json!({"namespace": "team", "permissions": ["read"]}))
            .await;
    let token = created["data"]["token"].as_str().unwrap().to_string();
    let id = created["data"]["id"].as_str().unwrap().to_string();
    let bearer = format!("Bearer {token}");
    let mut stream = sse::open(&format!("{url}/kv/watch"), &[("authorization", &bearer)]).await.expect("opens");
    match sse::open(&format!("{url}/kv/watch"), &[("authorization", &bearer)]).await {
        Err((429, body)) => assert_eq!(body["error"]["code"], "too_many_watchers", "{body}"),
        other => panic!("a second watch of the namespace must get 429, got {:?}", other.err()),
    }
    // Another namespace has its own cap.
    let other = sse::open(&format!("{url}/kv/watch"), &auth()).await;
    assert!(other.is_ok(), "the default namespace is not capped by team's watchers");

    http.must(Method::DELETE, &format!("{url}/admin/tokens/{id}"), None, &auth()).await.ok();
    let deadline = deadline_in(15);
    let mut ended = None;
    while let Some(e) = stream.next(deadline).await {
        if e.event == "revoked" {
            ended = Some(e);
        }
    }
    assert!(ended.is_some(), "the stream must say the token was revoked, then end");
    assert!(Instant::now() < deadline, "the stream ended rather than idling to the deadline");
    // Its slot is free again (after the revoked token is gone, an admin watch of team opens).
    let mut reopened = None;
    for _ in 0..50 {
        match sse::open(&format!("{url}/kv/watch"), &[auth()[0], ("x-cairn-namespace", "team")]).await {
            Ok(s) => {
                reopened = Some(s);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    assert!(reopened.is_some(), "the revoked stream's slot was never freed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_watch_requests_get_400s() {
    let mut c = Cluster::in_process_single(&["--admin-token", ADMIN]);
    c.wait_for_leader(deadline_in(15)).await;
    let url = c.url(1);
    let http = &c.http;
    for (query, headers, code) in [
        ("after=x", vec![], "invalid_query"),
        ("after=-1", vec![], "invalid_query"),
        ("values=maybe", vec![], "invalid_query"),
        ("wait=10s", vec![], "invalid_query"),
        ("wait=2m", vec![("accept", "application/json")], "invalid_query"),
        ("since=3", vec![], "unknown_field"),
        ("", vec![("last-event-id", "abc")], "invalid_query"),
    ] {
        let mut h = vec![auth()[0]];
        h.extend(headers);
        let r = http.must(Method::GET, &format!("{url}/kv/watch?{query}"), None, &h).await;
        r.assert_error(400, code);
    }
    let r = http.must(Method::GET, &format!("{url}/kv/watch"), None, &[]).await;
    assert_eq!(r.status, 401, "{r:?}");
}

/// A run too large to keep in the live feed (over 64 KiB of keys and values) reaches watchers
/// through the history instead, in its place among the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_too_large_for_the_live_feed_arrives_from_the_history_in_order() {
    let mut c = Cluster::in_process_single(&["--admin-token", ADMIN]);
    c.wait_for_leader(deadline_in(15)).await;
    let url = c.url(1);
    let http = &c.http;
    let mut stream = sse::open(&format!("{url}/kv/watch?prefix=big/"), &auth()).await.expect("opens");
    let small1 = put(http, &url, "big%2Fa", json!({"value": 1})).await;
    let large = put(http, &url, "big%2Fb", json!({"value": "y".repeat(100 * 1024)})).await;
    let small2 = put(http, &url, "big%2Fc", json!({"value": 2})).await;
    let mut got = Vec::new();
    let deadline = deadline_in(20);
    while got.len() < 3 {
        let Some(e) = stream.next(deadline).await else { break };
        if e.event == "change" {
            let value_len = e.data["changes"][0]["value"].to_string().len();
            got.push((e.id.unwrap(), value_len));
        }
    }
    let ids: Vec<u64> = got.iter().map(|(i, _)| *i).collect();
    assert_eq!(ids, vec![small1, large, small2]);
    assert_eq!(got[1].1, 100 * 1024 + 2, "the large value arrives whole (a JSON string)");
}
