//! One-hop proxy from a follower to the leader, for writes and strong reads. A request that
//! already carries the loop-guard header is never forwarded again. When the proxied request
//! may have reached the leader but no answer came back, a write is reported as 504
//! `unknown_outcome`, never retried and never called a failure. Those errors are returned,
//! not rendered, so each surface answers them in its own shape.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;

use super::auth::same_secret;
use super::code::Code;
use super::error::ApiError;
use super::state::AppState;
use crate::protocol::{H_CLUSTER_SECRET, H_FORWARDED_BY, H_NODE};

/// The parts of an incoming request needed to replay it at the leader. Also the extractor
/// handlers use for the body, so an oversized body becomes 413 `value_too_large`.
pub struct Replay {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl<S: Send + Sync> FromRequest<S> for Replay {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let (mut parts, body) = req.into_parts();
        // The headers are moved out, not copied (a copy per request showed in read profiles):
        // reading the body needs only the extensions, which carry its size limit.
        let headers = std::mem::take(&mut parts.headers);
        let (method, uri) = (parts.method.clone(), parts.uri.clone());
        // Most requests are reads with no body at all: nothing to collect (1.9 % of a
        // follower's stale reads went to collecting the empty body).
        if http_body::Body::is_end_stream(&body) {
            return Ok(Replay { method, uri, headers, body: Bytes::new() });
        }
        let body =
            Bytes::from_request(Request::from_parts(parts, body), state).await.map_err(|e| match e.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(Code::ValueTooLarge, "request body too large"),
                // axum's only other body rejection is 400 (the body failed to arrive).
                _ if body_timed_out(&e) => ApiError::new(Code::RequestTimeout, e.body_text()),
                _ => ApiError::new(Code::InvalidBody, e.body_text()),
            })?;
        Ok(Replay { method, uri, headers, body })
    }
}

const HOP_BY_HOP: &[&str] = &["host", "connection", "content-length", "transfer-encoding", "keep-alive", "upgrade"];

/// Replays `req` at the leader and returns the leader's response as it is (already in the
/// surface's shape), or why no answer came back.
pub async fn to_leader(st: &AppState, req: Replay) -> Result<Response, ApiError> {
    to_leader_within(st, req, Duration::ZERO).await
}

/// [`to_leader`] for a request the leader may hold for up to `wait` before it answers (a lock
/// or a campaign that waits its turn): the answer is awaited that much longer.
pub async fn to_leader_within(st: &AppState, req: Replay, wait: Duration) -> Result<Response, ApiError> {
    // The loop guard believes only a peer: a client that sends the header itself is ignored
    // (it used to be able to make a follower refuse its request with 503).
    if req.headers.contains_key(H_FORWARDED_BY) && from_a_peer(st, &req.headers) {
        return Err(ApiError::no_leader("a forwarded request reached a node that is not the leader"));
    }
    let Some((leader, addr, term)) = st.node.leader_in_term().filter(|(id, ..)| *id != st.node.id) else {
        return Err(ApiError::no_leader("no leader is known"));
    };
    let path = req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut rb = st
        .forward_http
        .request(req.method.clone(), format!("{}://{addr}{path}", st.node.config.peer_scheme()))
        .timeout(st.node.config.write_timeout + Duration::from_secs(2) + wait)
        .header(H_FORWARDED_BY, st.node.id)
        .body(req.body);
    for (k, v) in req.headers.iter() {
        // Cairn's own request headers are set by this node (the secret by `forward_http`),
        // never passed on from whoever sent the request.
        if !HOP_BY_HOP.contains(&k.as_str()) && k != H_FORWARDED_BY && k != H_CLUSTER_SECRET {
            rb = rb.header(k, v);
        }
    }
    let is_read = req.method == Method::GET;
    tokio::select! {
        biased;
        answer = relay(rb, &addr, is_read) => answer,
        // The request went to a leader that has since been replaced: waiting on for its
        // answer (up to the timeout above) would hold the client through the whole failover,
        // when a retry would reach the new leader. A write's outcome stays unknown; a read
        // did nothing.
        next = st.node.leader_moved(leader, term) => Err(if is_read {
            ApiError::no_leader(format!("leadership moved from node {leader} to node {next} while the read was forwarded; retry"))
        } else {
            ApiError::unknown_outcome(format!(
                "leadership moved from node {leader} to node {next} while the write was with node {leader}; it may or may not have been applied"
            ))
        }),
    }
}

/// Sends the replayed request and reads the whole answer.
async fn relay(rb: reqwest::RequestBuilder, addr: &str, is_read: bool) -> Result<Response, ApiError> {
    let lost = |why: String| {
        if is_read {
            ApiError::no_leader(format!("leader unreachable: {why}"))
        } else {
            ApiError::unknown_outcome(format!("the leader did not answer: {why}"))
        }
    };
    let resp = match rb.send().await {
        Ok(r) => r,
        // Nothing reached the leader: definitely not applied.
        Err(e) if e.is_connect() => return Err(ApiError::no_leader(format!("leader unreachable: {e}"))),
        Err(e) => return Err(refused_before_http(&e).map_or_else(|| lost(e.to_string()), |why| refused(addr, why))),
    };
    // Every answer of a Cairn node carries its id; one without came from something else on
    // the leader's port, which did not run the request.
    if !resp.headers().contains_key(H_NODE) {
        return Err(refused(addr, format!("its port answered {} without being a Cairn node", resp.status())));
    }
    let status = resp.status();
    let mut headers = HeaderMap::new();
    for (k, v) in resp.headers() {
        if !HOP_BY_HOP.contains(&k.as_str()) {
            headers.insert(k.clone(), v.clone());
        }
    }
    match resp.bytes().await {
        Ok(b) => {
            let mut out = Response::new(Body::from(b));
            *out.status_mut() = status;
            *out.headers_mut() = headers;
            Ok(out)
        }
        Err(e) => Err(lost(e.to_string())),
    }
}

