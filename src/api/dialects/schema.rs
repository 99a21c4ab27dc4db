//! The wire shapes of the dialects as OpenAPI schemas (`GET /openapi/{dialect}.json`). Like
//! the native `api/schema.rs`, these types exist only to describe the bytes the handlers parse
//! and render by hand; `deny_unknown_fields` is what makes a schema say
//! `additionalProperties: false`, as the handlers refuse unknown fields. Rules the attributes
//! cannot state (per-status error codes, a batch op's kinds) are patched in `openapi.rs`.

#![allow(dead_code)]

use serde::Deserialize;
use serde_json::Value;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;
use utoipa::{IntoParams, IntoResponses, ToSchema};

/// JSON Schema given as JSON: for the few rules utoipa's attributes cannot state.
fn json_schema(v: Value) -> RefOr<Schema> {
    serde_json::from_value(v).expect("a valid schema literal")
}

/// Cairn's `?consistency=`, on every dialect read route (`exec::is_strong`).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    Strong,
    Linearizable,
    Stale,
}

// ---- saasignal (seed 003): JSON bodies, flat `{"code", "message"}` errors ----

/// A saasignal TTL: whole seconds, `>0 .. ≤9007199254740991`; null or absent is the node's
/// default TTL (none unless configured).
fn ss_ttl() -> RefOr<Schema> {
    json_schema(serde_json::json!({"type": ["integer", "null"], "minimum": 1, "maximum": 9_007_199_254_740_991u64}))
}

/// An increment's delta: any number, and an integer within 64 signed bits (`parse::delta_of`).
fn ss_delta() -> RefOr<Schema> {
    json_schema(serde_json::json!({
        "type": ["number", "null"],
        "if": {"type": "integer"},
        "then": {"minimum": i64::MIN, "exclusiveMaximum": 9_223_372_036_854_775_808u64},
    }))
}

/// The seed's key rule, in a body: 1–512 characters, no control characters, no `..`.
fn ss_body_key() -> RefOr<Schema> {
    json_schema(serde_json::json!({
        "type": "string", "minLength": 1, "maxLength": 512, "pattern": "^(?!.*\\.\\.)[^\\x00-\\x1f\\x7f]+$",
    }))
}

/// `{key}` in a saasignal path: the seed's rule, and not `.`, which URL parsers remove (`..`
/// is already excluded).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SsKeyPath {
    /// 1 to 512 characters, no control characters, no `..`; `/` as `%2F`.
    #[param(min_length = 1, max_length = 512, pattern = "^(?!\\.$)(?!.*\\.\\.)[^\\x00-\\x1f\\x7f]+$")]
    pub key: String,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SsReadQuery {
    /// Cairn's: `strong` (the default on the leader) or `stale` (a follower's own state).
    pub consistency: Option<Consistency>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SsScanQuery {
    /// Only keys starting with this (the key rule, but may be empty).
    #[param(max_length = 512, pattern = "^(?!.*\\.\\.)[^\\x00-\\x1f\\x7f]*$")]
    pub prefix: Option<String>,
    /// `next_cursor` of the previous page, for the same prefix; empty is the first page.
    pub cursor: Option<String>,
    /// Keys per page, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    pub consistency: Option<Consistency>,
}

/// A key as saasignal shows it. `status` comes only with an increment's answer.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SsItem {
    #[schema(required = false)]
    pub status: SsOk,
    pub key: String,
    /// Any JSON value, as stored.
    pub value: Value,
    /// RFC 3339 UTC with milliseconds, or null for a key without a TTL.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SsOk {
    Ok,
}

/// `PUT /infra/kv/{key}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SsPutBody {
    /// The new value: any JSON (null included), at most 262,144 bytes as compact text.
    pub value: Value,
    #[schema(schema_with = ss_ttl, required = false)]
    pub ttl: Option<u64>,
    /// Write only if the key is absent (409 `conflict` otherwise).
    pub if_not_exists: Option<bool>,
}

