//! The bucket record and the bucket-level routes: create (`POST /kvdb`), update the policy
//! (`POST` or `PATCH /kvdb/{bucket}`), delete with every key (`DELETE /kvdb/{bucket}`); plus the
//! guarded write every key change goes through.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::{bad, blocked, error, forbidden, not_found, refused, BucketKey, Res};
use crate::api::auth::{self, Caller};
use crate::api::dialects::{clamp_ttl_ms, form_pairs, text};
use crate::api::error::ApiError;
use crate::api::exec;
use crate::api::forward::{self, Replay};
use crate::api::AppState;
use crate::command::{perm, CmdResult, Command, Condition, Refusal};

/// The reserved namespace holding one lookup record per bucket: id → namespace.
pub const LOOKUP_NS: &str = "_kvdb";
/// One week, the seed's default.
const DEFAULT_TTL_SECONDS: u64 = 604_800;
const ID_LEN: usize = 22;
const MAX_ACCESS_KEY_LEN: usize = 256;
/// A deleted bucket's keys are removed this many per Raft entry.
const SWEEP_BATCH: usize = 100;
/// Attempts when the policy changes between authorising a request and committing it.
const GUARD_ATTEMPTS: usize = 3;

/// A bucket's policy as stored (JSON) in `kvdb:{id}`: hashes of its keys, never the keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub secret_key_sha256: Option<String>,
    pub write_key_sha256: Option<String>,
    /// Seconds after its last update that a key expires; 0 = never.
    pub default_ttl: u64,
}

#[derive(Serialize, Deserialize)]
struct Lookup {
    namespace: String,
}

pub struct Bucket {
    pub id: String,
    pub ns: String,
    pub meta: Meta,
    /// The policy record exactly as stored, for the guard.
    meta_text: String,
}

pub fn key_hash(key: &str) -> String {
    auth::hash_secret(key).iter().map(|b| format!("{b:02x}")).collect()
}

fn meta_key(id: &str) -> String {
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
fn new_id() -> Res<String> {
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
async fn resolve_fresh(st: &AppState, id: &str) -> Res<Bucket> {
    if let Some(b) = resolve(st, id)? {
        return Ok(b);
    }
    st.node.linearizable_barrier().await?;
    resolve(st, id)?.ok_or_else(|| not_found("bucket not found"))
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
        Some(_) => forward::to_leader(st, replay).await,
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
            Err(b) => return Err(Fail::Stop(blocked(b))),
        }
    }
    Err(stop(ApiError {
        retry_after: Some(1),
        ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", "the bucket policy kept changing; try again")
    }))
}

/// The form fields of bucket creation and policy updates.
#[derive(Default)]
struct PolicyForm {
    secret_key: Option<String>,
    write_key: Option<String>,
    default_ttl: Option<u64>,
}

fn parse_form(body: &[u8]) -> Res<PolicyForm> {
    let mut f = PolicyForm::default();
    for (k, v) in form_pairs(body).map_err(bad)? {
        if v.len() > MAX_ACCESS_KEY_LEN {
            return Err(bad(format!("{k} is over {MAX_ACCESS_KEY_LEN} bytes")));
        }
        match k.as_str() {
            "secret_key" => f.secret_key = Some(v),
            "write_key" => f.write_key = Some(v),
            "default_ttl" => f.default_ttl = Some(super::parse_ttl(&v, "default_ttl")?),
            // The hosted service takes an account e-mail here; Cairn has no accounts.
            "email" => {}
            other => return Err(bad(format!("unknown field `{other}`: use secret_key, write_key, default_ttl"))),
        }
    }
    Ok(f)
}

fn hash_nonempty(k: Option<String>) -> Option<String> {
    k.filter(|k| !k.is_empty()).map(|k| key_hash(&k))
}

