//! `POST /infra/kv {ops}`: up to 100 get/set/delete ops as one Raft entry, applied all or
//! nothing. A refused op (e.g. `if_not_exists` on an existing key) fails the whole batch with
//! 409 and the op's `index`; an empty batch succeeds with no results (the seed's own example).

use axum::extract::State;
use axum::response::Response;
use serde_json::Value;

use super::{
    bad, blocked, check_key, error, if_not_exists, item_fields, json, json_text, refused, ttl_of, value_text, Res,
};
use crate::api::auth::Caller;
use crate::api::error::ApiError;
use crate::api::exec;
use crate::api::forward::Replay;
use crate::api::parse;
use crate::api::state::AppState;
use crate::model::command::{perm, CmdResult, Command, Condition};

const MAX_OPS: usize = 100;

fn op_error(i: usize, e: ApiError) -> ApiError {
    let message = format!("op {i}: {}", e.message);
    ApiError { message, ..e }.with_detail("index", i.into())
}

/// One batch op: `{op: "get"|"set"|"delete", key, value?, ttl?, if_not_exists?}`.
fn parse_op(st: &AppState, ns: &str, op: &Value) -> Res<Command> {
    let m = op.as_object().ok_or_else(|| bad("each op is a JSON object"))?;
    let key = m.get("key").and_then(Value::as_str).ok_or_else(|| bad("each op needs a string `key`"))?;
    check_key(key, "key", false)?;
    let (ns, key) = (ns.to_string(), key.to_string());
    match m.get("op").and_then(Value::as_str) {
        Some("get") => Ok(Command::Get { ns, key }),
        Some("set") => {
            let value = m.get("value").ok_or_else(|| bad("a set op needs a `value`"))?;
            let value = value_text(st, value)?;
            let ttl_ms = ttl_of(st, m.get("ttl"))?;
            let cond = if_not_exists(m.get("if_not_exists"))?;
            Ok(Command::Set { ns, key, value, ttl_ms, cond })
        }
        Some("delete") => Ok(Command::Delete { ns, key, cond: Condition::None }),
        _ => Err(bad("op must be get, set or delete")),
    }
}

fn op_result(r: &CmdResult) -> String {
    match r {
        CmdResult::Item(item) => format!(r#"{{{},"status":"ok"}}"#, item_fields(item)),
        CmdResult::Deleted { key } => format!(r#"{{"key":{},"value":null,"status":"ok"}}"#, json_text(key)),
        CmdResult::Absent { key } => format!(r#"{{"key":{},"value":null,"status":"not_found"}}"#, json_text(key)),
        other => format!(r#"{{"value":null,"status":{}}}"#, json_text(&format!("{other:?}"))),
    }
}

/// `POST /infra/kv {ops}` → `{"results": [...]}` in op order.
pub(super) async fn batch(State(st): State<AppState>, caller: Res<Caller>, replay: Res<Replay>) -> Response {
    let parsed = (|| -> Res<_> {
        let caller = caller?;
        let ns = caller.namespace(perm::READ)?;
        let replay = replay?;
        let body = parse::json_object(&replay.body, false)?;
        let ops = match body.get("ops") {
            Some(Value::Array(a)) if a.len() <= MAX_OPS => a,
            Some(Value::Array(_)) => return Err(bad(format!("a batch holds at most {MAX_OPS} ops"))),
            _ => return Err(bad("the body needs an `ops` array")),
        };
        let cmds = ops
            .iter()
            .enumerate()
            .map(|(i, op)| parse_op(&st, &ns, op).map_err(|e| op_error(i, e)))
            .collect::<Res<Vec<_>>>()?;
        if cmds.iter().any(|c| !matches!(c, Command::Get { .. })) {
            caller.namespace(perm::WRITE)?;
        }
        Ok((cmds, replay))
    })();
    let (cmds, replay) = match parsed {
        Ok(p) if p.0.is_empty() => return json(r#"{"results":[]}"#.into()),
        Ok(p) => p,
        Err(e) => return error(e),
    };
    match exec::write_one(&st, Command::Batch(cmds), replay).await {
        Ok((_, CmdResult::Batch(results))) => {
            let shown: Vec<String> = results.iter().map(op_result).collect();
            json(format!(r#"{{"results":[{}]}}"#, shown.join(",")))
        }
        Ok((_, CmdResult::BatchRefused { index, refusal })) => error(op_error(index as usize, refused(refusal))),
        Ok((_, other)) => error(ApiError::internal(format!("unexpected batch result {other:?}"))),
        Err(b) => blocked(b),
    }
}