fn refused(addr: &str, why: String) -> ApiError {
    ApiError::new(
        Code::LeaderUnreachable,
        format!("the leader at {addr} refused this node's connection, so nothing was done: {why}; check the nodes' TLS and peer settings"),
    )
}

/// Why a proxied request that failed provably never reached the leader's HTTP layer, if it
/// did not: the leader refused the TLS handshake (with TLS 1.3 a refused client certificate
/// shows only when the client reads, after it already sent the request, which the server
/// never decrypted), or what answered was not HTTP (plain HTTP sent to a TLS port gets a TLS
/// alert back). `None` means the request may have been run.
fn refused_before_http(e: &reqwest::Error) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        // An io::Error's `source` skips the error it wraps, so look inside it too.
        let inner = c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|i| i as &(dyn std::error::Error + 'static));
        for candidate in [Some(c), inner].into_iter().flatten() {
            if let Some(tls) = candidate.downcast_ref::<rustls::Error>() {
                return Some(format!("TLS: {tls}"));
            }
            if candidate.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_parse) {
                return Some(format!("its answer was not HTTP ({candidate})"));
            }
        }
        cause = c.source();
    }
    None
}

/// Whether a body rejection was the connection's body timeout (`connection::BodyTimedOut`)
/// rather than a broken body.
fn body_timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.is::<crate::connection::BodyTimedOut>() {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Whether a request comes from a peer: it carries the cluster secret (every node's
/// forwarding client sends it). A cluster without a secret cannot tell peers from clients, and
/// trusts the header as it trusts every caller (such a node serves loopback only, unless
/// started with `--insecure-allow-anonymous`).
fn from_a_peer(st: &AppState, headers: &HeaderMap) -> bool {
    match &st.node.config.security.cluster_secret {
        Some(secret) => headers.get(H_CLUSTER_SECRET).is_some_and(|v| same_secret(v.as_bytes(), secret.as_bytes())),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use super::*;
    use crate::config::TlsFiles;
    use crate::tls::{self, NodeTls};

    fn pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().self_signed(&key).unwrap();
        let (c, k) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    /// A node's TLS port: handshakes with the node's own server configuration and answers
    /// every request it can read with a Cairn-like 200.
    async fn tls_port(server: Arc<rustls::ServerConfig>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(tcp).await {
                        let mut buf = [0u8; 4096];
                        if tls.read(&mut buf).await.is_ok_and(|n| n > 0) {
                            let answer = "HTTP/1.1 200 OK\r\nx-cairn-node: 1\r\ncontent-length: 0\r\n\r\n";
                            let _ = tls.write_all(answer.as_bytes()).await;
                        }
                    }
                });
            }
        });
        addr
    }

    fn client(config: rustls::ClientConfig) -> reqwest::Client {
        reqwest::Client::builder().use_preconfigured_tls(config).build().unwrap()
    }

    #[tokio::test]
    async fn a_connection_the_leader_refused_before_http_is_told_from_an_unknown_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair(dir.path(), "node");
        let files = TlsFiles { cert: cert.clone(), key, peer_ca: Some(cert.clone()) };
        let addr = tls_port(NodeTls::load(&files).unwrap().0.server).await;

        // The port works for a client it accepts.
        let trusting = client(tls::client_config(Some(&cert)).unwrap());
        let ok = trusting.post(format!("https://{addr}/kv/items/k")).body("x").send().await.unwrap();
        assert_eq!(ok.status(), 200);

        // A peer whose certificate comes from another CA (it trusts the node's, through a
        // bundle of both): the node refuses the handshake.
        let (other, other_key) = pair(dir.path(), "other");
        let bundle = dir.path().join("bundle.pem");
        let pems = [std::fs::read(&cert).unwrap(), std::fs::read(&other).unwrap()].concat();
        std::fs::write(&bundle, pems).unwrap();
        let foreign = TlsFiles { cert: other, key: other_key, peer_ca: Some(bundle) };
        let e = client((*NodeTls::load(&foreign).unwrap().0.peer_client).clone())
            .post(format!("https://{addr}/kv/items/k"))
            .body("x")
            .send()
            .await
            .unwrap_err();
        let why = refused_before_http(&e).unwrap_or_else(|| panic!("a refused handshake, not an unknown: {e:?}"));
        assert!(why.contains("TLS"), "{why}");

        // Plain HTTP sent to the TLS port: a TLS alert comes back, not HTTP.
        let e = reqwest::Client::new().post(format!("http://{addr}/kv/items/k")).body("x").send().await.unwrap_err();
        assert!(refused_before_http(&e).is_some(), "plain HTTP to a TLS port: {e:?}");
    }

    #[tokio::test]
    async fn a_request_that_may_have_run_is_never_called_refused() {
        use tokio::io::AsyncReadExt;
        // Reads the request, then closes without answering: it may have been applied.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = tcp.read(&mut buf).await;
            }
        });
        let e = reqwest::Client::new().post(format!("http://{addr}/kv/items/k")).body("x").send().await.unwrap_err();
        assert_eq!(refused_before_http(&e), None, "{e:?}");
    }
}
