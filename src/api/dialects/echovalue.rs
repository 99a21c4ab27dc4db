//! echovalue (seed 004) under `/echovalue/kv/{group}/{key}`: text values of at most 1000
//! characters, `POST` to store (`?ttl=` 1 s to 30 days, default 30 days), `GET` to read,
//! `DELETE` to remove, authenticated with `x-token`. Bodies are plain text: `OK` on success,
//! the value on a read, a short message on an error. A query parameter a route does not take
//! is refused (400), never ignored.
//!
//! A group is a key prefix in the caller's namespace: `{group}/{key}` is the stored key, so
//! the native API and saasignal see echovalue's `default/mykey` as that key. Groups cannot
//! contain `/`, which makes the mapping one-to-one. Values are stored as JSON strings.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{any, get};
use axum::Router;
use std::collections::HashMap;

use super::shared::{
    clamp_ttl_ms, dialect_status, has_control, mark_consistency, query_params, text, value_as_text, QueryMap,
};
use crate::api::auth::Caller;
use crate::api::code::Code;
use crate::api::error::{with_retry_after, ApiError};
use crate::api::exec;
use crate::api::forward::Replay;
use crate::api::parse;
use crate::api::state::AppState;
use crate::model::command::{perm, CmdResult, Command, Condition, Refusal};

const MAX_NAME_CHARS: usize = 30;
const MAX_VALUE_CHARS: usize = 1000;
const MAX_TTL_SECONDS: u64 = 2_592_000;
const DEFAULT_TTL_SECONDS: u64 = 2_592_000;

type Res<T> = Result<T, ApiError>;
type GroupKey = Result<Path<(String, String)>, PathRejection>;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/echovalue/kv/{group}/{key}", get(read).post(store).delete(remove).fallback(method_not_allowed))
        .route("/echovalue/{*rest}", any(no_route))
}

/// Renders every echovalue error, including the forwarder's 503/504 and the limiter's 429:
/// plain text led by the seed's meaning of the status.
pub(super) fn error(e: ApiError) -> Response {
    let status = dialect_status(&e);
    let lead = match status.as_u16() {
        400 => "Malformed request",
        401 => "Invalid token",
        403 => "Forbidden",
        404 => "Not found",
        405 => "Method not allowed",
        429 => "Rate limit exceeded",
        _ => "Unavailable",
    };
    with_retry_after(text(status, format!("{lead}: {}", e.message)), &e)
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::new(Code::Malformed, msg)
}

fn not_found(msg: &str) -> ApiError {
    ApiError::new(Code::NotFound, msg)
}

async fn method_not_allowed() -> Response {
    error(ApiError::new(Code::MethodNotAllowed, "use POST, GET or DELETE"))
}

async fn no_route() -> Response {
    error(not_found("the path is /echovalue/kv/<group>/<key>"))
}

fn check_name(s: &str, what: &str) -> Res<()> {
    let n = s.chars().count();
    if n == 0 || n > MAX_NAME_CHARS {
        return Err(bad(format!("{what} must be 1 to {MAX_NAME_CHARS} characters")));
    }
    if has_control(s) {
        return Err(bad(format!("{what} must not contain control characters")));
    }
    Ok(())
}

/// The stored key for `group`/`key`.
fn stored_key(path: GroupKey) -> Res<String> {
    let Path((group, key)) = path.map_err(|e| bad(format!("bad path: {}", e.body_text())))?;
    check_name(&group, "group")?;
    check_name(&key, "key")?;
    if group.contains('/') {
        return Err(bad("group must not contain `/`"));
    }
    Ok(format!("{group}/{key}"))
}

/// The query parameters, refusing any outside `known`: see `shared::query_params`.
fn query_of(query: QueryMap, known: &[&str]) -> Res<HashMap<String, String>> {
    query_params(query, known, bad)
}

fn ttl_ms(q: &HashMap<String, String>) -> Res<u64> {
    let seconds = match q.get("ttl") {
        None => DEFAULT_TTL_SECONDS,
        Some(s) => match s.parse::<u64>() {
            Ok(n) if (1..=MAX_TTL_SECONDS).contains(&n) => n,
            _ => return Err(bad(format!("ttl must be an integer from 1 to {MAX_TTL_SECONDS}"))),
        },
    };
    Ok(clamp_ttl_ms(seconds))
}

/// `POST /echovalue/kv/{group}/{key}?ttl=` with a text body → `OK`.
#[utoipa::path(post, path = "/echovalue/kv/{group}/{key}", tag = "kv", operation_id = "store",
    summary = "Store a text value, replacing any",
    params(super::schema::EvPath, super::schema::EvStoreQuery),
    request_body(content = String, content_type = "text/plain", description = "the value: UTF-8, at most 1000 characters; any content type"),
    responses((status = 200, description = "`OK`", body = String, content_type = "text/plain"), super::schema::EvErrors))]
