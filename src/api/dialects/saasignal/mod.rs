//! saasignal (seed 003) under `/infra/kv`: JSON values answered as `{key, value, expires_at}`,
//! `ttl` in seconds, `if_not_exists` (409), increments, prefix scans returning
//! `{keys, next_cursor}`, and batches of up to 100 get/set/delete ops that apply atomically.
//! Keys live directly in the caller's namespace, so the native API sees the same keys.
//! Errors are saasignal's flat `{"code", "message"}` with its documented codes.
//! A body field or query parameter a route does not take is refused (400 `unknown_field`).
//!
//! - `common.rs`: the error renderer, key/TTL/value rules and the item body (below the rest)
//! - `keys.rs`: single-key handlers and the scan
//! - `batch.rs`: `POST /infra/kv {ops}`
//! - `mod.rs`: the routes

pub(super) mod batch;
mod common;
pub(super) mod keys;

use axum::routing::{any, get, post};
use axum::Router;

use crate::api::state::AppState;
pub(super) use common::error;
use common::{method_not_allowed, no_route};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/infra/kv", get(keys::scan).post(batch::batch).fallback(method_not_allowed))
        .route("/infra/kv/", get(keys::scan).post(batch::batch).fallback(method_not_allowed))
        .route(
            "/infra/kv/{key}",
            get(keys::get_key).put(keys::put_key).delete(keys::delete_key).fallback(method_not_allowed),
        )
        .route("/infra/kv/{key}/increment", post(keys::increment).fallback(method_not_allowed))
        .route("/infra/{*rest}", any(no_route))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_do_not_conflict() {
        let _ = routes();
    }
}
