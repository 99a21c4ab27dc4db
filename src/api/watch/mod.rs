//! `GET /kv/watch`: the change feed of a namespace's keys under a prefix (docs/api.md, "Watch").
//!
//! Every node serves it from its own applies (`sm/history.rs`), so a stream resumed on another
//! node with `Last-Event-ID` continues with the same ids. The answer is a Server-Sent Events
//! stream, or with `Accept: application/json` a long poll. What goes out comes from one ordered
//! [`cursor::Cursor`]: changes, progress and the end of the history never overtake each other.
//!
//! - `cursor.rs`: history, then live feed, then history again after a lag

mod cursor;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::time::Instant;

use super::auth::{Caller, Principal};
use super::code::Code;
use super::error::ApiError;
use super::parse::{known_params, parse_version, query_of};
use super::render::{raw, rfc3339};
use super::schema;
use super::state::AppState;
use crate::metrics::METRICS;
use crate::model::command::perm;
use crate::sm::history::Change;
use cursor::{Cursor, Step};

/// How long a watch whose `after` is ahead of this node's applied index waits for it.
const AHEAD_WAIT: Duration = Duration::from_secs(5);
/// How often a stream wakes to check its client, its token and its progress.
const TICK: Duration = Duration::from_secs(1);
/// A progress event goes out once the position has moved past filtered entries for this long,
/// or by this many entries, since the last event.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
const PROGRESS_ENTRIES: u64 = 1_000;
/// SSE comment lines on an idle stream, so proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// A long poll answers with at most this many entries; `index` says where to go on.
const POLL_MAX_ENTRIES: usize = 1_000;
const POLL_MAX_WAIT: Duration = Duration::from_secs(60);
/// Events buffered between a stream's cursor and its connection; a client slower than this
/// holds its cursor back, which then catches up from the history.
const STREAM_BUFFER: usize = 64;

/// One change as watchers see it.
#[derive(Serialize)]
struct ChangeView<'a> {
    op: &'static str,
    key: &'a str,
    #[serde(serialize_with = "as_string")]
    version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a RawValue>,
    #[serde(rename = "expiresAt")]
    expires_at: Option<String>,
}

/// One entry's watched changes.
#[derive(Serialize)]
struct EntryView<'a> {
    #[serde(serialize_with = "as_string")]
    index: u64,
    changes: Vec<ChangeView<'a>>,
}

