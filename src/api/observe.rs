//! Observability at the edge: request ids (accepted from or returned in `X-Request-Id`, and
//! carried by a tracing span), per-route request metrics, `GET /metrics` (Prometheus text)
//! and `GET /ready`.

use std::fmt::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::auth::same_secret;
use super::code::Code;
use super::error::ApiError;
use super::render::Data;
use super::schema;
use super::state::AppState;
use crate::metrics::METRICS;
use crate::model::private;
use crate::protocol::names::{APPLIED, CONSISTENCY, LEADER, NODE};

pub const H_REQUEST_ID: &str = "x-request-id";
/// [`H_REQUEST_ID`] made once, for the per-request lookup and insert (see [`stamp_node`]).
const REQUEST_ID: HeaderName = HeaderName::from_static(H_REQUEST_ID);

/// 16 hex digits: a random start drawn once per process, then a counter stepped by an odd
/// constant, so ids are unique per node (a bijection of the counter) and look unrelated. A
/// `getrandom` call and 8 small strings per request showed up in read profiles.
fn new_request_id() -> String {
    static START: LazyLock<u64> = LazyLock::new(|| {
        let mut b = [0u8; 8];
        if getrandom::getrandom(&mut b).is_err() {
            b = (crate::protocol::now_ms() ^ 0x5eed).to_le_bytes();
        }
        u64::from_le_bytes(b)
    });
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{:016x}", START.wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
}

/// Wraps every request, routed or not: a span with its id, the request id and who answered
/// ([`stamp_node`]) on the response, and for a matched route its request metrics. One
/// middleware for all of it, because every axum middleware layer costs each request a boxed
/// clone of the service behind it (docs/performance.md).
pub async fn observe(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(new_request_id);
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    // A debug-level span: at the default level it is never built. Built at info, it cost about
    // 10 % of a follower's stale reads (the fmt layer formats its fields for every request,
    // docs/performance.md), for the few log lines a request writes. `RUST_LOG` with
    // `cairn::api::observe=debug` turns it on (docs/configuration.md).
    let span = tracing::debug_span!("request", id = %id, method = %req.method(), route = %route);
    let started = Instant::now();
    let mut resp = next.run(req).instrument(span).await;
    if let Some(m) = &matched {
        METRICS.record_request(m.as_str(), resp.status().as_u16(), started.elapsed());
    }
    stamp_node(&st, &mut resp);
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    resp
}

/// Stamps a response with who answered and what it knew. A proxied response already carries
/// the leader's stamp, which is the truthful one, so existing headers are kept.
fn stamp_node(st: &AppState, resp: &mut Response) {
    let h = resp.headers_mut();
    if h.contains_key(NODE) {
        return;
    }
    let (leader, applied) = st.node.leader_and_applied();
    h.insert(NODE, HeaderValue::from(st.node.id));
    h.insert(LEADER, leader.map(HeaderValue::from).unwrap_or(HeaderValue::from_static("none")));
    h.insert(APPLIED, HeaderValue::from(applied));
    if !h.contains_key(CONSISTENCY) {
        // Writes and strong reads are linearizable; stale reads set the header themselves.
        h.insert(CONSISTENCY, HeaderValue::from_static("linearizable"));
    }
}

fn dir_bytes(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else { return 0 };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// `GET /metrics`: Prometheus text format. Open like `/health`, so scrapers need no token;
/// it reveals counts and indexes, never keys or values.
/// How long a measurement of the data dir's size is reused by `/metrics`.
const DISK_MEASURE_EVERY: Duration = Duration::from_secs(10);

/// The data dir's parts (wal, sled, snapshots) in bytes, measured at most every
/// `DISK_MEASURE_EVERY`: a scraper (or anyone, while `/metrics` is open) cannot make the node
/// walk its directories on every request.
fn disk_bytes(st: &AppState) -> [u64; 3] {
    let mut cached = st.disk.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((at, sizes)) = *cached {
        if at.elapsed() < DISK_MEASURE_EVERY {
            return sizes;
        }
    }
    let dir = &st.node.config.data_dir;
    let sizes = [dir_bytes(&dir.join("wal")), dir_bytes(&dir.join("sm")), dir_bytes(&dir.join("snapshots"))];
    *cached = Some((Instant::now(), sizes));
    sizes
}

#[utoipa::path(get, path = "/metrics", tag = "probes", operation_id = "metrics", security(()),
    summary = "Prometheus text; needs `Authorization: Bearer` with `--metrics-token`",
    responses((status = 200, description = "the metrics", content_type = "text/plain", body = String), schema::Errors))]
