//! `/kv/items`: the native JSON API (the shape of seeds 000/001): single keys, increments and
//! scans. Validates input, builds commands, renders results. Batches are in `batch.rs`.

use std::collections::HashMap;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::auth::Caller;
use super::code::Code;
use super::error::ApiError;
use super::exec;
use super::forward::Replay;
use super::parse::{
    condition, decode_cursor, delta_of, encode_cursor, fence_only, fence_param, header_condition, json_object, key_of,
    known_fields, known_params, lease_id, no_precondition_headers, parse_version, query_of, scan_limit,
    single_condition, ttl_ms, value_text, PAGE_BYTES,
};
use super::render::{consistency_header, Data, ItemView};
use super::schema;
use super::state::AppState;
use crate::model::command::{perm, CmdResult, Command, Condition, Item};
use crate::protocol::names::{CONSISTENCY, INDEX};

#[derive(Serialize)]
struct Deleted {
    key: String,
    deleted: bool,
}

#[derive(Serialize)]
struct Page<'a> {
    items: Vec<ItemView<'a>>,
    #[serde(rename = "nextCursor")]
    next_cursor: Option<String>,
}

fn item_response(item: &Item, strong: bool) -> Response {
    let view = match ItemView::new(item, true) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let mut resp = Json(Data { data: view }).into_response();
    let h = resp.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", item.version)) {
        h.insert(header::ETAG, etag);
    }
    h.insert(CONSISTENCY, consistency_header(strong));
    resp
}

/// Renders a single-key write result.
fn write_response(result: CmdResult, precondition: bool) -> Response {
    match result {
        CmdResult::Item(item) => item_response(&item, true),
        CmdResult::Deleted { key } => Json(Data { data: Deleted { key, deleted: true } }).into_response(),
        CmdResult::Refused(r) => ApiError::refused(r, precondition).into_response(),
        other => ApiError::internal(format!("unexpected result {other:?}")).into_response(),
    }
}

/// Runs a parsed single-key write (or renders why it could not be parsed).
async fn run_write(st: &AppState, parsed: Result<(Command, bool), ApiError>, replay: Replay) -> Response {
    let (cmd, precondition) = match parsed {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    match exec::write_one(st, cmd, replay).await {
        Ok((_, r)) => write_response(r, precondition),
        Err(b) => b.into_response(),
    }
}

/// What a PUT body may hold. `ifNotExists`, `ifVersion` and `ifValue` are the conditions.
const PUT_FIELDS: &[&str] = &["value", "ttlSeconds", "ifNotExists", "ifVersion", "ifValue", "ifFence", "lease"];

#[utoipa::path(put, path = "/kv/items/{key}", tag = "items", operation_id = "putItem",
    summary = "Create or replace a key, optionally with a TTL or a condition",
    params(schema::KeyPath),
    request_body(content = schema::PutBody, description = "`If-Match: \"<version>\"` or `If-None-Match: *` may give the condition instead (412 when it fails)"),
    responses((status = 200, description = "the stored item", body = schema::ItemData), schema::Errors))]
pub async fn put_item(
    State(st): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    replay: Replay,
) -> Response {
    let parsed = (|| -> Result<_, ApiError> {
        caller.namespace(perm::WRITE)?;
        let key = key_of(path)?;
        let obj = json_object(&replay.body, false)?;
        known_fields(&obj, PUT_FIELDS, "a PUT body")?;
        known_params(&query_of(query)?, &[])?;
        let value =
            obj.get("value").ok_or_else(|| ApiError::new(Code::InvalidJson, "the body needs a \"value\" field"))?;
        let value = value_text(&st, value)?;
        let ttl_ms = ttl_ms(&st, obj.get("ttlSeconds"))?;
        let (cond, precondition) = condition(&obj, &replay.headers)?;
        let lease = obj.get("lease").filter(|v| !v.is_null()).map(lease_id).transpose()?;
        let ns = caller.namespace_for_write(cond != Condition::None)?;
        let cmd = match lease {
            // A plain set stays the original command, which every version of Cairn applies.
            None => Command::Set { ns, key, value, ttl_ms, cond },
            Some(lease) => Command::SetLeased { ns, key, value, ttl_ms, cond, lease },
        };
        Ok((cmd, precondition))
    })();
    run_write(&st, parsed, replay).await
}

#[utoipa::path(delete, path = "/kv/items/{key}", tag = "items", operation_id = "deleteItem",
    summary = "Delete a key, optionally only at a version",
    params(schema::KeyPath, schema::DeleteQuery),
    responses((status = 200, description = "deleted", body = schema::DeletedData), schema::Errors))]
pub async fn delete_item(
    State(st): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    replay: Replay,
) -> Response {
    let parsed = (|| -> Result<_, ApiError> {
        caller.namespace(perm::WRITE)?;
        let key = key_of(path)?;
        let q = query_of(query)?;
        known_params(&q, &["ifVersion", "ifFence"])?;
        if !replay.body.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::new(
                Code::UnknownField,
                "a DELETE takes no body: give ifVersion as a query parameter, or If-Match",
            ));
        }
        let mut found = Vec::new();
        if let Some(v) = q.get("ifVersion") {
            found.push((Condition::IfVersion(parse_version(v)?), false));
        }
        if let Some(v) = q.get("ifFence") {
            found.push((fence_param(v)?, false));
        }
        found.extend(header_condition(&replay.headers)?);
        let (cond, pre) = single_condition(found)?;
        let ns = caller.namespace_for_write(cond != Condition::None)?;
        Ok((Command::Delete { ns, key, cond }, pre))
    })();
    run_write(&st, parsed, replay).await
}