/// `POST /infra/kv/{key}/increment`; an empty body is `{}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SsIncrementBody {
    /// The amount to add (default 1); integer arithmetic when both sides are integers.
    #[schema(schema_with = ss_delta, required = false)]
    pub delta: Option<f64>,
    /// Applies only if the increment creates the key.
    #[schema(schema_with = ss_ttl, required = false)]
    pub ttl: Option<u64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SsDeleted {
    pub status: SsOk,
    pub key: String,
    pub deleted: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SsPage {
    pub status: SsOk,
    /// Key names in byte order.
    pub keys: Vec<String>,
    /// Pass as `cursor` for the next page; null on the last one.
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SsOpKind {
    Get,
    Set,
    Delete,
}

/// One batch op. A `get` or `delete` takes only `op` and `key` (the split by kind is patched
/// in `openapi.rs`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SsOp {
    pub op: SsOpKind,
    #[schema(schema_with = ss_body_key)]
    pub key: String,
    #[schema(required = false)]
    pub value: Value,
    #[schema(schema_with = ss_ttl, required = false)]
    pub ttl: Option<u64>,
    pub if_not_exists: Option<bool>,
}

/// `POST /infra/kv`: up to 100 ops, applied all or nothing.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SsBatchBody {
    #[schema(max_items = 100)]
    pub ops: Vec<SsOp>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SsOpStatus {
    Ok,
    NotFound,
}

/// One op's result: `value` is null, and `expires_at` absent, for a deleted or missing key.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SsOpResult {
    pub key: String,
    pub value: Value,
    #[schema(format = DateTime, required = false)]
    pub expires_at: Option<String>,
    pub status: SsOpStatus,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SsResults {
    pub results: Vec<SsOpResult>,
}

/// saasignal's error body. Which `code` comes with which status is patched in `openapi.rs`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SsError {
    pub code: String,
    pub message: String,
    /// The refused op of a batch.
    #[schema(required = false)]
    pub index: u64,
}

