//! `/kv/items`: the native JSON API (the shape of seeds 000/001): single keys, increments and
//! scans. Validates input, builds commands, renders results. Batches are in `batch.rs`.

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{json, Value};

use super::auth::Caller;
use super::error::ApiError;
use super::exec::{self, Blocked};
use super::forward::Replay;
use super::{AppState, H_CONSISTENCY};
use crate::command::{perm, CmdResult, Command, Condition, Item, Number};

pub const MAX_KEY_BYTES: usize = 512;
pub const MAX_TTL_SECONDS: u64 = 365 * 24 * 3600;
pub const MAX_SCAN_LIMIT: usize = 1000;
const DEFAULT_SCAN_LIMIT: usize = 100;

pub type ApiResult<T> = Result<T, ApiError>;

/// Renders a blocked command the native way.
fn blocked(b: Blocked) -> Response {
    match b {
        Blocked::Forwarded(r) => r,
        Blocked::Failed(e) => e.into_response(),
    }
}

pub fn validate_key(key: &str) -> ApiResult<()> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(ApiError::bad_request("invalid_key", format!("keys are 1 to {MAX_KEY_BYTES} bytes")));
    }
    if key.chars().any(char::is_control) {
        return Err(ApiError::bad_request("invalid_key", "keys must not contain control characters"));
    }
    Ok(())
}

fn key_of(path: Result<Path<String>, PathRejection>) -> ApiResult<String> {
    let Path(key) = path.map_err(|e| ApiError::bad_request("invalid_key", format!("bad key: {e}")))?;
    validate_key(&key)?;
    Ok(key)
}

fn query_of(q: Result<Query<HashMap<String, String>>, QueryRejection>) -> ApiResult<HashMap<String, String>> {
    q.map(|Query(m)| m).map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
}

/// `ttlSeconds` → milliseconds, falling back to the node's default TTL.
pub fn ttl_ms(st: &AppState, v: Option<&Value>) -> ApiResult<Option<u64>> {
    match v {
        None | Some(Value::Null) => Ok(st.node.config.quotas.default_ttl_seconds.map(|s| s * 1000)),
        Some(v) => match v.as_u64() {
            Some(s) if (1..=MAX_TTL_SECONDS).contains(&s) => Ok(Some(s * 1000)),
            _ => Err(ApiError::bad_request(
                "invalid_ttl",
                format!("ttlSeconds must be an integer from 1 to {MAX_TTL_SECONDS}"),
            )),
        },
    }
}

pub fn parse_version(s: &str) -> ApiResult<u64> {
    s.trim()
        .trim_matches('"')
        .parse()
        .map_err(|_| ApiError::bad_request("invalid_version", format!("`{s}` is not a version")))
}

pub fn json_object(body: &[u8], allow_empty: bool) -> ApiResult<serde_json::Map<String, Value>> {
    if allow_empty && body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request("invalid_json", "the body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request("invalid_json", format!("the body is not JSON: {e}"))),
    }
}

/// A JSON value as canonical text, within the node's value size limit.
pub fn value_text(st: &AppState, v: &Value) -> ApiResult<String> {
    let text = v.to_string();
    let max = st.node.config.quotas.max_value_bytes;
    if text.len() > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "value_too_large",
            format!("values are at most {max} bytes of JSON"),
        ));
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
        Some(_) => return Err(ApiError::bad_request("invalid_json", "ifNotExists must be a boolean")),
    }
    match body.get("ifVersion") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => found.push((Condition::IfVersion(parse_version(s)?), false)),
        Some(Value::Number(n)) => found.push((Condition::IfVersion(parse_version(&n.to_string())?), false)),
        Some(_) => return Err(ApiError::bad_request("invalid_version", "ifVersion must be a version string")),
    }
    if let Some(v) = body.get("ifValue") {
        found.push((Condition::IfValue(v.to_string()), false));
    }
    found.extend(header_condition(headers)?);
    single_condition(found)
}

fn single_condition(mut found: Vec<(Condition, bool)>) -> ApiResult<(Condition, bool)> {
    match found.len() {
        0 => Ok((Condition::None, false)),
        1 => Ok(found.remove(0)),
        _ => Err(ApiError::bad_request(
            "conflicting_conditions",
            "give at most one of ifNotExists, ifVersion, ifValue, If-Match, If-None-Match",
        )),
    }
}

