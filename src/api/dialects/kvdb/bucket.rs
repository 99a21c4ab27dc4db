//! The bucket record: its replicated layout, resolving an id, and the guarded write that every
//! change inside a bucket goes through.

use axum::response::Response;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::common::{error, not_found, Res};
use crate::api::auth;
use crate::api::code::Code;
use crate::api::dialects::shared::clamp_ttl_ms;
use crate::api::error::ApiError;
use crate::api::exec;
use crate::api::forward::{self, Replay};
use crate::api::state::AppState;
use crate::model::command::{CmdResult, Command, Condition, Refusal};
use crate::model::private;

/// The private namespace of bucket lookups: `{id}` → [`Lookup`], and `gone/{id}` → [`Gone`]
/// for a deleted bucket whose keys are still being removed. No client can name a private
/// namespace, and it has no quota of its own: each lookup sits beside a policy record that
/// counts against its bucket's namespace.
pub const LOOKUP_NS: &str = "\u{1}kvdb";
/// Where buckets made before the private space kept their lookups (an ordinary namespace).
const LEGACY_LOOKUP_NS: &str = "_kvdb";
/// Bucket ids: 22 characters of [0-9A-Za-z].
const ID_LEN: usize = 22;
/// Random bytes mixed into a bucket's key hashes.
const SALT_LEN: usize = 16;
/// Attempts when the policy changes between authorising a request and committing it.
pub const GUARD_ATTEMPTS: usize = 3;

/// A bucket's policy as stored (JSON) in its policy record: salted hashes of its keys, never
/// the keys. Buckets made before salting have no `salt` and unsalted SHA-256 hashes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// Hex of [`SALT_LEN`] random bytes; `None` only in a legacy bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
    #[serde(alias = "secret_key_sha256")]
    pub secret_key_hash: Option<String>,
    #[serde(alias = "write_key_sha256")]
    pub write_key_hash: Option<String>,
    /// Seconds after its last update that a key expires; 0 = never.
    pub default_ttl: u64,
}

impl Meta {
    /// A new bucket's policy, with a fresh salt.
    pub fn new(secret_key: Option<&str>, write_key: Option<&str>, default_ttl: u64) -> Res<Meta> {
        let mut salt = [0u8; SALT_LEN];
        getrandom::getrandom(&mut salt).map_err(|e| ApiError::internal(format!("no entropy: {e}")))?;
        let mut m = Meta { salt: Some(hex(&salt)), secret_key_hash: None, write_key_hash: None, default_ttl };
        m.secret_key_hash = secret_key.map(|k| m.hash(k));
        m.write_key_hash = write_key.map(|k| m.hash(k));
        Ok(m)
    }

    /// SHA-256 of salt ‖ key (the salt has a fixed length, so the split is unambiguous): equal
    /// keys in two buckets hash differently, and a leaked record cannot be matched against a
    /// precomputed table.
    pub fn hash(&self, key: &str) -> String {
        let mut h = Sha256::new();
        if let Some(salt) = &self.salt {
            h.update(salt.as_bytes());
        }
        h.update(key.as_bytes());
        hex(&h.finalize())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Serialize, Deserialize)]
pub struct Lookup {
    pub namespace: String,
}

/// A deleted bucket whose keys may remain: where they are, for the sweep that removes them.
#[derive(Serialize, Deserialize)]
pub struct Gone {
    pub namespace: String,
    pub prefix: String,
}

pub fn gone_key(id: &str) -> String {
    format!("gone/{id}")
}

/// Where a bucket's records live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// In the private key space (`model/private.rs`): no client API can reach them.
    Private,
    /// Made before the private space: `kvdb:{id}` and `kvdb:{id}:{key}` as ordinary keys of
    /// the namespace, with the lookup in `_kvdb`. Still served; new buckets are never made so.
    Legacy,
}

pub struct Bucket {
    pub id: String,
    pub ns: String,
    pub layout: Layout,
    pub meta: Meta,
    /// The policy record exactly as stored, for the guard.
    pub meta_text: String,
}

/// A bucket's policy record key in its namespace.
pub fn meta_key(id: &str, layout: Layout) -> String {
    match layout {
        Layout::Private => private::key("kvdb", id),
        Layout::Legacy => format!("kvdb:{id}"),
    }
}

impl Bucket {
    pub fn meta_key(&self) -> String {
        meta_key(&self.id, self.layout)
    }

    pub fn data_key(&self, key: &str) -> String {
        format!("{}{key}", self.data_prefix())
    }

    /// Every key of the bucket starts with this; the policy record does not (no trailing `/`).
    pub fn data_prefix(&self) -> String {
        match self.layout {
            Layout::Private => private::key("kvdb", &format!("{}/", self.id)),
            Layout::Legacy => format!("kvdb:{}:", self.id),
        }
    }

    /// The lookup record's place: namespace and key.
    pub fn lookup(&self) -> (&'static str, String) {
        match self.layout {
            Layout::Private => (LOOKUP_NS, self.id.clone()),
            Layout::Legacy => (LEGACY_LOOKUP_NS, self.id.clone()),
        }
    }

    /// Rewrites the policy record unchanged, on condition that it is unchanged. First in a
    /// batch, it lets the batch apply only while the bucket exists with the policy the request
    /// was authorised against, so a write can never land after its bucket was deleted.
    fn guard(&self) -> Command {
        Command::Set {
            ns: self.ns.clone(),
            key: self.meta_key(),
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
    if let Some(lookup) = st.node.read_local(LOOKUP_NS, id)? {
        // Only this module writes private records, so a damaged one is Cairn's own bug.
        let ns = serde_json::from_str::<Lookup>(&lookup.value)
            .map_err(|e| ApiError::internal(format!("the lookup record of bucket {id} is damaged: {e}")))?
            .namespace;
        let Some(item) = st.node.read_local(&ns, &meta_key(id, Layout::Private))? else { return Ok(None) };
        let meta = serde_json::from_str(&item.value)
            .map_err(|e| ApiError::internal(format!("the policy record of bucket {id} is damaged: {e}")))?;
        return Ok(Some(Bucket { id: id.to_string(), ns, layout: Layout::Private, meta, meta_text: item.value }));
    }
    resolve_legacy(st, id)
}

/// A legacy bucket's records are ordinary keys that the namespace's writers may have changed;
/// a record that no longer parses means the bucket is gone (404), never a 500.
fn resolve_legacy(st: &AppState, id: &str) -> Res<Option<Bucket>> {
    let Some(lookup) = st.node.read_local(LEGACY_LOOKUP_NS, id)? else { return Ok(None) };
    let Ok(Lookup { namespace: ns }) = serde_json::from_str(&lookup.value) else {
        tracing::warn!(bucket = %id, "legacy kvdb lookup record was changed outside KVdb; treating the bucket as gone");
        return Ok(None);
    };
    if !auth::valid_namespace(&ns) {
        return Ok(None);
    }
    let Some(item) = st.node.read_local(&ns, &meta_key(id, Layout::Legacy))? else { return Ok(None) };
    match serde_json::from_str::<Meta>(&item.value) {
        Ok(meta) => Ok(Some(Bucket { id: id.to_string(), ns, layout: Layout::Legacy, meta, meta_text: item.value })),
        Err(_) => {
            tracing::warn!(bucket = %id, %ns, "legacy kvdb policy record was changed outside KVdb; treating the bucket as gone");
            Ok(None)
        }
    }
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
