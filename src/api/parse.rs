//! Request parsing and validation shared by the native API, batches, admin routes and the
//! dialects: keys, TTLs, versions, JSON bodies, write conditions, increment deltas, scan
//! cursors and limits. Handlers sit above this module; it never imports one of them.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query};
use axum::http::{header, HeaderMap};
use base64::Engine;
use serde_json::Value;

use super::code::Code;
use super::error::ApiError;
use super::state::AppState;
use crate::model::command::{Condition, Number};

pub const MAX_KEY_BYTES: usize = 512;

pub const MAX_TTL_SECONDS: u64 = 365 * 24 * 3600;

pub const MAX_SCAN_LIMIT: usize = 1000;
/// A scan page stops early once its values pass this many bytes (4 MiB), so a page of 1,000
/// values of up to 1 MiB each is never built whole in memory; its cursor continues it.
pub const PAGE_BYTES: usize = 4 << 20;

const DEFAULT_SCAN_LIMIT: usize = 100;

pub type ApiResult<T> = Result<T, ApiError>;

pub fn validate_key(key: &str) -> ApiResult<()> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(ApiError::new(Code::InvalidKey, format!("keys are 1 to {MAX_KEY_BYTES} bytes")));
    }
    if key.chars().any(char::is_control) {
        return Err(ApiError::new(Code::InvalidKey, "keys must not contain control characters"));
    }
    Ok(())
}

pub fn key_of(path: Result<Path<String>, PathRejection>) -> ApiResult<String> {
    let Path(key) = path.map_err(|e| ApiError::new(Code::InvalidKey, format!("bad key: {e}")))?;
    validate_key(&key)?;
    // Clients and proxies treat `.` and `..` as dot-segments even percent-encoded, so a path
    // naming them would address different keys through different clients (docs/api.md).
    if key == "." || key == ".." {
        return Err(ApiError::new(Code::InvalidKey, "the keys . and .. cannot be addressed in a path"));
    }
    Ok(key)
}

pub fn query_of(q: Result<Query<HashMap<String, String>>, QueryRejection>) -> ApiResult<HashMap<String, String>> {
    q.map(|Query(m)| m).map_err(|e| ApiError::new(Code::InvalidQuery, e.body_text()))
}

/// `ttlSeconds` → milliseconds, falling back to the node's default TTL.
pub fn ttl_ms(st: &AppState, v: Option<&Value>) -> ApiResult<Option<u64>> {
    match v {
        None | Some(Value::Null) => Ok(st.node.config.quotas.default_ttl_seconds.map(|s| s * 1000)),
        Some(v) => match integral(v) {
            Some(s) if (1..=MAX_TTL_SECONDS).contains(&s) => Ok(Some(s * 1000)),
            _ => Err(ApiError::new(
                Code::InvalidTtl,
                format!("ttlSeconds must be an integer from 1 to {MAX_TTL_SECONDS}"),
            )),
        },
    }
}

/// The largest integer a double holds exactly: a JavaScript client's numbers stay exact below it.
const MAX_EXACT_INTEGER: f64 = 9_007_199_254_740_991.0;

/// A JSON number that is a non-negative integer, however it is spelled: `258`, `258.0` and
/// `2.58e2` are the same integer, as JSON Schema's `integer` says (`/openapi.json` describes
/// `ttlSeconds` and a numeric `ifVersion` as integers). A spelling with a fraction or exponent
/// is taken only while a double holds it exactly; so is a plain one, so that every spelling of
/// a number means the same and the description can state one bound.
pub fn integral(v: &Value) -> Option<u64> {
    let n = v.as_number()?;
    if let Some(u) = n.as_u64() {
        return (u <= MAX_EXACT_INTEGER as u64).then_some(u);
    }
    let f = n.as_f64()?;
    (f.fract() == 0.0 && (0.0..=MAX_EXACT_INTEGER).contains(&f)).then_some(f as u64)
}

