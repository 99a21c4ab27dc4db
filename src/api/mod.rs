//! The HTTP surface: one axum router per node serving the client API, cluster status and the
//! internal Raft RPCs on one port. Validation happens here, at the edge; the core never
//! imports axum.
//!
//! # Layout
//! Lower modules first; each imports only modules above it in this list.
//! - `code.rs`: every error code, with its wire string and status (the one table)
//! - `error.rs`: [`error::ApiError`], core errors mapped onto codes, the native error envelope
//! - `state.rs`: [`AppState`], what every handler is given
//! - `parse.rs`: request parsing and validation shared by every surface
//! - `render.rs`: stored values as raw JSON, items as native JSON, RFC 3339 times
//! - `schema.rs`: the native wire shapes as OpenAPI schemas (descriptions only)
//! - `describe.rs`: what every OpenAPI description shares (credentials, the namespace header)
//! - `auth.rs`: credentials, tokens, namespaces, permissions
//! - `ratelimit.rs`: per-caller token buckets, mounted per surface with its error renderer
//! - `forward.rs`: one-hop proxy to the leader
//! - `exec.rs`: write/read execution shared by every API surface
//! - `observe.rs`: request ids, request metrics, `/metrics`, `/ready`
//! - `raft_rpc.rs`: `/raft/*` peer RPCs
//! - the surfaces, peers of each other: `kv.rs` (`/kv/items`: keys, increments, scans),
//!   `batch.rs` (`/kv/batch`), `admin.rs` (`/admin/tokens`, `/admin/backup`), `cluster.rs`
//!   (`/cluster/*`, `/health`), `overview.rs` (`/cluster/nodes`: every member's own view),
//!   `watch/` (`/kv/watch`), `dialects/` (the hosted services' API shapes, and their own
//!   descriptions at `/openapi/{dialect}.json`), `console.rs` (`/ui/`: the web console's files)
//! - `openapi.rs`: `/openapi.json`, generated from the surfaces' annotations
//! - `mod.rs`: the router, which mounts them all

mod admin;
mod auth;
mod batch;
mod cluster;
mod code;
mod console;
mod describe;
mod dialects;
mod election;
mod error;
mod exec;
mod forward;
mod kv;
mod lease;
mod lock;
mod observe;
mod openapi;
mod overview;
mod parse;
mod queue;
mod raft_rpc;
mod ratelimit;
mod render;
mod schema;
mod state;
mod watch;
mod watchers;

pub(crate) use dialects::background;
pub(crate) use state::AppState;

use axum::extract::DefaultBodyLimit;
use axum::http::HeaderValue;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};
use axum::Router;

use crate::protocol::H_NODE;
use code::Code;
use error::ApiError;
use ratelimit::RateLimiter;

/// Largest request body accepted: a 1 MiB value plus an equally large `ifValue` and slack.
/// Larger bodies get 413 `value_too_large` (see `kv.rs`).
const BODY_LIMIT: usize = 3 << 20;

/// Largest Raft RPC body: up to `max_payload_entries` (16) entries of at most ~4 MiB each (a
/// batched entry) or one snapshot chunk, with room to spare.
const RAFT_BODY_LIMIT: usize = 512 << 20;

