//! `/leases`: grant, keep alive, revoke, show and list leases. A key written with `"lease": id`
//! is deleted with its lease, in the one entry that revokes or expires it (`sm/lease.rs`).
//! Lease ids are decimal strings, as versions are, so JavaScript clients keep every digit.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;

use super::auth::Caller;
use super::code::Code;
use super::error::ApiError;
use super::exec;
use super::forward::Replay;
use super::parse::{self, json_object, known_fields};
use super::render::{consistency_header, rfc3339, Data};
use super::schema;
use super::state::AppState;
use crate::model::command::{perm, CmdResult, Command, Lease};
use crate::protocol::names::CONSISTENCY;
use crate::protocol::now_ms;
use crate::sm::LeaseRecord;

/// The longest lease: the longest key TTL.
const MAX_LEASE_TTL_SECONDS: u64 = parse::MAX_TTL_SECONDS;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LeaseView {
    id: String,
    ttl_seconds: u64,
    expires_at: String,
}

impl LeaseView {
    fn new(id: u64, ttl_ms: u64, expires_at: u64) -> Self {
        LeaseView { id: id.to_string(), ttl_seconds: ttl_ms / 1000, expires_at: rfc3339(expires_at) }
    }
}

/// `GET /leases/{id}`: the lease, how long it has left by the answering node's clock, and
/// its keys.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LeaseDetail {
    #[serde(flatten)]
    lease: LeaseView,
    remaining_ms: u64,
    keys: Vec<String>,
}

#[derive(Serialize)]
struct Leases {
    leases: Vec<LeaseView>,
}

#[derive(Serialize)]
struct Revoked {
    id: String,
    revoked: bool,
    keys: u64,
}

fn path_id(path: Result<Path<String>, PathRejection>) -> Result<u64, ApiError> {
    let Path(id) = path.map_err(|e| ApiError::new(Code::InvalidId, e.body_text()))?;
    parse::lease_id(&Value::String(id))
}

fn lease_response(status: StatusCode, l: Lease) -> Response {
    (status, Json(Data { data: LeaseView::new(l.id, l.ttl_ms, l.expires_at) })).into_response()
}

/// Renders a lease write's result.
fn rendered(status: StatusCode, r: Result<(u64, CmdResult), exec::Blocked>) -> Response {
    match r {
        Ok((_, CmdResult::Lease(l))) => lease_response(status, l),
        Ok((_, CmdResult::LeaseRevoked { id, keys })) => {
            Json(Data { data: Revoked { id: id.to_string(), revoked: true, keys } }).into_response()
        }
        Ok((_, CmdResult::Refused(r))) => ApiError::refused(r, false).into_response(),
        Ok((_, other)) => ApiError::internal(format!("unexpected result {other:?}")).into_response(),
        Err(b) => b.into_response(),
    }
}

#[utoipa::path(post, path = "/leases", tag = "leases", operation_id = "grantLease",
    summary = "Grant a lease; keys written with it are deleted when it expires or is revoked",
    request_body = schema::LeaseGrantBody,
    responses((status = 201, description = "the new lease", body = schema::LeaseData), schema::Errors))]
pub async fn grant(State(st): State<AppState>, caller: Caller, replay: Replay) -> Response {
    let parsed = (|| -> Result<_, ApiError> {
        let ns = caller.namespace(perm::WRITE)?;
        let body = json_object(&replay.body, false)?;
        known_fields(&body, &["ttlSeconds"], "a lease request")?;
        let ttl = match body.get("ttlSeconds").and_then(parse::integral) {
            Some(s) if (1..=MAX_LEASE_TTL_SECONDS).contains(&s) => s,
            _ => {
                return Err(ApiError::new(
                    Code::InvalidTtl,
                    format!("ttlSeconds: an integer from 1 to {MAX_LEASE_TTL_SECONDS}"),
                ))
            }
        };
        Ok(Command::LeaseGrant { ns, ttl_ms: ttl * 1000 })
    })();
    match parsed {
        Ok(cmd) => rendered(StatusCode::CREATED, exec::write_one(&st, cmd, replay).await),
        Err(e) => e.into_response(),
    }
}

