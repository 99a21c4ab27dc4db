//! `/kv/items/{key}`: the native JSON API (the shape of seeds 000/001). Validates input,
//! builds commands, and renders results; followers forward writes and strong reads.

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::error::ApiError;
use super::forward::{self, Replay};
use super::{AppState, H_CONSISTENCY};
use crate::command::{CmdResult, Command, Condition, Item, Number};
use crate::error::Error;

pub const MAX_KEY_BYTES: usize = 512;
pub const MAX_VALUE_BYTES: usize = 1 << 20;
pub const MAX_TTL_SECONDS: u64 = 365 * 24 * 3600;
/// Longest a `minVersion` read waits for this node to catch up.
const MIN_VERSION_WAIT: Duration = Duration::from_secs(5);

type ApiResult<T> = Result<T, ApiError>;

fn key_of(path: Result<Path<String>, PathRejection>) -> ApiResult<String> {
    let Path(key) = path.map_err(|e| ApiError::bad_request("invalid_key", format!("bad key: {e}")))?;
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(ApiError::bad_request(
            "invalid_key",
            format!("keys are 1 to {MAX_KEY_BYTES} bytes"),
        ));
    }
    if key.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_key",
            "keys must not contain control characters",
        ));
    }
    Ok(key)
}

fn body_of(body: Result<Bytes, BytesRejection>) -> ApiResult<Bytes> {
    body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(e.status(), "value_too_large", "request body too large"),
        s => ApiError::new(s, "invalid_body", e.body_text()),
    })
}

fn query_of(q: Result<Query<HashMap<String, String>>, QueryRejection>) -> ApiResult<HashMap<String, String>> {
    q.map(|Query(m)| m)
        .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
}

fn ttl_ms(v: Option<&Value>) -> ApiResult<Option<u64>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(s) if (1..=MAX_TTL_SECONDS).contains(&s) => Ok(Some(s * 1000)),
            _ => Err(ApiError::bad_request(
                "invalid_ttl",
                format!("ttlSeconds must be an integer from 1 to {MAX_TTL_SECONDS}"),
            )),
        },
    }
}

fn parse_version(s: &str) -> ApiResult<u64> {
    s.trim()
        .trim_matches('"')
        .parse()
        .map_err(|_| ApiError::bad_request("invalid_version", format!("`{s}` is not a version")))
}

fn json_object(body: &[u8], allow_empty: bool) -> ApiResult<serde_json::Map<String, Value>> {
    if allow_empty && body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request("invalid_json", "the body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(
            "invalid_json",
            format!("the body is not JSON: {e}"),
        )),
    }
}

/// Collects the write condition from the body and from HTTP precondition headers. At most one
/// may be given. Returns the condition and whether it came from a header (→ 412 on refusal).
fn condition(body: &serde_json::Map<String, Value>, headers: &HeaderMap) -> ApiResult<(Condition, bool)> {
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
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_version",
                "ifVersion must be a version string",
            ))
        }
    }
    if let Some(v) = body.get("ifValue") {
        found.push((Condition::IfValue(v.to_string()), false));
    }
    found.extend(header_condition(headers)?);
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
            return Err(ApiError::bad_request(
                "invalid_precondition",
                "If-None-Match supports only *",
            ));
        }
        return Ok(Some((Condition::IfAbsent, true)));
    }
    Ok(None)
}

fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Renders an item. The stored value is already canonical JSON text, so it is spliced in
/// rather than parsed and re-serialised.
fn item_response(item: &Item, stale: bool) -> Response {
    let key = serde_json::to_string(&item.key).unwrap_or_else(|_| "\"\"".into());
    let expires = item
        .expires_at
        .map(|t| format!("\"{}\"", rfc3339(t)))
        .unwrap_or_else(|| "null".into());
    let body = format!(
        r#"{{"data":{{"key":{key},"value":{},"version":"{}","expiresAt":{expires}}}}}"#,
        item.value, item.version
    );
    let mut resp = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    let h = resp.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", item.version)) {
        h.insert(header::ETAG, etag);
    }
    h.insert(
        H_CONSISTENCY,
        HeaderValue::from_static(if stale { "stale" } else { "linearizable" }),
    );
    resp
}

/// Runs one write command; on a follower, replays the request at the leader.
async fn write_one(st: &AppState, cmd: Command, precondition: bool, replay: Replay) -> Response {
    match st.node.write(vec![cmd]).await {
        Ok((_, mut results)) if results.len() == 1 => match results.remove(0) {
            CmdResult::Item(item) => item_response(&item, false),
            CmdResult::Deleted { key } => {
                axum::Json(serde_json::json!({"data": {"key": key, "deleted": true}})).into_response()
            }
            CmdResult::Refused(r) => ApiError::refused(r, precondition).into_response(),
            CmdResult::Expired { .. } => {
                ApiError::from(Error::Storage("unexpected expire result".into())).into_response()
            }
        },
        Ok(_) => ApiError::from(Error::Storage("result count mismatch".into())).into_response(),
        Err(Error::NotLeader { .. }) => forward::to_leader(st, replay).await,
        Err(e) => ApiError::from(e).into_response(),
    }
}

