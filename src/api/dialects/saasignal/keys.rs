//! saasignal's single-key routes (`GET`, `PUT`, `DELETE /infra/kv/{key}`, `POST
//! /infra/kv/{key}/increment`) and the prefix scan (`GET /infra/kv`).

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::common::{
    bad, check_key, error, if_not_exists, key_of, query_of, refused, ttl_of, value_text, ItemBody, QueryMap, Res,
};
use crate::api::auth::Caller;
use crate::api::code::Code;
use crate::api::dialects::shared::mark_consistency;
use crate::api::error::ApiError;
use crate::api::exec::{self, Blocked};
use crate::api::forward::Replay;
use crate::api::parse;
use crate::api::state::AppState;
use crate::model::command::{perm, CmdResult, Command, Condition, Refusal};

#[derive(Serialize)]
struct DeletedBody {
    status: &'static str,
    key: String,
    deleted: bool,
}

#[derive(Serialize)]
struct ScanBody<'a> {
    status: &'static str,
    keys: Vec<&'a str>,
    next_cursor: Option<String>,
}

/// A body, or the error that stopped it, as a response.
fn json<T: Serialize>(body: Res<T>) -> Response {
    match body {
        Ok(b) => Json(b).into_response(),
        Err(e) => error(e),
    }
}

/// Renders the result of a single-key write with `render`, which answers `None` for a result
/// the route never expects.
fn write_result(r: Result<(u64, CmdResult), Blocked>, render: impl FnOnce(&CmdResult) -> Option<Response>) -> Response {
    match r {
        Ok((_, CmdResult::Refused(refusal))) => error(refused(refusal)),
        Ok((_, result)) => {
            render(&result).unwrap_or_else(|| error(ApiError::internal(format!("unexpected {result:?}"))))
        }
        Err(b) => b.render(error),
    }
}

/// `GET /infra/kv/{key}` → `{key, value, expires_at}`.
#[utoipa::path(get, path = "/infra/kv/{key}", tag = "kv", operation_id = "getKey", summary = "Read a key",
    params(crate::api::dialects::schema::SsKeyPath, crate::api::dialects::schema::SsReadQuery),
    responses((status = 200, description = "the key", body = crate::api::dialects::schema::SsItem), crate::api::dialects::schema::SsErrors))]
pub(super) async fn get_key(
    State(st): State<AppState>,
    caller: Res<Caller>,
    path: Result<Path<String>, PathRejection>,
    query: QueryMap,
    replay: Res<Replay>,
) -> Response {
    let parsed = (|| -> Res<_> {
        let ns = caller?.namespace(perm::READ)?;
        let key = key_of(path)?;
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
        Ok(Some(item)) => json(ItemBody::new(&item, None)),
        Ok(None) => error(refused(Refusal::NotFound)),
        Err(e) => error(e.into()),
    };
    mark_consistency(resp, strong)
}

/// `PUT /infra/kv/{key}` with `{value, ttl?, if_not_exists?}` → `{key, value, expires_at}`.
#[utoipa::path(put, path = "/infra/kv/{key}", tag = "kv", operation_id = "putKey",
    summary = "Create or replace a key, optionally with a TTL or only if absent",
    params(crate::api::dialects::schema::SsKeyPath), request_body = crate::api::dialects::schema::SsPutBody,
    responses((status = 200, description = "the stored key", body = crate::api::dialects::schema::SsItem), crate::api::dialects::schema::SsErrors))]
pub(super) async fn put_key(
    State(st): State<AppState>,
    caller: Res<Caller>,
    path: Result<Path<String>, PathRejection>,
    query: QueryMap,
    replay: Res<Replay>,
) -> Response {
    let parsed = (|| -> Res<_> {
        let caller = caller?;
        caller.namespace(perm::WRITE)?;
        let key = key_of(path)?;
        query_of(query, &[])?;
        let replay = replay?;
        let obj = parse::json_object(&replay.body, false)?;
        // Before `value` is looked for: `{"valeu": 1}` is a misspelling, named as one.
        parse::known_fields(&obj, &["value", "ttl", "if_not_exists"], "a PUT body")?;
        let value = obj.get("value").ok_or_else(|| bad("the body needs a `value` field"))?;
        let value = value_text(&st, value)?;
        let ttl_ms = ttl_of(&st, obj.get("ttl"))?;
        let cond = if_not_exists(obj.get("if_not_exists"))?;
        let ns = caller.namespace_for_write(cond != Condition::None)?;
        Ok((Command::Set { ns, key, value, ttl_ms, cond }, replay))
    })();
    let (cmd, replay) = match parsed {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    write_result(exec::write_one(&st, cmd, replay).await, |r| match r {
        CmdResult::Item(item) => Some(json(ItemBody::new(item, None))),
        _ => None,
    })
}

/// `DELETE /infra/kv/{key}` → `{"status": "ok", "key", "deleted": true}`, 404 if absent.
#[utoipa::path(delete, path = "/infra/kv/{key}", tag = "kv", operation_id = "deleteKey",
    summary = "Delete a key; the body, if any, is `{}`",
    params(crate::api::dialects::schema::SsKeyPath),
    responses((status = 200, description = "deleted", body = crate::api::dialects::schema::SsDeleted), crate::api::dialects::schema::SsErrors))]
