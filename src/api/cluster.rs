//! `/cluster/status`, `/cluster/members` (membership changes) and `/health`.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::Value;

use super::auth::{forbidden, Caller, Principal};
use super::code::Code;
use super::error::ApiError;
use super::forward::{self, Replay};
use super::parse;
use super::render::Data;
use super::schema;
use super::state::AppState;
use crate::config::NodeId;
use crate::node::error::Error;
use crate::node::membership;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusView {
    id: NodeId,
    role: &'static str,
    term: u64,
    leader: Option<NodeId>,
    /// On a leader: ms since a quorum last acknowledged it. A leader cut off from its quorum
    /// keeps `role: leader` (Raft has no step-down without a new term) but this keeps rising.
    #[serde(skip_serializing_if = "Option::is_none")]
    quorum_ack_ms: Option<u64>,
    members: Vec<Member>,
    last_log_index: u64,
    applied_index: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Member {
    id: NodeId,
    addr: String,
    voter: bool,
    /// The cluster recorded that this member has held its data: a node that comes back under
    /// this id with an empty data dir refuses to start (`node/holders.rs`).
    held_data: bool,
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    id: NodeId,
}

fn status_view(st: &AppState) -> Data<StatusView> {
    let s = st.node.status();
    let members = s
        .members
        .into_iter()
        .map(|m| Member { id: m.id, addr: m.addr, voter: m.voter, held_data: m.held_data })
        .collect();
    Data {
        data: StatusView {
            id: s.id,
            role: s.role,
            term: s.term,
            leader: s.leader,
            quorum_ack_ms: s.quorum_ack_ms,
            members,
            last_log_index: s.last_log_index,
            applied_index: s.applied_index,
        },
    }
}

/// Needs any valid credential (or an open node), like every non-probe route.
#[utoipa::path(get, path = "/cluster/status", tag = "cluster", operation_id = "clusterStatus",
    summary = "This node's role, term, leader, members and indexes",
    responses((status = 200, description = "the status", body = schema::StatusData), schema::Errors))]
pub async fn status(State(st): State<AppState>, _caller: Caller) -> Response {
    Json(status_view(&st)).into_response()
}

/// Liveness only: the process is up and serving HTTP.
/// Also 503 once Raft has stopped on a fatal error (e.g. a full disk failing the WAL), so a
/// supervisor's liveness probe restarts a process that can no longer serve.
#[utoipa::path(get, path = "/health", tag = "probes", operation_id = "health", security(()),
    summary = "Liveness: the process serves HTTP and its Raft runs",
    responses((status = 200, description = "alive", body = schema::HealthData), schema::Errors))]
pub async fn health(State(st): State<AppState>) -> Response {
    if let Some(fatal) = st.node.fatal_error() {
        return ApiError::new(Code::RaftStopped, fatal).into_response();
    }
    Json(Data { data: Health { status: "ok", id: st.node.id } }).into_response()
}

/// Cluster membership is cluster-wide: only the bootstrap admin (or anyone on an open node)
/// may change it, never a namespace token.
fn cluster_admin(caller: &Caller) -> Result<(), ApiError> {
    match caller.principal {
        Principal::Admin | Principal::Anonymous => Ok(()),
        Principal::Token { .. } => Err(forbidden("membership changes need the bootstrap admin token")),
    }
}

fn membership_result(st: &AppState, r: Result<(), Error>) -> Result<Response, Error> {
    r.map(|()| Json(status_view(st)).into_response())
}

/// `POST /cluster/members {"id", "addr"}`: admit a node (learner, catch-up, then voter).
/// Runs a membership change in its own task, so it finishes (within `--join-timeout-s`) even
/// if the caller hangs up: dropping a change half-way could leave an added node a learner.
async fn detached<T: Send + 'static>(
    change: impl std::future::Future<Output = Result<T, Error>> + Send + 'static,
) -> Result<T, Error> {
    tokio::spawn(change).await.unwrap_or_else(|e| Err(Error::Storage(format!("membership change task failed: {e}"))))
}

#[utoipa::path(post, path = "/cluster/members", tag = "cluster", operation_id = "addMember",
    summary = "Admit a node: learner first, voter once caught up (bootstrap admin only)",
    request_body(content = schema::MemberRequest),
    responses((status = 200, description = "the status after the change", body = schema::StatusData), schema::Errors))]
pub async fn add_member(State(st): State<AppState>, caller: Caller, replay: Replay) -> Response {
    let parsed = (|| -> Result<(u64, String), ApiError> {
        cluster_admin(&caller)?;
        let body = parse::json_object(&replay.body, false)?;
        parse::known_fields(&body, &["id", "addr"], "a membership request")?;
        let id =
            body.get("id").and_then(Value::as_u64).ok_or_else(|| ApiError::new(Code::InvalidId, "id: a node id"))?;
        let addr = match body.get("addr") {
            Some(Value::String(a)) if a.contains(':') && !a.contains('/') => a.clone(),
            _ => return Err(ApiError::new(Code::InvalidAddr, "addr: host:port")),
        };
        Ok((id, addr))
    })();
    let (id, addr) = match parsed {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let node = st.node.clone();
    match membership_result(&st, detached(async move { membership::add_member(&node, id, addr).await }).await) {
        Ok(r) => r,
        Err(Error::NotLeader { .. }) => forward::to_leader(&st, replay).await.unwrap_or_else(ApiError::into_response),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `DELETE /cluster/members/{id}`: remove a node; its id is retired for good.
#[utoipa::path(delete, path = "/cluster/members/{id}", tag = "cluster", operation_id = "removeMember",
    summary = "Remove a node and retire its id (bootstrap admin only)",
    params(("id" = u64, Path, description = "the node id")),
    responses((status = 200, description = "the status after the change", body = schema::StatusData), schema::Errors))]
pub async fn remove_member(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    replay: Replay,
) -> Response {
    if let Err(e) = cluster_admin(&caller) {
        return e.into_response();
    }
    let Ok(id) = id.parse::<u64>() else {
        return ApiError::new(Code::InvalidId, "the node id is not a number").into_response();
    };
    let node = st.node.clone();
    match membership_result(&st, detached(async move { membership::remove_member(&node, id).await }).await) {
        Ok(r) => r,
        Err(Error::NotLeader { .. }) => forward::to_leader(&st, replay).await.unwrap_or_else(ApiError::into_response),
        Err(e) => ApiError::from(e).into_response(),
    }
}
