//! `POST /kv/batch`: up to 100 gets and writes applied as one Raft entry, all or nothing.
//! Gets inside a batch see the batch's earlier writes and are linearizable (they travel
//! through Raft with it).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::auth::Caller;
use super::error::ApiError;
use super::exec::{self, Blocked};
use super::forward::Replay;
use super::parse::{self, ApiResult};
use super::render;
use super::state::AppState;
use crate::model::command::{perm, CmdResult, Command, Condition};

pub const MAX_OPS: usize = 100;

fn op_error(i: usize, e: ApiError) -> ApiError {
    let msg = format!("op {i}: {}", e.message);
    ApiError { message: msg, ..e }.with_detail("index", i.into())
}

fn parse_op(st: &AppState, ns: &str, op: &Map<String, Value>) -> ApiResult<Command> {
    let key = match op.get("key") {
        Some(Value::String(k)) => k.clone(),
        _ => return Err(ApiError::bad_request("invalid_key", "every op needs a string \"key\"")),
    };
    parse::validate_key(&key)?;
    let ns = ns.to_string();
    match op.get("op").and_then(Value::as_str) {
        Some("get") => Ok(Command::Get { ns, key }),
        Some("set") => {
            let value =
                op.get("value").ok_or_else(|| ApiError::bad_request("invalid_json", "a set op needs a \"value\""))?;
            let value = parse::value_text(st, value)?;
            let ttl_ms = parse::ttl_ms(st, op.get("ttlSeconds"))?;
            let (cond, _) = parse::condition(op, &Default::default())?;
            Ok(Command::Set { ns, key, value, ttl_ms, cond })
        }
        Some("delete") => {
            let (cond, _) = parse::condition(op, &Default::default())?;
            if matches!(cond, Condition::IfAbsent) {
                return Err(ApiError::bad_request("invalid_json", "ifNotExists does not apply to delete"));
            }
            Ok(Command::Delete { ns, key, cond })
        }
        Some("increment") => {
            let delta = parse::delta_of(op.get("delta"))?;
            let ttl_ms = parse::ttl_ms(st, op.get("ttlSeconds"))?;
            Ok(Command::Increment { ns, key, delta, ttl_ms })
        }
        _ => Err(ApiError::bad_request("invalid_op", "op must be get, set, delete or increment")),
    }
}

/// Parses a batch body into commands for `ns` (shared with dialects that offer batches).
pub fn parse_ops(st: &AppState, ns: &str, ops: &[Value]) -> ApiResult<Vec<Command>> {
    if ops.is_empty() || ops.len() > MAX_OPS {
        return Err(ApiError::bad_request("invalid_batch", format!("a batch holds 1 to {MAX_OPS} ops")));
    }
    ops.iter()
        .enumerate()
        .map(|(i, op)| match op {
            Value::Object(m) => parse_op(st, ns, m).map_err(|e| op_error(i, e)),
            _ => Err(op_error(i, ApiError::bad_request("invalid_op", "each op is a JSON object"))),
        })
        .collect()
}

pub fn needs_write(cmds: &[Command]) -> bool {
    cmds.iter().any(|c| !matches!(c, Command::Get { .. }))
}

pub async fn batch(State(st): State<AppState>, caller: Caller, replay: Replay) -> Response {
    let parsed = (|| -> Result<_, ApiError> {
        let body = parse::json_object(&replay.body, false)?;
        let ops = match body.get("ops") {
            Some(Value::Array(a)) => a.clone(),
            _ => return Err(ApiError::bad_request("invalid_json", "the body needs an \"ops\" array")),
        };
        // Namespace first (any permission), then exactly the permissions the ops need.
        let ns = caller.namespace(0)?;
        let cmds = parse_ops(&st, &ns, &ops)?;
        let mut need = 0;
        if cmds.iter().any(|c| matches!(c, Command::Get { .. })) {
            need |= perm::READ;
        }
        if needs_write(&cmds) {
            need |= perm::WRITE;
        }
        caller.namespace(need)?;
        Ok(cmds)
    })();
    let cmds = match parsed {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let deletes: Vec<bool> = cmds.iter().map(|c| matches!(c, Command::Delete { .. })).collect();
    match exec::write_one(&st, Command::Batch(cmds), replay).await {
        Ok((_, CmdResult::Batch(results))) => {
            let rendered: Vec<String> = results.iter().zip(deletes).map(|(r, d)| result_json_text(r, d)).collect();
            let body = format!(r#"{{"data":{{"results":[{}]}}}}"#, rendered.join(","));
            ([(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Ok((_, CmdResult::BatchRefused { index, refusal })) => {
            let e = ApiError::refused(refusal, false);
            let e = if e.status == StatusCode::NOT_FOUND { ApiError { status: StatusCode::CONFLICT, ..e } } else { e };
            op_error(index as usize, e).into_response()
        }
        Ok((_, other)) => ApiError::internal(format!("unexpected batch result {other:?}")).into_response(),
        Err(Blocked::Forwarded(r)) => r,
        Err(Blocked::Failed(e)) => e.into_response(),
    }
}

fn result_json_text(r: &CmdResult, is_delete: bool) -> String {
    match r {
        CmdResult::Item(item) => render::item_json_text(item, true),
        CmdResult::Absent { key } if is_delete => serde_json::json!({"key": key, "deleted": false}).to_string(),
        CmdResult::Absent { key } => serde_json::json!({"key": key, "found": false}).to_string(),
        CmdResult::Deleted { key } => serde_json::json!({"key": key, "deleted": true}).to_string(),
        other => serde_json::json!({ "unexpected": format!("{other:?}") }).to_string(),
    }
}
