//! `/cluster/status` and `/health`.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::auth::Caller;
use super::AppState;

/// Needs any valid credential (or an open node), like every non-probe route.
pub async fn status(State(st): State<AppState>, _caller: Caller) -> Json<Value> {
    let s = st.node.status();
    let members: Vec<Value> =
        s.members.iter().map(|(id, addr, voter)| json!({"id": id, "addr": addr, "voter": voter})).collect();
    Json(json!({"data": {
        "id": s.id,
        "role": s.role,
        "term": s.term,
        "leader": s.leader,
        "members": members,
        "lastLogIndex": s.last_log_index,
        "appliedIndex": s.applied_index,
    }}))
}

/// Liveness only: the process is up and serving HTTP.
pub async fn health(State(st): State<AppState>) -> Json<Value> {
    Json(json!({"data": {"status": "ok", "id": st.node.id}}))
}