#[utoipa::path(post, path = "/kv/items/{key}/increment", tag = "items", operation_id = "incrementItem",
    summary = "Add to a number atomically; a missing key starts at 0",
    params(schema::KeyPath),
    request_body(content = Option<schema::IncrementBody>),
    responses((status = 200, description = "the item with its new value", body = schema::ItemData), schema::Errors))]
pub async fn increment_item(
    State(st): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    replay: Replay,
) -> Response {
    let parsed = (|| -> Result<_, ApiError> {
        // The answer is the stored value plus the delta: it needs `read` too.
        let ns = caller.namespace_for_write(true)?;
        let key = key_of(path)?;
        let obj = json_object(&replay.body, true)?;
        // An increment takes no condition but a fence: any other is refused, never dropped.
        known_fields(
            &obj,
            &["delta", "ttlSeconds", "ifFence"],
            "an increment body (increments take no condition but ifFence)",
        )?;
        known_params(&query_of(query)?, &[])?;
        no_precondition_headers(&replay.headers, "an increment")?;
        let delta = delta_of(obj.get("delta"))?;
        let ttl_ms = ttl_ms(&st, obj.get("ttlSeconds"))?;
        let cmd = match fence_only(&obj)? {
            None => Command::Increment { ns, key, delta, ttl_ms },
            Some(cond) => Command::IncrementFenced { ns, key, delta, ttl_ms, cond },
        };
        Ok((cmd, false))
    })();
    run_write(&st, parsed, replay).await
}

#[utoipa::path(get, path = "/kv/items/{key}", tag = "items", operation_id = "getItem",
    summary = "Read a key",
    params(schema::KeyPath, schema::ReadQuery),
    responses((status = 200, description = "the item; `X-Cairn-Index` is the applied index it reflects", body = schema::ItemData,
        headers(("X-Cairn-Index" = String, description = "the applied index the answer reflects"))), schema::Errors))]
pub async fn get_item(
    State(st): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    replay: Replay,
) -> Response {
    let parsed = (|| -> Result<_, ApiError> {
        let ns = caller.namespace(perm::READ)?;
        let key = key_of(path)?;
        let q = query_of(query)?;
        known_params(&q, &["consistency", "minVersion"])?;
        let strong = exec::is_strong(&st, q.get("consistency").map(String::as_str))?;
        let min_version = q.get("minVersion").map(|v| parse_version(v)).transpose()?;
        Ok((ns, key, strong, min_version))
    })();
    let (ns, key, strong, min_version) = match parsed {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let strong = match exec::before_read(&st, strong, min_version, replay).await {
        Ok(s) => s,
        Err(b) => return b.into_response(),
    };
    let (found, index) = match st.node.read_local_indexed(&ns, &key) {
        Ok(r) => r,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let mut r = match found {
        Some(item) => item_response(&item, strong),
        None => {
            let mut r = ApiError::new(Code::NotFound, "key not found").into_response();
            r.headers_mut().insert(CONSISTENCY, consistency_header(strong));
            r
        }
    };
    r.headers_mut().insert(INDEX, HeaderValue::from(index));
    r
}

/// `GET /kv/items?prefix=&cursor=&limit=&values=`.
#[utoipa::path(get, path = "/kv/items", tag = "items", operation_id = "scanItems",
    summary = "List keys in byte order, one page at a time",
    params(schema::ScanQuery),
    responses((status = 200, description = "one page; follow `nextCursor` until it is null", body = schema::PageData,
        headers(("X-Cairn-Index" = String, description = "the applied index the page reflects"))), schema::Errors))]
pub async fn scan_items(
    State(st): State<AppState>,
    caller: Caller,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    replay: Replay,
) -> Response {
    let parsed = (|| -> Result<_, ApiError> {
        let ns = caller.namespace(perm::READ)?;
        let q = query_of(query)?;
        known_params(&q, &["prefix", "cursor", "limit", "values", "consistency", "minVersion"])?;
        let prefix = q.get("prefix").cloned().unwrap_or_default();
        let after = q.get("cursor").filter(|c| !c.is_empty()).map(|c| decode_cursor(c, &prefix)).transpose()?;
        let limit = scan_limit(q.get("limit"))?;
        let values = match q.get("values").map(String::as_str) {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(_) => return Err(ApiError::new(Code::InvalidQuery, "values must be true or false")),
        };
        let strong = exec::is_strong(&st, q.get("consistency").map(String::as_str))?;
        // A page waits for minVersion as a GET does: an SDK's read-your-writes index covers
        // its scans too, so a follower page never goes back before the client's own write.
        let min_version = q.get("minVersion").map(|v| parse_version(v)).transpose()?;
        Ok((ns, prefix, after, limit, values, strong, min_version))
    })();
    let (ns, prefix, after, limit, values, strong, min_version) = match parsed {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let strong = match exec::before_read(&st, strong, min_version, replay).await {
        Ok(s) => s,
        Err(b) => return b.into_response(),
    };
    let (items, more, index) = match st.node.scan_local_indexed(&ns, &prefix, after.as_deref(), limit, PAGE_BYTES) {
        Ok(r) => r,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let next_cursor = if more { items.last().map(|i| encode_cursor(&i.key)) } else { None };
    let list = match items.iter().map(|i| ItemView::new(i, values)).collect::<Result<Vec<_>, _>>() {
        Ok(l) => l,
        Err(e) => return e.into_response(),
    };
    let mut resp = Json(Data { data: Page { items: list, next_cursor } }).into_response();
    resp.headers_mut().insert(CONSISTENCY, consistency_header(strong));
    resp.headers_mut().insert(INDEX, HeaderValue::from(index));
    resp
}