fn as_string<S: serde::Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn entry_view(index: u64, changes: &[Change], values: bool) -> Result<EntryView<'_>, ApiError> {
    let changes = changes
        .iter()
        .map(|c| {
            Ok(ChangeView {
                op: c.op.name(),
                key: &c.key,
                version: c.version,
                value: match (&c.value, values) {
                    (Some(v), true) => Some(raw(v)?),
                    _ => None,
                },
                expires_at: c.expires_at.map(rfc3339),
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(EntryView { index, changes })
}

/// What a watch asked for.
struct Ask {
    ns: String,
    prefix: String,
    after: Option<u64>,
    values: bool,
    /// `Some` for a long poll.
    wait: Option<Duration>,
}

fn parse_index(v: &str, what: &str) -> Result<u64, ApiError> {
    parse_version(v)
        .map_err(|_| ApiError::new(Code::InvalidQuery, format!("{what} must be a log index (1 to 19 digits)")))
}

/// `30s`, `30`, `500ms`: how long a long poll may wait.
fn parse_wait(v: &str) -> Result<Duration, ApiError> {
    let bad = || ApiError::new(Code::InvalidQuery, "wait must be a duration such as 30s or 500ms, at most 60s");
    let d = super::parse::duration(v).ok_or_else(bad)?;
    if d > POLL_MAX_WAIT {
        return Err(bad());
    }
    Ok(d)
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().starts_with("application/json")))
}

fn parse(caller: &Caller, query: HashMap<String, String>, headers: &HeaderMap) -> Result<Ask, ApiError> {
    let ns = caller.namespace(perm::READ)?;
    known_params(&query, &["prefix", "after", "values", "wait"])?;
    let prefix = query.get("prefix").cloned().unwrap_or_default();
    if prefix.chars().any(char::is_control) {
        return Err(ApiError::new(Code::InvalidKey, "a prefix holds no control characters"));
    }
    // An EventSource reconnecting sends Last-Event-ID with its original URL: the header wins.
    let after = match headers.get("last-event-id") {
        Some(v) => Some(parse_index(v.to_str().unwrap_or("-"), "Last-Event-ID")?),
        None => query.get("after").map(|v| parse_index(v, "after")).transpose()?,
    };
    let values = match query.get("values").map(String::as_str) {
        None | Some("true") | Some("1") => true,
        Some("false") | Some("0") => false,
        Some(_) => return Err(ApiError::new(Code::InvalidQuery, "values must be true or false")),
    };
    let json = wants_json(headers);
    let wait = match (query.get("wait"), json) {
        (Some(w), true) => Some(parse_wait(w)?),
        (None, true) => Some(Duration::from_secs(30)),
        (Some(_), false) => {
            return Err(ApiError::new(Code::InvalidQuery, "wait applies to long polls (Accept: application/json)"))
        }
        (None, false) => None,
    };
    Ok(Ask { ns, prefix, after, values, wait })
}

/// 410 before any byte of a stream: the history no longer reaches back to the resume point.
fn compacted_response(compacted: u64, current: u64) -> Response {
    let body = serde_json::json!({"error": {
        "code": Code::Compacted.as_str(),
        "message": format!("the history on this node starts after index {compacted}; list again, then watch from the listing's X-Cairn-Index"),
        "compactedIndex": compacted.to_string(),
        "currentIndex": current.to_string(),
    }});
    (StatusCode::GONE, Json(body)).into_response()
}

#[utoipa::path(get, path = "/kv/watch", tag = "watch", operation_id = "watch",
    summary = "Follow changes under a prefix: Server-Sent Events, or a long poll with `Accept: application/json`",
    params(schema::WatchQuery, schema::WatchHeaders),
    responses((status = 200, description = "a stream of `change`, `progress`, `compacted`, `revoked` and `error` events (`text/event-stream`), or a long poll's answer",
        content((schema::SseEvent = "text/event-stream"), (schema::WatchPoll = "application/json"))),
        (status = 410, description = "`compacted`: the node keeps no history back to `after`", body = schema::ErrorEnvelope),
        schema::Errors))]
