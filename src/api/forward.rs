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
use crate::protocol::{H_CLUSTER_SECRET, H_FORWARDED_BY};

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
    // The loop guard believes only a peer: a client that sends the header itself is ignored
    // (it used to be able to make a follower refuse its request with 503).
    if req.headers.contains_key(H_FORWARDED_BY) && from_a_peer(st, &req.headers) {
        return Err(ApiError::no_leader("a forwarded request reached a node that is not the leader"));
    }
    let Some((_, addr)) = st.node.leader().filter(|(id, _)| *id != st.node.id) else {
        return Err(ApiError::no_leader("no leader is known"));
    };
    let path = req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut rb = st
        .forward_http
        .request(req.method.clone(), format!("{}://{addr}{path}", st.node.config.peer_scheme()))
        .timeout(st.node.config.write_timeout + Duration::from_secs(2))
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
        Err(e) => return Err(lost(e.to_string())),
    };
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
