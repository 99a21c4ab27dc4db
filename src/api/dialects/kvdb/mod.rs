//! KVdb (seed 002) under `/kvdb`: buckets of text values and counters, each bucket with its own
//! access keys. Creating a bucket needs write permission in a namespace (a Cairn token, or none
//! on an open node) and the bucket lives there; inside `/kvdb/{bucket}/...` only the bucket's
//! own `secret_key` / `write_key` govern access, as the seed says (and see DESIGN.md).
//! Errors are plain text with the seed's status codes.
//!
//! - `bucket.rs`: the replicated bucket record and the guarded write
//! - `manage.rs`: create a bucket, update its policy, delete it with its keys
//! - `keys.rs`: get, set, PATCH counters and delete of one key
//! - `list.rs`: key listing with `prefix`, `regex`, `values`, `format` and Accept negotiation
//!
//! Storage (all through Raft, as ordinary keys): the lookup record `_kvdb`/`{id}` →
//! `{"namespace"}`; in that namespace the policy record `kvdb:{id}` (key hashes, never keys)
//! and the data keys `kvdb:{id}:{key}`.

mod bucket;
mod keys;
mod list;
mod manage;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post, MethodRouter};
use axum::Router;

use super::shared::{dialect_status, text, with_retry_after};
use crate::api::auth::{self, Caller, Principal};
use crate::api::error::ApiError;
use crate::api::exec::Blocked;
use crate::api::state::AppState;
use crate::model::command::{perm, Refusal};
use bucket::Bucket;

type Res<T> = Result<T, ApiError>;

/// Keys are at most 128 bytes; values at most 16 KB.
const MAX_KEY_BYTES: usize = 128;
const MAX_VALUE_BYTES: usize = 16 * 1024;

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

/// KVdb answers errors as plain text with the seed's status codes.
fn error(e: ApiError) -> Response {
    with_retry_after(text(dialect_status(&e), format!("{}\n", e.message)), &e)
}

fn blocked(b: Blocked) -> Response {
    match b {
        Blocked::Forwarded(r) => r,
        Blocked::Failed(e) => error(e),
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request("bad_request", msg)
}

fn forbidden(msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", msg)
}

fn not_found(msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", msg)
}

async fn method_not_allowed() -> Response {
    error(ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "Method Not Allowed"))
}

/// A refused write, in KVdb's codes: counters on non-numbers and overflows are bad requests.
fn refused(r: Refusal) -> ApiError {
    match r {
        Refusal::NotFound => not_found("key not found"),
        Refusal::NotANumber => bad("the stored value is not a number"),
        Refusal::Overflow => bad("the counter would overflow a 64-bit integer"),
        Refusal::QuotaExceeded => forbidden("the namespace already holds its maximum number of keys"),
        other => ApiError::refused(other, false),
    }
}

/// What a request's key allows in one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Access {
    /// No key, or none needed: read keys; write and list when the bucket leaves them open.
    Public,
    /// The bucket's `write_key`.
    Write,
    /// The bucket's `secret_key`, or a Cairn operator (see [`BucketKey`]).
    Full,
}

/// The key a KVdb request presents (HTTP Basic user name, `?key=`, Bearer or `x-token`) and,
/// when it is also a Cairn credential, who that is. The bootstrap admin token and tokens with
/// the `admin` permission on a bucket's namespace act as that bucket's secret key, so an
/// operator can manage a bucket whose keys were lost.
pub struct BucketKey {
    key: Option<String>,
    caller: Option<Caller>,
}

impl FromRequestParts<AppState> for BucketKey {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        let key = auth::credential(parts);
        let caller = match key {
            Some(_) => Caller::from_request_parts(parts, st).await.ok(),
            None => None,
        };
        Ok(BucketKey { key, caller })
    }
}

