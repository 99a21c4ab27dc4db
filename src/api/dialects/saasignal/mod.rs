//! saasignal (seed 003) under `/infra/kv`: JSON values answered as `{key, value, expires_at}`,
//! `ttl` in seconds, `if_not_exists` (409), increments, prefix scans returning
//! `{keys, next_cursor}`, and batches of up to 100 get/set/delete ops that apply atomically.
//! Keys live directly in the caller's namespace, so the native API sees the same keys.
//! Errors are saasignal's flat `{"code", "message"}` with its documented codes.
//!
//! - `mod.rs`: routes, key rules, single-key handlers and the scan
//! - `batch.rs`: `POST /infra/kv {ops}`

mod batch;

use std::collections::HashMap;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use serde_json::{Map, Value};

use super::shared::{clamp_ttl_ms, dialect_status, mark_consistency, with_retry_after};
use crate::api::auth::Caller;
use crate::api::error::ApiError;
use crate::api::exec::{self, Blocked};
use crate::api::forward::Replay;
use crate::api::state::AppState;
use crate::api::{parse, render};
use crate::model::command::{perm, CmdResult, Command, Condition, Item, Refusal};

const MAX_KEY_CHARS: usize = 512;
/// "value max 256 KB serialized".
const MAX_VALUE_BYTES: usize = 256 * 1024;
/// The seed's `ttl` range: `>0 .. ≤9007199254740991` (JavaScript's largest safe integer).
const MAX_TTL_SECONDS: u64 = 9_007_199_254_740_991;
/// Expiries from this instant on (the year 10000) cannot be written as RFC 3339.
const RFC3339_LIMIT_MS: u64 = 253_402_300_800_000;

type Res<T> = Result<T, ApiError>;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/infra/kv", get(scan).post(batch::batch).fallback(method_not_allowed))
        .route("/infra/kv/", get(scan).post(batch::batch).fallback(method_not_allowed))
        .route("/infra/kv/{key}", get(get_key).put(put_key).delete(delete_key).fallback(method_not_allowed))
        .route("/infra/kv/{key}/increment", post(increment).fallback(method_not_allowed))
        .route("/infra/{*rest}", any(no_route))
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request("bad_request", msg)
}

