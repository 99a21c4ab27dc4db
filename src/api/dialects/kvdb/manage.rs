//! The bucket-level routes: create (`POST /kvdb`), update the policy (`POST` or `PATCH
//! /kvdb/{bucket}`) and delete with every key (`DELETE /kvdb/{bucket}`).

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::access::BucketKey;
use super::bucket::{busy, clone_replay, gone_key, meta_key, new_id, on_leader, resolve_fresh};
use super::bucket::{Gone, Layout, Lookup, Meta, GUARD_ATTEMPTS, LOOKUP_NS};
use super::common::{bad, error, forbidden, not_found, parse_ttl, refused, Res};
use super::sweep;
use crate::api::auth::Caller;
use crate::api::dialects::shared::{form_pairs, query_params, text, QueryMap};
use crate::api::error::ApiError;
use crate::api::exec;
use crate::api::forward::Replay;
use crate::api::state::AppState;
use crate::model::command::{perm, CmdResult, Command, Condition, Refusal};

/// One week, the seed's default.
const DEFAULT_TTL_SECONDS: u64 = 604_800;
const MAX_ACCESS_KEY_LEN: usize = 256;

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
            "default_ttl" => f.default_ttl = Some(parse_ttl(&v, "default_ttl")?),
            // The hosted service takes an account e-mail here; Cairn has no accounts.
            "email" => {}
            other => return Err(bad(format!("unknown field `{other}`: use secret_key, write_key, default_ttl"))),
        }
    }
    Ok(f)
}

fn to_json(v: &impl serde::Serialize) -> Res<String> {
    serde_json::to_string(v).map_err(|e| ApiError::internal(e.to_string()))
}

/// `POST /kvdb` (form: `secret_key`, `write_key`, `default_ttl`) → the new bucket id as text.
#[utoipa::path(post, path = "/kvdb", tag = "buckets", operation_id = "createBucket",
    summary = "Create a bucket in the token's namespace",
    request_body(content = Option<crate::api::dialects::schema::KvCreateForm>, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "the new bucket's id", body = String, content_type = "text/plain"), crate::api::dialects::schema::KvErrors))]
pub async fn create(State(st): State<AppState>, caller: Res<Caller>, q: QueryMap, replay: Res<Replay>) -> Response {
    let parsed = (|| -> Res<_> {
        let ns = caller?.namespace(perm::WRITE)?;
        // The policy goes in the form body; a `?secret_key=` must not create an open bucket.
        query_params(q, &[], bad)?;
        let replay = replay?;
        let form = parse_form(&replay.body)?;
        let nonempty = |k: &Option<String>| k.clone().filter(|k| !k.is_empty());
        let meta = Meta::new(
            nonempty(&form.secret_key).as_deref(),
            nonempty(&form.write_key).as_deref(),
            form.default_ttl.unwrap_or(DEFAULT_TTL_SECONDS),
        )?;
        let meta = to_json(&meta)?;
        let lookup = to_json(&Lookup { namespace: ns.clone() })?;
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
        // The policy record counts against the bucket's namespace quota; the lookup, in a
        // private namespace, against none: each tenant's buckets cost that tenant alone.
        let cmds = vec![set(LOOKUP_NS, id.clone(), &lookup), set(&ns, meta_key(&id, Layout::Private), &meta)];
        match exec::write_one(&st, Command::Batch(cmds), clone_replay(&replay)).await {
            Ok((_, CmdResult::Batch(_))) => return text(StatusCode::OK, id),
            Ok((_, CmdResult::BatchRefused { refusal: Refusal::KeyExists, .. })) => continue,
            Ok((_, CmdResult::BatchRefused { refusal, .. })) => return error(refused(refusal)),
            Ok((_, other)) => return error(ApiError::internal(format!("unexpected result {other:?}"))),
            Err(b) => return b.render(error),
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
#[utoipa::path(post, path = "/kvdb/{bucket}", tag = "buckets", operation_id = "updateBucket",
    summary = "Change a bucket's policy (needs its secret key); also PATCH",
    params(crate::api::dialects::schema::KvBucketPath), request_body(content = Option<crate::api::dialects::schema::KvUpdateForm>, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "done; the body is empty", body = String, content_type = "text/plain"), crate::api::dialects::schema::KvErrors))]
pub async fn update(
    State(st): State<AppState>,
    key: BucketKey,
    path: Result<Path<String>, PathRejection>,
    q: QueryMap,
    replay: Res<Replay>,
) -> Response {
    let parsed = (|| -> Res<_> {
        let id = bucket_id(path)?;
        query_params(q, &[], bad)?;
        Ok((id, replay?))
    })();
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
        if form.secret_key.is_some() && b.meta.secret_key_hash.is_none() {
            return error(forbidden("a secret_key cannot be added to a bucket after it was created"));
        }
        let mut meta = b.meta.clone();
        if let Some(s) = &form.secret_key {
            meta.secret_key_hash = Some(meta.hash(s));
        }
        if let Some(w) = &form.write_key {
            meta.write_key_hash = Some(w).filter(|w| !w.is_empty()).map(|w| meta.hash(w));
        }
        if let Some(t) = form.default_ttl {
            meta.default_ttl = t;
        }
        let value = match to_json(&meta) {
            Ok(v) => v,
            Err(e) => return error(e),
        };
        let cmd = Command::Set {
            ns: b.ns.clone(),
            key: b.meta_key(),
            value,
            ttl_ms: None,
            cond: Condition::IfValue(b.meta_text.clone()),
        };
        match exec::write_one(&st, cmd, clone_replay(&replay)).await {
            Ok((_, CmdResult::Item(_))) => return text(StatusCode::OK, ""),
            Ok((_, CmdResult::Refused(Refusal::ValueMismatch))) => continue,
            Ok((_, CmdResult::Refused(r))) => return error(refused(r)),
            Ok((_, other)) => return error(ApiError::internal(format!("unexpected result {other:?}"))),
            Err(b) => return b.render(error),
        }
    }
    error(busy())
}

