//! KVdb (seed 002) under `/kvdb`: buckets of text values and counters, each bucket with its own
//! access keys. Creating a bucket needs write permission in a namespace (a Cairn token, or none
//! on an open node) and the bucket lives there; inside `/kvdb/{bucket}/...` only the bucket's
//! own `secret_key` / `write_key` govern access, as the seed says (and see DESIGN.md).
//! Errors are plain text with the seed's status codes.
//!
//! - `common.rs`: the error renderer, refusal codes, key and TTL rules (the bottom layer)
//! - `bucket.rs`: the replicated bucket record and the guarded write
//! - `access.rs`: a request's key checked against a bucket's policy
//! - `manage.rs`: create a bucket, update its policy, delete it
//! - `sweep.rs`: removing a deleted bucket's keys, resumed by the next leader if need be
//! - `keys.rs`: get, set, PATCH counters and delete of one key
//! - `list.rs`: key listing with `prefix`, `regex`, `values`, `format` and Accept negotiation
//! - `mod.rs`: the routes
//!
//! Storage, all through Raft and all in the private key space (`model/private.rs`), which no
//! client API can read, write or list: the lookup record `{id}` → `{"namespace"}` in the
//! private namespace `\u{1}kvdb`; in the bucket's namespace the policy record
//! `\u{1}kvdb/{id}` (salted key hashes, never keys; it counts against that namespace's quota)
//! and the data keys `\u{1}kvdb/{id}/{key}`. Buckets made before the private space keep their
//! old, ordinary-key layout (`bucket.rs`, [`bucket::Layout::Legacy`]).

mod access;
mod bucket;
mod common;
pub(super) mod keys;
pub(super) mod list;
pub(super) mod manage;
mod sweep;

use axum::routing::{get, post, MethodRouter};
use axum::Router;

use crate::api::state::AppState;
pub(super) use access::keys_first;
pub(super) use common::error;
use common::method_not_allowed;
pub(crate) use sweep::resume as resume_sweeps;

pub fn routes() -> Router<AppState> {
    let bucket_level = || -> MethodRouter<AppState> {
        get(list::list).post(manage::update).patch(manage::update).delete(manage::delete).fallback(method_not_allowed)
    };
    Router::new()
        .route("/kvdb", post(manage::create).fallback(method_not_allowed))
        .route("/kvdb/", post(manage::create).fallback(method_not_allowed))
        .route("/kvdb/{bucket}", bucket_level())
        .route("/kvdb/{bucket}/", bucket_level())
        .route(
            "/kvdb/{bucket}/{*key}",
            get(keys::get)
                .put(keys::set)
                .post(keys::set)
                .patch(keys::patch)
                .delete(keys::delete)
                .fallback(method_not_allowed),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_do_not_conflict() {
        let _ = routes();
    }
}
