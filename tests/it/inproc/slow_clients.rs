//! Slow, stalled and too many clients: each costs a bounded amount of time and connections,
//! and is answered (or cut off) instead of holding the node. Raw sockets, because an HTTP
//! client library would not send half a request.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{deadline_in, until, Cluster};

async fn node(extra: &[&str]) -> (Cluster, String) {
    let mut c = Cluster::in_process_single(extra);
    c.wait_for_leader(deadline_in(15)).await;
    let addr = c.addr(1);
    (c, addr)
}

/// Reads until the peer closes (or resets) the connection; `Err` if it is still open at the
/// deadline. Returns what was read.
async fn read_until_closed(s: &mut TcpStream, deadline: Instant) -> Result<String, String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return Err(format!("still open at the deadline; read {:?}", String::from_utf8_lossy(&got))),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(String::from_utf8_lossy(&got).into_owned()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_trickled_a_byte_at_a_time_is_cut_off_at_the_header_timeout() {
    let (_c, addr) = node(&["--header-timeout-ms", "1000", "--idle-timeout-ms", "60000"]).await;
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    // One header byte every 200 ms, forever: the head never completes.
    let deadline = deadline_in(15);
    let mut cut = false;
    while Instant::now() < deadline {
        if s.write_all(b"X").await.is_err() {
            cut = true;
            break;
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut = true;
                break;
            }
            Ok(Ok(_)) | Err(_) => {}
        }
    }
    assert!(cut, "a trickled head kept its connection open for 15 s against a 1 s header timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    // The header timeout is far longer: the idle limit alone must close the connection.
    let (_c, addr) = node(&["--idle-timeout-ms", "1000", "--header-timeout-ms", "60000"]).await;
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let got = read_until_closed(&mut s, deadline_in(15)).await.expect("closed after the idle timeout");
    assert!(got.starts_with("HTTP/1.1 200"), "the request itself was answered first: {got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_part_way_gets_408_request_timeout() {
    let (_c, addr) = node(&["--body-timeout-ms", "1000"]).await;
    for declared in ["100", "99999999999"] {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "PUT /kv/items/k HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(br#"{"value":"#).await.unwrap();
        let got = read_until_closed(&mut s, deadline_in(15)).await.expect("an answer, then the connection closes");
        let status = got.get(..12).unwrap_or_default();
        assert!(
            (got.starts_with("HTTP/1.1 408") && got.contains("request_timeout"))
                || (got.starts_with("HTTP/1.1 413") && got.contains("value_too_large")),
            "Content-Length {declared}: {status}: {got}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_maximum_get_503_too_many_connections() {
    let (c, addr) = node(&["--max-connections", "8"]).await;
    // The harness's own client may hold a pooled connection or two; so open connections, each
    // with one keep-alive request, until one is refused.
    let mut held = Vec::new();
    let mut refused = None;
    for _ in 0..20 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.expect("an answer").unwrap();
        let got = String::from_utf8_lossy(&buf[..n]).into_owned();
        if got.starts_with("HTTP/1.1 503") {
            refused = Some(got);
            break;
        }
        assert!(got.starts_with("HTTP/1.1 200"), "{got}");
        held.push(s);
    }
    let refused = refused.expect("20 open connections against --max-connections 8, none refused");
    assert!(refused.contains("too_many_connections"), "{refused}");
    assert!(refused.to_ascii_lowercase().contains("retry-after: 1"), "{refused}");
    assert!(held.len() <= 8, "{} connections were served", held.len());
    // Closing ours frees their places.
    drop(held);
    let url = c.url(1);
    until(deadline_in(10), "a connection to be served again", async || {
        let r = c.http.put(&url, "k", &serde_json::json!({"value": 1})).await;
        if r.status == 200 {
            Ok(())
        } else {
            Err(format!("{r:?}"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_dialect_refuses_a_missing_credential_before_reading_the_body() {
    // The body timeout is far longer than the test: only a check made from the headers can
    // answer before the body would be complete.
    let (_c, addr) = node(&["--admin-token", "t0ken", "--body-timeout-ms", "600000"]).await;
    for (method, path, style) in
        [("PUT", "/infra/kv/k", "unauthorized"), ("POST", "/echovalue/kv/g/k", "Invalid token")]
    {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        let head = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(b"{\"value\":").await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{path}: no answer while the body was still owed"))
            .unwrap();
        let got = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(got.starts_with("HTTP/1.1 401"), "{path}: {got}");
        assert!(got.contains(style), "{path}: the dialect's own style: {got}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kvdb_refuses_a_wrong_bucket_key_before_reading_the_body() {
    let (c, addr) = node(&["--admin-token", "t0ken", "--body-timeout-ms", "600000"]).await;
    let form = [("authorization", "Bearer t0ken"), ("content-type", "application/x-www-form-urlencoded")];
    let raw = crate::support::raw::Raw::new();
    let create = format!("{}/kvdb", c.url(1));
    let id = raw.send(reqwest::Method::POST, &create, Some(b"secret_key=s&write_key=w"), &form).await.ok().text;
    let basic = |user: &str| crate::support::raw::basic(user);
    let cases = [
        ("PUT", format!("/kvdb/{id}/k"), basic("wrong"), "401"),
        ("PUT", format!("/kvdb/{id}/k"), String::new(), "403"),
        ("PATCH", format!("/kvdb/{id}"), basic("w"), "403"),
        ("POST", "/kvdb".to_string(), String::new(), "401"),
    ];
    for (method, path, auth, status) in cases {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        let auth = if auth.is_empty() { String::new() } else { format!("Authorization: {auth}\r\n") };
        let head = format!("{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 100000\r\n\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(b"secret_").await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{method} {path}: no answer while the body was still owed"))
            .unwrap();
        let got = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(got.starts_with(&format!("HTTP/1.1 {status}")), "{method} {path}: {got}");
        assert!(got.contains("text/plain"), "{method} {path}: KVdb's own style: {got}");
    }
}