pub async fn put_item(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let parsed = (|| {
        let key = key_of(path)?;
        let body = body_of(body)?;
        let obj = json_object(&body, false)?;
        let value = obj
            .get("value")
            .ok_or_else(|| ApiError::bad_request("invalid_json", "the body needs a \"value\" field"))?;
        let value = value.to_string();
        if value.len() > MAX_VALUE_BYTES {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "value_too_large",
                format!("values are at most {MAX_VALUE_BYTES} bytes of JSON"),
            ));
        }
        let ttl_ms = ttl_ms(obj.get("ttlSeconds"))?;
        let (cond, precondition) = condition(&obj, &headers)?;
        Ok((
            Command::Set {
                key,
                value,
                ttl_ms,
                cond,
            },
            precondition,
            body,
        ))
    })();
    match parsed {
        Ok((cmd, pre, body)) => {
            write_one(
                &st,
                cmd,
                pre,
                Replay {
                    method,
                    uri,
                    headers,
                    body,
                },
            )
            .await
        }
        Err(e) => e.into_response(),
    }
}

pub async fn delete_item(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let parsed = (|| {
        let key = key_of(path)?;
        let q = query_of(query)?;
        let mut found = Vec::new();
        if let Some(v) = q.get("ifVersion") {
            found.push((Condition::IfVersion(parse_version(v)?), false));
        }
        found.extend(header_condition(&headers)?);
        let (cond, pre) = match found.len() {
            0 => (Condition::None, false),
            1 => found.remove(0),
            _ => {
                return Err(ApiError::bad_request(
                    "conflicting_conditions",
                    "give either ifVersion or If-Match",
                ))
            }
        };
        Ok((Command::Delete { key, cond }, pre))
    })();
    match parsed {
        Ok((cmd, pre)) => {
            write_one(
                &st,
                cmd,
                pre,
                Replay {
                    method,
                    uri,
                    headers,
                    body: Bytes::new(),
                },
            )
            .await
        }
        Err(e) => e.into_response(),
    }
}

pub async fn increment_item(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let parsed = (|| {
        let key = key_of(path)?;
        let body = body_of(body)?;
        let obj = json_object(&body, true)?;
        let delta = match obj.get("delta") {
            None | Some(Value::Null) => Number::Int(1),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(i) => Number::Int(i),
                None => Number::Float(
                    n.as_f64()
                        .ok_or_else(|| ApiError::bad_request("invalid_delta", "delta must be a number"))?,
                ),
            },
            Some(_) => return Err(ApiError::bad_request("invalid_delta", "delta must be a number")),
        };
        let ttl_ms = ttl_ms(obj.get("ttlSeconds"))?;
        Ok((Command::Increment { key, delta, ttl_ms }, body))
    })();
    match parsed {
        Ok((cmd, body)) => {
            write_one(
                &st,
                cmd,
                false,
                Replay {
                    method,
                    uri,
                    headers,
                    body,
                },
            )
            .await
        }
        Err(e) => e.into_response(),
    }
}

pub async fn get_item(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    match read_item(&st, path, query, method, uri, headers).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn read_item(
    st: &AppState,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let key = key_of(path)?;
    let q = query_of(query)?;
    let strong = match q.get("consistency").map(String::as_str) {
        None => st.node.is_leader(),
        Some("strong") | Some("linearizable") => true,
        Some("stale") => false,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("consistency `{other}` is not strong or stale"),
            ))
        }
    };
    let min_version = q.get("minVersion").map(|v| parse_version(v)).transpose()?;
    if strong {
        match st.node.linearizable_barrier().await {
            Ok(()) => {}
            Err(Error::NotLeader { .. }) => {
                return Ok(forward::to_leader(
                    st,
                    Replay {
                        method,
                        uri,
                        headers,
                        body: Bytes::new(),
                    },
                )
                .await)
            }
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(v) = min_version {
        st.node.wait_applied(v, MIN_VERSION_WAIT).await?;
    }
    match st.node.read_local(&key)? {
        Some(item) => Ok(item_response(&item, !strong)),
        None => {
            let mut r = ApiError::new(StatusCode::NOT_FOUND, "not_found", "key not found").into_response();
            r.headers_mut().insert(
                H_CONSISTENCY,
                HeaderValue::from_static(if strong { "linearizable" } else { "stale" }),
            );
            Ok(r)
        }
    }
}
