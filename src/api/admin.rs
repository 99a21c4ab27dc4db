//! `/admin/tokens`: create, list and revoke access tokens. Tokens live replicated in the state
//! machine as hashes; the secret is returned once, by the create call.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::Value;

use super::auth::{self, Caller, Principal};
use super::code::Code;
use super::error::ApiError;
use super::exec;
use super::forward;
use super::forward::Replay;
use super::parse;
use super::render::{self, Data};
use super::state::AppState;
use crate::model::command::{perm, CmdResult, Command};
use crate::sm::TokenRecord;

/// A token as listed: never its secret.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenView<'a> {
    id: &'a str,
    namespace: &'a str,
    permissions: Vec<&'static str>,
    created_at: String,
}

impl<'a> TokenView<'a> {
    fn new(id: &'a str, rec: &'a TokenRecord) -> Self {
        let permissions = auth::perm_names(rec.perms);
        TokenView { id, namespace: &rec.namespace, permissions, created_at: render::rfc3339(rec.created_ms) }
    }
}

/// A new token, with the secret shown this once.
#[derive(Serialize)]
struct Created {
    id: String,
    token: String,
    namespace: String,
    permissions: Vec<&'static str>,
}

#[derive(Serialize)]
struct Tokens<'a> {
    tokens: Vec<TokenView<'a>>,
}

#[derive(Serialize)]
struct Revoked {
    id: String,
    revoked: bool,
}

pub async fn create(State(st): State<AppState>, caller: Caller, replay: Replay) -> Response {
    let parsed = (|| -> Result<_, ApiError> {
        let body = parse::json_object(&replay.body, false)?;
        parse::known_fields(&body, &["namespace", "permissions"], "a token request")?;
        let ns = match body.get("namespace") {
            Some(Value::String(ns)) if auth::valid_namespace(ns) => ns.clone(),
            _ => return Err(ApiError::new(Code::InvalidNamespace, "namespace: 1-64 of A-Z a-z 0-9 - _ .")),
        };
        let names = match body.get("permissions") {
            Some(Value::Array(a)) if !a.is_empty() => a.clone(),
            _ => return Err(ApiError::new(Code::InvalidPermissions, "permissions: a non-empty list")),
        };
        let mut perms = 0u8;
        for n in &names {
            perms |= n
                .as_str()
                .and_then(auth::parse_perm)
                .ok_or_else(|| ApiError::new(Code::InvalidPermissions, "permissions are read, write and admin"))?;
        }
        caller.namespace_for(Some(&ns), perm::ADMIN)?;
        let (id, token, hash) = auth::mint_token()?;
        Ok((Command::CreateToken { id: id.clone(), namespace: ns.clone(), hash, perms }, id, token, ns, perms))
    })();
    let (cmd, id, token, ns, perms) = match parsed {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    match exec::write_one(&st, cmd, replay).await {
        Ok((_, CmdResult::TokenCreated { .. })) => (
            StatusCode::CREATED,
            Json(Data { data: Created { id, token, namespace: ns, permissions: auth::perm_names(perms) } }),
        )
            .into_response(),
        Ok((_, other)) => ApiError::internal(format!("unexpected result {other:?}")).into_response(),
        Err(b) => b.into_response(),
    }
}

/// Which namespaces' tokens a caller may see.
fn visible(caller: &Caller, rec: &TokenRecord) -> bool {
    match &caller.principal {
        Principal::Admin => true,
        _ => caller.namespace_for(Some(&rec.namespace), perm::ADMIN).is_ok(),
    }
}

pub async fn list(State(st): State<AppState>, caller: Caller, replay: Replay) -> Response {
    if let Err(b) = exec::before_read(&st, st.node.is_leader(), None, replay).await {
        return b.into_response();
    }
    let tokens = match st.node.tokens() {
        Ok(t) => t,
        Err(e) => return ApiError::from(e).into_response(),
    };
    if !matches!(caller.principal, Principal::Admin) && caller.namespace(perm::ADMIN).is_err() {
        return auth::forbidden("listing tokens needs the admin permission").into_response();
    }
    let tokens = tokens.iter().filter(|(_, r)| visible(&caller, r)).map(|(id, r)| TokenView::new(id, r)).collect();
    Json(Data { data: Tokens { tokens } }).into_response()
}

/// Who may revoke a token: the bootstrap admin, `admin` in the token's namespace, or the token
/// itself. Anyone else is told the same as for an id that does not exist, so ids cannot be
/// probed for across namespaces.
fn may_revoke(caller: &Caller, id: &str, rec: &TokenRecord) -> bool {
    match &caller.principal {
        Principal::Token { id: own, .. } if own == id => true,
        _ => visible(caller, rec),
    }
}

pub async fn revoke(State(st): State<AppState>, caller: Caller, Path(id): Path<String>, replay: Replay) -> Response {
    let no_such_token = || ApiError::new(Code::NotFound, "no such token").into_response();
    match st.node.token(&id) {
        Ok(Some(rec)) if may_revoke(&caller, &id, &rec) => {}
        Ok(_) => return no_such_token(),
        Err(e) => return ApiError::from(e).into_response(),
    }
    match exec::write_one(&st, Command::RevokeToken { id: id.clone() }, replay).await {
        Ok((_, CmdResult::TokenRevoked { existed: true, .. })) => {
            Json(Data { data: Revoked { id, revoked: true } }).into_response()
        }
        Ok((_, CmdResult::TokenRevoked { existed: false, .. })) => no_such_token(),
        Ok((_, other)) => ApiError::internal(format!("unexpected result {other:?}")).into_response(),
        Err(b) => b.into_response(),
    }
}

/// `GET /admin/snapshot`: builds a fresh snapshot on the leader and streams its file (the
/// backup format). Cluster-wide, so only the bootstrap admin (or an open node) may call it.
pub async fn snapshot(State(st): State<AppState>, caller: Caller, replay: Replay) -> Response {
    if !matches!(caller.principal, Principal::Admin | Principal::Anonymous) {
        return auth::forbidden("backups need the bootstrap admin token").into_response();
    }
    if !st.node.is_leader() {
        return forward::to_leader(&st, replay).await.unwrap_or_else(ApiError::into_response);
    }
    let target = st.node.leader_and_applied().1;
    if let Err(e) = st.node.raft.trigger().snapshot().await {
        return ApiError::new(Code::NoLeader, e.to_string()).into_response();
    }
    let waited = st
        .node
        .raft
        .wait(Some(std::time::Duration::from_secs(120)))
        .metrics(|m| m.snapshot.map(|s| s.index) >= Some(target), "backup snapshot")
        .await;
    if let Err(e) = waited {
        return ApiError::new(Code::SnapshotTimeout, e.to_string()).into_response();
    }
    // The open handle keeps this snapshot readable even if a newer one replaces the file.
    let file = match tokio::fs::File::open(crate::sm::current_snapshot_path(&st.node.config.data_dir)).await {
        Ok(f) => f,
        Err(e) => return ApiError::internal(format!("open snapshot: {e}")).into_response(),
    };
    let stream = futures::stream::unfold(file, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 256 << 10];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(axum::body::Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    ([("content-type", "application/x-cairn-snapshot-v1")], axum::body::Body::from_stream(stream)).into_response()
}