async fn store(
    State(st): State<AppState>,
    caller: Res<Caller>,
    path: GroupKey,
    query: QueryMap,
    replay: Res<Replay>,
) -> Response {
    let parsed = (|| -> Res<_> {
        let ns = caller?.namespace(perm::WRITE)?;
        let key = stored_key(path)?;
        let ttl_ms = ttl_ms(&query_of(query, &["ttl"])?)?;
        let replay = replay?;
        let value = std::str::from_utf8(&replay.body).map_err(|_| bad("the value must be UTF-8 text"))?;
        if value.chars().count() > MAX_VALUE_CHARS {
            return Err(bad(format!("the value is over {MAX_VALUE_CHARS} characters")));
        }
        let value = parse::within_value_limit(&st, serde_json::Value::from(value).to_string())?;
        Ok((Command::Set { ns, key, value, ttl_ms: Some(ttl_ms), cond: Condition::None }, replay))
    })();
    let (cmd, replay) = match parsed {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    match exec::write_one(&st, cmd, replay).await {
        Ok((_, CmdResult::Item(_))) => text(StatusCode::OK, "OK"),
        Ok((_, CmdResult::Refused(r))) => error(ApiError::refused(r, false)),
        Ok((_, other)) => error(ApiError::internal(format!("unexpected result {other:?}"))),
        Err(b) => b.render(error),
    }
}

/// `GET /echovalue/kv/{group}/{key}` → the value as text, 404 if absent or expired.
#[utoipa::path(get, path = "/echovalue/kv/{group}/{key}", tag = "kv", operation_id = "read",
    summary = "Read a value as text",
    params(super::schema::EvPath, super::schema::EvReadQuery),
    responses((status = 200, description = "the value; one written as other JSON through another API is its JSON text", body = String, content_type = "text/plain"), super::schema::EvErrors))]
async fn read(
    State(st): State<AppState>,
    caller: Res<Caller>,
    path: GroupKey,
    query: QueryMap,
    replay: Res<Replay>,
) -> Response {
    let parsed = (|| -> Res<_> {
        let ns = caller?.namespace(perm::READ)?;
        let key = stored_key(path)?;
        // The seed's GET takes no parameter; `consistency` is Cairn's, on every read route.
        let q = query_of(query, &["consistency"])?;
        let strong = exec::is_strong(&st, q.get("consistency").map(String::as_str))?;
        Ok((ns, key, strong, replay?))
    })();
    let (ns, key, strong, replay) = match parsed {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    if let Err(b) = exec::before_read(&st, strong, None, replay).await {
        return b.render(error);
    }
    let resp = match st.node.read_local(&ns, &key) {
        Ok(Some(item)) => text(StatusCode::OK, value_as_text(&item.value)),
        Ok(None) => error(not_found("Key does not exist or has expired")),
        Err(e) => error(e.into()),
    };
    mark_consistency(resp, strong)
}

/// `DELETE /echovalue/kv/{group}/{key}` → `OK`, 404 if absent.
#[utoipa::path(delete, path = "/echovalue/kv/{group}/{key}", tag = "kv", operation_id = "remove",
    summary = "Delete a value",
    params(super::schema::EvPath),
    responses((status = 200, description = "`OK`", body = String, content_type = "text/plain"), super::schema::EvErrors))]
async fn remove(
    State(st): State<AppState>,
    caller: Res<Caller>,
    path: GroupKey,
    query: QueryMap,
    replay: Res<Replay>,
) -> Response {
    let parsed = (|| -> Res<_> {
        let ns = caller?.namespace(perm::WRITE)?;
        let key = stored_key(path)?;
        query_of(query, &[])?;
        Ok((Command::Delete { ns, key, cond: Condition::None }, replay?))
    })();
    let (cmd, replay) = match parsed {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    match exec::write_one(&st, cmd, replay).await {
        Ok((_, CmdResult::Deleted { .. })) => text(StatusCode::OK, "OK"),
        Ok((_, CmdResult::Refused(Refusal::NotFound))) => error(not_found("Key does not exist")),
        Ok((_, CmdResult::Refused(r))) => error(ApiError::refused(r, false)),
        Ok((_, other)) => error(ApiError::internal(format!("unexpected result {other:?}"))),
        Err(b) => b.render(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_bounded() {
        assert!(check_name("default", "group").is_ok());
        assert!(check_name(&"x".repeat(30), "key").is_ok());
        assert!(check_name(&"x".repeat(31), "key").is_err());
        assert!(check_name("", "key").is_err());
        assert!(check_name("a\tb", "key").is_err());
    }

    /// Plain text led by the seed's meaning, never the native JSON envelope.
    #[tokio::test]
    async fn rate_limits_and_unavailability_are_plain_text() {
        let cases = [
            (ApiError::rate_limited(5), 429, Some("5"), "Rate limit exceeded: too many requests; slow down"),
            (ApiError::no_leader("no leader is known"), 503, Some("1"), "Unavailable: no leader is known"),
            (
                ApiError::unknown_outcome("the leader did not answer"),
                504,
                None,
                "Unavailable: the leader did not answer",
            ),
        ];
        for (e, status, retry, text) in cases {
            let resp = error(e);
            assert_eq!(resp.status().as_u16(), status);
            let h = resp.headers();
            assert_eq!(h.get(axum::http::header::RETRY_AFTER).map(|v| v.to_str().unwrap()), retry);
            assert!(h[axum::http::header::CONTENT_TYPE].to_str().unwrap().starts_with("text/plain"));
            let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
            assert_eq!(&body[..], text.as_bytes());
        }
    }

    #[test]
    fn routes_do_not_conflict() {
        let _ = routes();
    }
}
