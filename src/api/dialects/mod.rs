//! Hosted-API dialects: thin adapters that speak the paths, bodies, status codes and error
//! styles of the hosted KV services Cairn replaces, over the same core, namespaces and tokens
//! as the native API. What each seed says and what Cairn does is tabled in docs/dialects.md.
//!
//! - `shared.rs`: helpers every dialect uses (below them; imports none of them)
//! - `saasignal/`: `/infra/kv` (seed 003), JSON with `{"code", "message"}` errors
//! - `kvdb/`: `/kvdb` buckets with their own access keys (seed 002), text
//! - `echovalue.rs`: `/echovalue/kv/{group}/{key}` (seed 004), text
//!
//! The native `/kv/items` API is itself the rocketstack dialect (seeds 000 and 001).
//!
//! Handlers take every extractor as a `Result`, so a malformed path, an unknown token or an
//! oversized body is answered in the dialect's own error style rather than the native one.

mod echovalue;
mod kvdb;
mod saasignal;
mod shared;

use axum::Router;

use crate::api::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().merge(saasignal::routes()).merge(kvdb::routes()).merge(echovalue::routes())
}
