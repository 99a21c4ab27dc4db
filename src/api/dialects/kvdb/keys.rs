//! One key of a bucket: `GET` returns the value as text, `PUT`/`POST` store a text value
//! (`?ttl=`, else the bucket's `default_ttl`), `PATCH` with `+N`/`-N` counts, `DELETE` removes.
//!
//! Numbers are detected when a value is stored, as the seed says: a body whose canonical JSON
//! number text is exactly the body (`101`, `-3`, `2.5`) is stored as a JSON number, anything
//! else as a JSON string. Either way it reads back byte for byte, and only numbers can be
//! counted.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::access::BucketKey;
use super::bucket::{self, guarded, on_leader, Fail};
use super::common::{bad, check_key, error, not_found, parse_ttl, refused, Res, MAX_VALUE_BYTES};
use crate::api::dialects::shared::{mark_consistency, query_params, text, value_as_text, QueryMap};
use crate::api::error::ApiError;
use crate::api::exec;
use crate::api::forward::Replay;
use crate::api::parse;
use crate::api::state::AppState;
use crate::model::command::{CmdResult, Command, Condition, Number, Refusal};

type KeyPath = Result<Path<(String, String)>, PathRejection>;

fn parse_path(path: KeyPath) -> Res<(String, String)> {
    let Path((id, key)) = path.map_err(|e| bad(format!("bad path: {}", e.body_text())))?;
    check_key(&key)?;
    Ok((id, key))
}

/// `?ttl=`, the only parameter a write takes (besides the credential `key`).
fn query_ttl(q: QueryMap) -> Res<Option<u64>> {
    let q = query_params(q, &["ttl"], bad)?;
    q.get("ttl").map(|t| parse_ttl(t, "ttl")).transpose()
}

