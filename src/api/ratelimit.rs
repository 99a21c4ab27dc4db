//! Per-caller token buckets: `--rate-limit N` requests per second per token (or per client IP
//! without one), bursting to N. Buckets live in this node's memory only, so a client spreading
//! requests over three nodes gets up to three times the rate; docs/security.md says so.
//!
//! The middleware is mounted once per API surface with that surface's error renderer, so a
//! dialect client over the limit gets its 429 in the dialect's own shape.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

use super::auth::{credential_from, split_token};
use super::error::{ApiError, Render};
use crate::listener::Conn;

/// Beyond this many tracked callers the table is reset, bounding memory against callers that
/// invent credentials; a reset only ever grants fresh buckets.
const MAX_BUCKETS: usize = 100_000;

struct Bucket {
    tokens: f64,
    at: Instant,
}

pub struct RateLimiter {
    per_sec: f64,
    /// A std mutex: held for a few arithmetic operations, never across an await.
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// What one request's check decided.
pub struct Verdict {
    pub allowed: bool,
    pub remaining: u64,
    /// Seconds until the bucket is full again.
    pub reset_secs: u64,
    /// Seconds until one request is allowed again (when refused).
    pub retry_after: u64,
}

impl RateLimiter {
    pub fn new(per_sec: u32) -> Self {
        RateLimiter { per_sec: per_sec as f64, buckets: Mutex::new(HashMap::new()) }
    }

    pub fn check(&self, key: &str, now: Instant) -> Verdict {
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_BUCKETS && !map.contains_key(key) {
            map.clear();
        }
        let b = map.entry(key.to_string()).or_insert(Bucket { tokens: self.per_sec, at: now });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.per_sec).min(self.per_sec);
        b.at = now;
        let allowed = b.tokens >= 1.0;
        if allowed {
            b.tokens -= 1.0;
        }
        let missing = self.per_sec - b.tokens;
        Verdict {
            allowed,
            remaining: b.tokens.floor() as u64,
            reset_secs: (missing / self.per_sec).ceil() as u64,
            retry_after: if allowed { 0 } else { ((1.0 - b.tokens) / self.per_sec).ceil().max(1.0) as u64 },
        }
    }
}

/// Who a request counts against: the token id (not the secret), another credential's
/// fingerprint, or the client IP.
fn caller_key(req: &Request) -> String {
    match credential_from(req.headers(), req.uri()) {
        Some(c) => match split_token(&c) {
            Some((id, _)) => format!("token:{id}"),
            None => format!("cred:{:x}", crc32fast::hash(c.as_bytes())),
        },
        None => match req.extensions().get::<ConnectInfo<Conn>>() {
            Some(ConnectInfo(conn)) => format!("ip:{}", conn.remote.ip()),
            None => "ip:unknown".into(),
        },
    }
}

/// The middleware's state: the node's limiter (`None` when `--rate-limit` is 0) and how the
/// surface it guards renders the 429.
#[derive(Clone)]
pub struct Limit {
    pub limiter: Option<Arc<RateLimiter>>,
    pub render: Render,
}

/// The middleware: a refused request is answered by the surface's renderer and never runs.
pub async fn limit(State(l): State<Limit>, req: Request, next: Next) -> Response {
    let Some(limiter) = l.limiter.as_ref() else {
        return next.run(req).await;
    };
    let v = limiter.check(&caller_key(&req), Instant::now());
    let mut resp = if v.allowed {
        next.run(req).await
    } else {
        (l.render)(ApiError::rate_limited(u32::try_from(v.retry_after).unwrap_or(u32::MAX)))
    };
    let h = resp.headers_mut();
    h.insert("x-ratelimit-limit", HeaderValue::from(limiter.per_sec as u64));
    h.insert("x-ratelimit-remaining", HeaderValue::from(v.remaining));
    h.insert("x-ratelimit-reset", HeaderValue::from(v.reset_secs));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    use axum::routing::get;
    use axum::Router;
    use std::time::Duration;
    use tower::ServiceExt;

    fn plain(e: ApiError) -> Response {
        crate::api::error::with_retry_after((e.status(), format!("plain {}", e.message)).into_response(), &e)
    }

    #[tokio::test]
    async fn a_refusal_is_rendered_by_the_surfaces_renderer_with_the_limit_headers() {
        let state = Limit { limiter: Some(Arc::new(RateLimiter::new(1))), render: plain };
        let app =
            Router::new().route("/x", get(|| async { "ok" })).layer(axum::middleware::from_fn_with_state(state, limit));
        let call = || Request::builder().uri("/x").body(axum::body::Body::empty()).unwrap();
        assert_eq!(app.clone().oneshot(call()).await.unwrap().status(), StatusCode::OK);
        let resp = app.oneshot(call()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        assert_eq!(resp.headers()["x-ratelimit-limit"], "1");
        assert_eq!(resp.headers()["x-ratelimit-remaining"], "0");
        assert!(resp.headers().contains_key("x-ratelimit-reset"));
        let body = axum::body::to_bytes(resp.into_body(), 1024).await.unwrap();
        assert_eq!(&body[..], b"plain too many requests; slow down");
    }

    #[test]
    fn bucket_allows_a_burst_then_refills_at_the_rate() {
        let rl = RateLimiter::new(3);
        let t0 = Instant::now();
        assert!(rl.check("a", t0).allowed);
        assert!(rl.check("a", t0).allowed);
        let last = rl.check("a", t0);
        assert!(last.allowed);
        assert_eq!(last.remaining, 0);
        let refused = rl.check("a", t0);
        assert!(!refused.allowed);
        assert!(refused.retry_after >= 1);
        // Another caller has its own bucket.
        assert!(rl.check("b", t0).allowed);
        // A third of a second later one request's worth has refilled.
        assert!(rl.check("a", t0 + Duration::from_millis(340)).allowed);
        assert!(!rl.check("a", t0 + Duration::from_millis(340)).allowed);
    }
}