/// A version or log index as a client writes it: 1 to 19 decimal digits, nothing else (no sign,
/// space or quotes), which is exactly what `/openapi.json` states, so a value the description
/// allows is never refused and one it forbids never accepted. 19 digits keep every such value
/// inside a u64.
pub fn parse_version(s: &str) -> ApiResult<u64> {
    let digits = !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit());
    match digits.then(|| s.parse().ok()).flatten() {
        Some(v) => Ok(v),
        None => Err(ApiError::new(Code::InvalidVersion, format!("`{s}` is not a version (1 to 19 digits)"))),
    }
}

/// `500ms`, `30s` or `30` (seconds): a wait. `None` when it is not one of those spellings.
pub fn duration(v: &str) -> Option<Duration> {
    let (n, unit) = match v.strip_suffix("ms") {
        Some(ms) => (ms, Duration::from_millis(1)),
        None => (v.strip_suffix('s').unwrap_or(v), Duration::from_secs(1)),
    };
    let digits = !n.is_empty() && n.len() <= 9 && n.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| n.parse::<u32>().ok()).flatten().map(|n| unit * n)
}

/// A lease id in a path or a body: 1 to 19 digits (or, in a body, a JSON integer).
pub fn lease_id(v: &Value) -> ApiResult<u64> {
    let bad = || ApiError::new(Code::InvalidId, "lease: a lease id, a string of 1 to 19 digits");
    match v {
        Value::String(s) => parse_version(s).map_err(|_| bad()),
        Value::Number(_) => integral(v).ok_or_else(bad),
        _ => Err(bad()),
    }
}

pub fn json_object(body: &[u8], allow_empty: bool) -> ApiResult<serde_json::Map<String, Value>> {
    if allow_empty && body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::new(Code::InvalidJson, "the body must be a JSON object")),
        Err(e) => Err(ApiError::new(Code::InvalidJson, format!("the body is not JSON: {e}"))),
    }
}

/// A JSON value as canonical text, within the node's value size limit.
pub fn value_text(st: &AppState, v: &Value) -> ApiResult<String> {
    within_value_limit(st, v.to_string())
}

/// A stored value's JSON text, refused when over `--max-value-bytes`: every write path goes
/// through this (or a dialect's stricter limit), so no surface stores more than the node allows.
pub fn within_value_limit(st: &AppState, text: String) -> ApiResult<String> {
    let max = st.node.config.quotas.max_value_bytes;
    if text.len() > max {
        return Err(ApiError::new(Code::ValueTooLarge, format!("values are at most {max} bytes of JSON")));
    }
    Ok(text)
}

/// Collects the write condition from body fields and HTTP precondition headers. At most one
/// may be given. Returns the condition and whether it came from a header (→ 412 on refusal).
pub fn condition(body: &serde_json::Map<String, Value>, headers: &HeaderMap) -> ApiResult<(Condition, bool)> {
    let mut found: Vec<(Condition, bool)> = Vec::new();
    match body.get("ifNotExists") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => {}
        Some(Value::Bool(true)) => found.push((Condition::IfAbsent, false)),
        Some(_) => return Err(ApiError::new(Code::InvalidJson, "ifNotExists must be a boolean")),
    }
    match body.get("ifVersion") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => found.push((Condition::IfVersion(parse_version(s)?), false)),
        Some(v @ Value::Number(_)) => match integral(v) {
            Some(n) => found.push((Condition::IfVersion(n), false)),
            None => return Err(ApiError::new(Code::InvalidVersion, "ifVersion must be a version string")),
        },
        Some(_) => return Err(ApiError::new(Code::InvalidVersion, "ifVersion must be a version string")),
    }
    if let Some(v) = body.get("ifValue") {
        found.push((Condition::IfValue(v.to_string()), false));
    }
    if let Some(v) = body.get("ifFence").filter(|v| !v.is_null()) {
        found.push((fence(v)?, false));
    }
    found.extend(header_condition(headers)?);
    single_condition(found)
}

