//! What saasignal's handlers share: its error rendering (the one place a saasignal error
//! becomes a response), its key, TTL and value rules, and the item body. Below the handlers
//! (`keys.rs`, `batch.rs`); imports neither.

use std::collections::HashMap;

use axum::extract::rejection::PathRejection;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::api::code::Code;
pub use crate::api::dialects::shared::QueryMap;
use crate::api::dialects::shared::{clamp_ttl_ms, dialect_status, query_params};
use crate::api::error::{with_retry_after, ApiError};
use crate::api::state::AppState;
use crate::api::{parse, render};
use crate::model::command::{Condition, Item, Refusal};

const MAX_KEY_CHARS: usize = 512;
/// "value max 256 KB serialized".
const MAX_VALUE_BYTES: usize = 256 * 1024;
/// The seed's `ttl` range: `>0 .. ≤9007199254740991` (JavaScript's largest safe integer).
const MAX_TTL_SECONDS: u64 = 9_007_199_254_740_991;
/// Expiries from this instant on (the year 10000) cannot be written as RFC 3339.
const RFC3339_LIMIT_MS: u64 = 253_402_300_800_000;

pub type Res<T> = Result<T, ApiError>;

pub fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::new(Code::BadRequest, msg)
}

/// saasignal's error body: flat `{"code", "message"}`, plus `index` for a batch op.
#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<usize>,
}

/// Renders every saasignal error, including the forwarder's 503/504 and the limiter's 429.
pub fn error(e: ApiError) -> Response {
    let body = ErrorBody { code: code_of(e.code), message: &e.message, index: e.index };
    with_retry_after((dialect_status(&e), Json(body)).into_response(), &e)
}

/// saasignal's documented codes. Where the seed has none (406, 503, 504, 507), Cairn's own code
/// says what happened; the key quota keeps its code so clients can tell it from a permission,
/// and an unknown field keeps its code so a client can tell a misspelling from a bad value.
fn code_of(code: Code) -> &'static str {
    use Code::*;
    match code {
        InvalidKey
        | InvalidJson
        | InvalidTtl
        | InvalidVersion
        | InvalidDelta
        | InvalidQuery
        | InvalidCursor
        | InvalidLimit
        | InvalidBatch
        | InvalidOp
        | InvalidNamespace
        | InvalidPermissions
        | ConflictingConditions
        | InvalidPrecondition
        | InvalidId
        | InvalidAddr
        | InvalidBody
        | BadRequest
        | Malformed
        | ValueTooLarge => "bad_request",
        Unauthorized => "unauthorized",
        QuotaExceeded => "quota_exceeded",
        UnknownField => "unknown_field",
        Forbidden | PeerCertificateRequired => "forbidden",
        NotFound | NoRoute | LeaseNotFound => "not_found",
        MethodNotAllowed => "method_not_allowed",
        KeyExists | VersionMismatch | ValueMismatch | NotANumber | Overflow | OutOfRange | MembershipConflict
        | Conflict | BatchOpNotFound | PreconditionFailed | Fenced | LockHeld | NotElected => "conflict",
        RateLimited => "rate_limited",
        Internal | StorageError | NoEntropy => "internal_error",
        NotAcceptable | NoLeader | NotCaughtUp | NotReady | RaftStopped | SnapshotTimeout | Busy | UnknownOutcome
        | RequestTimeout | TooManyConnections | Starting | LeaderUnreachable | InsufficientStorage | Compacted
        | TooManyWatchers | WatchersFull => code.as_str(),
    }
}

pub async fn method_not_allowed() -> Response {
    error(ApiError::new(Code::MethodNotAllowed, "method not allowed on this route"))
}

pub async fn no_route() -> Response {
    error(ApiError::new(Code::NotFound, "no such route"))
}

/// A refused write in saasignal's terms: every refusal of a condition or a counter is 409.
pub fn refused(r: Refusal) -> ApiError {
    match r {
        Refusal::KeyExists => ApiError::new(Code::Conflict, "Key already exists"),
        Refusal::NotFound => ApiError::new(Code::NotFound, "Key not found"),
        Refusal::NotANumber => ApiError::new(Code::Conflict, "the stored value is not a number"),
        Refusal::Overflow => ApiError::new(Code::Conflict, "the increment overflows a 64-bit integer"),
        Refusal::OutOfRange => ApiError::new(Code::Conflict, "the stored integer is outside the 64-bit range"),
        other => ApiError::refused(other, false),
    }
}

/// The seed's key rule: 1–512 characters matching `^(?!.*\.\.)[^\x00-\x1f\x7f]+$`. Prefixes
/// follow the same rule but may be empty.
pub fn check_key(key: &str, what: &str, allow_empty: bool) -> Res<()> {
    let n = key.chars().count();
    if (n == 0 && !allow_empty) || n > MAX_KEY_CHARS {
        let min = if allow_empty { 0 } else { 1 };
        return Err(bad(format!("{what} must be {min}-{MAX_KEY_CHARS} characters")));
    }
    if key.chars().any(|c| c < ' ' || c == '\x7f') {
        return Err(bad(format!("{what} must not contain control characters")));
    }
    if key.contains("..") {
        return Err(bad(format!("{what} must not contain `..`")));
    }
    Ok(())
}

pub fn key_of(path: Result<Path<String>, PathRejection>) -> Res<String> {
    let Path(key) = path.map_err(|e| bad(format!("bad key: {}", e.body_text())))?;
    check_key(&key, "key", false)?;
    Ok(key)
}

