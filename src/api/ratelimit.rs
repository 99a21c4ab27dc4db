//! Per-caller token buckets: `--rate-limit N` requests per second per caller, bursting to N.
//! The caller is who the credential *proves* (`auth::authenticate` runs first): a verified
//! token's id, the bootstrap admin, or else the client's address (IPv6 by its /64). A made-up
//! or failed credential therefore counts against the address that sent it, so inventing ids
//! neither dodges the limit nor grows the table, and a flood of 401s turns into 429s.
//!
//! Memory is bounded by `MAX_BUCKETS`. A bucket that has refilled is the same as no bucket, so
//! full buckets are dropped when the table is full (one sweep a second at most); callers that
//! arrive while it is still full share one overflow bucket. No bucket is ever reset early.
//! Buckets live in this node's memory only, so a client spreading requests over three nodes
//! gets up to three times the rate; docs/security.md says so.
//!
//! The middleware is mounted once per API surface with that surface's error renderer, so a
//! dialect client over the limit gets its 429 in the dialect's own shape.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

use super::auth::{Authenticated, Principal};
use super::error::{ApiError, Render};
use super::state::AppState;
use crate::listener::Conn;

/// Most buckets tracked. Past it, refilled buckets are swept out, and new callers share the
/// overflow bucket until there is room again.
const MAX_BUCKETS: usize = 100_000;

/// How often a full table may be swept (each sweep walks it once).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Who a request counts against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Who {
    Admin,
    /// A verified token's id.
    Token(Box<str>),
    /// The client address (an IPv6 address by its /64: one host usually holds a whole /64).
    Addr(IpAddr),
    /// Every caller that arrived while the table was full.
    Overflow,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

struct Table {
    buckets: HashMap<Who, Bucket>,
    swept: Option<Instant>,
}

pub struct RateLimiter {
    per_sec: f64,
    max_buckets: usize,
    /// A std mutex: held for a few arithmetic operations (or one sweep), never across an await.
    table: Mutex<Table>,
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
        Self::with_capacity(per_sec, MAX_BUCKETS)
    }

    fn with_capacity(per_sec: u32, max_buckets: usize) -> Self {
        let table = Table { buckets: HashMap::new(), swept: None };
        RateLimiter { per_sec: per_sec as f64, max_buckets, table: Mutex::new(table) }
    }

    /// Buckets held now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.table.lock().unwrap_or_else(|e| e.into_inner()).buckets.len()
    }

    pub fn check(&self, who: &Who, now: Instant) -> Verdict {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let mut who = who;
        if !table.buckets.contains_key(who) && table.buckets.len() >= self.max_buckets {
            if table.swept.is_none_or(|at| now.saturating_duration_since(at) >= SWEEP_EVERY) {
                let per_sec = self.per_sec;
                // A refilled bucket is what a new caller gets anyway: dropping it changes
                // nothing for its caller.
                table
                    .buckets
                    .retain(|_, b| b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_sec < per_sec);
                table.swept = Some(now);
            }
            if table.buckets.len() >= self.max_buckets {
                who = &Who::Overflow;
            }
        }
        let b = table.buckets.entry(who.clone()).or_insert(Bucket { tokens: self.per_sec, at: now });
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

/// Who a request counts against: the caller its credential proved, else its address.
fn who(req: &Request) -> Who {
    if let Some(Authenticated(Some(caller))) = req.extensions().get::<Authenticated>() {
        match &caller.principal {
            Principal::Admin => return Who::Admin,
            Principal::Token { id, .. } => return Who::Token(id.as_str().into()),
            Principal::Anonymous => {}
        }
    }
    match req.extensions().get::<ConnectInfo<Conn>>().map(|ConnectInfo(c)| c.remote.ip()) {
        Some(IpAddr::V6(v6)) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            Who::Addr(IpAddr::from(octets))
        }
        Some(v4) => Who::Addr(v4),
        None => Who::Addr(IpAddr::from([0, 0, 0, 0])),
    }
}

/// Puts `routes` behind the node's limiter, its 429 rendered by `render`: each request is
/// authenticated first (outermost), so buckets are keyed by who the credential proves, then
/// counted. With the limiter off (`--rate-limit 0`) the routes are returned as they are: an
/// idle middleware still cost every request a boxed clone of the routes behind it, about 3 % of
/// a leader's CPU under puts (docs/performance.md).
pub fn limited(
    routes: axum::Router<AppState>,
    state: &AppState,
    limiter: Option<&Arc<RateLimiter>>,
    render: Render,
) -> axum::Router<AppState> {
    let Some(limiter) = limiter else {
        return routes;
    };
    routes
        .layer(axum::middleware::from_fn_with_state(Limit { limiter: limiter.clone(), render }, limit))
        .layer(axum::middleware::from_fn_with_state(state.clone(), super::auth::authenticate))
}

/// The middleware's state: the node's limiter and how the surface it guards renders the 429.
#[derive(Clone)]
pub struct Limit {
    pub limiter: Arc<RateLimiter>,
    pub render: Render,
}

/// The middleware: a refused request is answered by the surface's renderer and never runs.
pub async fn limit(State(l): State<Limit>, req: Request, next: Next) -> Response {
    let limiter = &l.limiter;
    let v = limiter.check(&who(&req), Instant::now());
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
        let state = Limit { limiter: Arc::new(RateLimiter::new(1)), render: plain };
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
        let (a, b) = (Who::Token("a".into()), Who::Addr(IpAddr::from([10, 0, 0, 1])));
        let t0 = Instant::now();
        assert!(rl.check(&a, t0).allowed);
        assert!(rl.check(&a, t0).allowed);
        let last = rl.check(&a, t0);
        assert!(last.allowed);
        assert_eq!(last.remaining, 0);
        let refused = rl.check(&a, t0);
        assert!(!refused.allowed);
        assert!(refused.retry_after >= 1);
        // Another caller has its own bucket.
        assert!(rl.check(&b, t0).allowed);
        // A third of a second later one request's worth has refilled.
        assert!(rl.check(&a, t0 + Duration::from_millis(340)).allowed);
        assert!(!rl.check(&a, t0 + Duration::from_millis(340)).allowed);
    }

    #[test]
    fn the_table_stays_bounded_and_never_resets_a_drained_bucket() {
        let rl = RateLimiter::with_capacity(2, 100);
        let t0 = Instant::now();
        let drained = Who::Addr(IpAddr::from([192, 0, 2, 1]));
        assert!(rl.check(&drained, t0).allowed);
        assert!(rl.check(&drained, t0).allowed);
        assert!(!rl.check(&drained, t0).allowed);
        // A flood of new addresses, all within the same instant: none of their buckets has
        // refilled, so none can be swept; the table stops growing and the flood shares the
        // overflow bucket, which soon refuses.
        let mut refused = 0;
        for i in 0..1_000u32 {
            let who = Who::Addr(IpAddr::from(i.to_be_bytes()));
            if !rl.check(&who, t0).allowed {
                refused += 1;
            }
            assert!(rl.len() <= 101, "{} buckets", rl.len());
        }
        assert!(refused > 800, "the overflow bucket must limit the flood: {refused} refused");
        // The drained caller was not handed a fresh bucket by the flood.
        assert!(!rl.check(&drained, t0).allowed);
        // Once buckets refill they are swept, and new callers get their own again.
        let later = t0 + Duration::from_secs(2);
        assert!(rl.check(&Who::Token("new".into()), later).allowed);
        assert!(rl.len() < 100, "refilled buckets were swept: {}", rl.len());
    }
}
