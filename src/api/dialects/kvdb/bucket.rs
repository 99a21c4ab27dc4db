//! The bucket record: its replicated layout, resolving an id, and the guarded write that every
//! change inside a bucket goes through.

use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::common::{error, not_found, Res};
use crate::api::auth;
use crate::api::code::Code;
use crate::api::dialects::shared::clamp_ttl_ms;
use crate::api::error::ApiError;
use crate::api::exec;
use crate::api::forward::{self, Replay};
use crate::api::state::AppState;
use crate::model::command::{CmdResult, Command, Condition, Refusal};

/// The reserved namespace holding one lookup record per bucket: id → namespace.
pub const LOOKUP_NS: &str = "_kvdb";
/// Bucket ids: 22 characters of [0-9A-Za-z].
const ID_LEN: usize = 22;
/// Attempts when the policy changes between authorising a request and committing it.
pub const GUARD_ATTEMPTS: usize = 3;

/// A bucket's policy as stored (JSON) in `kvdb:{id}`: hashes of its keys, never the keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub secret_key_sha256: Option<String>,
    pub write_key_sha256: Option<String>,
    /// Seconds after its last update that a key expires; 0 = never.
    pub default_ttl: u64,
}

#[derive(Serialize, Deserialize)]
pub struct Lookup {
    pub namespace: String,
}

pub struct Bucket {
    pub id: String,
    pub ns: String,
    pub meta: Meta,
    /// The policy record exactly as stored, for the guard.
    pub meta_text: String,
}

pub fn key_hash(key: &str) -> String {
    auth::hash_secret(key).iter().map(|b| format!("{b:02x}")).collect()
}

pub fn meta_key(id: &str) -> String {
    format!("kvdb:{id}")
}

impl Bucket {
    pub fn data_key(&self, key: &str) -> String {
        format!("kvdb:{}:{key}", self.id)
    }

    pub fn data_prefix(&self) -> String {
        format!("kvdb:{}:", self.id)
    }

    /// Rewrites the policy record unchanged, on condition that it is unchanged. First in a
    /// batch, it lets the batch apply only while the bucket exists with the policy the request
    /// was authorised against, so a write can never land after its bucket was deleted.
    fn guard(&self) -> Command {
        Command::Set {
            ns: self.ns.clone(),
            key: meta_key(&self.id),
            value: self.meta_text.clone(),
            ttl_ms: None,
            cond: Condition::IfValue(self.meta_text.clone()),
        }
    }

    /// A write's TTL: `?ttl=` if given, else the bucket's `default_ttl`; 0 means none.
    pub fn ttl_ms(&self, given: Option<u64>) -> Option<u64> {
        let s = given.unwrap_or(self.meta.default_ttl);
        (s > 0).then(|| clamp_ttl_ms(s))
    }
}

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A new random bucket id: 22 characters of [0-9A-Za-z] (about 130 bits).
pub fn new_id() -> Res<String> {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut id = String::with_capacity(ID_LEN);
    while id.len() < ID_LEN {
        let mut raw = [0u8; 32];
        getrandom::getrandom(&mut raw).map_err(|e| ApiError::internal(format!("no entropy: {e}")))?;
        // 248 = 4 * 62: rejecting larger bytes keeps every character equally likely.
        for b in raw.into_iter().filter(|b| *b < 248).take(ID_LEN - id.len()) {
            id.push(ALPHABET[(b % 62) as usize] as char);
        }
    }
    Ok(id)
}

/// Reads a bucket from this node's applied state; `None` if there is no such bucket.
pub fn resolve(st: &AppState, id: &str) -> Res<Option<Bucket>> {
    if !valid_id(id) {
        return Ok(None);
    }
    let Some(lookup) = st.node.read_local(LOOKUP_NS, id)? else { return Ok(None) };
    let ns = serde_json::from_str::<Lookup>(&lookup.value)
        .map_err(|e| ApiError::internal(format!("the lookup record of bucket {id} is damaged: {e}")))?
        .namespace;
    let Some(item) = st.node.read_local(&ns, &meta_key(id))? else { return Ok(None) };
    let meta = serde_json::from_str(&item.value).map_err(|e| {
        ApiError::internal(format!("the policy record kvdb:{id} in namespace {ns} was changed outside KVdb: {e}"))
    })?;
    Ok(Some(Bucket { id: id.to_string(), ns, meta, meta_text: item.value }))
}

/// Like [`resolve`] on the leader, but a miss is confirmed after a ReadIndex barrier: a new
/// leader may not yet have applied a bucket that was created just before the election.
pub async fn resolve_fresh(st: &AppState, id: &str) -> Res<Bucket> {
    if let Some(b) = resolve(st, id)? {
        return Ok(b);
    }
    st.node.linearizable_barrier().await?;
    resolve(st, id)?.ok_or_else(|| not_found("bucket not found"))
}

/// 503 with `Retry-After` when the policy changed under a request on every attempt.
pub fn busy() -> ApiError {
    ApiError::new(Code::Busy, "the bucket policy kept changing; try again").retry_after(1)
}

pub fn clone_replay(r: &Replay) -> Replay {
    Replay { method: r.method.clone(), uri: r.uri.clone(), headers: r.headers.clone(), body: r.body.clone() }
}

/// KVdb writes are authorised against the leader's state (a follower may not have applied a
/// new bucket or policy yet), so a follower forwards them whole.
pub async fn on_leader(st: &AppState, replay: Replay) -> Result<Replay, Response> {
    if st.node.is_leader() {
        return Ok(replay);
    }
    Err(match st.node.leader() {
        Some(_) => forward::to_leader(st, replay).await.unwrap_or_else(error),
        None => error(ApiError::no_leader("no leader is known")),
    })
}

pub enum Fail {
    /// A key command (after the guard) was refused.
    Refused(Refusal),
    Stop(Response),
}

fn stop(e: ApiError) -> Fail {
    Fail::Stop(error(e))
}

/// Authorises with `check`, then applies the guard and `build(bucket)` as one atomic batch and
/// returns the results of `build`'s commands. If the policy changed (or the bucket was deleted)
/// in between, the guard fails and the request is re-authorised against the new state.
pub async fn guarded(
    st: &AppState,
    id: &str,
    replay: &Replay,
    check: impl Fn(&Bucket) -> Res<()>,
    build: impl Fn(&Bucket) -> Vec<Command>,
) -> Result<(Bucket, Vec<CmdResult>), Fail> {
    for _ in 0..GUARD_ATTEMPTS {
        let b = resolve_fresh(st, id).await.map_err(stop)?;
        check(&b).map_err(stop)?;
        let mut cmds = vec![b.guard()];
        cmds.extend(build(&b));
        match exec::write_one(st, Command::Batch(cmds), clone_replay(replay)).await {
            Ok((_, CmdResult::Batch(mut results))) if !results.is_empty() => {
                results.remove(0);
                return Ok((b, results));
            }
            Ok((_, CmdResult::BatchRefused { index: 0, .. })) => continue,
            Ok((_, CmdResult::BatchRefused { refusal, .. })) => return Err(Fail::Refused(refusal)),
            Ok((_, other)) => return Err(stop(ApiError::internal(format!("unexpected result {other:?}")))),
            Err(b) => return Err(Fail::Stop(b.render(error))),
        }
    }
    Err(stop(busy()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_alphanumeric_and_distinct() {
        let a = new_id().unwrap();
        let b = new_id().unwrap();
        assert_eq!(a.len(), ID_LEN);
        assert!(valid_id(&a) && valid_id(&b));
        assert_ne!(a, b);
        assert!(!valid_id("a:b") && !valid_id(""));
    }
}