/// Body text → the JSON text to store (see the module docs): a plain decimal that fits a
/// 64-bit integer, or one with a fraction that is a finite float, is a JSON number, kept as
/// written (`2.50` stays `2.50`, and counts as 2.5); anything else is a JSON string.
pub fn stored_value(text: &str) -> String {
    if is_kvdb_number(text) {
        return text.to_string();
    }
    serde_json::Value::from(text).to_string()
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?`, in range: KVdb's 64-bit integers and floats, spelled as a
/// JSON number (no `+`, no leading zeros, no exponent, no bare `.5`).
fn is_kvdb_number(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int) || (int.len() > 1 && int.starts_with('0')) || frac.is_some_and(|f| !all_digits(f)) {
        return false;
    }
    match frac {
        None => text.parse::<i64>().is_ok(),
        Some(_) => text.parse::<f64>().is_ok_and(f64::is_finite),
    }
}

/// A PATCH body: `+N` or `-N`, N a 64-bit integer or a finite float.
fn parse_delta(body: &[u8]) -> Res<Number> {
    let t = std::str::from_utf8(body).map_err(|_| bad("PATCH takes +N or -N"))?.trim();
    let digits = t.strip_prefix('+').or_else(|| t.strip_prefix('-')).ok_or_else(|| bad("PATCH takes +N or -N"))?;
    if !digits.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return Err(bad("PATCH takes +N or -N, N a number"));
    }
    if digits.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse::<i64>().map(Number::Int).map_err(|_| bad("the counter delta is out of 64-bit range"));
    }
    match t.parse::<f64>() {
        Ok(f) if f.is_finite() => Ok(Number::Float(f)),
        _ => Err(bad("PATCH takes +N or -N, N a number")),
    }
}

fn failed(f: Fail) -> Response {
    match f {
        Fail::Refused(r) => error(refused(r)),
        Fail::Stop(resp) => resp,
    }
}

/// `GET /kvdb/{bucket}/{key}` → the value as text. Reading needs no key.
#[utoipa::path(get, path = "/kvdb/{bucket}/{key}", tag = "keys", operation_id = "getKey",
    summary = "Read a value as text; no key needed",
    params(crate::api::dialects::schema::KvKeyPath, crate::api::dialects::schema::KvReadQuery),
    responses((status = 200, description = "the value, byte for byte as stored", body = String, content_type = "text/plain"), crate::api::dialects::schema::KvErrors))]
pub async fn get(
    State(st): State<AppState>,
    key: BucketKey,
    path: KeyPath,
    q: QueryMap,
    replay: Res<Replay>,
) -> Response {
    let parsed = (|| -> Res<_> {
        let (id, k) = parse_path(path)?;
        let strong =
            exec::is_strong(&st, query_params(q, &["consistency"], bad)?.get("consistency").map(String::as_str))?;
        Ok((id, k, strong, replay?))
    })();
    let (id, k, strong, replay) = match parsed {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    if let Err(b) = exec::before_read(&st, strong, None, replay).await {
        return b.render(error);
    }
    let found = (|| -> Res<_> {
        let b = bucket::resolve(&st, &id)?.ok_or_else(|| not_found("bucket not found"))?;
        key.access(&b)?;
        st.node.read_local(&b.ns, &b.data_key(&k))?.ok_or_else(|| not_found("key not found"))
    })();
    let resp = match found {
        Ok(item) => text(StatusCode::OK, value_as_text(&item.value)),
        Err(e) => error(e),
    };
    mark_consistency(resp, strong)
}

/// `PUT` or `POST /kvdb/{bucket}/{key}[?ttl=]` with the value as the body.
#[utoipa::path(put, path = "/kvdb/{bucket}/{key}", tag = "keys", operation_id = "setKey",
    summary = "Store a value (a plain decimal is stored as a number); also POST",
    params(crate::api::dialects::schema::KvKeyPath, crate::api::dialects::schema::KvTtlQuery),
    request_body(content = String, content_type = "text/plain", description = "the value: UTF-8, at most 16384 bytes; any content type"),
    responses((status = 200, description = "done; the body is empty", body = String, content_type = "text/plain"), crate::api::dialects::schema::KvErrors))]
pub async fn set(
    State(st): State<AppState>,
    key: BucketKey,
    path: KeyPath,
    q: QueryMap,
    replay: Res<Replay>,
) -> Response {
    let parsed = (|| -> Res<_> {
        let (id, k) = parse_path(path)?;
        let ttl = query_ttl(q)?;
        let replay = replay?;
        if replay.body.len() > MAX_VALUE_BYTES {
            return Err(bad(format!("values are at most {MAX_VALUE_BYTES} bytes")));
        }
        let body = std::str::from_utf8(&replay.body).map_err(|_| bad("values must be UTF-8 text"))?;
        let value = parse::within_value_limit(&st, stored_value(body))?;
        Ok((id, k, ttl, value, replay))
    })();
    let (id, k, ttl, value, replay) = match parsed {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    let replay = match on_leader(&st, replay).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let set = |b: &bucket::Bucket| {
        let (ns, key, value) = (b.ns.clone(), b.data_key(&k), value.clone());
        vec![Command::Set { ns, key, value, ttl_ms: b.ttl_ms(ttl), cond: Condition::None }]
    };
    match guarded(&st, &id, &replay, |b| key.may_write(b), set).await {
        Ok(_) => text(StatusCode::OK, ""),
        Err(f) => failed(f),
    }
}

/// `PATCH /kvdb/{bucket}/{key}[?ttl=]` with `+N` / `-N` → the new value. A missing key starts
/// at 0. The increment itself is atomic; because the core's increment keeps an existing key's
/// expiry, a second, version-conditioned write then renews the TTL ("keys not updated expire
/// after default_ttl"). If another write got in between, that write's TTL stands.
#[utoipa::path(patch, path = "/kvdb/{bucket}/{key}", tag = "keys", operation_id = "incrementCounter",
    summary = "Add `+N` or `-N` to a counter; a missing key starts at 0",
    params(crate::api::dialects::schema::KvKeyPath, crate::api::dialects::schema::KvTtlQuery),
    request_body(content = String, content_type = "text/plain", description = "`+N` or `-N`, N a 64-bit integer or a finite decimal"),
    responses((status = 200, description = "the new value", body = String, content_type = "text/plain"), crate::api::dialects::schema::KvErrors))]
pub async fn patch(
    State(st): State<AppState>,
    key: BucketKey,
    path: KeyPath,
    q: QueryMap,
    replay: Res<Replay>,
) -> Response {
    let parsed = (|| -> Res<_> {
        let (id, k) = parse_path(path)?;
        let ttl = query_ttl(q)?;
        let replay = replay?;
        Ok((id, k, ttl, parse_delta(&replay.body)?, replay))
    })();
    let (id, k, ttl, delta, replay) = match parsed {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    let replay = match on_leader(&st, replay).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let count = |b: &bucket::Bucket| {
        let (ns, key) = (b.ns.clone(), b.data_key(&k));
        vec![
            Command::Get { ns: ns.clone(), key: key.clone() },
            Command::Increment { ns, key, delta, ttl_ms: b.ttl_ms(ttl) },
        ]
    };
    let (b, results) = match guarded(&st, &id, &replay, |b| key.may_write(b), count).await {
        Ok(r) => r,
        Err(f) => return failed(f),
    };
    let (existed, item) = match results.as_slice() {
        [before, CmdResult::Item(item)] => (matches!(before, CmdResult::Item(_)), item.clone()),
        other => return error(ApiError::internal(format!("unexpected results {other:?}"))),
    };
    if existed && (b.ttl_ms(ttl).is_some() || item.expires_at.is_some()) {
        let renew = |b: &bucket::Bucket| {
            let (ns, key, value) = (b.ns.clone(), b.data_key(&k), item.value.clone());
            vec![Command::Set { ns, key, value, ttl_ms: b.ttl_ms(ttl), cond: Condition::IfVersion(item.version) }]
        };
        match guarded(&st, &id, &replay, |b| key.may_write(b), renew).await {
            Ok(_) | Err(Fail::Refused(Refusal::VersionMismatch { .. })) => {}
            // The count is applied either way; only the renewal is in doubt.
            Err(_) => tracing::warn!(bucket = %id, "kvdb counter TTL renewal failed"),
        }
    }
    text(StatusCode::OK, item.value)
}

/// `DELETE /kvdb/{bucket}/{key}`; 404 if absent.
#[utoipa::path(delete, path = "/kvdb/{bucket}/{key}", tag = "keys", operation_id = "deleteKey",
    summary = "Delete a key",
    params(crate::api::dialects::schema::KvKeyPath),
    responses((status = 200, description = "done; the body is empty", body = String, content_type = "text/plain"), crate::api::dialects::schema::KvErrors))]
pub async fn delete(
    State(st): State<AppState>,
    key: BucketKey,
    path: KeyPath,
    q: QueryMap,
    replay: Res<Replay>,
) -> Response {
    let parsed = (|| -> Res<_> {
        let path = parse_path(path)?;
        query_params(q, &[], bad)?;
        Ok((path, replay?))
    })();
    let ((id, k), replay) = match parsed {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    let replay = match on_leader(&st, replay).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let del =
        |b: &bucket::Bucket| vec![Command::Delete { ns: b.ns.clone(), key: b.data_key(&k), cond: Condition::None }];
    match guarded(&st, &id, &replay, |b| key.may_write(b), del).await {
        Ok((_, results)) if matches!(results.first(), Some(CmdResult::Deleted { .. })) => text(StatusCode::OK, ""),
        Ok(_) => error(not_found("key not found")),
        Err(f) => failed(f),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_detected_only_when_they_read_back_unchanged() {
        assert_eq!(stored_value("101"), "101");
        assert_eq!(stored_value("-3"), "-3");
        assert_eq!(stored_value("2.5"), "2.5");
        assert_eq!(stored_value("coconut"), "\"coconut\"");
        assert_eq!(stored_value("007"), "\"007\"");
        assert_eq!(stored_value("+5"), "\"+5\"");
        assert_eq!(stored_value("1.50"), "1.50");
        assert_eq!(stored_value("2.50"), "2.50");
        assert_eq!(stored_value("-0.5"), "-0.5");
        assert_eq!(stored_value(".5"), "\".5\"");
        assert_eq!(stored_value("5."), "\"5.\"");
        assert_eq!(stored_value("1e3"), "\"1e3\"");
        assert_eq!(stored_value("-"), "\"-\"");
        assert_eq!(stored_value("9223372036854775808"), "\"9223372036854775808\"");
        assert_eq!(stored_value("NaN"), "\"NaN\"");
        assert_eq!(stored_value(""), "\"\"");
        for v in ["101", "-3", "2.5", "coconut", "007", "a\nb", "1e400"] {
            assert_eq!(value_as_text(&stored_value(v)), v, "round trip of {v:?}");
        }
    }

    #[test]
    fn patch_bodies_are_signed_numbers() {
        assert_eq!(parse_delta(b"+1").unwrap(), Number::Int(1));
        assert_eq!(parse_delta(b"-1").unwrap(), Number::Int(-1));
        assert_eq!(parse_delta(b" +2.5\n").unwrap(), Number::Float(2.5));
        assert_eq!(parse_delta(b"-9223372036854775808").unwrap(), Number::Int(i64::MIN));
        for bad in [&b"1"[..], b"+", b"+-1", b"+abc", b"+inf", b"+9223372036854775808", b"", b"\xff"] {
            assert!(parse_delta(bad).is_err(), "{bad:?}");
        }
    }
}