/// Every error a saasignal route answers (`saasignal::common::code_of`).
#[derive(IntoResponses)]
pub enum SsErrors {
    #[response(status = 400, description = "`bad_request`, or `unknown_field` naming a field or parameter")]
    BadRequest(#[to_schema] SsError),
    #[response(status = 401, description = "`unauthorized`: no credential, or one that matches no live token")]
    Unauthorized(#[to_schema] SsError),
    #[response(status = 403, description = "`forbidden` (the token lacks the permission), `quota_exceeded`")]
    Forbidden(#[to_schema] SsError),
    #[response(status = 404, description = "`not_found`")]
    NotFound(#[to_schema] SsError),
    #[response(status = 408, description = "`request_timeout`: the body did not arrive in time")]
    Timeout(#[to_schema] SsError),
    #[response(
        status = 409,
        description = "`conflict`: `if_not_exists` on an existing key, or an increment that cannot apply"
    )]
    Conflict(#[to_schema] SsError),
    #[response(status = 429, description = "`rate_limited`; see `Retry-After`")]
    RateLimited(#[to_schema] SsError),
    #[response(status = 500, description = "`internal_error`: on a write, the outcome is unknown")]
    Internal(#[to_schema] SsError),
    #[response(status = 502, description = "`leader_unreachable`: nothing was done")]
    BadGateway(#[to_schema] SsError),
    #[response(
        status = 503,
        description = "`no_leader`, `not_caught_up`: nothing was applied; retry after `Retry-After`"
    )]
    Unavailable(#[to_schema] SsError),
    #[response(status = 504, description = "`unknown_outcome`: the write may or may not have been applied")]
    UnknownOutcome(#[to_schema] SsError),
    #[response(
        status = 507,
        description = "`insufficient_storage`: the leader refused the write for want of disk space"
    )]
    InsufficientStorage(#[to_schema] SsError),
}

// ---- echovalue (seed 004): text in, text out ----

/// `{group}/{key}` of an echovalue path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct EvPath {
    /// 1 to 30 characters, no control characters, no `/`.
    #[param(min_length = 1, max_length = 30, pattern = "^(?!\\.{1,2}$)[^\\x00-\\x1f\\x7f-\\x9f/]+$")]
    pub group: String,
    /// 1 to 30 characters, no control characters; `/` as `%2F`.
    #[param(min_length = 1, max_length = 30, pattern = "^(?!\\.{1,2}$)[^\\x00-\\x1f\\x7f-\\x9f]+$")]
    pub key: String,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EvStoreQuery {
    /// Seconds, default 2592000 (30 days).
    #[param(minimum = 1, maximum = 2592000)]
    pub ttl: Option<u32>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EvReadQuery {
    pub consistency: Option<Consistency>,
}

/// Every error an echovalue route answers: text led by the seed's meaning of the status.
#[derive(IntoResponses)]
pub enum EvErrors {
    #[response(status = 400, description = "`Malformed request: …`", content_type = "text/plain")]
    BadRequest(String),
    #[response(status = 401, description = "`Invalid token: …`", content_type = "text/plain")]
    Unauthorized(String),
    #[response(
        status = 403,
        description = "`Forbidden: …`: the token lacks the permission, or the key quota",
        content_type = "text/plain"
    )]
    Forbidden(String),
    #[response(status = 404, description = "`Not found: …`", content_type = "text/plain")]
    NotFound(String),
    #[response(
        status = 408,
        description = "`Unavailable: …`: the body did not arrive in time",
        content_type = "text/plain"
    )]
    Timeout(String),
    #[response(status = 429, description = "`Rate limit exceeded: …`; see `Retry-After`", content_type = "text/plain")]
    RateLimited(String),
    #[response(
        status = 500,
        description = "`Unavailable: …`: on a write, the outcome is unknown",
        content_type = "text/plain"
    )]
    Internal(String),
    #[response(
        status = 502,
        description = "`Unavailable: …`: the leader could not be reached; nothing was done",
        content_type = "text/plain"
    )]
    BadGateway(String),
    #[response(
        status = 503,
        description = "`Unavailable: …`: nothing was applied; retry after `Retry-After`",
        content_type = "text/plain"
    )]
    Unavailable(String),
    #[response(
        status = 504,
        description = "`Unavailable: …`: the write may or may not have been applied",
        content_type = "text/plain"
    )]
    UnknownOutcome(String),
    #[response(
        status = 507,
        description = "`Unavailable: …`: the leader is short of disk space",
        content_type = "text/plain"
    )]
    InsufficientStorage(String),
}

// ---- KVdb (seed 002): form bodies, text values, text errors ----

/// `{bucket}`: an id as `POST /kvdb` makes them.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct KvBucketPath {
    /// 22 characters of `[0-9A-Za-z]`; any other is a bucket that does not exist (404).
    #[param(pattern = "^[0-9A-Za-z]{22}$")]
    pub bucket: String,
}

/// `{bucket}/{key}`: the key is the rest of the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct KvKeyPath {
    #[param(pattern = "^[0-9A-Za-z]{22}$")]
    pub bucket: String,
    /// 1 to 128 bytes of UTF-8, no control characters; `/` may be sent raw or as `%2F`.
    #[param(min_length = 1, max_length = 128, pattern = "^(?!\\.{1,2}$)[^\\x00-\\x1f\\x7f-\\x9f]+$")]
    pub key: String,
}

/// Seconds as KVdb takes them: any whole number a u64 holds, 0 meaning no expiry (longer
/// than about 1000 years is stored as 1000 years).
fn kv_seconds() -> RefOr<Schema> {
    json_schema(serde_json::json!({"type": "integer", "minimum": 0, "maximum": u64::MAX}))
}