pub(super) async fn delete_key(
    State(st): State<AppState>,
    caller: Res<Caller>,
    path: Result<Path<String>, PathRejection>,
    query: QueryMap,
    replay: Res<Replay>,
) -> Response {
    let parsed = (|| -> Res<_> {
        let ns = caller?.namespace(perm::WRITE)?;
        let key = key_of(path)?;
        query_of(query, &[])?;
        let replay = replay?;
        // A delete is unconditional: a field sent with it (a condition, say) would be ignored.
        if let Some(field) = parse::json_object(&replay.body, true)?.keys().next() {
            return Err(ApiError::new(Code::UnknownField, format!("unknown field `{field}`: a DELETE takes no body")));
        }
        Ok((Command::Delete { ns, key, cond: Condition::None }, replay))
    })();
    let (cmd, replay) = match parsed {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    write_result(exec::write_one(&st, cmd, replay).await, |r| match r {
        CmdResult::Deleted { key } => Some(json(Ok(DeletedBody { status: "ok", key: key.clone(), deleted: true }))),
        _ => None,
    })
}

/// `POST /infra/kv/{key}/increment` with `{delta?, ttl?}` → `{"status": "ok", key, value,
/// expires_at}`; `ttl` applies when the increment creates the key.
#[utoipa::path(post, path = "/infra/kv/{key}/increment", tag = "kv", operation_id = "incrementKey",
    summary = "Add to a number atomically; a missing key starts at 0",
    params(crate::api::dialects::schema::SsKeyPath), request_body(content = Option<crate::api::dialects::schema::SsIncrementBody>),
    responses((status = 200, description = "the key with its new value", body = crate::api::dialects::schema::SsItem), crate::api::dialects::schema::SsErrors))]
pub(super) async fn increment(
    State(st): State<AppState>,
    caller: Res<Caller>,
    path: Result<Path<String>, PathRejection>,
    query: QueryMap,
    replay: Res<Replay>,
) -> Response {
    let parsed = (|| -> Res<_> {
        // The answer is the stored value plus the delta: it needs `read` too.
        let ns = caller?.namespace_for_write(true)?;
        let key = key_of(path)?;
        query_of(query, &[])?;
        let replay = replay?;
        let obj = parse::json_object(&replay.body, true)?;
        // An increment is unconditional: `if_not_exists` here is refused, never dropped.
        parse::known_fields(&obj, &["delta", "ttl"], "an increment body")?;
        let delta = parse::delta_of(obj.get("delta"))?;
        let ttl_ms = ttl_of(&st, obj.get("ttl"))?;
        Ok((Command::Increment { ns, key, delta, ttl_ms }, replay))
    })();
    let (cmd, replay) = match parsed {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    write_result(exec::write_one(&st, cmd, replay).await, |r| match r {
        CmdResult::Item(item) => Some(json(ItemBody::new(item, Some("ok")))),
        _ => None,
    })
}

/// `GET /infra/kv?prefix&cursor&limit` → `{"status": "ok", "keys": [...], "next_cursor"}`.
#[utoipa::path(get, path = "/infra/kv", tag = "kv", operation_id = "scanKeys",
    summary = "List key names in byte order, one page at a time",
    params(crate::api::dialects::schema::SsScanQuery),
    responses((status = 200, description = "one page; follow `next_cursor` until it is null", body = crate::api::dialects::schema::SsPage), crate::api::dialects::schema::SsErrors))]
pub(super) async fn scan(
    State(st): State<AppState>,
    caller: Res<Caller>,
    query: QueryMap,
    replay: Res<Replay>,
) -> Response {
    let parsed = (|| -> Res<_> {
        let ns = caller?.namespace(perm::READ)?;
        // The seed's three, plus Cairn's `consistency`.
        let q = query_of(query, &["prefix", "cursor", "limit", "consistency"])?;
        let prefix = q.get("prefix").cloned().unwrap_or_default();
        check_key(&prefix, "prefix", true)?;
        let after = q.get("cursor").filter(|c| !c.is_empty()).map(|c| parse::decode_cursor(c, &prefix)).transpose()?;
        let limit = parse::scan_limit(q.get("limit"))?;
        let strong = exec::is_strong(&st, q.get("consistency").map(String::as_str))?;
        Ok((ns, prefix, after, limit, strong, replay?))
    })();
    let (ns, prefix, after, limit, strong, replay) = match parsed {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    if let Err(b) = exec::before_read(&st, strong, None, replay).await {
        return b.render(error);
    }
    // Only keys are answered, but the values are read with them: the same page budget holds.
    let (items, more) = match st.node.scan_local(&ns, &prefix, after.as_deref(), limit, parse::PAGE_BYTES) {
        Ok(r) => r,
        Err(e) => return error(e.into()),
    };
    let next_cursor = items.last().filter(|_| more).map(|last| parse::encode_cursor(&last.key));
    let keys = items.iter().map(|i| i.key.as_str()).collect();
    mark_consistency(json(Ok(ScanBody { status: "ok", keys, next_cursor })), strong)
}
