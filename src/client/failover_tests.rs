//! Failover behaviour of [`Client`] against scripted fake HTTP endpoints on ephemeral ports.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{Client, ClientConfig, ClientError, PutRequest, ReadOptions};

/// What a fake endpoint does with each request.
#[derive(Clone)]
enum Script {
    Respond {
        status: u16,
        body: String,
    },
    /// Read the request, then never answer (holds the connection open).
    Hang,
}

struct Fake {
    url: Url,
    hits: Arc<AtomicUsize>,
}

async fn fake(script: Script) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let script = script.clone();
            let counter = counter.clone();
            tokio::spawn(async move { serve(stream, script, counter).await });
        }
    });
    Fake { url, hits }
}

async fn serve(mut stream: TcpStream, script: Script, hits: Arc<AtomicUsize>) {
    if !read_request(&mut stream).await {
        return;
    }
    hits.fetch_add(1, Ordering::SeqCst);
    match script {
        Script::Respond { status, body } => {
            let head = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n\
                 x-cairn-node: 2\r\nx-cairn-leader: none\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
        Script::Hang => tokio::time::sleep(Duration::from_secs(60)).await,
    }
}

/// Reads one whole request (head plus `content-length` body) so the client never sees a reset
/// from a response written before its body was consumed.
async fn read_request(stream: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return true;
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// An address that refuses connections: bound to learn a free port, then released.
fn refused() -> Url {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    Url::parse(&format!("http://{addr}/")).unwrap()
}

fn client(endpoints: Vec<Url>) -> Client {
    Client::with_config(ClientConfig {
        endpoints,
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_millis(500),
        ..ClientConfig::new(Vec::new())
    })
    .unwrap()
}

fn item_body() -> String {
    json!({"data": {"key": "k", "value": 1, "version": "5", "expiresAt": null}}).to_string()
}

fn error_body(code: &str) -> String {
    json!({"error": {"code": code, "message": "scripted"}}).to_string()
}

#[tokio::test]
async fn write_fails_over_past_refused_and_503_endpoints() {
    let busy = fake(Script::Respond { status: 503, body: error_body("no_leader") }).await;
    let good = fake(Script::Respond { status: 200, body: item_body() }).await;
    let c = client(vec![refused(), busy.url.clone(), good.url.clone()]);
    let reply = c.put("k", &PutRequest::new(json!(1))).await.unwrap();
    assert_eq!(reply.data.version, "5");
    assert_eq!(reply.meta.endpoint, good.url);
    assert_eq!(reply.meta.node, Some(2));
    assert_eq!(reply.meta.leader, None);
    assert_eq!(busy.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn write_with_504_is_unknown_and_not_resent() {
    let slow = fake(Script::Respond { status: 504, body: error_body("unknown_outcome") }).await;
    let good = fake(Script::Respond { status: 200, body: item_body() }).await;
    let c = client(vec![slow.url.clone(), good.url.clone()]);
    let err = c.put("k", &PutRequest::new(json!(1))).await.unwrap_err();
    assert!(err.is_unknown_outcome(), "{err}");
    assert_eq!(err.exit_code(), 3);
    assert_eq!(good.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn write_that_times_out_after_sending_is_unknown_and_not_resent() {
    let hung = fake(Script::Hang).await;
    let good = fake(Script::Respond { status: 200, body: item_body() }).await;
    let c = client(vec![hung.url.clone(), good.url.clone()]);
    let err = c.increment("k", &Default::default()).await.unwrap_err();
    assert!(err.is_unknown_outcome(), "{err}");
    assert_eq!(hung.hits.load(Ordering::SeqCst), 1);
    assert_eq!(good.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn read_that_times_out_moves_to_next_endpoint() {
    let hung = fake(Script::Hang).await;
    let good = fake(Script::Respond { status: 200, body: item_body() }).await;
    let c = client(vec![hung.url.clone(), good.url.clone()]);
    let reply = c.get("k", ReadOptions::default()).await.unwrap();
    assert_eq!(reply.meta.endpoint, good.url);
}

#[tokio::test]
async fn definite_errors_stop_failover() {
    let missing = fake(Script::Respond { status: 404, body: error_body("not_found") }).await;
    let good = fake(Script::Respond { status: 200, body: item_body() }).await;
    let c = client(vec![missing.url.clone(), good.url.clone()]);
    match c.get("k", ReadOptions::default()).await {
        Err(ClientError::Api { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (404, "not_found"));
        }
        other => panic!("expected not_found, got {other:?}"),
    }
    assert_eq!(good.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn nothing_reachable_is_unavailable_listing_each_endpoint() {
    let (a, b) = (refused(), refused());
    let err = client(vec![a.clone(), b.clone()]).cluster_status().await.unwrap_err();
    match &err {
        ClientError::Unavailable { attempts } => {
            let tried: Vec<&str> = attempts.iter().map(|t| t.endpoint.as_str()).collect();
            assert_eq!(tried, [a.as_str(), b.as_str()]);
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    assert_eq!(err.exit_code(), 3);
}
