//! `/elections/{name}`: leader election in the shape of etcd's v3 election API. Candidates
//! queue like a lock's waiters (`queue.rs`), each with a lease and a value; the first one whose
//! lease is live leads, and its token fences `proclaim`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::auth::{Caller, Principal};
use super::code::Code;
use super::error::ApiError;
use super::exec;
use super::forward::Replay;
use super::parse::{json_object, key_of, known_fields, known_params, lease_id, query_of, value_text};
use super::queue;
use super::render::Data;
use super::schema;
use super::state::AppState;
use crate::model::command::{perm, CmdResult, Command, Queue};
use crate::sm::QueueView;

/// How often an observer re-reads the election when no apply woke it (a lease can run out
/// with no entry to say so until the expiry sweep, which is an apply; this is a backstop).
const OBSERVE_TICK: Duration = Duration::from_secs(1);

#[derive(Serialize, Clone)]
struct Leader {
    name: String,
    token: String,
    lease: String,
    /// The leader's value, as stored.
    value: Box<RawValue>,
}

impl PartialEq for Leader {
    fn eq(&self, other: &Self) -> bool {
        (&self.name, &self.token, &self.lease, self.value.get())
            == (&other.name, &other.token, &other.lease, other.value.get())
    }
}

impl Leader {
    fn of(name: &str, q: &QueueView) -> Option<Leader> {
        let (token, w) = q.holder()?;
        Some(Leader {
            name: name.to_string(),
            token: token.to_string(),
            lease: w.lease.to_string(),
            value: RawValue::from_string(w.value.clone()).ok()?,
        })
    }
}

#[derive(Serialize)]
struct Resigned {
    name: String,
    token: String,
    resigned: bool,
}

#[utoipa::path(post, path = "/elections/{name}/campaign", tag = "elections", operation_id = "campaign",
    summary = "Stand for election; answers once this caller leads (or its `wait` ran out)",
    params(schema::NamePath),
    request_body = schema::CampaignBody,
    responses((status = 200, description = "this caller leads", body = schema::LeaderData), schema::Errors))]
pub async fn campaign(
    State(st): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    replay: Replay,
) -> Response {
    let parsed = (|| -> Result<_, ApiError> {
        let ns = caller.namespace(perm::WRITE)?;
        let name = key_of(path)?;
        let body = json_object(&replay.body, false)?;
        known_fields(&body, &["lease", "value", "wait"], "a campaign")?;
        let lease = lease_id(body.get("lease").unwrap_or(&Value::Null))?;
        let value =
            body.get("value").ok_or_else(|| ApiError::new(Code::InvalidJson, "a campaign needs a \"value\""))?;
        Ok((ns, name, lease, value_text(&st, value)?, queue::parse_wait(body.get("wait"))?))
    })();
    let (ns, name, lease, value, wait) = match parsed {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let token =
        match queue::take_turn(&st, replay, &ns, Queue::Election, &name, lease, value, wait, Duration::ZERO).await {
            Ok(t) => t,
            Err(b) => return b.into_response(),
        };
    // The value as the election holds it: a retried campaign keeps its first place and value.
    leader_response(&st, &ns, &name, Some(token))
}

fn leader_response(st: &AppState, ns: &str, name: &str, expect: Option<u64>) -> Response {
    let q = match st.node.reader.queue(ns, Queue::Election, name) {
        Ok(q) => q,
        Err(e) => return ApiError::internal(e.to_string()).into_response(),
    };
    match Leader::of(name, &q).filter(|l| expect.is_none_or(|t| l.token == t.to_string())) {
        Some(l) => Json(Data { data: l }).into_response(),
        None => ApiError::new(Code::NotFound, format!("election `{name}` has no leader")).into_response(),
    }
}

#[utoipa::path(put, path = "/elections/{name}/proclaim", tag = "elections", operation_id = "proclaim",
    summary = "Change the leader's value; 409 `fenced` unless `token` still leads",
    params(schema::NamePath),
    request_body = schema::ProclaimBody,
    responses((status = 200, description = "the leader, with its new value", body = schema::LeaderData), schema::Errors))]