/// `DELETE /kvdb/{bucket}`: removes the lookup and policy records in one atomic entry, so the
/// bucket is gone for every request from then on, and records it as gone; its keys are then
/// deleted in the background ("may not complete immediately", as the seed says; `sweep.rs`).
#[utoipa::path(delete, path = "/kvdb/{bucket}", tag = "buckets", operation_id = "deleteBucket",
    summary = "Delete a bucket and, in the background, its keys",
    params(crate::api::dialects::schema::KvBucketPath),
    responses((status = 200, description = "done; the body is empty", body = String, content_type = "text/plain"), crate::api::dialects::schema::KvErrors))]
pub async fn delete(
    State(st): State<AppState>,
    key: BucketKey,
    path: Result<Path<String>, PathRejection>,
    q: QueryMap,
    replay: Res<Replay>,
) -> Response {
    let parsed = (|| -> Res<_> {
        let id = bucket_id(path)?;
        query_params(q, &[], bad)?;
        Ok((id, replay?))
    })();
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
        let gone = Gone { namespace: b.ns.clone(), prefix: b.data_prefix() };
        let gone_text = match to_json(&gone) {
            Ok(t) => t,
            Err(e) => return error(e),
        };
        let (lookup_ns, lookup_key) = b.lookup();
        let cmds = vec![
            Command::Delete { ns: lookup_ns.to_string(), key: lookup_key, cond: Condition::None },
            Command::Delete { ns: b.ns.clone(), key: b.meta_key(), cond: Condition::IfValue(b.meta_text.clone()) },
            Command::Set {
                ns: LOOKUP_NS.to_string(),
                key: gone_key(&id),
                value: gone_text,
                ttl_ms: None,
                cond: Condition::None,
            },
        ];
        match exec::write_one(&st, Command::Batch(cmds), clone_replay(&replay)).await {
            Ok((_, CmdResult::Batch(results))) => {
                if matches!(results.get(1), Some(CmdResult::Absent { .. })) {
                    return error(not_found("bucket not found"));
                }
                sweep::start(&st, id, gone);
                return text(StatusCode::OK, "");
            }
            Ok((_, CmdResult::BatchRefused { refusal: Refusal::ValueMismatch, .. })) => continue,
            Ok((_, CmdResult::BatchRefused { refusal, .. })) => return error(refused(refusal)),
            Ok((_, other)) => return error(ApiError::internal(format!("unexpected result {other:?}"))),
            Err(b) => return b.render(error),
        }
    }
    error(busy())
}

#[cfg(test)]
mod tests {
    use super::*;

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
