//! `/admin/tokens`: create, list and revoke access tokens. Tokens live replicated in the state
//! machine as hashes; the secret is returned once, by the create call.

use std::time::UNIX_EPOCH;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{Map, Value};

use super::auth::{self, Caller, Principal};
use super::code::Code;
use super::error::ApiError;
use super::exec;
use super::forward;
use super::forward::Replay;
use super::parse;
use super::render::{self, Data};
use super::schema;
use super::state::AppState;
use crate::model::command::{perm, CmdResult, Command, TokenExpiry};
use crate::sm::TokenRecord;

/// A token as listed: never its secret.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenView<'a> {
    id: &'a str,
    namespace: &'a str,
    permissions: Vec<&'static str>,
    created_at: String,
    expires_at: Option<String>,
}

impl<'a> TokenView<'a> {
    fn new(id: &'a str, rec: &'a TokenRecord) -> Self {
        TokenView {
            id,
            namespace: &rec.namespace,
            permissions: auth::perm_names(rec.perms),
            created_at: render::rfc3339(rec.created_ms),
            expires_at: rec.expires_at.map(render::rfc3339),
        }
    }
}

/// A new token, with the secret shown this once.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Created {
    id: String,
    token: String,
    namespace: String,
    permissions: Vec<&'static str>,
    expires_at: Option<String>,
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

/// A create request, checked: what the token will be, but for its id and secret.
struct NewToken {
    ns: String,
    perms: u8,
    expires: Option<TokenExpiry>,
}

impl NewToken {
    fn parse(st: &AppState, body: &[u8]) -> Result<NewToken, ApiError> {
        let body = parse::json_object(body, false)?;
        parse::known_fields(&body, &["namespace", "permissions", "expiresAt", "ttlSeconds"], "a token request")?;
        let ns = match body.get("namespace") {
            Some(Value::String(ns)) if auth::valid_namespace(ns) => ns.clone(),
            _ => return Err(ApiError::new(Code::InvalidNamespace, "namespace: 1-64 of A-Z a-z 0-9 - _ .")),
        };
        let names = match body.get("permissions") {
            Some(Value::Array(a)) if !a.is_empty() => a,
            _ => return Err(ApiError::new(Code::InvalidPermissions, "permissions: a non-empty list")),
        };
        let mut perms = 0u8;
        for n in names {
            perms |= n
                .as_str()
                .and_then(auth::parse_perm)
                .ok_or_else(|| ApiError::new(Code::InvalidPermissions, "permissions are read, write and admin"))?;
        }
        Ok(NewToken { ns, perms, expires: expiry(st, &body)? })
    }

    fn command(&self, id: String, hash: Vec<u8>) -> Command {
        let (namespace, perms) = (self.ns.clone(), self.perms);
        match self.expires {
            // A token that never expires keeps the original command, which every version of
            // Cairn applies: only expiring tokens need nodes that know the new one.
            None => Command::CreateToken { id, namespace, hash, perms },
            Some(expires) => Command::CreateTokenExpiring { id, namespace, hash, perms, expires },
        }
    }
}

fn invalid_expiry(msg: &str) -> ApiError {
    ApiError::new(Code::InvalidTtl, msg)
}

/// The token's expiry from `expiresAt` or `ttlSeconds`: at most one of them (`null` is the
/// same as absent), and never the node's default key TTL.
fn expiry(st: &AppState, body: &Map<String, Value>) -> Result<Option<TokenExpiry>, ApiError> {
    let given = |field| body.get(field).filter(|v| !v.is_null());
    match (given("expiresAt"), given("ttlSeconds")) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(invalid_expiry("give expiresAt or ttlSeconds, not both")),
        (Some(at), None) => Ok(Some(TokenExpiry::At(expires_at(st, at)?))),
        // `ttl_ms` falls back to the default TTL only for an absent value, and this one is given.
        (None, Some(ttl)) => Ok(parse::ttl_ms(st, Some(ttl))?.map(TokenExpiry::After)),
    }
}

/// `expiresAt` in milliseconds, which must be later than the clock the create entry will be
/// applied at: the leader's wall clock, or the replicated clock when that is already ahead.
fn expires_at(st: &AppState, v: &Value) -> Result<u64, ApiError> {
    let at = v
        .as_str()
        .and_then(|text| humantime::parse_rfc3339(text).ok())
        .ok_or_else(|| invalid_expiry("expiresAt must be an RFC 3339 UTC time such as 2026-11-23T15:00:00Z"))?;
    // Before 1970 is simply in the past.
    let ms = at.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    if ms <= crate::protocol::now_ms().max(st.node.reader.clock_ms()) {
        return Err(invalid_expiry("expiresAt is not in the future"));
    }
    Ok(ms)
}

#[utoipa::path(post, path = "/admin/tokens", tag = "tokens", operation_id = "createToken",
    summary = "Create an access token; its secret is in the answer, once",
    request_body(content = schema::TokenRequest),
    responses((status = 201, description = "the new token, with its secret", body = schema::TokenCreatedData), schema::Errors))]
pub async fn create(State(st): State<AppState>, caller: Caller, replay: Replay) -> Response {
    let parsed = (|| -> Result<_, ApiError> {
        let new = NewToken::parse(&st, &replay.body)?;
        caller.namespace_for(Some(&new.ns), perm::ADMIN)?;
        let (id, token, hash) = auth::mint_token()?;
        Ok((new.command(id.clone(), hash), id, token, new))
    })();
    let (cmd, id, token, new) = match parsed {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    match exec::write_one(&st, cmd, replay).await {
        Ok((_, CmdResult::TokenCreated { expires_at, .. })) => {
            let created = Created {
                id,
                token,
                namespace: new.ns,
                permissions: auth::perm_names(new.perms),
                expires_at: expires_at.map(render::rfc3339),
            };
            (StatusCode::CREATED, Json(Data { data: created })).into_response()
        }
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

#[utoipa::path(get, path = "/admin/tokens", tag = "tokens", operation_id = "listTokens",
    summary = "List the namespace's tokens (never their secrets)",
    responses((status = 200, description = "the tokens", body = schema::TokensData), schema::Errors))]
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

#[utoipa::path(delete, path = "/admin/tokens/{id}", tag = "tokens", operation_id = "revokeToken",
    summary = "Revoke a token",
    params(("id" = String, Path, description = "the token's id")),
    responses((status = 200, description = "revoked", body = schema::RevokedData), schema::Errors))]
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
#[utoipa::path(get, path = "/admin/snapshot", tag = "cluster", operation_id = "backup",
    summary = "Download a fresh snapshot of the whole cluster (bootstrap admin only)",
    responses((status = 200, description = "the snapshot file, for `cairn restore`", content_type = "application/octet-stream", body = Vec<u8>), schema::Errors))]
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