pub async fn proclaim(
    State(st): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    replay: Replay,
) -> Response {
    let parsed = (|| -> Result<_, ApiError> {
        let ns = caller.namespace(perm::WRITE)?;
        let name = key_of(path)?;
        let body = json_object(&replay.body, false)?;
        known_fields(&body, &["token", "value"], "a proclaim")?;
        let token = lease_id(body.get("token").unwrap_or(&Value::Null))
            .map_err(|_| ApiError::new(Code::InvalidId, "token: the leadership token, 1 to 19 digits"))?;
        let value =
            body.get("value").ok_or_else(|| ApiError::new(Code::InvalidJson, "a proclaim needs a \"value\""))?;
        Ok((ns, name, token, value_text(&st, value)?))
    })();
    let (ns, name, token, value) = match parsed {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let cmd = Command::Proclaim { ns: ns.clone(), name: name.clone(), token, value: value.clone() };
    match exec::write_one(&st, cmd, replay).await {
        Ok((_, CmdResult::Proclaimed { .. })) => match RawValue::from_string(value) {
            Ok(value) => {
                let (name, token) = (name.clone(), token.to_string());
                // The lease is the leader's; read it back rather than trust the caller.
                let lease = st
                    .node
                    .reader
                    .queue(&ns, Queue::Election, &name)
                    .ok()
                    .and_then(|q| q.holder().map(|(_, w)| w.lease.to_string()))
                    .unwrap_or_default();
                Json(Data { data: Leader { name, token, lease, value } }).into_response()
            }
            Err(e) => ApiError::internal(e.to_string()).into_response(),
        },
        Ok((_, CmdResult::Refused(r))) => ApiError::refused(r, false).into_response(),
        Ok((_, other)) => ApiError::internal(format!("unexpected result {other:?}")).into_response(),
        Err(b) => b.into_response(),
    }
}

#[utoipa::path(get, path = "/elections/{name}/leader", tag = "elections", operation_id = "getLeader",
    summary = "The election's leader and its value; 404 when none leads",
    params(schema::NamePath, schema::LeaseReadQuery),
    responses((status = 200, description = "the leader", body = schema::LeaderData), schema::Errors))]
pub async fn leader(
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
    if let Err(b) = exec::before_read(&st, strong, None, replay).await {
        return b.into_response();
    }
    leader_response(&st, &ns, &name, None)
}

#[utoipa::path(get, path = "/elections/{name}/observe", tag = "elections", operation_id = "observeElection",
    summary = "Server-Sent Events: `leader` with the leader at once and at every change, `none` while none leads; `revoked` ends it when the token is revoked",
    params(schema::NamePath),
    responses((status = 200, description = "an event stream", body = schema::ObserveEvent, content_type = "text/event-stream"), schema::Errors))]
pub async fn observe(
    State(st): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let parsed = (|| -> Result<_, ApiError> {
        let ns = caller.namespace(perm::READ)?;
        let name = key_of(path)?;
        known_params(&query_of(query)?, &[])?;
        if !accepts_events(&headers) {
            return Err(ApiError::new(
                Code::NotAcceptable,
                "observe answers only as text/event-stream; GET /elections/{name}/leader reads the leader once",
            ));
        }
        Ok((ns, name))
    })();
    let (ns, name) = match parsed {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    // Like a watch, the stream ends once the token it was opened with is revoked or expires.
    let token = match &caller.principal {
        Principal::Token { id, .. } => Some(id.clone()),
        _ => None,
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(16);
    tokio::spawn(async move {
        let mut feed = st.node.reader.subscribe();
        let mut last: Option<Option<Leader>> = None;
        loop {
            if token.as_ref().is_some_and(|id| !matches!(st.node.token(id), Ok(Some(_)))) {
                let _ = tx.send(Event::default().event("revoked").data("the token was revoked")).await;
                return;
            }
            let now = match st.node.reader.queue(&ns, Queue::Election, &name) {
                Ok(q) => Leader::of(&name, &q),
                Err(e) => {
                    let _ = tx.send(Event::default().event("error").data(e.to_string())).await;
                    return;
                }
            };
            if last.as_ref() != Some(&now) {
                let event = match &now {
                    Some(l) => Event::default().event("leader").json_data(l).unwrap_or_default(),
                    None => Event::default().event("none").data("{}"),
                };
                if tx.send(event).await.is_err() {
                    return;
                }
                last = Some(now);
            }
            tokio::select! {
                _ = feed.recv() => {}
                _ = tokio::time::sleep(OBSERVE_TICK) => {}
                _ = tx.closed() => return,
            }
        }
    });
    let events =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx)) });
    let mut resp = Sse::new(events).keep_alive(KeepAlive::default()).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// No `Accept`, or one that takes an event stream.
fn accepts_events(headers: &HeaderMap) -> bool {
    let mut accepts = headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).peekable();
    accepts.peek().is_none()
        || accepts.flat_map(|v| v.split(',')).any(|t| {
            let t = t.trim();
            t.starts_with("text/event-stream") || t.starts_with("*/*") || t.starts_with("text/*")
        })
}

#[utoipa::path(delete, path = "/elections/{name}/resign", tag = "elections", operation_id = "resign",
    summary = "Give up leadership (or the candidacy) of `token`",
    params(schema::NamePath, schema::ResignQuery),
    responses((status = 200, description = "resigned", body = schema::ResignedData), schema::Errors))]
pub async fn resign(
    State(st): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    replay: Replay,
) -> Response {
    let parsed = (|| -> Result<_, ApiError> {
        let ns = caller.namespace(perm::WRITE)?;
        let name = key_of(path)?;
        let q = query_of(query)?;
        known_params(&q, &["token"])?;
        let token = lease_id(&Value::String(q.get("token").cloned().unwrap_or_default()))
            .map_err(|_| ApiError::new(Code::InvalidId, "token: the leadership token, 1 to 19 digits"))?;
        Ok((ns, name, token))
    })();
    let (ns, name, token) = match parsed {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    match queue::leave(&st, replay, &ns, Queue::Election, &name, token).await {
        Ok(()) => Json(Data { data: Resigned { name, token: token.to_string(), resigned: true } }).into_response(),
        Err(b) => b.into_response(),
    }
}
