//! Bad input is rejected at the edge with the documented 4xx code (never a 500), and the
//! node keeps serving afterwards.

use crate::support::{deadline_in, Cluster, Resp};
use serde_json::json;

/// A running single-node cluster whose node is leader, and its URL.
async fn single_node() -> (Cluster, String) {
    let mut cluster = Cluster::in_process_single(&[]);
    cluster.wait_for_leader(deadline_in(15)).await;
    let url = cluster.url(1);
    (cluster, url)
}

/// Asserts the rejection, then that the node still writes and reads.
async fn assert_rejected_and_still_serving(c: &Cluster, url: &str, resp: Resp, status: u16, code: &str) {
    assert_ne!(resp.status, 500, "bad input must never be a 500: {resp:?}");
    resp.assert_error(status, code);
    let put = c.http.put(url, "after-bad-input", &json!({"value": "fine"})).await;
    assert_eq!(put.status, 200, "node stopped serving writes after bad input: {put:?}");
    let got = c.http.get(url, "after-bad-input").await;
    assert_eq!(got.data()["value"], "fine", "node stopped serving reads after bad input: {got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn value_over_one_mebibyte_is_413_value_too_large() {
    let (c, url) = single_node().await;
    let big = "x".repeat(1024 * 1024 + 16);
    let resp = c.http.put(&url, "big", &json!({"value": big})).await;
    assert_rejected_and_still_serving(&c, &url, resp, 413, "value_too_large").await;
    c.http.get(&url, "big").await.assert_error(404, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_body_is_400_invalid_json() {
    let (c, url) = single_node().await;
    let resp = c.http.put_raw(&url, "broken", br#"{"value": "#.to_vec()).await;
    assert_rejected_and_still_serving(&c, &url, resp, 400, "invalid_json").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_without_value_is_400_invalid_json() {
    let (c, url) = single_node().await;
    let resp = c.http.put(&url, "novalue", &json!({"ttlSeconds": 5})).await;
    assert_rejected_and_still_serving(&c, &url, resp, 400, "invalid_json").await;
    c.http.get(&url, "novalue").await.assert_error(404, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_of_513_bytes_is_400_invalid_key_while_512_bytes_is_accepted() {
    let (c, url) = single_node().await;
    c.http.put(&url, &"k".repeat(512), &json!({"value": 1})).await.ok();
    let resp = c.http.put(&url, &"k".repeat(513), &json!({"value": 1})).await;
    assert_rejected_and_still_serving(&c, &url, resp, 400, "invalid_key").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_with_a_control_character_is_400_invalid_key() {
    let (c, url) = single_node().await;
    let resp = c.http.put_raw(&url, "bad%01key", br#"{"value": 1}"#.to_vec()).await;
    assert_rejected_and_still_serving(&c, &url, resp, 400, "invalid_key").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_of_zero_above_one_year_or_negative_is_400_invalid_ttl() {
    let (c, url) = single_node().await;
    for ttl in [json!(0), json!(31_536_001), json!(-5)] {
        let resp = c.http.put(&url, "ttl", &json!({"value": 1, "ttlSeconds": ttl})).await;
        assert_ne!(resp.status, 500, "ttlSeconds {ttl}: {resp:?}");
        assert_eq!(resp.status, 400, "ttlSeconds {ttl}: {resp:?}");
        assert_eq!(resp.error_code(), Some("invalid_ttl"), "ttlSeconds {ttl}: {resp:?}");
    }
    c.http.get(&url, "ttl").await.assert_error(404, "not_found");
    let resp = c.http.put(&url, "ttl", &json!({"value": 1, "ttlSeconds": -5})).await;
    assert_rejected_and_still_serving(&c, &url, resp, 400, "invalid_ttl").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_version_that_is_not_a_number_is_400_invalid_version() {
    let (c, url) = single_node().await;
    c.http.put(&url, "iv", &json!({"value": 1})).await.ok();
    let resp = c.http.put(&url, "iv", &json!({"value": 2, "ifVersion": "abc"})).await;
    assert_rejected_and_still_serving(&c, &url, resp, 400, "invalid_version").await;
    assert_eq!(c.http.get(&url, "iv").await.ok().data()["value"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segment_keys_are_400_invalid_key_even_percent_encoded() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (c, url) = single_node().await;
    // Sent on a raw socket: reqwest (like any WHATWG URL parser) would resolve `%2E%2E` away.
    for encoded in ["%2E", "%2e%2E", "%2E%2E"] {
        let addr = url.trim_start_matches("http://");
        let body = r#"{"value":1}"#;
        let request = format!(
            "PUT /kv/items/{encoded} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let answer = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
            s.write_all(request.as_bytes()).await.expect("send");
            let mut out = String::new();
            s.read_to_string(&mut out).await.expect("read");
            out
        })
        .await
        .expect("an answer within 10 s");
        assert!(answer.starts_with("HTTP/1.1 400"), "{encoded}: {answer}");
        assert!(answer.contains("invalid_key"), "{encoded}: {answer}");
    }
    // The node still serves, and a batch (keys in the body) can still name them.
    let put = c.http.put(&url, "after-dot-keys", &json!({"value": "fine"})).await;
    assert_eq!(put.status, 200, "{put:?}");
}
