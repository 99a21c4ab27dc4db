//! `/locks/{name}`: fair locks with fencing tokens. Waiters hold a lease and are served in
//! order of arrival; the holder's token is the log index that queued it, so it only grows. A
//! write guarded with `"ifFence": {"lock", "token"}` is applied only while that token holds the
//! lock, checked in the write's own entry (`sm/queue.rs`).

use std::collections::HashMap;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::auth::Caller;
use super::code::Code;
use super::error::ApiError;
use super::exec;
use super::forward::Replay;
use super::parse::{json_object, key_of, known_fields, lease_id, validate_key};
use super::queue;
use super::render::{consistency_header, Data};
use super::schema;
use super::state::AppState;
use crate::model::command::{perm, Queue};
use crate::protocol::names::CONSISTENCY;

#[derive(Serialize)]
struct Held {
    name: String,
    token: String,
    lease: String,
}

#[derive(Serialize)]
struct Released {
    name: String,
    token: String,
    released: bool,
}

#[derive(Serialize)]
struct Holder {
    token: String,
    lease: String,
}

#[derive(Serialize)]
struct LockView {
    name: String,
    holder: Option<Holder>,
    /// Waiters behind the holder (or, with no holder, all of them).
    waiting: usize,
}

#[utoipa::path(post, path = "/locks/{name}", tag = "locks", operation_id = "acquireLock",
    summary = "Take the lock, waiting up to `wait` for the holders ahead; returns the fencing token",
    params(schema::NamePath),
    request_body = schema::LockBody,
    responses((status = 200, description = "held", body = schema::LockHeldData), schema::Errors))]
pub async fn acquire(
    State(st): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    replay: Replay,
) -> Response {
    let parsed = (|| -> Result<_, ApiError> {
        let ns = caller.namespace(perm::WRITE)?;
        let name = key_of(path)?;
        let body = json_object(&replay.body, false)?;
        known_fields(&body, &["lease", "wait", "lockDelay"], "a lock request")?;
        let lease = lease_id(body.get("lease").unwrap_or(&serde_json::Value::Null))?;
        let delay = queue::parse_wait(body.get("lockDelay")).map_err(|_| {
            ApiError::new(Code::InvalidTtl, "lockDelay: a duration such as \"5s\" or \"500ms\", at most 60 s")
        })?;
        Ok((ns, name, lease, queue::parse_wait(body.get("wait"))?, delay))
    })();
    let (ns, name, lease, wait, delay) = match parsed {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    match queue::take_turn(&st, replay, &ns, Queue::Lock, &name, lease, "null".into(), wait, delay).await {
        Ok(token) => {
            Json(Data { data: Held { name, token: token.to_string(), lease: lease.to_string() } }).into_response()
        }
        Err(b) => b.into_response(),
    }
}

#[utoipa::path(delete, path = "/locks/{name}/{token}", tag = "locks", operation_id = "releaseLock",
    summary = "Release the lock (or stop waiting for it)",
    params(schema::NamePath, schema::TokenPath),
    responses((status = 200, description = "released", body = schema::LockReleasedData), schema::Errors))]
pub async fn release(
    State(st): State<AppState>,
    caller: Caller,
    path: Result<Path<(String, String)>, PathRejection>,
    replay: Replay,
) -> Response {
    let parsed = (|| -> Result<_, ApiError> {
        let ns = caller.namespace(perm::WRITE)?;
        let Path((name, token)) = path.map_err(|e| ApiError::new(Code::InvalidKey, e.body_text()))?;
        validate_key(&name)?;
        let token = lease_id(&serde_json::Value::String(token))
            .map_err(|_| ApiError::new(Code::InvalidId, "token: a fencing token, 1 to 19 digits"))?;
        Ok((ns, name, token))
    })();
    let (ns, name, token) = match parsed {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    match queue::leave(&st, replay, &ns, Queue::Lock, &name, token).await {
        Ok(()) => Json(Data { data: Released { name, token: token.to_string(), released: true } }).into_response(),
        Err(b) => b.into_response(),
    }
}

#[utoipa::path(get, path = "/locks/{name}", tag = "locks", operation_id = "getLock",
    summary = "Who holds the lock, and how many wait",
    params(schema::NamePath, schema::LeaseReadQuery),
    responses((status = 200, description = "the lock", body = schema::LockData), schema::Errors))]
pub async fn show(
    State(st): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    replay: Replay,
) -> Response {
    let parsed = (|| -> Result<_, ApiError> {
        let ns = caller.namespace(perm::READ)?;
        let name = key_of(path)?;
        Ok((ns, name, exec::consistency_only(&st, query)?))
    })();
    let (ns, name, strong) = match parsed {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let strong = match exec::before_read(&st, strong, None, replay).await {
        Ok(s) => s,
        Err(b) => return b.into_response(),
    };
    let mut resp = match st.node.reader.queue(&ns, Queue::Lock, &name) {
        Ok(q) => {
            let holder = q.holder().map(|(t, w)| Holder { token: t.to_string(), lease: w.lease.to_string() });
            let waiting = q.waiters.len() - usize::from(holder.is_some());
            Json(Data { data: LockView { name, holder, waiting } }).into_response()
        }
        Err(e) => ApiError::internal(e.to_string()).into_response(),
    };
    resp.headers_mut().insert(CONSISTENCY, consistency_header(strong));
    resp
}
