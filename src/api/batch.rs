//! `POST /kv/batch`: up to 100 gets and writes applied as one Raft entry, all or nothing.
//! Gets inside a batch see the batch's earlier writes and are linearizable (they travel
//! through Raft with it).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{Map, Value};

use super::auth::Caller;
use super::code::Code;
use super::error::ApiError;
use super::exec;
use super::forward::Replay;
use super::parse::{self, ApiResult};
use super::render::{Data, ItemView};
use super::schema;
use super::state::AppState;
use crate::model::command::{perm, CmdResult, Command, Condition};

pub const MAX_OPS: usize = 100;

/// The fields each kind of op may hold.
fn op_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "get" => &["op", "key"],
        "set" => &["op", "key", "value", "ttlSeconds", "ifNotExists", "ifVersion", "ifValue", "ifFence"],
        "delete" => &["op", "key", "ifVersion", "ifValue", "ifFence"],
        "increment" => &["op", "key", "delta", "ttlSeconds", "ifFence"],
        _ => &["op", "key"],
    }
}

fn parse_op(st: &AppState, ns: &str, op: &Map<String, Value>) -> ApiResult<Command> {
    if let Some(kind) = op.get("op").and_then(Value::as_str) {
        parse::known_fields(op, op_fields(kind), &format!("a {kind} op"))?;
    }
    let key = match op.get("key") {
        Some(Value::String(k)) => k.clone(),
        _ => return Err(ApiError::new(Code::InvalidKey, "every op needs a string \"key\"")),
    };
    parse::validate_key(&key)?;
    let ns = ns.to_string();
    match op.get("op").and_then(Value::as_str) {
        Some("get") => Ok(Command::Get { ns, key }),
        Some("set") => {
            let value =
                op.get("value").ok_or_else(|| ApiError::new(Code::InvalidJson, "a set op needs a \"value\""))?;
            let value = parse::value_text(st, value)?;
            let ttl_ms = parse::ttl_ms(st, op.get("ttlSeconds"))?;
            let (cond, _) = parse::condition(op, &Default::default())?;
            Ok(Command::Set { ns, key, value, ttl_ms, cond })
        }
        Some("delete") => {
            let (cond, _) = parse::condition(op, &Default::default())?;
            if matches!(cond, Condition::IfAbsent) {
                return Err(ApiError::new(Code::InvalidJson, "ifNotExists does not apply to delete"));
            }
            Ok(Command::Delete { ns, key, cond })
        }
        Some("increment") => {
            let delta = parse::delta_of(op.get("delta"))?;
            let ttl_ms = parse::ttl_ms(st, op.get("ttlSeconds"))?;
            Ok(match parse::fence_only(op)? {
                None => Command::Increment { ns, key, delta, ttl_ms },
                Some(cond) => Command::IncrementFenced { ns, key, delta, ttl_ms, cond },
            })
        }
        _ => Err(ApiError::new(Code::InvalidOp, "op must be get, set, delete or increment")),
    }
}

/// Parses a batch body into commands for `ns` (shared with dialects that offer batches).
pub fn parse_ops(st: &AppState, ns: &str, ops: &[Value]) -> ApiResult<Vec<Command>> {
    if ops.is_empty() || ops.len() > MAX_OPS {
        return Err(ApiError::new(Code::InvalidBatch, format!("a batch holds 1 to {MAX_OPS} ops")));
    }
    ops.iter()
        .enumerate()
        .map(|(i, op)| match op {
            Value::Object(m) => parse_op(st, ns, m).map_err(|e| e.for_op(i)),
            _ => Err(ApiError::new(Code::InvalidOp, "each op is a JSON object").for_op(i)),
        })
        .collect()
}

/// Whether an op's answer tells the stored state: a read, an increment (answers the new
/// value), or a condition (its refusal fails the batch). Such ops need `read`; see
/// `Caller::namespace_for_write`.
fn reveals_state(cmd: &Command) -> bool {
    match cmd {
        Command::Get { .. } | Command::Increment { .. } => true,
        Command::Set { cond, .. } | Command::Delete { cond, .. } => *cond != Condition::None,
        _ => false,
    }
}

pub fn needs_write(cmds: &[Command]) -> bool {
    cmds.iter().any(|c| !matches!(c, Command::Get { .. }))
}

#[utoipa::path(post, path = "/kv/batch", tag = "items", operation_id = "batch",
    summary = "Run 1 to 100 ops atomically, in one Raft entry",
    request_body(content = schema::BatchBody),
    responses((status = 200, description = "one result per op, in op order", body = schema::BatchData), schema::Errors))]
pub async fn batch(State(st): State<AppState>, caller: Caller, replay: Replay) -> Response {
    let parsed = (|| -> Result<_, ApiError> {
        let body = parse::json_object(&replay.body, false)?;
        parse::known_fields(&body, &["ops"], "a batch body")?;
        let ops = match body.get("ops") {
            Some(Value::Array(a)) => a.clone(),
            _ => return Err(ApiError::new(Code::InvalidJson, "the body needs an \"ops\" array")),
        };
        // Namespace first (any permission), then exactly the permissions the ops need.
        let ns = caller.namespace(0)?;
        let cmds = parse_ops(&st, &ns, &ops)?;
        let mut need = 0;
        if cmds.iter().any(reveals_state) {
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
            let rendered = results.iter().zip(deletes).map(|(r, d)| OpResult::new(r, d)).collect::<ApiResult<Vec<_>>>();
            match rendered {
                Ok(results) => Json(Data { data: Results { results } }).into_response(),
                Err(e) => e.into_response(),
            }
        }
        Ok((_, CmdResult::BatchRefused { index, refusal })) => {
            let e = ApiError::refused(refusal, false);
            // A missing key fails the batch as a whole, which is a conflict, not a 404.
            let e = if e.code == Code::NotFound { ApiError { code: Code::BatchOpNotFound, ..e } } else { e };
            e.for_op(index as usize).into_response()
        }
        Ok((_, other)) => ApiError::internal(format!("unexpected batch result {other:?}")).into_response(),
        Err(b) => b.into_response(),
    }
}

#[derive(Serialize)]
struct Results<'a> {
    results: Vec<OpResult<'a>>,
}

/// One op's result: the item, or what happened to a key that is not there.
#[derive(Serialize)]
#[serde(untagged)]
enum OpResult<'a> {
    Item(ItemView<'a>),
    Deleted { key: &'a str, deleted: bool },
    Found { key: &'a str, found: bool },
    Unexpected { unexpected: String },
}

impl<'a> OpResult<'a> {
    fn new(r: &'a CmdResult, is_delete: bool) -> ApiResult<Self> {
        Ok(match r {
            CmdResult::Item(item) => OpResult::Item(ItemView::new(item, true)?),
            CmdResult::Absent { key } if is_delete => OpResult::Deleted { key, deleted: false },
            CmdResult::Absent { key } => OpResult::Found { key, found: false },
            CmdResult::Deleted { key } => OpResult::Deleted { key, deleted: true },
            other => OpResult::Unexpected { unexpected: format!("{other:?}") },
        })
    }
}