/// Bucket creation, as an `application/x-www-form-urlencoded` body. An empty key means none.
/// A form field has no null: every field is text or left out.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KvCreateForm {
    /// Needed to list keys, change the policy and delete the bucket; also allows writes.
    #[schema(max_length = 256, required = false)]
    pub secret_key: String,
    /// Needed to write keys.
    #[schema(max_length = 256, required = false)]
    pub write_key: String,
    /// Seconds a key not updated lives; 0 is forever. Default 604800 (a week).
    #[schema(schema_with = kv_seconds, required = false)]
    pub default_ttl: u64,
    /// Accepted and ignored (the hosted service's account e-mail).
    #[schema(max_length = 256, required = false)]
    pub email: String,
}

/// A policy update: as creation, but the secret key can be changed, never removed (an empty
/// one is 400); an empty `write_key` removes the write key.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KvUpdateForm {
    #[schema(min_length = 1, max_length = 256, required = false)]
    pub secret_key: String,
    #[schema(max_length = 256, required = false)]
    pub write_key: String,
    #[schema(schema_with = kv_seconds, required = false)]
    pub default_ttl: u64,
    #[schema(max_length = 256, required = false)]
    pub email: String,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct KvTtlQuery {
    /// Seconds; 0 is no expiry. Default: the bucket's `default_ttl`.
    #[param(schema_with = kv_seconds)]
    pub ttl: Option<u64>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct KvReadQuery {
    pub consistency: Option<Consistency>,
}

#[derive(Deserialize, ToSchema)]
pub enum KvFlag {
    #[serde(rename = "true")]
    True,
    #[serde(rename = "false")]
    False,
    #[serde(rename = "1")]
    One,
    #[serde(rename = "0")]
    Zero,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KvFormat {
    Text,
    Json,
    Jsonl,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct KvListQuery {
    /// Only keys starting with this: at most 128 bytes, no control characters.
    #[param(max_length = 128, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub prefix: Option<String>,
    /// Keys at most, default 10000.
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<u32>,
    /// A pattern (the `regex` crate's syntax) matched anywhere in the key unless anchored; at
    /// most 1 KiB. One that does not compile is 400.
    #[param(max_length = 1024)]
    pub regex: Option<String>,
    /// With values: `key=value` lines, or `[key, value]` pairs.
    pub values: Option<KvFlag>,
    /// Overrides the Accept header; `jsonl` only this way.
    pub format: Option<KvFormat>,
    pub consistency: Option<Consistency>,
}

/// Every error a KVdb route answers: the message and a newline, as text.
#[derive(IntoResponses)]
pub enum KvErrors {
    #[response(
        status = 400,
        description = "a bad request: a bad key, value, form, parameter or counter",
        content_type = "text/plain"
    )]
    BadRequest(String),
    #[response(
        status = 401,
        description = "the key is neither of the bucket's keys, or not a live Cairn token (bucket creation)",
        content_type = "text/plain"
    )]
    Unauthorized(String),
    #[response(
        status = 403,
        description = "the bucket's policy needs a key that was not given, or a token lacks `write`, or the key quota",
        content_type = "text/plain"
    )]
    Forbidden(String),
    #[response(status = 404, description = "no such bucket or key", content_type = "text/plain")]
    NotFound(String),
    #[response(status = 408, description = "the body did not arrive in time", content_type = "text/plain")]
    Timeout(String),
    #[response(status = 429, description = "rate limited; see `Retry-After`", content_type = "text/plain")]
    RateLimited(String),
    #[response(
        status = 500,
        description = "an internal error: on a write, the outcome is unknown",
        content_type = "text/plain"
    )]
    Internal(String),
    #[response(
        status = 502,
        description = "the leader could not be reached; nothing was done",
        content_type = "text/plain"
    )]
    BadGateway(String),
    #[response(
        status = 503,
        description = "no leader, or the bucket's policy kept changing under the request: nothing was applied; retry after `Retry-After`",
        content_type = "text/plain"
    )]
    Unavailable(String),
    #[response(status = 504, description = "the write may or may not have been applied", content_type = "text/plain")]
    UnknownOutcome(String),
    #[response(status = 507, description = "the leader is short of disk space", content_type = "text/plain")]
    InsufficientStorage(String),
}