/// The `ifFence` of a body that takes no other condition (an increment), if it has one.
pub fn fence_only(body: &serde_json::Map<String, Value>) -> ApiResult<Option<Condition>> {
    body.get("ifFence").filter(|v| !v.is_null()).map(fence).transpose()
}

/// `ifFence=<lock>:<token>` in a query (a DELETE has no body): the token is the digits after
/// the last `:`, so a lock name may hold colons.
pub fn fence_param(v: &str) -> ApiResult<Condition> {
    let bad = || ApiError::new(Code::InvalidPrecondition, "ifFence: <lock>:<token>, e.g. ifFence=job:42");
    let (lock, token) = v.rsplit_once(':').ok_or_else(bad)?;
    validate_key(lock)?;
    let token = parse_version(token).map_err(|_| bad())?;
    Ok(Condition::IfFence { lock: lock.to_string(), token })
}

/// `"ifFence": {"lock": "<name>", "token": "<token>"}`: write only while that token holds the
/// lock.
fn fence(v: &Value) -> ApiResult<Condition> {
    let bad = || ApiError::new(Code::InvalidPrecondition, "ifFence: {\"lock\": \"<name>\", \"token\": \"<token>\"}");
    let obj = v.as_object().ok_or_else(bad)?;
    if obj.len() != 2 {
        return Err(bad());
    }
    let lock = obj.get("lock").and_then(Value::as_str).ok_or_else(bad)?;
    validate_key(lock)?;
    let token = obj.get("token").ok_or_else(bad).and_then(|t| lease_id(t).map_err(|_| bad()))?;
    Ok(Condition::IfFence { lock: lock.to_string(), token })
}

pub fn single_condition(mut found: Vec<(Condition, bool)>) -> ApiResult<(Condition, bool)> {
    match found.len() {
        0 => Ok((Condition::None, false)),
        1 => Ok(found.remove(0)),
        _ => Err(ApiError::new(
            Code::ConflictingConditions,
            "give at most one of ifNotExists, ifVersion, ifValue, ifFence, If-Match, If-None-Match",
        )),
    }
}

pub fn header_condition(headers: &HeaderMap) -> ApiResult<Option<(Condition, bool)>> {
    let text = |name: header::HeaderName| -> ApiResult<Option<String>> {
        match headers.get(&name) {
            None => Ok(None),
            Some(v) => v
                .to_str()
                .map(|s| Some(s.trim().to_string()))
                .map_err(|_| ApiError::new(Code::InvalidPrecondition, format!("{name} is not text"))),
        }
    };
    let mut found = Vec::new();
    if let Some(m) = text(header::IF_MATCH)? {
        // An ETag is quoted (`"42"`); a bare version is taken too.
        let v = parse_version(m.strip_prefix('"').and_then(|m| m.strip_suffix('"')).unwrap_or(&m))
            .map_err(|_| ApiError::new(Code::InvalidPrecondition, "If-Match takes one version ETag"))?;
        found.push((Condition::IfVersion(v), true));
    }
    if let Some(m) = text(header::IF_NONE_MATCH)? {
        if m != "*" {
            return Err(ApiError::new(Code::InvalidPrecondition, "If-None-Match supports only *"));
        }
        found.push((Condition::IfAbsent, true));
    }
    // Both at once cannot both hold: refusing beats applying the write under one of them.
    match found.len() {
        2 => Err(ApiError::new(Code::ConflictingConditions, "give at most one of If-Match and If-None-Match")),
        _ => Ok(found.pop()),
    }
}

/// A JSON number as an increment delta.
pub fn delta_of(v: Option<&Value>) -> ApiResult<Number> {
    match v {
        None | Some(Value::Null) => Ok(Number::Int(1)),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(i) => Ok(Number::Int(i)),
            // An integer delta is exact or refused, never rounded to a float.
            None if crate::model::command::is_integer_literal(&n.to_string()) => {
                Err(ApiError::new(Code::InvalidDelta, "an integer delta must fit in 64 signed bits"))
            }
            None => {
                n.as_f64().map(Number::Float).ok_or_else(|| ApiError::new(Code::InvalidDelta, "delta must be a number"))
            }
        },
        Some(_) => Err(ApiError::new(Code::InvalidDelta, "delta must be a number")),
    }
}

