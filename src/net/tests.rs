use std::sync::atomic::{AtomicUsize, Ordering};

use openraft::{CommittedLeaderId, LogId, Vote};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

const STARTING: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
connection: close\r\nretry-after: 1\r\ncontent-length: 19\r\n\r\n{\"code\":\"starting\"}";

/// A peer that answers its first `refusals` requests 503 `starting` (closing each connection,
/// as `api::starting` does) and every later one with a granted vote. Returns its address and
/// the number of requests it read.
async fn peer(refusals: usize) -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = l.accept().await else { return };
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    // A request is whole once its head and Content-Length bytes are in.
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        if buf.len() >= end + 4 + len {
                            buf.drain(..end + 4 + len);
                            if counter.fetch_add(1, Ordering::SeqCst) < refusals {
                                let _ = sock.write_all(STARTING).await;
                                return;
                            }
                            let granted: Result<VoteResponse<NodeId>, RaftError<NodeId>> =
                                Ok(VoteResponse::new(Vote::new(1, 1), None, true));
                            let body = wire::encode(&granted).unwrap();
                            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
                            let _ = sock.write_all(&[head.as_bytes(), &body].concat()).await;
                            continue;
                        }
                    }
                    let mut chunk = [0u8; 4096];
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (addr, seen)
}

async fn client(addr: &str, dir: &TempDir) -> Conn {
    let durable = crate::wal::LogStore::open(dir.path()).unwrap().durability();
    let opts = peer_options(None, None, None);
    let mut net = Network::new(opts, "http", durable, Arc::new(Campaign::new(Duration::from_millis(300))));
    net.new_client(2, &BasicNode::new(addr)).await
}

fn vote_request() -> VoteRequest<NodeId> {
    VoteRequest::new(Vote::new(1, 1), Some(LogId::new(CommittedLeaderId::new(0, 1), 0)))
}

#[tokio::test]
async fn a_vote_refused_by_a_starting_peer_is_asked_again_within_its_deadline() {
    let dir = TempDir::new().unwrap();
    let (addr, seen) = peer(2).await;
    let mut conn = client(&addr, &dir).await;
    let resp = conn.vote(vote_request(), RPCOption::new(Duration::from_secs(5))).await.expect("the vote was answered");
    assert!(resp.vote_granted);
    assert_eq!(seen.load(Ordering::SeqCst), 3, "two refusals, then the vote");
}

#[tokio::test]
async fn a_peer_that_keeps_refusing_fails_the_vote_by_its_deadline() {
    let dir = TempDir::new().unwrap();
    let (addr, seen) = peer(usize::MAX).await;
    let mut conn = client(&addr, &dir).await;
    // Long enough that even a slow first exchange on a loaded test machine leaves room to ask again.
    let ttl = Duration::from_secs(1);
    let out = tokio::time::timeout(Duration::from_secs(10), conn.vote(vote_request(), RPCOption::new(ttl)))
        .await
        .expect("the vote ends on its own deadline");
    assert!(matches!(out, Err(RPCError::Network(_))), "{out:?}");
    assert!(seen.load(Ordering::SeqCst) > 1, "asked more than once");
}

#[tokio::test]
async fn other_refusals_are_not_asked_again() {
    // A 4xx or 5xx other than 503 came from a node that looked at the request: asking again
    // would get the same answer.
    let dir = TempDir::new().unwrap();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = l.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut chunk = [0u8; 4096];
            let _ = sock.read(&mut chunk).await;
            let _ =
                sock.write_all(b"HTTP/1.1 401 Unauthorized\r\nconnection: close\r\ncontent-length: 2\r\n\r\nno").await;
        }
    });
    let mut conn = client(&addr, &dir).await;
    let out = conn.vote(vote_request(), RPCOption::new(Duration::from_secs(5))).await;
    assert!(matches!(out, Err(RPCError::Network(_))), "{out:?}");
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}