fn header_condition(headers: &HeaderMap) -> ApiResult<Option<(Condition, bool)>> {
    let text = |name: header::HeaderName| -> ApiResult<Option<String>> {
        match headers.get(&name) {
            None => Ok(None),
            Some(v) => v
                .to_str()
                .map(|s| Some(s.trim().to_string()))
                .map_err(|_| ApiError::bad_request("invalid_precondition", format!("{name} is not text"))),
        }
    };
    if let Some(m) = text(header::IF_MATCH)? {
        let v = parse_version(&m)
            .map_err(|_| ApiError::bad_request("invalid_precondition", "If-Match takes one version ETag"))?;
        return Ok(Some((Condition::IfVersion(v), true)));
    }
    if let Some(m) = text(header::IF_NONE_MATCH)? {
        if m != "*" {
            return Err(ApiError::bad_request("invalid_precondition", "If-None-Match supports only *"));
        }
        return Ok(Some((Condition::IfAbsent, true)));
    }
    Ok(None)
}

pub fn rfc3339(ms: u64) -> String {
    // humantime formats only up to the end of year 9999; later expiries are clamped there.
    const LAST_MS: u64 = 253_402_300_799_999;
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms.min(LAST_MS))).to_string()
}

/// An item as the native `data` object. The stored value is already canonical JSON text, so
/// it is spliced in rather than parsed and re-serialised.
pub fn item_json_text(item: &Item, with_value: bool) -> String {
    let key = serde_json::to_string(&item.key).unwrap_or_else(|_| "\"\"".into());
    let expires = item.expires_at.map(|t| format!("\"{}\"", rfc3339(t))).unwrap_or_else(|| "null".into());
    let value = if with_value { format!(r#","value":{}"#, item.value) } else { String::new() };
    format!(r#"{{"key":{key}{value},"version":"{}","expiresAt":{expires}}}"#, item.version)
}

fn consistency_header(strong: bool) -> HeaderValue {
    HeaderValue::from_static(if strong { "linearizable" } else { "stale" })
}

fn item_response(item: &Item, strong: bool) -> Response {
    let body = format!(r#"{{"data":{}}}"#, item_json_text(item, true));
    let mut resp = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    let h = resp.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", item.version)) {
        h.insert(header::ETAG, etag);
    }
    h.insert(H_CONSISTENCY, consistency_header(strong));
    resp
}

/// Renders a single-key write result.
fn write_response(result: CmdResult, precondition: bool) -> Response {
    match result {
        CmdResult::Item(item) => item_response(&item, true),
        CmdResult::Deleted { key } => axum::Json(json!({"data": {"key": key, "deleted": true}})).into_response(),
        CmdResult::Refused(r) => ApiError::refused(r, precondition).into_response(),
        other => ApiError::internal(format!("unexpected result {other:?}")).into_response(),
    }
}

/// Runs a parsed single-key write (or renders why it could not be parsed).
async fn run_write(st: &AppState, parsed: Result<(Command, bool), ApiError>, replay: Replay) -> Response {
    let (cmd, precondition) = match parsed {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    match exec::write_one(st, cmd, replay).await {
        Ok((_, r)) => write_response(r, precondition),
        Err(b) => blocked(b),
    }
}

pub async fn put_item(
    State(st): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    replay: Replay,
) -> Response {
    let parsed = (|| -> Result<_, ApiError> {
        let ns = caller.namespace(perm::WRITE)?;
        let key = key_of(path)?;
        let obj = json_object(&replay.body, false)?;
        let value = obj
            .get("value")
            .ok_or_else(|| ApiError::bad_request("invalid_json", "the body needs a \"value\" field"))?;
        let value = value_text(&st, value)?;
        let ttl_ms = ttl_ms(&st, obj.get("ttlSeconds"))?;
        let (cond, precondition) = condition(&obj, &replay.headers)?;
        Ok((Command::Set { ns, key, value, ttl_ms, cond }, precondition))
    })();
    run_write(&st, parsed, replay).await
}

pub async fn delete_item(
    State(st): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    replay: Replay,
) -> Response {
    let parsed = (|| -> Result<_, ApiError> {
        let ns = caller.namespace(perm::WRITE)?;
        let key = key_of(path)?;
        let q = query_of(query)?;
        let mut found = Vec::new();
        if let Some(v) = q.get("ifVersion") {
            found.push((Condition::IfVersion(parse_version(v)?), false));
        }
        found.extend(header_condition(&replay.headers)?);
        let (cond, pre) = single_condition(found)?;
        Ok((Command::Delete { ns, key, cond }, pre))
    })();
    run_write(&st, parsed, replay).await
}

/// A JSON number as an increment delta.
pub fn delta_of(v: Option<&Value>) -> ApiResult<Number> {
    match v {
        None | Some(Value::Null) => Ok(Number::Int(1)),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(i) => Ok(Number::Int(i)),
            None => n
                .as_f64()
                .map(Number::Float)
                .ok_or_else(|| ApiError::bad_request("invalid_delta", "delta must be a number")),
        },
        Some(_) => Err(ApiError::bad_request("invalid_delta", "delta must be a number")),
    }
}

pub async fn increment_item(
    State(st): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    replay: Replay,
) -> Response {
    let parsed = (|| -> Result<_, ApiError> {
        let ns = caller.namespace(perm::WRITE)?;
        let key = key_of(path)?;
        let obj = json_object(&replay.body, true)?;
        let delta = delta_of(obj.get("delta"))?;
        let ttl_ms = ttl_ms(&st, obj.get("ttlSeconds"))?;
        Ok((Command::Increment { ns, key, delta, ttl_ms }, false))
    })();
    run_write(&st, parsed, replay).await
}

pub async fn get_item(
    State(st): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    replay: Replay,
) -> Response {
    let parsed = (|| -> Result<_, ApiError> {
        let ns = caller.namespace(perm::READ)?;
        let key = key_of(path)?;
        let q = query_of(query)?;
        let strong = exec::is_strong(&st, q.get("consistency").map(String::as_str))?;
        let min_version = q.get("minVersion").map(|v| parse_version(v)).transpose()?;
        Ok((ns, key, strong, min_version))
    })();
    let (ns, key, strong, min_version) = match parsed {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let strong = match exec::before_read(&st, strong, min_version, replay).await {
        Ok(s) => s,
        Err(b) => return blocked(b),
    };
    match st.node.read_local(&ns, &key) {
        Ok(Some(item)) => item_response(&item, strong),
        Ok(None) => {
            let mut r = ApiError::new(StatusCode::NOT_FOUND, "not_found", "key not found").into_response();
            r.headers_mut().insert(H_CONSISTENCY, consistency_header(strong));
            r
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Cursors are the last key returned, base64url-encoded: opaque to clients, and resuming
/// strictly after a key means every key present for the whole scan is returned exactly once.
pub fn encode_cursor(key: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.as_bytes())
}

pub fn decode_cursor(c: &str) -> ApiResult<String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| ApiError::bad_request("invalid_cursor", "the cursor is not one this API returned"))
}

pub fn scan_limit(v: Option<&String>) -> ApiResult<usize> {
    match v {
        None => Ok(DEFAULT_SCAN_LIMIT),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=MAX_SCAN_LIMIT).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request("invalid_limit", format!("limit must be 1 to {MAX_SCAN_LIMIT}"))),
        },
    }
}

/// `GET /kv/items?prefix=&cursor=&limit=&values=`.
pub async fn scan_items(
    State(st): State<AppState>,
    caller: Caller,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    replay: Replay,
) -> Response {
    let parsed = (|| -> Result<_, ApiError> {
        let ns = caller.namespace(perm::READ)?;
        let q = query_of(query)?;
        let prefix = q.get("prefix").cloned().unwrap_or_default();
        let after = q.get("cursor").filter(|c| !c.is_empty()).map(|c| decode_cursor(c)).transpose()?;
        let limit = scan_limit(q.get("limit"))?;
        let values = match q.get("values").map(String::as_str) {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(_) => return Err(ApiError::bad_request("invalid_query", "values must be true or false")),
        };
        let strong = exec::is_strong(&st, q.get("consistency").map(String::as_str))?;
        Ok((ns, prefix, after, limit, values, strong))
    })();
    let (ns, prefix, after, limit, values, strong) = match parsed {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let strong = match exec::before_read(&st, strong, None, replay).await {
        Ok(s) => s,
        Err(b) => return blocked(b),
    };
    let (items, more) = match st.node.scan_local(&ns, &prefix, after.as_deref(), limit) {
        Ok(r) => r,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let next = if more { items.last().map(|i| format!("\"{}\"", encode_cursor(&i.key))) } else { None };
    let list: Vec<String> = items.iter().map(|i| item_json_text(i, values)).collect();
    let body =
        format!(r#"{{"data":{{"items":[{}],"nextCursor":{}}}}}"#, list.join(","), next.as_deref().unwrap_or("null"));
    let mut resp = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    resp.headers_mut().insert(H_CONSISTENCY, consistency_header(strong));
    resp
}