/// The query parameters, refusing any outside `known`: see `shared::query_params`.
pub fn query_of(q: QueryMap, known: &[&str]) -> Res<HashMap<String, String>> {
    query_params(q, known, bad)
}

/// `ttl` seconds → milliseconds; without one, the node's default TTL (if configured).
pub fn ttl_of(st: &AppState, v: Option<&Value>) -> Res<Option<u64>> {
    match v {
        None | Some(Value::Null) => Ok(st.node.config.quotas.default_ttl_seconds.map(|s| s * 1000)),
        // `3427.0` is the integer 3427, as JSON Schema's `integer` (and JavaScript) has it.
        Some(v) => match parse::integral(v) {
            Some(s) if (1..=MAX_TTL_SECONDS).contains(&s) => Ok(Some(clamp_ttl_ms(s))),
            _ => Err(bad(format!("ttl must be an integer number of seconds from 1 to {MAX_TTL_SECONDS}"))),
        },
    }
}

pub fn if_not_exists(v: Option<&Value>) -> Res<Condition> {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(Condition::None),
        Some(Value::Bool(true)) => Ok(Condition::IfAbsent),
        Some(_) => Err(bad("if_not_exists must be a boolean")),
    }
}

pub fn value_text(st: &AppState, v: &Value) -> Res<String> {
    let text = v.to_string();
    let max = MAX_VALUE_BYTES.min(st.node.config.quotas.max_value_bytes);
    if text.len() > max {
        return Err(bad(format!("values are at most {max} bytes serialized")));
    }
    Ok(text)
}

/// `expires_at`: RFC 3339, or `null` without a TTL (or one past the year 9999).
pub fn expires_at(at: Option<u64>) -> Option<String> {
    at.filter(|ms| *ms < RFC3339_LIMIT_MS).map(render::rfc3339)
}

/// An item as saasignal shows it: `{key, value, expires_at}`, after `status` when given.
#[derive(Serialize)]
pub struct ItemBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
    key: &'a str,
    value: &'a RawValue,
    expires_at: Option<String>,
}

impl<'a> ItemBody<'a> {
    pub fn new(item: &'a Item, status: Option<&'static str>) -> Res<Self> {
        Ok(ItemBody {
            status,
            key: &item.key,
            value: render::raw(&item.value)?,
            expires_at: expires_at(item.expires_at),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{header, StatusCode};

    #[test]
    fn keys_follow_the_seed_pattern() {
        assert!(check_key("session:u_123", "key", false).is_ok());
        assert!(check_key(&"é".repeat(512), "key", false).is_ok(), "512 characters, not bytes");
        assert!(check_key(&"a".repeat(513), "key", false).is_err());
        assert!(check_key("", "key", false).is_err());
        assert!(check_key("", "prefix", true).is_ok());
        assert!(check_key("a..b", "key", false).is_err());
        assert!(check_key("a.b.c", "key", false).is_ok());
        assert!(check_key("a\x7fb", "key", false).is_err());
        assert!(check_key("a\nb", "key", false).is_err());
    }

    async fn rendered(e: ApiError) -> (StatusCode, Option<String>, Value) {
        let resp = error(e);
        let retry = resp.headers().get(header::RETRY_AFTER).map(|v| v.to_str().unwrap().to_string());
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (status, retry, serde_json::from_slice(&bytes).unwrap())
    }

    /// The flat shape, never the native `{"error": {...}}` one.
    #[tokio::test]
    async fn rate_limits_and_unavailability_are_flat_saasignal_errors() {
        let (s, retry, body) = rendered(ApiError::rate_limited(2)).await;
        assert_eq!((s, retry.as_deref()), (StatusCode::TOO_MANY_REQUESTS, Some("2")));
        assert_eq!(body, serde_json::json!({"code": "rate_limited", "message": "too many requests; slow down"}));
        let (s, retry, body) = rendered(ApiError::no_leader("no leader is known")).await;
        assert_eq!((s, retry.as_deref()), (StatusCode::SERVICE_UNAVAILABLE, Some("1")));
        assert_eq!(body, serde_json::json!({"code": "no_leader", "message": "no leader is known"}));
        let (s, retry, body) = rendered(ApiError::unknown_outcome("the leader did not answer")).await;
        assert_eq!((s, retry), (StatusCode::GATEWAY_TIMEOUT, None));
        assert_eq!(body, serde_json::json!({"code": "unknown_outcome", "message": "the leader did not answer"}));
    }

    #[tokio::test]
    async fn codes_follow_the_seed() {
        let (s, _, body) = rendered(ApiError::new(Code::ValueTooLarge, "big")).await;
        assert_eq!((s, &body["code"]), (StatusCode::BAD_REQUEST, &Value::from("bad_request")));
        let (s, _, body) = rendered(ApiError::refused(Refusal::QuotaExceeded, false)).await;
        assert_eq!((s, &body["code"]), (StatusCode::FORBIDDEN, &Value::from("quota_exceeded")));
        let (s, _, body) = rendered(refused(Refusal::KeyExists).for_op(4)).await;
        assert_eq!(
            (s, &body["code"], &body["index"]),
            (StatusCode::CONFLICT, &Value::from("conflict"), &Value::from(4))
        );
        let (s, _, body) = rendered(ApiError::new(Code::UnknownField, "unknown field `ttlSeconds`")).await;
        assert_eq!((s, &body["code"]), (StatusCode::BAD_REQUEST, &Value::from("unknown_field")));
        let (_, _, body) = rendered(ApiError::new(Code::StorageError, "disk")).await;
        assert_eq!(body["code"], "internal_error");
    }
}