/// Cursors are the last key returned, base64url-encoded: opaque to clients, and resuming
/// strictly after a key means every key present for the whole scan is returned exactly once.
pub fn encode_cursor(key: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.as_bytes())
}

/// A cursor is accepted for a scan only if it decodes to a key that scan could have returned:
/// valid key text that starts with the scan's `prefix`. Anything else (a cursor of a scan with
/// an unrelated prefix, or one made up) is 400 `invalid_cursor`, never a silent restart.
pub fn decode_cursor(c: &str, prefix: &str) -> ApiResult<String> {
    let invalid = || ApiError::new(Code::InvalidCursor, "the cursor is not one this scan returned");
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(invalid)?;
    if validate_key(&key).is_err() || !key.starts_with(prefix) {
        return Err(invalid());
    }
    Ok(key)
}

pub fn scan_limit(v: Option<&String>) -> ApiResult<usize> {
    match v {
        None => Ok(DEFAULT_SCAN_LIMIT),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=MAX_SCAN_LIMIT).contains(&n) => Ok(n),
            _ => Err(ApiError::new(Code::InvalidLimit, format!("limit must be 1 to {MAX_SCAN_LIMIT}"))),
        },
    }
}

/// Refuses a body field the route does not know, naming it: a misspelled condition (or the
/// snake_case spelling of another API) would otherwise be dropped and the write applied
/// unconditionally. 400 `unknown_field`.
pub fn known_fields(body: &serde_json::Map<String, Value>, known: &[&str], what: &str) -> ApiResult<()> {
    match body.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(ApiError::new(
            Code::UnknownField,
            format!("unknown field `{k}` in {what} (known: {})", known.join(", ")),
        )),
        None => Ok(()),
    }
}

/// [`known_fields`] for query parameters. `key` is always allowed: it carries a credential
/// (`?key=<token>`, see `auth.rs`).
pub fn known_params(query: &HashMap<String, String>, known: &[&str]) -> ApiResult<()> {
    match query.keys().find(|k| k.as_str() != "key" && !known.contains(&k.as_str())) {
        Some(k) => Err(ApiError::new(
            Code::UnknownField,
            format!(
                "unknown query parameter `{k}` (known here: {})",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            ),
        )),
        None => Ok(()),
    }
}

/// Refuses `If-Match` / `If-None-Match` on a route they mean nothing to (an increment).
pub fn no_precondition_headers(headers: &HeaderMap, what: &str) -> ApiResult<()> {
    for name in [header::IF_MATCH, header::IF_NONE_MATCH] {
        if headers.contains_key(&name) {
            return Err(ApiError::new(Code::InvalidPrecondition, format!("{what} takes no {name} condition")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_integer_is_one_however_it_is_spelled() {
        let n = |t: &str| integral(&serde_json::from_str::<Value>(t).unwrap());
        assert_eq!(n("258"), Some(258));
        assert_eq!(n("258.0"), Some(258));
        assert_eq!(n("2.58e2"), Some(258));
        assert_eq!(n("9007199254740991"), Some(9_007_199_254_740_991));
        assert_eq!(n("9007199254740992"), None);
        assert_eq!(n("258.5"), None);
        assert_eq!(n("-1"), None);
        assert_eq!(n("1e300"), None);
        assert_eq!(n("\"258\""), None);
    }

    #[test]
    fn a_version_is_one_to_nineteen_digits_and_nothing_else() {
        for ok in ["0", "42", "0042", "9999999999999999999"] {
            assert_eq!(parse_version(ok).unwrap(), ok.parse::<u64>().unwrap(), "{ok}");
        }
        for bad in ["", " 5", "5 ", "+5", "-1", "\"5\"", "1e3", "5.0", "10000000000000000000", "x"] {
            assert!(parse_version(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
