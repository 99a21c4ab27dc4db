//! `POST /infra/kv {ops}`: up to 100 get/set/delete ops as one Raft entry, applied all or
//! nothing. A refused op (e.g. `if_not_exists` on an existing key) fails the whole batch with
//! 409 and the op's `index`; an empty batch succeeds with no results (the seed's own example).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::common::{
    bad, check_key, error, expires_at, if_not_exists, query_of, refused, ttl_of, value_text, QueryMap, Res,
};
use crate::api::auth::Caller;
use crate::api::error::ApiError;
use crate::api::exec;
use crate::api::forward::Replay;
use crate::api::state::AppState;
use crate::api::{parse, render};
use crate::model::command::{perm, CmdResult, Command, Condition};

const MAX_OPS: usize = 100;

/// A set op's fields: the seed's `{op, key, value, ttl?}` and Cairn's `if_not_exists`.
const SET_FIELDS: &[&str] = &["op", "key", "value", "ttl", "if_not_exists"];

/// One batch op: `{op: "get"|"set"|"delete", key, value?, ttl?, if_not_exists?}`. The seed
/// gives one shape for every op, but `value` and `ttl` mean something only to a set: on a get
/// or a delete they (like a misspelled field) are refused rather than ignored.
fn parse_op(st: &AppState, ns: &str, op: &Value) -> Res<Command> {
    let m = op.as_object().ok_or_else(|| bad("each op is a JSON object"))?;
    let (kind, fields) = match m.get("op").and_then(Value::as_str) {
        Some(kind @ ("get" | "delete")) => (kind, &["op", "key"][..]),
        Some("set") => ("set", SET_FIELDS),
        _ => return Err(bad("op must be get, set or delete")),
    };
    parse::known_fields(m, fields, &format!("a {kind} op"))?;
    let key = m.get("key").and_then(Value::as_str).ok_or_else(|| bad("each op needs a string `key`"))?;
    check_key(key, "key", false)?;
    let (ns, key) = (ns.to_string(), key.to_string());
    match kind {
        "get" => Ok(Command::Get { ns, key }),
        "delete" => Ok(Command::Delete { ns, key, cond: Condition::None }),
        _ => {
            // A set: the only other kind past the field check.
            let value = m.get("value").ok_or_else(|| bad("a set op needs a `value`"))?;
            let value = value_text(st, value)?;
            let ttl_ms = ttl_of(st, m.get("ttl"))?;
            let cond = if_not_exists(m.get("if_not_exists"))?;
            Ok(Command::Set { ns, key, value, ttl_ms, cond })
        }
    }
}

#[derive(Serialize)]
struct Results<'a> {
    results: Vec<OpResult<'a>>,
}

/// One op's result: `{key, value, expires_at, status}`; `value` is `null` and `expires_at`
/// absent for a deleted or missing key.
#[derive(Serialize)]
struct OpResult<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    value: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<Option<String>>,
    status: String,
}

impl<'a> OpResult<'a> {
    fn new(r: &'a CmdResult) -> Res<Self> {
        let gone = |key: &'a str, status: &str| OpResult {
            key: Some(key),
            value: None,
            expires_at: None,
            status: status.to_string(),
        };
        Ok(match r {
            CmdResult::Item(item) => OpResult {
                key: Some(&item.key),
                value: Some(render::raw(&item.value)?),
                expires_at: Some(expires_at(item.expires_at)),
                status: "ok".into(),
            },
            CmdResult::Deleted { key } => gone(key, "ok"),
            CmdResult::Absent { key } => gone(key, "not_found"),
            other => OpResult { key: None, value: None, expires_at: None, status: format!("{other:?}") },
        })
    }
}

/// `POST /infra/kv {ops}` → `{"results": [...]}` in op order.
#[utoipa::path(post, path = "/infra/kv", tag = "kv", operation_id = "batchOps",
    summary = "Up to 100 get, set and delete ops, applied atomically",
    request_body = crate::api::dialects::schema::SsBatchBody,
    responses((status = 200, description = "one result per op, in order", body = crate::api::dialects::schema::SsResults), crate::api::dialects::schema::SsErrors))]
pub(super) async fn batch(
    State(st): State<AppState>,
    caller: Res<Caller>,
    query: QueryMap,
    replay: Res<Replay>,
) -> Response {
    let parsed = (|| -> Res<_> {
        let caller = caller?;
        let ns = caller.namespace(perm::READ)?;
        query_of(query, &[])?;
        let replay = replay?;
        let body = parse::json_object(&replay.body, false)?;
        parse::known_fields(&body, &["ops"], "a batch body")?;
        let ops = match body.get("ops") {
            Some(Value::Array(a)) if a.len() <= MAX_OPS => a,
            Some(Value::Array(_)) => return Err(bad(format!("a batch holds at most {MAX_OPS} ops"))),
            _ => return Err(bad("the body needs an `ops` array")),
        };
        let cmds = ops
            .iter()
            .enumerate()
            .map(|(i, op)| parse_op(&st, &ns, op).map_err(|e| e.for_op(i)))
            .collect::<Res<Vec<_>>>()?;
        if cmds.iter().any(|c| !matches!(c, Command::Get { .. })) {
            caller.namespace(perm::WRITE)?;
        }
        Ok((cmds, replay))
    })();
    let (cmds, replay) = match parsed {
        Ok(p) if p.0.is_empty() => return Json(Results { results: Vec::new() }).into_response(),
        Ok(p) => p,
        Err(e) => return error(e),
    };
    match exec::write_one(&st, Command::Batch(cmds), replay).await {
        Ok((_, CmdResult::Batch(results))) => match results.iter().map(OpResult::new).collect::<Res<Vec<_>>>() {
            Ok(results) => Json(Results { results }).into_response(),
            Err(e) => error(e),
        },
        Ok((_, CmdResult::BatchRefused { index, refusal })) => error(refused(refusal).for_op(index as usize)),
        Ok((_, other)) => error(ApiError::internal(format!("unexpected batch result {other:?}"))),
        Err(b) => b.render(error),
    }
}