pub fn router(state: AppState) -> Router {
    let per_sec = state.node.config.security.rate_limit_per_sec;
    let limiter = (per_sec > 0).then(|| std::sync::Arc::new(RateLimiter::new(per_sec)));
    let raft = Router::new()
        .route("/raft/append", post(raft_rpc::append))
        .route("/raft/vote", post(raft_rpc::vote))
        .route("/raft/snapshot", post(raft_rpc::snapshot))
        .layer(axum::middleware::from_fn_with_state(state.clone(), raft_rpc::require_cluster_secret))
        .layer(axum::middleware::from_fn_with_state(state.clone(), raft_rpc::require_peer_cert))
        // Peer RPCs carry whole batches of entries and snapshot chunks: they get their own,
        // much larger limit (the inner layer wins over the client-facing one below). Found by
        // a 100 MB snapshot catch-up test: 3 MiB chunks plus framing exceeded the client limit.
        .layer(DefaultBodyLimit::max(RAFT_BODY_LIMIT));
    let native = Router::new()
        .route("/kv/items", get(kv::scan_items))
        .route("/kv/items/{key}", get(kv::get_item).put(kv::put_item).delete(kv::delete_item))
        .route("/kv/items/{key}/increment", post(kv::increment_item))
        .route("/kv/batch", post(batch::batch))
        .route("/kv/watch", get(watch::watch))
        .route("/leases", post(lease::grant).get(lease::list))
        .route("/leases/{id}", get(lease::show).delete(lease::revoke))
        .route("/leases/{id}/keepalive", post(lease::keepalive))
        .route("/locks/{name}", post(lock::acquire).get(lock::show))
        .route("/locks/{name}/{token}", delete(lock::release))
        .route("/elections/{name}/campaign", post(election::campaign))
        .route("/elections/{name}/proclaim", put(election::proclaim))
        .route("/elections/{name}/leader", get(election::leader))
        .route("/elections/{name}/observe", get(election::observe))
        .route("/elections/{name}/resign", delete(election::resign))
        .route("/admin/tokens", post(admin::create).get(admin::list))
        .route("/admin/tokens/{id}", delete(admin::revoke))
        .route("/admin/snapshot", get(admin::snapshot))
        .route("/cluster/status", get(cluster::status))
        .route("/cluster/nodes", get(overview::nodes))
        .route("/cluster/members", post(cluster::add_member))
        .route("/cluster/members/{id}", delete(cluster::remove_member));
    let native = ratelimit::limited(native, &state, limiter.as_ref(), ApiError::into_response);
    // Each dialect mounts the limiter itself, with its own renderer for the 429.
    let data = native.merge(dialects::routes(&state, limiter));
    Router::new()
        .route("/health", get(cluster::health))
        .route("/ready", get(observe::ready))
        .route("/metrics", get(observe::metrics))
        .route("/openapi.json", get(openapi::openapi_json))
        .route("/openapi/saasignal.json", get(dialects::saasignal_json))
        .route("/openapi/echovalue.json", get(dialects::echovalue_json))
        .route("/openapi/kvdb.json", get(dialects::kvdb_json))
        .route("/ui", get(console::root))
        .route("/ui/", get(console::index))
        .route("/ui/{file}", get(console::file))
        .merge(data)
        .merge(raft)
        .fallback(|| async { ApiError::new(Code::NoRoute, "no such route").into_response() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(Code::MethodNotAllowed, "method not allowed on this route").into_response()
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe::observe))
        .with_state(state)
}

/// The router a connection over `--max-connections` is served with: every request gets 503
/// `too_many_connections` with `Retry-After`, and the connection closes after the answer.
pub fn over_capacity(node: u64) -> Router {
    closing_refusal(node, || {
        ApiError::new(Code::TooManyConnections, "this node holds --max-connections connections; retry").retry_after(1)
    })
}

/// What the port answers while the node starts (`server.rs`): 503 `starting` to every request,
/// with `Retry-After`, and the connection closes after the answer, so the client's next
/// attempt reaches the node once it serves. A peer starting at the same time (asking whether
/// this node's id held data, `node/holders.rs`) and a probe get an answer at once, where a
/// port that accepts and never answers would hold them until their timeouts.
pub fn starting(node: u64) -> Router {
    closing_refusal(node, || {
        ApiError::new(
            Code::Starting,
            "this node is starting: it is opening its data and has not joined Raft yet; retry",
        )
        .retry_after(1)
    })
}

/// A router answering every request with `error()` and `Connection: close`.
fn closing_refusal(node: u64, error: fn() -> ApiError) -> Router {
    Router::new().fallback(move || async move {
        let mut resp = error().into_response();
        resp.headers_mut().insert(axum::http::header::CONNECTION, HeaderValue::from_static("close"));
        // Marks a Cairn answer, so a forwarding follower passes it on (`forward.rs`).
        resp.headers_mut().insert(H_NODE, HeaderValue::from(node));
        resp
    })
}
