//! `/raft/*`: the receiving end of peer RPCs. Bodies are in the `net::wire` format.

use std::future::Future;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::AppState;
use crate::net::wire;

async fn handle<Req, Out, Fut>(body: Bytes, f: impl FnOnce(Req) -> Fut) -> Response
where
    Req: DeserializeOwned,
    Out: Serialize,
    Fut: Future<Output = Out>,
{
    let req: Req = match wire::decode(&body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("bad raft rpc body: {e}")).into_response(),
    };
    let out = f(req).await;
    match wire::encode(&out) {
        Ok(b) => ([("content-type", wire::CONTENT_TYPE)], b).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

pub async fn append(State(st): State<AppState>, body: Bytes) -> Response {
    handle(body, |req| async move { st.node.raft.append_entries(req).await }).await
}

pub async fn vote(State(st): State<AppState>, body: Bytes) -> Response {
    handle(body, |req| async move { st.node.raft.vote(req).await }).await
}

pub async fn snapshot(State(st): State<AppState>, body: Bytes) -> Response {
    handle(body, |req| async move { st.node.raft.install_snapshot(req).await }).await
}
