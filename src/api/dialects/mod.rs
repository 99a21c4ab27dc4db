//! Hosted-API dialects: thin adapters that speak the paths, bodies, status codes and error
//! styles of the hosted KV services Cairn replaces, over the same core, namespaces and tokens
//! as the native API. What each seed says and what Cairn does is tabled in docs/dialects.md.
//!
//! - `shared.rs`: helpers every dialect uses (below them; imports none of them)
//! - `saasignal/`: `/infra/kv` (seed 003), JSON with `{"code", "message"}` errors
//! - `kvdb/`: `/kvdb` buckets with their own access keys (seed 002), text
//! - `echovalue.rs`: `/echovalue/kv/{group}/{key}` (seed 004), text
//! - `schema.rs`: the dialects' wire shapes as OpenAPI schemas (below the handlers)
//! - `openapi.rs`: `/openapi/{dialect}.json`, one description per dialect, from the handlers'
//!   annotations
//!
//! The native `/kv/items` API is itself the rocketstack dialect (seeds 000 and 001).
//!
//! Every error a dialect answers goes through that dialect's one renderer (`error`), in its
//! own style: handlers take every extractor as a `Result`, so a malformed path, an unknown
//! token or an oversized body is rendered there; a forwarding failure (503 `no_leader`, 504
//! `unknown_outcome`) comes back to the handler as an error; and each dialect mounts the rate
//! limiter with its renderer, so its 429 is in its style too.

mod echovalue;
mod kvdb;
mod openapi;
mod saasignal;
mod schema;
mod shared;

use std::sync::Arc;

use axum::Router;

use crate::api::auth::{credentials_first, CredentialsFirst};
use crate::api::error::Render;
use crate::api::ratelimit::{self, RateLimiter};
use crate::api::state::AppState;
pub use openapi::{echovalue_json, kvdb_json, saasignal_json};

/// Dialects' background work for as long as the node runs: finishing KVdb bucket deletions.
pub async fn background(st: AppState) {
    kvdb::resume_sweeps(st).await
}

/// Every dialect's routes, each behind the node's rate limiter answering in its style.
/// saasignal and echovalue authenticate with a token, KVdb with a bucket's own keys; both are
/// checked from the headers before any body is read (`auth::credentials_first`,
/// `kvdb::keys_first`).
pub fn routes(state: &AppState, limiter: Option<Arc<RateLimiter>>) -> Router<AppState> {
    let limited =
        |routes: Router<AppState>, render: Render| ratelimit::limited(routes, state, limiter.as_ref(), render);
    let token_first = |routes: Router<AppState>, render: Render| {
        let checked = CredentialsFirst { state: state.clone(), render };
        limited(routes.layer(axum::middleware::from_fn_with_state(checked, credentials_first)), render)
    };
    Router::new()
        .merge(token_first(saasignal::routes(), saasignal::error))
        .merge(limited(
            kvdb::routes().layer(axum::middleware::from_fn_with_state(state.clone(), kvdb::keys_first)),
            kvdb::error,
        ))
        .merge(token_first(echovalue::routes(), echovalue::error))
}
