//! Per-caller token buckets: `--rate-limit N` requests per second per token (or per client IP
//! without one), bursting to N. Buckets live in this node's memory only, so a client spreading
//! requests over three nodes gets up to three times the rate; docs/security.md says so.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth::{credential_from, split_token};
use super::error::ApiError;
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

/// The middleware; its state is `None` when `--rate-limit` is 0.
pub async fn limit(State(limiter): State<Option<Arc<RateLimiter>>>, req: Request, next: Next) -> Response {
    let Some(limiter) = limiter.as_ref() else {
        return next.run(req).await;
    };
    let v = limiter.check(&caller_key(&req), Instant::now());
    let mut resp = if v.allowed {
        next.run(req).await
    } else {
        ApiError {
            retry_after: Some(v.retry_after as u32),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many requests; slow down")
        }
        .into_response()
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
    use std::time::Duration;

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