#[utoipa::path(post, path = "/leases/{id}/keepalive", tag = "leases", operation_id = "keepLeaseAlive",
    summary = "Restart the lease's TTL",
    params(schema::LeasePath),
    responses((status = 200, description = "the lease, renewed", body = schema::LeaseData), schema::Errors))]
pub async fn keepalive(
    State(st): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    replay: Replay,
) -> Response {
    on_lease(&st, &caller, path, replay, |ns, id| Command::LeaseKeepAlive { ns, id }).await
}

#[utoipa::path(delete, path = "/leases/{id}", tag = "leases", operation_id = "revokeLease",
    summary = "Revoke the lease and delete every key attached to it, at once",
    params(schema::LeasePath),
    responses((status = 200, description = "revoked", body = schema::LeaseRevokedData), schema::Errors))]
pub async fn revoke(
    State(st): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    replay: Replay,
) -> Response {
    on_lease(&st, &caller, path, replay, |ns, id| Command::LeaseRevoke { ns, id }).await
}

/// A write to one lease named by the path (keepalive, revoke): these take no body (an empty
/// JSON object is tolerated).
async fn on_lease(
    st: &AppState,
    caller: &Caller,
    path: Result<Path<String>, PathRejection>,
    replay: Replay,
    command: impl FnOnce(String, u64) -> Command,
) -> Response {
    let parsed = (|| -> Result<_, ApiError> {
        let ns = caller.namespace(perm::WRITE)?;
        let id = path_id(path)?;
        known_fields(&json_object(&replay.body, true)?, &[], "this request")?;
        Ok(command(ns, id))
    })();
    match parsed {
        Ok(cmd) => rendered(StatusCode::OK, exec::write_one(st, cmd, replay).await),
        Err(e) => e.into_response(),
    }
}

#[utoipa::path(get, path = "/leases/{id}", tag = "leases", operation_id = "getLease",
    summary = "The lease, its remaining time and its keys",
    params(schema::LeasePath, schema::LeaseReadQuery),
    responses((status = 200, description = "the lease", body = schema::LeaseDetailData), schema::Errors))]
pub async fn show(
    State(st): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
    replay: Replay,
) -> Response {
    let parsed = (|| -> Result<_, ApiError> {
        let ns = caller.namespace(perm::READ)?;
        let id = path_id(path)?;
        Ok((ns, id, exec::consistency_only(&st, query)?))
    })();
    let (ns, id, strong) = match parsed {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let strong = match exec::before_read(&st, strong, None, replay).await {
        Ok(s) => s,
        Err(b) => return b.into_response(),
    };
    let mut resp = match st.node.reader.lease(&ns, id) {
        Ok(Some((rec, keys))) => {
            let remaining_ms = rec.expires_at.saturating_sub(now_ms());
            let lease = LeaseView::new(id, rec.ttl_ms, rec.expires_at);
            Json(Data { data: LeaseDetail { lease, remaining_ms, keys } }).into_response()
        }
        Ok(None) => ApiError::new(Code::LeaseNotFound, "the lease does not exist in this namespace, or has expired")
            .into_response(),
        Err(e) => ApiError::internal(e.to_string()).into_response(),
    };
    resp.headers_mut().insert(CONSISTENCY, consistency_header(strong));
    resp
}

#[utoipa::path(get, path = "/leases", tag = "leases", operation_id = "listLeases",
    summary = "List the namespace's live leases (needs the admin permission)",
    responses((status = 200, description = "the leases", body = schema::LeasesData), schema::Errors))]
pub async fn list(State(st): State<AppState>, caller: Caller, replay: Replay) -> Response {
    let ns = match caller.namespace(perm::ADMIN) {
        Ok(ns) => ns,
        Err(e) => return e.into_response(),
    };
    if let Err(b) = exec::before_read(&st, st.node.is_leader(), None, replay).await {
        return b.into_response();
    }
    match st.node.reader.leases(&ns) {
        Ok(all) => {
            let leases = all.iter().map(|(id, r): &(u64, LeaseRecord)| LeaseView::new(*id, r.ttl_ms, r.expires_at));
            Json(Data { data: Leases { leases: leases.collect() } }).into_response()
        }
        Err(e) => ApiError::internal(e.to_string()).into_response(),
    }
}