pub async fn metrics(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let sec = &st.node.config.security;
    if let Some(want) = &sec.metrics_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let ok = given.is_some_and(|g| {
            same_secret(g.as_bytes(), want.as_bytes())
                || sec.admin_token.as_deref().is_some_and(|a| same_secret(g.as_bytes(), a.as_bytes()))
        });
        if !ok {
            return ApiError::new(Code::Unauthorized, "/metrics needs the --metrics-token (or the admin token)")
                .into_response();
        }
    }
    let mut out = String::with_capacity(8192);
    METRICS.render(&mut out);
    let node = &st.node;
    let g = node.gauges();
    let gauge = |out: &mut String, name: &str, v: u64| {
        let _ = writeln!(out, "# TYPE {name} gauge\n{name} {v}");
    };
    gauge(&mut out, "cairn_raft_term", g.term);
    gauge(&mut out, "cairn_raft_is_leader", g.is_leader as u64);
    gauge(&mut out, "cairn_raft_leader_id", g.leader.unwrap_or(0));
    if let Some(ms) = g.quorum_ack_ms {
        gauge(&mut out, "cairn_raft_leader_quorum_ack_age_ms", ms);
    }
    gauge(&mut out, "cairn_raft_last_log_index", g.last_log_index);
    gauge(&mut out, "cairn_raft_applied_index", g.applied_index);
    if let Some(c) = g.commit_index {
        gauge(&mut out, "cairn_raft_commit_index", c);
    }
    gauge(&mut out, "cairn_raft_snapshot_index", g.snapshot_index);
    gauge(&mut out, "cairn_raft_purged_index", g.purged_index);
    out.push_str("# TYPE cairn_raft_replication_lag_entries gauge\n");
    for (peer, lag) in &g.replication_lag {
        let _ = writeln!(out, "cairn_raft_replication_lag_entries{{peer=\"{peer}\"}} {lag}");
    }
    out.push_str("# TYPE cairn_disk_bytes gauge\n");
    for (part, bytes) in ["wal", "sled", "snapshots"].into_iter().zip(disk_bytes(&st)) {
        let _ = writeln!(out, "cairn_disk_bytes{{part=\"{part}\"}} {bytes}");
    }
    out.push_str("# TYPE cairn_keys gauge\n");
    for (ns, n) in node.reader.namespace_counts().unwrap_or_default() {
        // A private namespace (a dialect's own records) is shown as `~name`: no real
        // namespace can contain `~`, and the label stays printable.
        let _ = writeln!(
            out,
            "cairn_keys{{namespace=\"{}\"}} {n}",
            ns.replace(private::MARK, "~").replace(['"', '\\'], "_")
        );
    }
    ([("content-type", "text/plain; version=0.0.4")], out).into_response()
}

#[derive(serde::Serialize)]
struct Ready {
    ready: bool,
}

/// `GET /ready`: 200 only when this node knows a leader and has applied close to what it
/// knows is committed; otherwise 503 with the reason.
#[utoipa::path(get, path = "/ready", tag = "probes", operation_id = "ready", security(()),
    summary = "Readiness: a leader is known, this node is caught up and can reach it",
    responses((status = 200, description = "ready", body = schema::ReadyData), schema::Errors))]
pub async fn ready(State(st): State<AppState>) -> Response {
    let ready = match st.node.readiness() {
        Ok(()) => reach_leader(&st).await,
        Err(reason) => Err(reason),
    };
    match ready {
        Ok(()) => axum::Json(Data { data: Ready { ready: true } }).into_response(),
        Err(reason) => ApiError::new(Code::NotReady, reason).into_response(),
    }
}

/// How long a follower trusts its last check that it can reach the leader.
const LEADER_PROBE_TTL: Duration = Duration::from_secs(5);

/// On a follower: whether it can reach its leader the way it forwards requests (the same
/// client, TLS identity and secret). A follower hears from the leader without ever dialling
/// it, so without this a follower whose own connections are refused (a certificate without
/// client-auth usage, say) looks ready while every write through it fails. Checked at most
/// every [`LEADER_PROBE_TTL`] per leader, with `GET /health`.
async fn reach_leader(st: &AppState) -> Result<(), String> {
    let Some((leader, addr)) = st.node.leader().filter(|(id, _)| *id != st.node.id) else { return Ok(()) };
    let cached = st.leader_probe.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some((_, _, result)) = cached.filter(|(at, id, _)| *id == leader && at.elapsed() < LEADER_PROBE_TTL) {
        return result;
    }
    let url = format!("{}://{addr}/health", st.node.config.peer_scheme());
    let result = match st.forward_http.get(url).timeout(Duration::from_secs(2)).send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("the leader (node {leader} at {addr}) answered /health with {}", r.status())),
        Err(e) => Err(format!("cannot reach the leader (node {leader} at {addr}) to forward requests: {e}")),
    };
    *st.leader_probe.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), leader, result.clone()));
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_unique_hex() {
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| new_request_id()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|id| id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())));
    }
}
