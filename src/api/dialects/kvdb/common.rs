//! What KVdb's modules share: its error rendering (the one place a KVdb error becomes a
//! response), its refusal codes, key and TTL rules and size limits. The bottom of `kvdb/`;
//! it imports none of its siblings.

use axum::response::Response;

use crate::api::code::Code;
use crate::api::dialects::shared::{dialect_status, has_control, text};
use crate::api::error::{with_retry_after, ApiError};
use crate::model::command::Refusal;

pub type Res<T> = Result<T, ApiError>;

/// Keys are at most 128 bytes; values at most 16 KB.
pub const MAX_KEY_BYTES: usize = 128;
pub const MAX_VALUE_BYTES: usize = 16 * 1024;

/// Renders every KVdb error, including the forwarder's 503/504 and the limiter's 429: plain
/// text with the seed's status codes.
pub fn error(e: ApiError) -> Response {
    with_retry_after(text(dialect_status(&e), format!("{}\n", e.message)), &e)
}

pub fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::new(Code::BadRequest, msg)
}

pub fn forbidden(msg: impl Into<String>) -> ApiError {
    ApiError::new(Code::Forbidden, msg)
}

pub fn not_found(msg: impl Into<String>) -> ApiError {
    ApiError::new(Code::NotFound, msg)
}

pub async fn method_not_allowed() -> Response {
    error(ApiError::new(Code::MethodNotAllowed, "Method Not Allowed"))
}

/// A refused write, in KVdb's codes: counters on non-numbers and overflows are bad requests.
pub fn refused(r: Refusal) -> ApiError {
    match r {
        Refusal::NotFound => not_found("key not found"),
        Refusal::NotANumber => bad("the stored value is not a number"),
        Refusal::Overflow => bad("the counter would overflow a 64-bit integer"),
        Refusal::OutOfRange => bad("the stored integer is outside the 64-bit range"),
        Refusal::QuotaExceeded => forbidden("the namespace already holds its maximum number of keys"),
        other => ApiError::refused(other, false),
    }
}

/// A KVdb key: 1–128 bytes. Cairn keys are text without control characters, so binary key
/// names are not supported.
pub fn check_key(key: &str) -> Res<()> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(bad(format!("keys are 1 to {MAX_KEY_BYTES} bytes")));
    }
    if has_control(key) {
        return Err(bad("keys must not contain control characters"));
    }
    Ok(())
}

/// `?ttl=` / `default_ttl`: whole seconds, 0 meaning no expiry.
pub fn parse_ttl(s: &str, what: &str) -> Res<u64> {
    s.trim().parse::<u64>().map_err(|_| bad(format!("{what} must be a whole number of seconds")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{header, StatusCode};

    #[test]
    fn keys_are_bounded_text() {
        assert!(check_key("hits_2018").is_ok());
        assert!(check_key(&"k".repeat(128)).is_ok());
        assert!(check_key(&"k".repeat(129)).is_err());
        assert!(check_key("").is_err());
        assert!(check_key("a\u{0}b").is_err());
    }

    async fn rendered(e: ApiError) -> (StatusCode, String, Option<String>, String) {
        let resp = error(e);
        let h = |name| resp.headers().get(name).map(|v: &axum::http::HeaderValue| v.to_str().unwrap().to_string());
        let (ctype, retry) = (h(header::CONTENT_TYPE).unwrap_or_default(), h(header::RETRY_AFTER));
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (status, ctype, retry, String::from_utf8(bytes.to_vec()).unwrap())
    }

    /// Plain text, never the native JSON envelope.
    #[tokio::test]
    async fn rate_limits_and_unavailability_are_plain_text() {
        let cases = [
            (ApiError::rate_limited(3), StatusCode::TOO_MANY_REQUESTS, Some("3")),
            (ApiError::no_leader("no leader is known"), StatusCode::SERVICE_UNAVAILABLE, Some("1")),
            (ApiError::unknown_outcome("the leader did not answer"), StatusCode::GATEWAY_TIMEOUT, None),
        ];
        for (e, status, retry) in cases {
            let message = e.message.clone();
            let (s, ctype, r, body) = rendered(e).await;
            assert_eq!((s, r.as_deref()), (status, retry));
            assert!(ctype.starts_with("text/plain"), "{ctype}");
            assert_eq!(body, format!("{message}\n"));
        }
    }

    #[tokio::test]
    async fn oversized_bodies_are_bad_requests() {
        let (s, _, _, _) = rendered(ApiError::new(Code::ValueTooLarge, "request body too large")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
    }
}