pub async fn watch(
    State(st): State<AppState>,
    caller: Caller,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let ask = match query_of(query).and_then(|q| parse(&caller, q, &headers)) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let slot = match st.watchers.enter(&ask.ns, st.node.config.watchers) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let reader = st.node.reader.clone();
    // Subscribed before the first read: nothing applied from here on is missed.
    let feed = reader.subscribe();
    let start = match ask.after {
        None => reader.applied_index(),
        Some(after) => {
            let deadline = Instant::now() + AHEAD_WAIT;
            while reader.applied_index() < after {
                if Instant::now() >= deadline {
                    return ApiError::new(
                        Code::NotCaughtUp,
                        format!("this node has not applied index {after} yet; try again or another node"),
                    )
                    .retry_after(1)
                    .into_response();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            after
        }
    };
    match reader.history_after(start, 0) {
        Ok(Ok(_)) => {}
        Ok(Err(compacted)) => {
            METRICS.watch_compacted.fetch_add(1, Ordering::Relaxed);
            return compacted_response(compacted, reader.applied_index());
        }
        Err(e) => return ApiError::new(Code::StorageError, e.to_string()).into_response(),
    }
    let cursor = Cursor::new(reader, feed, ask.ns.clone(), ask.prefix.clone(), start);
    let token = match &caller.principal {
        Principal::Token { id, .. } => Some(id.clone()),
        _ => None,
    };
    match ask.wait {
        Some(wait) => long_poll(cursor, ask.values, wait, st.stopping.subscribe()).await,
        None => stream(st, cursor, ask.values, token, ask.after.is_none(), slot),
    }
}

/// `Accept: application/json`: the events after the position at once if there are any, else
/// the first ones within `wait`, else none; `index` is where the next poll resumes.
async fn long_poll(
    mut cursor: Cursor,
    values: bool,
    wait: Duration,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) -> Response {
    let deadline = Instant::now() + wait;
    let mut entries: Vec<(u64, Vec<Change>)> = Vec::new();
    loop {
        // Once something is found, only what is already there joins it.
        let until = if entries.is_empty() { deadline } else { Instant::now() };
        let step = tokio::select! {
            s = cursor.next(until) => s,
            // The node drains: answer with what there is, now.
            Ok(_) = stopping.wait_for(|s| *s) => Ok(Step::Idle),
        };
        match step {
            Ok(Step::Changes { index, changes, .. }) => {
                entries.push((index, changes));
                if entries.len() == POLL_MAX_ENTRIES {
                    break;
                }
            }
            Ok(Step::Idle) | Ok(Step::Closed) => break,
            Ok(Step::Compacted { compacted, current }) => {
                if entries.is_empty() {
                    return compacted_response(compacted, current);
                }
                break;
            }
            Err(e) => return ApiError::new(Code::StorageError, e.to_string()).into_response(),
        }
    }
    let views = match entries.iter().map(|(i, c)| entry_view(*i, c, values)).collect::<Result<Vec<_>, _>>() {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    METRICS.watch_events.fetch_add(views.len() as u64, Ordering::Relaxed);
    let body = serde_json::json!({"events": views, "index": cursor.position().to_string()});
    Json(body).into_response()
}

/// The SSE stream: a task runs the cursor and hands events to the connection through a small
/// buffer, and ends when the client leaves, the history runs out or the token is revoked.
fn stream(
    st: AppState,
    mut cursor: Cursor,
    values: bool,
    token: Option<String>,
    fresh: bool,
    slot: super::watchers::Slot,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(STREAM_BUFFER);
    tokio::spawn(async move {
        let _slot = slot;
        let mut last_sent = cursor.position();
        let mut last_event = Instant::now();
        let mut last_auth = Instant::now();
        let mut stopping = st.stopping.subscribe();
        // A fresh watch learns where it starts; a resumed one already knows.
        if fresh && tx.send(progress(last_sent)).await.is_err() {
            return;
        }
        loop {
            let step = tokio::select! {
                s = cursor.next(Instant::now() + TICK) => s,
                () = tx.closed() => return,
                // The node drains: the stream ends, and its client resumes elsewhere.
                Ok(_) = stopping.wait_for(|s| *s) => return,
            };
            let event = match step {
                Ok(Step::Changes { index, changes, live }) => {
                    let data = match entry_view(index, &changes, values)
                        .and_then(|v| serde_json::to_string(&v).map_err(|e| ApiError::internal(e.to_string())))
                    {
                        Ok(d) => d,
                        Err(e) => {
                            let _ = tx.send(Event::default().event("error").data(e.message)).await;
                            return;
                        }
                    };
                    METRICS.watch_events.fetch_add(1, Ordering::Relaxed);
                    if let Some(at) = live {
                        METRICS.watch_delay.observe(at.elapsed());
                    }
                    last_sent = index;
                    Some(Event::default().id(index.to_string()).event("change").data(data))
                }
                Ok(Step::Idle) => {
                    let moved = cursor.position().saturating_sub(last_sent);
                    (moved > 0 && (moved >= PROGRESS_ENTRIES || last_event.elapsed() >= PROGRESS_EVERY)).then(|| {
                        last_sent = cursor.position();
                        progress(last_sent)
                    })
                }
                Ok(Step::Compacted { compacted, current }) => {
                    let data = serde_json::json!({"compactedIndex": compacted.to_string(), "currentIndex": current.to_string()});
                    let _ = tx.send(Event::default().event("compacted").data(data.to_string())).await;
                    return;
                }
                Ok(Step::Closed) => return,
                Err(e) => {
                    let _ = tx.send(Event::default().event("error").data(e.to_string())).await;
                    return;
                }
            };
            if let Some(event) = event {
                last_event = Instant::now();
                if tx.send(event).await.is_err() {
                    return;
                }
            }
            if let Some(id) = token.as_ref().filter(|_| last_auth.elapsed() >= TICK) {
                last_auth = Instant::now();
                // Revoked (or expired) since the stream opened: it ends now, on every node.
                if !matches!(st.node.token(id), Ok(Some(_))) {
                    let _ = tx.send(Event::default().event("revoked").data("the token was revoked")).await;
                    return;
                }
            }
        }
    });
    let events =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx)) });
    let mut resp =
        Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive")).into_response();
    let h = resp.headers_mut();
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

fn progress(index: u64) -> Event {
    Event::default().id(index.to_string()).event("progress").data(format!("{{\"index\":\"{index}\"}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_parse_in_seconds_or_milliseconds_up_to_a_minute() {
        assert_eq!(parse_wait("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_wait("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_wait("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_wait("61s").is_err());
        assert!(parse_wait("soon").is_err());
        assert!(parse_wait("-1").is_err());
    }
}
