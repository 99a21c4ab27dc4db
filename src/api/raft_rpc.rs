//! `/raft/*`: the receiving end of peer RPCs. Bodies are in the `net::wire` format.

use std::future::Future;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use openraft::raft::{AppendEntriesResponse, VoteRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::auth::same_secret;
use super::code::Code;
use super::error::ApiError;
use super::state::AppState;
use crate::listener::Conn;
use crate::model::types::NodeId;
use crate::net::wire;
use crate::protocol::H_CLUSTER_SECRET;

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
    reply(f(req).await)
}

fn reply(out: impl Serialize) -> Response {
    match wire::encode(&out) {
        Ok(b) => ([("content-type", wire::CONTENT_TYPE)], b).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

pub async fn append(State(st): State<AppState>, body: Bytes) -> Response {
    handle(body, |req| async move {
        let out = st.node.raft.append_entries(req).await;
        // Any answer but "your vote is stale" means the sender is this node's leader.
        if matches!(out, Ok(ref r) if !matches!(r, AppendEntriesResponse::HigherVote(_))) {
            st.node.campaign.heard_from_leader();
        }
        out
    })
    .await
}

pub async fn vote(State(st): State<AppState>, body: Bytes) -> Response {
    handle(body, |req: VoteRequest<NodeId>| async move {
        let out = st.node.raft.vote(req.clone()).await;
        if let Ok(resp) = &out {
            st.node.campaign.answered(&req, resp);
        }
        out
    })
    .await
}

pub async fn snapshot(State(st): State<AppState>, body: Bytes) -> Response {
    let req = match wire::decode_snapshot_chunk(&body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("bad snapshot chunk: {e}")).into_response(),
    };
    let vote = req.vote;
    let out = st.node.raft.install_snapshot(req).await;
    // The answer carries this node's vote: the sender's own means it is this node's leader.
    if matches!(out, Ok(ref r) if r.vote == vote) {
        st.node.campaign.heard_from_leader();
    }
    reply(out)
}

/// Peer RPCs carry the cluster secret when one is configured; anything else gets 401, so a
/// stranger who can reach the port cannot vote or append entries.
pub async fn require_cluster_secret(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(secret) = &st.node.config.security.cluster_secret {
        let given = req.headers().get(H_CLUSTER_SECRET).map(|v| v.as_bytes());
        let ok = given.is_some_and(|g| same_secret(g, secret.as_bytes()));
        if !ok {
            return ApiError::new(Code::Unauthorized, "peer RPCs need the cluster secret").into_response();
        }
    }
    next.run(req).await
}

/// With `--peer-ca`, peer RPCs must come over a connection whose client certificate verified
/// against it; API clients (no certificate) may use the port but not vote or append entries.
pub async fn require_peer_cert(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if st.node.config.peer_certs_required() {
        let verified = req.extensions().get::<ConnectInfo<Conn>>().is_some_and(|ConnectInfo(c)| c.peer_cert);
        if !verified {
            return ApiError::new(
                Code::PeerCertificateRequired,
                "peer RPCs need a client certificate signed by the cluster's --peer-ca",
            )
            .into_response();
        }
    }
    next.run(req).await
}