/// Compares without an early exit, so timing does not reveal how much of a hash matched.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl BucketKey {
    fn operator(&self, ns: &str) -> bool {
        let Some(c) = self.caller.as_ref() else { return false };
        match c.principal {
            Principal::Admin => true,
            Principal::Token { .. } => c.namespace_for(Some(ns), perm::ADMIN).is_ok(),
            // Anyone may be anonymous; only the bucket's own keys protect it then.
            Principal::Anonymous => false,
        }
    }

    /// 401 when a key is given that the bucket does not know ("Your API key is wrong"). A key
    /// sent to a bucket that has none is ignored.
    fn access(&self, b: &Bucket) -> Res<Access> {
        let Some(key) = &self.key else { return Ok(Access::Public) };
        let hash = bucket::key_hash(key);
        let matches = |h: &Option<String>| h.as_deref().is_some_and(|h| same(h, &hash));
        if matches(&b.meta.secret_key_sha256) || self.operator(&b.ns) {
            Ok(Access::Full)
        } else if matches(&b.meta.write_key_sha256) {
            Ok(Access::Write)
        } else if b.meta.secret_key_sha256.is_none() && b.meta.write_key_sha256.is_none() {
            Ok(Access::Public)
        } else {
            Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "the key is wrong for this bucket"))
        }
    }

    /// Writing keys: the write key (or secret key) when the bucket has a write key.
    fn may_write(&self, b: &Bucket) -> Res<()> {
        let a = self.access(b)?;
        if b.meta.write_key_sha256.is_some() && a < Access::Write {
            return Err(forbidden("the bucket is write-protected: give its write_key or secret_key"));
        }
        Ok(())
    }

    /// Listing keys: the secret key when the bucket has one.
    fn may_list(&self, b: &Bucket) -> Res<()> {
        let a = self.access(b)?;
        if b.meta.secret_key_sha256.is_some() && a < Access::Full {
            return Err(forbidden("listing keys needs the bucket's secret_key"));
        }
        Ok(())
    }

    /// Changing the policy: only a bucket with a secret key has a changeable policy.
    fn may_update(&self, b: &Bucket) -> Res<()> {
        if self.access(b)? == Access::Full {
            return Ok(());
        }
        match b.meta.secret_key_sha256 {
            Some(_) => Err(forbidden("updating the bucket policy needs its secret_key")),
            None => Err(forbidden("this bucket has no secret_key, so its policy cannot be changed")),
        }
    }

    /// Deleting the bucket: its strongest key (secret, else write), or nothing if it has none.
    fn may_delete(&self, b: &Bucket) -> Res<()> {
        let a = self.access(b)?;
        let need = match (&b.meta.secret_key_sha256, &b.meta.write_key_sha256) {
            (Some(_), _) => Access::Full,
            (None, Some(_)) => Access::Write,
            (None, None) => Access::Public,
        };
        if a < need {
            return Err(forbidden("deleting the bucket needs its secret_key (or write_key if it has none)"));
        }
        Ok(())
    }
}

/// A KVdb key: 1–128 bytes. Cairn keys are text without control characters, so binary key
/// names are not supported.
fn check_key(key: &str) -> Res<()> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(bad(format!("keys are 1 to {MAX_KEY_BYTES} bytes")));
    }
    if super::shared::has_control(key) {
        return Err(bad("keys must not contain control characters"));
    }
    Ok(())
}

/// `?ttl=` / `default_ttl`: whole seconds, 0 meaning no expiry.
fn parse_ttl(s: &str, what: &str) -> Res<u64> {
    s.trim().parse::<u64>().map_err(|_| bad(format!("{what} must be a whole number of seconds")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bounded_text() {
        assert!(check_key("hits_2018").is_ok());
        assert!(check_key(&"k".repeat(128)).is_ok());
        assert!(check_key(&"k".repeat(129)).is_err());
        assert!(check_key("").is_err());
        assert!(check_key("a\u{0}b").is_err());
    }

    #[test]
    fn routes_do_not_conflict() {
        let _ = routes();
    }
}
