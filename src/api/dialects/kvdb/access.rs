//! Who may do what in a bucket: the key a KVdb request presents (or the Cairn operator behind
//! it) checked against the bucket's policy. Below the handlers, above `bucket.rs`.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::Response;

use super::bucket::{self, Bucket};
use super::common::{error, forbidden, Res};
use crate::api::auth::{self, same_secret, Caller, Principal};
use crate::api::code::Code;
use crate::api::error::ApiError;
use crate::api::state::AppState;
use crate::model::command::perm;

/// What a request's key allows in one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// No key, or none needed: read keys; write and list when the bucket leaves them open.
    Public,
    /// The bucket's `write_key`.
    Write,
    /// The bucket's `secret_key`, or a Cairn operator (see [`BucketKey`]).
    Full,
}

/// The key a KVdb request presents (HTTP Basic user name, `?key=`, Bearer or `x-token`) and,
/// when it is also a Cairn credential, who that is. The bootstrap admin token and tokens with
/// the `admin` permission on a bucket's namespace act as that bucket's secret key, so an
/// operator can manage a bucket whose keys were lost.
pub struct BucketKey {
    key: Option<String>,
    caller: Option<Caller>,
}

impl FromRequestParts<AppState> for BucketKey {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        let key = auth::credential(parts);
        let caller = match key {
            Some(_) => Caller::from_request_parts(parts, st).await.ok(),
            None => None,
        };
        Ok(BucketKey { key, caller })
    }
}

impl BucketKey {
    fn operator(&self, ns: &str) -> bool {
        let Some(c) = self.caller.as_ref() else { return false };
        match c.principal {
            Principal::Admin => true,
            Principal::Token { .. } => c.namespace_for(Some(ns), perm::ADMIN).is_ok(),
            // Anyone may be anonymous; only the bucket's own keys protect it then.
            Principal::Anonymous => false,
        }
    }

    /// 401 when a key is given that the bucket does not know ("Your API key is wrong"). A key
    /// sent to a bucket that has none is ignored.
    pub fn access(&self, b: &Bucket) -> Res<Access> {
        let Some(key) = &self.key else { return Ok(Access::Public) };
        let hash = b.meta.hash(key);
        let matches = |h: &Option<String>| h.as_deref().is_some_and(|h| same_secret(h.as_bytes(), hash.as_bytes()));
        if matches(&b.meta.secret_key_hash) || self.operator(&b.ns) {
            Ok(Access::Full)
        } else if matches(&b.meta.write_key_hash) {
            Ok(Access::Write)
        } else if b.meta.secret_key_hash.is_none() && b.meta.write_key_hash.is_none() {
            Ok(Access::Public)
        } else {
            Err(ApiError::new(Code::Unauthorized, "the key is wrong for this bucket"))
        }
    }

    /// Writing keys: the write key (or secret key) when the bucket has a write key.
    pub fn may_write(&self, b: &Bucket) -> Res<()> {
        let a = self.access(b)?;
        if b.meta.write_key_hash.is_some() && a < Access::Write {
            return Err(forbidden("the bucket is write-protected: give its write_key or secret_key"));
        }
        Ok(())
    }

    /// Listing keys: the secret key when the bucket has one.
    pub fn may_list(&self, b: &Bucket) -> Res<()> {
        let a = self.access(b)?;
        if b.meta.secret_key_hash.is_some() && a < Access::Full {
            return Err(forbidden("listing keys needs the bucket's secret_key"));
        }
        Ok(())
    }

    /// Changing the policy: only a bucket with a secret key has a changeable policy.
    pub fn may_update(&self, b: &Bucket) -> Res<()> {
        if self.access(b)? == Access::Full {
            return Ok(());
        }
        match b.meta.secret_key_hash {
            Some(_) => Err(forbidden("updating the bucket policy needs its secret_key")),
            None => Err(forbidden("this bucket has no secret_key, so its policy cannot be changed")),
        }
    }

    /// Deleting the bucket: its strongest key (secret, else write), or nothing if it has none.
    pub fn may_delete(&self, b: &Bucket) -> Res<()> {
        let a = self.access(b)?;
        let need = match (&b.meta.secret_key_hash, &b.meta.write_key_hash) {
            (Some(_), _) => Access::Full,
            (None, Some(_)) => Access::Write,
            (None, None) => Access::Public,
        };
        if a < need {
            return Err(forbidden("deleting the bucket needs its secret_key (or write_key if it has none)"));
        }
        Ok(())
    }
}

/// Checks the key of a request that carries a body from its headers, before the body is read,
/// so a caller with a wrong key (or none where the bucket needs one) is answered at once
/// instead of being allowed to send, slowly, a body nobody will use. Handlers check again,
/// against the leader's state; this early check only refuses, and only on the leader, whose
/// applied state is the one the handlers authorise against. A follower forwards the request
/// whole, and the leader checks it there first.
pub async fn keys_first(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let has_body = parts.headers.contains_key(header::TRANSFER_ENCODING)
        || parts.headers.get(header::CONTENT_LENGTH).is_some_and(|v| v.as_bytes() != b"0");
    if has_body && st.node.is_leader() {
        if let Err(e) = check_early(&st, &mut parts).await {
            return error(e);
        }
    }
    next.run(Request::from_parts(parts, body)).await
}

async fn check_early(st: &AppState, parts: &mut Parts) -> Res<()> {
    let rest = parts.uri.path().strip_prefix("/kvdb").unwrap_or_default().trim_start_matches('/');
    let (id, key) = match rest.split_once('/') {
        Some((id, key)) => (id, !key.is_empty()),
        None => (rest, false),
    };
    if id.is_empty() {
        // Creating a bucket: a Cairn credential with `write` in a namespace.
        return Caller::from_request_parts(parts, st).await?.namespace(perm::WRITE).map(|_| ());
    }
    let Some(b) = bucket::resolve(st, id)? else { return Ok(()) };
    let k = match BucketKey::from_request_parts(parts, st).await {
        Ok(k) => k,
        Err(never) => match never {},
    };
    match (key, &parts.method) {
        (true, &Method::GET | &Method::HEAD) => k.access(&b).map(|_| ()),
        (true, _) => k.may_write(&b),
        (false, &Method::GET | &Method::HEAD) => k.may_list(&b),
        (false, &Method::DELETE) => k.may_delete(&b),
        (false, _) => k.may_update(&b),
    }
}