/// Renders an error the saasignal way: `{"code", "message"}`, plus `index` for a batch op.
fn error(e: ApiError) -> Response {
    let status = dialect_status(&e);
    let code = match status.as_u16() {
        _ if e.code == "quota_exceeded" => e.code,
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        409 | 412 => "conflict",
        429 => "rate_limited",
        500 => "internal_error",
        _ => e.code,
    };
    let mut body = Map::new();
    body.insert("code".into(), code.into());
    body.insert("message".into(), e.message.clone().into());
    if let Some(d) = &e.details {
        body.extend(d.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    with_retry_after((status, axum::Json(Value::Object(body))).into_response(), &e)
}

fn blocked(b: Blocked) -> Response {
    match b {
        Blocked::Forwarded(r) => r,
        Blocked::Failed(e) => error(e),
    }
}

async fn method_not_allowed() -> Response {
    error(ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this route"))
}

async fn no_route() -> Response {
    error(ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route"))
}

fn refused(r: Refusal) -> ApiError {
    let (status, code, msg) = match r {
        Refusal::KeyExists => (StatusCode::CONFLICT, "conflict", "Key already exists"),
        Refusal::NotFound => (StatusCode::NOT_FOUND, "not_found", "Key not found"),
        Refusal::NotANumber => (StatusCode::CONFLICT, "conflict", "the stored value is not a number"),
        Refusal::Overflow => (StatusCode::CONFLICT, "conflict", "the increment overflows a 64-bit integer"),
        other => return ApiError::refused(other, false),
    };
    ApiError::new(status, code, msg)
}

/// The seed's key rule: 1–512 characters matching `^(?!.*\.\.)[^\x00-\x1f\x7f]+$`. Prefixes
/// follow the same rule but may be empty.
fn check_key(key: &str, what: &str, allow_empty: bool) -> Res<()> {
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

fn key_of(path: Result<Path<String>, PathRejection>) -> Res<String> {
    let Path(key) = path.map_err(|e| bad(format!("bad key: {}", e.body_text())))?;
    check_key(&key, "key", false)?;
    Ok(key)
}

fn query_of(q: Result<Query<HashMap<String, String>>, QueryRejection>) -> Res<HashMap<String, String>> {
    q.map(|Query(m)| m).map_err(|e| bad(e.body_text()))
}

/// `ttl` seconds → milliseconds; without one, the node's default TTL (if configured).
fn ttl_of(st: &AppState, v: Option<&Value>) -> Res<Option<u64>> {
    match v {
        None | Some(Value::Null) => Ok(st.node.config.quotas.default_ttl_seconds.map(|s| s * 1000)),
        Some(v) => match v.as_u64() {
            Some(s) if (1..=MAX_TTL_SECONDS).contains(&s) => Ok(Some(clamp_ttl_ms(s))),
            _ => Err(bad(format!("ttl must be an integer number of seconds from 1 to {MAX_TTL_SECONDS}"))),
        },
    }
}

fn if_not_exists(v: Option<&Value>) -> Res<Condition> {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(Condition::None),
        Some(Value::Bool(true)) => Ok(Condition::IfAbsent),
        Some(_) => Err(bad("if_not_exists must be a boolean")),
    }
}

fn value_text(st: &AppState, v: &Value) -> Res<String> {
    let text = v.to_string();
    let max = MAX_VALUE_BYTES.min(st.node.config.quotas.max_value_bytes);
    if text.len() > max {
        return Err(bad(format!("values are at most {max} bytes serialized")));
    }
    Ok(text)
}

fn json_text(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn expires_json(at: Option<u64>) -> String {
    match at {
        Some(ms) if ms < RFC3339_LIMIT_MS => json_text(&render::rfc3339(ms)),
        _ => "null".into(),
    }
}

/// `"key":…,"value":…,"expires_at":…` of an item; the stored value is already JSON text.
fn item_fields(item: &Item) -> String {
    format!(r#""key":{},"value":{},"expires_at":{}"#, json_text(&item.key), item.value, expires_json(item.expires_at))
}

fn json(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Renders the result of a single-key write with `render` for the item case.
fn write_result(r: Result<(u64, CmdResult), Blocked>, render: impl FnOnce(CmdResult) -> Option<String>) -> Response {
    match r {
        Ok((_, CmdResult::Refused(refusal))) => error(refused(refusal)),
        Ok((_, result)) => {
            let shown = format!("{result:?}");
            render(result).map(json).unwrap_or_else(|| error(ApiError::internal(format!("unexpected {shown}"))))
        }
        Err(b) => blocked(b),
    }
}

/// `GET /infra/kv/{key}` → `{key, value, expires_at}`.
async fn get_key(
    State(st): State<AppState>,
    caller: Res<Caller>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    replay: Res<Replay>,
) -> Response {
    let parsed = (|| -> Res<_> {
        let ns = caller?.namespace(perm::READ)?;
        let key = key_of(path)?;
        let strong = exec::is_strong(&st, query_of(query)?.get("consistency").map(String::as_str))?;
        Ok((ns, key, strong, replay?))
    })();
    let (ns, key, strong, replay) = match parsed {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    if let Err(b) = exec::before_read(&st, strong, None, replay).await {
        return blocked(b);
    }
    let resp = match st.node.read_local(&ns, &key) {
        Ok(Some(item)) => json(format!("{{{}}}", item_fields(&item))),
        Ok(None) => error(refused(Refusal::NotFound)),
        Err(e) => error(e.into()),
    };
    mark_consistency(resp, strong)
}

/// `PUT /infra/kv/{key}` with `{value, ttl?, if_not_exists?}` → `{key, value, expires_at}`.
async fn put_key(
    State(st): State<AppState>,
    caller: Res<Caller>,
    path: Result<Path<String>, PathRejection>,
    replay: Res<Replay>,
) -> Response {
    let parsed = (|| -> Res<_> {
        let ns = caller?.namespace(perm::WRITE)?;
        let key = key_of(path)?;
        let replay = replay?;
        let obj = parse::json_object(&replay.body, false)?;
        let value = obj.get("value").ok_or_else(|| bad("the body needs a `value` field"))?;
        let value = value_text(&st, value)?;
        let ttl_ms = ttl_of(&st, obj.get("ttl"))?;
        let cond = if_not_exists(obj.get("if_not_exists"))?;
        Ok((Command::Set { ns, key, value, ttl_ms, cond }, replay))
    })();
    let (cmd, replay) = match parsed {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    write_result(exec::write_one(&st, cmd, replay).await, |r| match r {
        CmdResult::Item(item) => Some(format!("{{{}}}", item_fields(&item))),
        _ => None,
    })
}

/// `DELETE /infra/kv/{key}` → `{"status": "ok", "key", "deleted": true}`, 404 if absent.
async fn delete_key(
    State(st): State<AppState>,
    caller: Res<Caller>,
    path: Result<Path<String>, PathRejection>,
    replay: Res<Replay>,
) -> Response {
    let parsed = (|| -> Res<_> {
        let ns = caller?.namespace(perm::WRITE)?;
        Ok((Command::Delete { ns, key: key_of(path)?, cond: Condition::None }, replay?))
    })();
    let (cmd, replay) = match parsed {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    write_result(exec::write_one(&st, cmd, replay).await, |r| match r {
        CmdResult::Deleted { key } => Some(format!(r#"{{"status":"ok","key":{},"deleted":true}}"#, json_text(&key))),
        _ => None,
    })
}

/// `POST /infra/kv/{key}/increment` with `{delta?, ttl?}` → `{"status": "ok", key, value,
/// expires_at}`; `ttl` applies when the increment creates the key.
async fn increment(
    State(st): State<AppState>,
    caller: Res<Caller>,
    path: Result<Path<String>, PathRejection>,
    replay: Res<Replay>,
) -> Response {
    let parsed = (|| -> Res<_> {
        let ns = caller?.namespace(perm::WRITE)?;
        let key = key_of(path)?;
        let replay = replay?;
        let obj = parse::json_object(&replay.body, true)?;
        let delta = parse::delta_of(obj.get("delta"))?;
        let ttl_ms = ttl_of(&st, obj.get("ttl"))?;
        Ok((Command::Increment { ns, key, delta, ttl_ms }, replay))
    })();
    let (cmd, replay) = match parsed {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    write_result(exec::write_one(&st, cmd, replay).await, |r| match r {
        CmdResult::Item(item) => Some(format!(r#"{{"status":"ok",{}}}"#, item_fields(&item))),
        _ => None,
    })
}

/// `GET /infra/kv?prefix&cursor&limit` → `{"status": "ok", "keys": [...], "next_cursor"}`.
async fn scan(
    State(st): State<AppState>,
    caller: Res<Caller>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    replay: Res<Replay>,
) -> Response {
    let parsed = (|| -> Res<_> {
        let ns = caller?.namespace(perm::READ)?;
        let q = query_of(query)?;
        let prefix = q.get("prefix").cloned().unwrap_or_default();
        check_key(&prefix, "prefix", true)?;
        let after = q.get("cursor").filter(|c| !c.is_empty()).map(|c| parse::decode_cursor(c)).transpose()?;
        let limit = parse::scan_limit(q.get("limit"))?;
        let strong = exec::is_strong(&st, q.get("consistency").map(String::as_str))?;
        Ok((ns, prefix, after, limit, strong, replay?))
    })();
    let (ns, prefix, after, limit, strong, replay) = match parsed {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    if let Err(b) = exec::before_read(&st, strong, None, replay).await {
        return blocked(b);
    }
    let (items, more) = match st.node.scan_local(&ns, &prefix, after.as_deref(), limit) {
        Ok(r) => r,
        Err(e) => return error(e.into()),
    };
    let next = match items.last() {
        Some(last) if more => json_text(&parse::encode_cursor(&last.key)),
        _ => "null".into(),
    };
    let keys: Vec<String> = items.iter().map(|i| json_text(&i.key)).collect();
    let body = format!(r#"{{"status":"ok","keys":[{}],"next_cursor":{next}}}"#, keys.join(","));
    mark_consistency(json(body), strong)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn routes_do_not_conflict() {
        let _ = routes();
    }
}
