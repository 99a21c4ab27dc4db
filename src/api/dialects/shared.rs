//! Helpers every dialect uses: TTL clamping, plain-text answers, status mapping, the
//! consistency header, form bodies. Below the dialects; it imports none of them.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::api::error::ApiError;
use crate::api::parse;
use crate::protocol::names::CONSISTENCY;

/// Longest TTL a dialect stores, about 1000 years. Seed 003 allows TTLs up to 2^53-1 seconds,
/// but an expiry past the year 9999 cannot be written as RFC 3339 (the native API renders
/// every key's `expiresAt`), so longer TTLs are clamped to this.
pub const MAX_DIALECT_TTL_SECONDS: u64 = 1000 * 365 * 24 * 3600;

/// A route's query string as its handler takes it.
pub type QueryMap = Result<Query<HashMap<String, String>>, QueryRejection>;

/// The query parameters, refusing any outside `known` (the credential `key` is always allowed)
/// with 400 `unknown_field`: a misspelled `ttl` must not be ignored. A query string that does
/// not parse is `malformed`, in the dialect's own code.
pub fn query_params(
    q: QueryMap,
    known: &[&str],
    malformed: impl FnOnce(String) -> ApiError,
) -> Result<HashMap<String, String>, ApiError> {
    let Query(q) = q.map_err(|e| malformed(e.body_text()))?;
    parse::known_params(&q, known)?;
    Ok(q)
}

/// Seconds → milliseconds with the dialect clamp applied.
pub fn clamp_ttl_ms(seconds: u64) -> u64 {
    seconds.min(MAX_DIALECT_TTL_SECONDS) * 1000
}

/// A `text/plain` response, as KVdb and echovalue answer.
pub fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body.into()).into_response()
}

/// Marks a read answered from this node's applied state without a leader round trip.
pub fn mark_consistency(mut resp: Response, strong: bool) -> Response {
    let v = if strong { "linearizable" } else { "stale" };
    resp.headers_mut().insert(CONSISTENCY, HeaderValue::from_static(v));
    resp
}

/// Whether `s` contains a character the core never stores in a key (it separates namespace and
/// key with a zero byte, and every surface rejects control characters).
pub fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// A stored JSON value as a text dialect shows it: a JSON string is its contents; anything
/// else (a number, or JSON written through another API) is its JSON text.
pub fn value_as_text(json: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(serde_json::Value::String(s)) => s,
        _ => json.to_string(),
    }
}

/// The status a dialect answers for an error: the seeds document 400 for any invalid request
/// and no 413, so an oversized body (rejected before a handler runs) is a 400 too.
pub fn dialect_status(e: &ApiError) -> StatusCode {
    match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => StatusCode::BAD_REQUEST,
        s => s,
    }
}

/// Decodes an `application/x-www-form-urlencoded` body (`+` is a space, `%XX` a byte).
pub fn form_pairs(body: &[u8]) -> Result<Vec<(String, String)>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the form body is not UTF-8".to_string())?;
    let mut out = Vec::new();
    for part in text.trim().split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        out.push((percent_decode(k)?, percent_decode(v)?));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                out.push(hex.ok_or_else(|| format!("bad percent-escape in `{s}`"))?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("`{s}` does not decode to UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies_decode_like_curl_sends_them() {
        let pairs = form_pairs(b"secret_key=super%20secret&write_key=kn+ock&default_ttl=3600").unwrap();
        assert_eq!(
            pairs,
            vec![
                ("secret_key".into(), "super secret".into()),
                ("write_key".into(), "kn ock".into()),
                ("default_ttl".into(), "3600".into())
            ]
        );
        assert!(form_pairs(b"").unwrap().is_empty());
        assert!(form_pairs(b"a=%zz").is_err());
        assert!(form_pairs(b"a=%+1").is_err());
        assert!(form_pairs(b"a=%C3").is_err());
    }

    #[test]
    fn stored_values_read_back_as_text() {
        assert_eq!(value_as_text("\"hello world\""), "hello world");
        assert_eq!(value_as_text("42"), "42");
        assert_eq!(value_as_text("{\"a\":1}"), "{\"a\":1}");
    }

    #[test]
    fn ttls_are_clamped_below_the_year_9999() {
        assert_eq!(clamp_ttl_ms(30), 30_000);
        assert_eq!(clamp_ttl_ms(u64::MAX / 2), MAX_DIALECT_TTL_SECONDS * 1000);
    }
}