/// `POST /kvdb` (form: `secret_key`, `write_key`, `default_ttl`) → the new bucket id as text.
pub async fn create(State(st): State<AppState>, caller: Res<Caller>, replay: Res<Replay>) -> Response {
    let parsed = (|| -> Res<_> {
        let ns = caller?.namespace(perm::WRITE)?;
        let replay = replay?;
        let form = parse_form(&replay.body)?;
        let meta = Meta {
            secret_key_sha256: hash_nonempty(form.secret_key),
            write_key_sha256: hash_nonempty(form.write_key),
            default_ttl: form.default_ttl.unwrap_or(DEFAULT_TTL_SECONDS),
        };
        let meta = serde_json::to_string(&meta).map_err(|e| ApiError::internal(e.to_string()))?;
        let lookup =
            serde_json::to_string(&Lookup { namespace: ns.clone() }).map_err(|e| ApiError::internal(e.to_string()))?;
        Ok((ns, meta, lookup, replay))
    })();
    let (ns, meta, lookup, replay) = match parsed {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    // A fresh id collides with an existing one only with negligible probability; retry anyway.
    for _ in 0..3 {
        let id = match new_id() {
            Ok(id) => id,
            Err(e) => return error(e),
        };
        let set = |ns: &str, key: String, value: &str| Command::Set {
            ns: ns.to_string(),
            key,
            value: value.to_string(),
            ttl_ms: None,
            cond: Condition::IfAbsent,
        };
        let cmds = vec![set(LOOKUP_NS, id.clone(), &lookup), set(&ns, meta_key(&id), &meta)];
        match exec::write_one(&st, Command::Batch(cmds), clone_replay(&replay)).await {
            Ok((_, CmdResult::Batch(_))) => return text(StatusCode::OK, id),
            Ok((_, CmdResult::BatchRefused { refusal: Refusal::KeyExists, .. })) => continue,
            Ok((_, CmdResult::BatchRefused { refusal, .. })) => return error(refused(refusal)),
            Ok((_, other)) => return error(ApiError::internal(format!("unexpected result {other:?}"))),
            Err(b) => return blocked(b),
        }
    }
    error(ApiError::internal("could not find a free bucket id"))
}

fn bucket_id(path: Result<Path<String>, PathRejection>) -> Res<String> {
    path.map(|Path(id)| id).map_err(|e| bad(format!("bad bucket id: {}", e.body_text())))
}

/// `POST` or `PATCH /kvdb/{bucket}` (form: `write_key`, `secret_key`, `default_ttl`) with the
/// secret key. An empty `write_key` removes it. A bucket created without a secret key has a
/// fixed policy, and no secret key can be added later (seed 002).
pub async fn update(
    State(st): State<AppState>,
    key: BucketKey,
    path: Result<Path<String>, PathRejection>,
    replay: Res<Replay>,
) -> Response {
    let parsed = (|| -> Res<_> { Ok((bucket_id(path)?, replay?)) })();
    let (id, replay) = match parsed {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    let form = match parse_form(&replay.body) {
        Ok(f) => f,
        Err(e) => return error(e),
    };
    if form.secret_key.as_deref() == Some("") {
        return error(bad("secret_key cannot be removed, only changed"));
    }
    let replay = match on_leader(&st, replay).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    for _ in 0..GUARD_ATTEMPTS {
        let b = match resolve_fresh(&st, &id).await.and_then(|b| key.may_update(&b).map(|_| b)) {
            Ok(b) => b,
            Err(e) => return error(e),
        };
        if form.secret_key.is_some() && b.meta.secret_key_sha256.is_none() {
            return error(forbidden("a secret_key cannot be added to a bucket after it was created"));
        }
        let mut meta = b.meta.clone();
        if let Some(s) = &form.secret_key {
            meta.secret_key_sha256 = Some(key_hash(s));
        }
        if let Some(w) = &form.write_key {
            meta.write_key_sha256 = hash_nonempty(Some(w.clone()));
        }
        if let Some(t) = form.default_ttl {
            meta.default_ttl = t;
        }
        let value = match serde_json::to_string(&meta) {
            Ok(v) => v,
            Err(e) => return error(ApiError::internal(e.to_string())),
        };
        let cmd = Command::Set {
            ns: b.ns.clone(),
            key: meta_key(&id),
            value,
            ttl_ms: None,
            cond: Condition::IfValue(b.meta_text.clone()),
        };
        match exec::write_one(&st, cmd, clone_replay(&replay)).await {
            Ok((_, CmdResult::Item(_))) => return text(StatusCode::OK, ""),
            Ok((_, CmdResult::Refused(Refusal::ValueMismatch))) => continue,
            Ok((_, CmdResult::Refused(r))) => return error(refused(r)),
            Ok((_, other)) => return error(ApiError::internal(format!("unexpected result {other:?}"))),
            Err(b) => return blocked(b),
        }
    }
    error(ApiError {
        retry_after: Some(1),
        ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", "the bucket policy kept changing; try again")
    })
}

/// `DELETE /kvdb/{bucket}`: removes the lookup and policy records in one atomic entry, so the
/// bucket is gone for every request from then on, then deletes its keys in the background,
/// 100 per Raft entry ("may not complete immediately", as the seed says).
pub async fn delete(
    State(st): State<AppState>,
    key: BucketKey,
    path: Result<Path<String>, PathRejection>,
    replay: Res<Replay>,
) -> Response {
    let parsed = (|| -> Res<_> { Ok((bucket_id(path)?, replay?)) })();
    let (id, replay) = match parsed {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    let replay = match on_leader(&st, replay).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    for _ in 0..GUARD_ATTEMPTS {
        let b = match resolve_fresh(&st, &id).await.and_then(|b| key.may_delete(&b).map(|_| b)) {
            Ok(b) => b,
            Err(e) => return error(e),
        };
        let cmds = vec![
            Command::Delete { ns: LOOKUP_NS.to_string(), key: id.clone(), cond: Condition::None },
            Command::Delete { ns: b.ns.clone(), key: meta_key(&id), cond: Condition::IfValue(b.meta_text.clone()) },
        ];
        match exec::write_one(&st, Command::Batch(cmds), clone_replay(&replay)).await {
            Ok((_, CmdResult::Batch(results))) => {
                if matches!(results.get(1), Some(CmdResult::Absent { .. })) {
                    return error(not_found("bucket not found"));
                }
                tokio::spawn(sweep(st.clone(), b.ns.clone(), b.data_prefix()));
                return text(StatusCode::OK, "");
            }
            Ok((_, CmdResult::BatchRefused { refusal: Refusal::ValueMismatch, .. })) => continue,
            Ok((_, CmdResult::BatchRefused { refusal, .. })) => return error(refused(refusal)),
            Ok((_, other)) => return error(ApiError::internal(format!("unexpected result {other:?}"))),
            Err(b) => return blocked(b),
        }
    }
    error(ApiError {
        retry_after: Some(1),
        ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", "the bucket policy kept changing; try again")
    })
}

/// Deletes every key under a deleted bucket's prefix, 100 per entry. Writes to the bucket can
/// no longer commit (their guard fails), so the set only shrinks. If this node stops leading
/// or stops part-way, the remaining keys stay in the namespace under `kvdb:{id}:` (unreachable
/// through KVdb; visible to, and deletable through, the native API).
async fn sweep(st: AppState, ns: String, prefix: String) {
    loop {
        let items = match st.node.scan_local(&ns, &prefix, None, SWEEP_BATCH) {
            Ok((items, _)) if items.is_empty() => return,
            Ok((items, _)) => items,
            Err(e) => return tracing::warn!(%ns, %prefix, error = %e, "kvdb bucket sweep stopped"),
        };
        let cmds = items.into_iter().map(|i| Command::Delete { ns: ns.clone(), key: i.key, cond: Condition::None });
        match st.node.write(vec![Command::Batch(cmds.collect())]).await {
            Ok((_, results)) if matches!(results.first(), Some(CmdResult::Batch(_))) => {}
            Ok((_, results)) => {
                return tracing::warn!(%ns, %prefix, ?results, "kvdb bucket sweep stopped on an unexpected result")
            }
            Err(e) => return tracing::warn!(%ns, %prefix, error = %e, "kvdb bucket sweep stopped; keys remain"),
        }
    }
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

    #[test]
    fn forms_reject_unknown_fields_and_bad_ttls() {
        let f = parse_form(b"secret_key=supersecret&write_key=knock&default_ttl=3600").unwrap();
        assert_eq!(f.secret_key.as_deref(), Some("supersecret"));
        assert_eq!(f.write_key.as_deref(), Some("knock"));
        assert_eq!(f.default_ttl, Some(3600));
        assert!(parse_form(b"secret-key=x").is_err());
        assert!(parse_form(b"default_ttl=soon").is_err());
        assert!(parse_form(b"").unwrap().secret_key.is_none());
    }
}
