//! The wire shapes of the native API as OpenAPI schemas (`GET /openapi.json`). The handlers
//! parse bodies by hand, so that every unknown field is refused by name (`parse.rs`), and render
//! through borrowed views (`render.rs`); these types exist to describe those bytes, and
//! `tests/it/inproc/openapi.rs` checks them against live answers. `deny_unknown_fields` is
//! what makes a schema say `additionalProperties: false`, as the server does.

#![allow(dead_code)]

use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, IntoResponses, ToSchema};

/// A key's version or a log index: a decimal string, so JavaScript clients keep every digit.
#[derive(Deserialize, ToSchema)]
#[schema(value_type = String, pattern = "^[0-9]{1,19}$", example = "42")]
pub struct Version(String);

/// JSON Schema given as JSON: for the few rules utoipa's attributes cannot state.
fn json_schema(v: Value) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    serde_json::from_value(v).expect("a valid schema literal")
}

/// A version a client sends: a string of 1 to 19 digits (`parse.rs`), or a JSON integer that a
/// double holds exactly; null is the same as leaving it out.
fn version_in() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    json_schema(serde_json::json!({
        "type": ["string", "integer", "null"],
        "pattern": "^[0-9]{1,19}$",
        "minimum": 0,
        "maximum": 9_007_199_254_740_991u64,
    }))
}

/// An increment's delta: any number, and an integer within 64 signed bits (`parse.rs`).
fn delta() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    json_schema(serde_json::json!({
        "type": ["number", "null"],
        "if": {"type": "integer"},
        "then": {"minimum": i64::MIN, "exclusiveMaximum": 9_223_372_036_854_775_808u64},
    }))
}

/// A key in a body: 1 to 512 bytes of UTF-8 without control characters. JSON Schema counts
/// characters, so the length is exact for ASCII keys only.
fn body_key() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    json_schema(serde_json::json!({
        "type": "string", "minLength": 1, "maxLength": 512, "pattern": "^[^\\x00-\\x1f\\x7f]+$",
    }))
}

/// `{key}` in a path: as in a body, and not `.` or `..`, which URL parsers remove.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct KeyPath {
    /// The key: 1 to 512 bytes of UTF-8, no control characters; `/` as `%2F`.
    #[param(min_length = 1, max_length = 512, pattern = "^(?!\\.{1,2}$)[^\\x00-\\x1f\\x7f]+$")]
    pub key: String,
}

/// An item: `value` is left out of scans without `values=true`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Item {
    pub key: String,
    /// Any JSON value, as stored.
    #[schema(required = false)]
    pub value: Value,
    pub version: Version,
    /// RFC 3339 UTC with milliseconds, or null for a key without a TTL.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemData {
    pub data: Item,
}

/// `PUT /kv/items/{key}`. At most one of `ifNotExists`, `ifVersion`, `ifValue`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PutBody {
    /// The new value: any JSON, at most `--max-value-bytes` as compact text.
    pub value: Value,
    /// 1 to 31536000; null or absent: the node's default TTL (none unless configured).
    #[schema(minimum = 1, maximum = 31536000)]
    pub ttl_seconds: Option<u32>,
    /// Write only if the key is absent (409 `key_exists` otherwise).
    pub if_not_exists: Option<bool>,
    /// Write only if the key is at this version (409 `version_mismatch` otherwise).
    #[schema(schema_with = version_in, required = false)]
    pub if_version: Option<String>,
    /// Write only if the stored value equals this JSON (409 `value_mismatch` otherwise).
    #[schema(required = false)]
    pub if_value: Value,
    /// Write only while this token holds this lock (409 `fenced` otherwise).
    #[schema(required = false)]
    pub if_fence: Option<Fence>,
    /// Attach the key to this lease (404 `lease_not_found` if it is not live in the
    /// namespace): the key is deleted when the lease expires or is revoked. A write without
    /// `lease` takes the key off its lease.
    #[schema(required = false)]
    pub lease: Option<LeaseId>,
}

/// `ifFence`: the lock and the token that must hold it when the write applies.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Fence {
    #[schema(schema_with = body_key)]
    pub lock: String,
    pub token: LeaseId,
}

/// `POST /kv/items/{key}/increment`. An empty body means `{}`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IncrementBody {
    /// The amount to add (default 1); an integer is exact 64-bit arithmetic.
    #[schema(schema_with = delta, required = false)]
    pub delta: Option<f64>,
    /// Applies only if this increment creates the key.
    #[schema(minimum = 1, maximum = 31536000)]
    pub ttl_seconds: Option<u32>,
    /// Add only while this token holds this lock (409 `fenced` otherwise).
    #[schema(required = false)]
    pub if_fence: Option<Fence>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Deleted {
    pub key: String,
    pub deleted: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeletedData {
    pub data: Deleted,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Page {
    pub items: Vec<Item>,
    /// Pass back as `cursor` for the next page; null exactly when no live key follows.
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PageData {
    pub data: Page,
}

/// One op of a batch, by kind (docs/api.md, Batches). A field of another kind is refused.
#[derive(Deserialize, ToSchema)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum BatchOp {
    Get {
        #[schema(schema_with = body_key)]
        key: String,
    },
    #[serde(rename_all = "camelCase")]
    Set {
        #[schema(schema_with = body_key)]
        key: String,
        value: Value,
        #[schema(minimum = 1, maximum = 31536000)]
        ttl_seconds: Option<u32>,
        if_not_exists: Option<bool>,
        #[schema(schema_with = version_in, required = false)]
        if_version: Option<String>,
        #[schema(required = false)]
        if_value: Value,
        #[schema(required = false)]
        if_fence: Option<Fence>,
    },
    #[serde(rename_all = "camelCase")]
    Delete {
        #[schema(schema_with = body_key)]
        key: String,
        #[schema(schema_with = version_in, required = false)]
        if_version: Option<String>,
        #[schema(required = false)]
        if_value: Value,
        #[schema(required = false)]
        if_fence: Option<Fence>,
    },
    #[serde(rename_all = "camelCase")]
    Increment {
        #[schema(schema_with = body_key)]
        key: String,
        #[schema(schema_with = delta, required = false)]
        delta: Option<f64>,
        #[schema(minimum = 1, maximum = 31536000)]
        ttl_seconds: Option<u32>,
        #[schema(required = false)]
        if_fence: Option<Fence>,
    },
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    #[schema(min_items = 1, max_items = 100)]
    pub ops: Vec<BatchOp>,
}

/// One op's result: an item (`set`, `increment`, a found `get`), `{key, found: false}`, or
/// `{key, deleted}`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchResult {
    pub key: String,
    #[schema(required = false)]
    pub value: Value,
    #[schema(required = false)]
    pub version: Version,
    #[schema(required = false, format = DateTime)]
    pub expires_at: Option<String>,
    #[schema(required = false)]
    pub found: bool,
    #[schema(required = false)]
    pub deleted: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchResults {
    pub results: Vec<BatchResult>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchData {
    pub data: BatchResults,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    Read,
    Write,
    Admin,
}

/// `POST /admin/tokens`. At most one of `expiresAt` and `ttlSeconds`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenRequest {
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub namespace: String,
    #[schema(min_items = 1)]
    pub permissions: Vec<Permission>,
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    #[schema(minimum = 1, maximum = 31536000)]
    pub ttl_seconds: Option<u64>,
}

/// A token as listed: never its secret.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Token {
    pub id: String,
    pub namespace: String,
    pub permissions: Vec<Permission>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
}

/// A new token: `token` is the secret, shown this once.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenCreated {
    pub id: String,
    pub token: String,
    pub namespace: String,
    pub permissions: Vec<Permission>,
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenCreatedData {
    pub data: TokenCreated,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tokens {
    pub tokens: Vec<Token>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokensData {
    pub data: Tokens,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Revoked {
    pub id: String,
    pub revoked: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokedData {
    pub data: Revoked,
}

/// `POST /leases`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeaseGrantBody {
    /// How long the lease lives without a keepalive: 1 to 31536000.
    #[schema(minimum = 1, maximum = 31536000)]
    pub ttl_seconds: u32,
}

/// A lease id: a decimal string.
#[derive(Deserialize, ToSchema)]
#[schema(value_type = String, pattern = "^[0-9]{1,19}$", example = "7")]
pub struct LeaseId(String);

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Lease {
    pub id: LeaseId,
    pub ttl_seconds: u64,
    /// When it expires unless kept alive, by the cluster's clock.
    #[schema(format = DateTime)]
    pub expires_at: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseData {
    pub data: Lease,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeaseDetail {
    pub id: LeaseId,
    pub ttl_seconds: u64,
    #[schema(format = DateTime)]
    pub expires_at: String,
    /// Milliseconds left, by the answering node's clock.
    pub remaining_ms: u64,
    /// The keys attached to it, in order.
    pub keys: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseDetailData {
    pub data: LeaseDetail,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Leases {
    pub leases: Vec<Lease>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeasesData {
    pub data: Leases,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseRevoked {
    pub id: LeaseId,
    pub revoked: bool,
    /// How many keys were deleted with it.
    pub keys: u64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseRevokedData {
    pub data: LeaseRevoked,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct LeasePath {
    /// The lease id: 1 to 19 digits.
    #[param(pattern = "^[0-9]{1,19}$")]
    pub id: String,
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LeaseReadQuery {
    pub consistency: Option<Consistency>,
}

/// A lock's or an election's name: the rules of a key.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct NamePath {
    #[param(min_length = 1, max_length = 512, pattern = "^(?!\\.{1,2}$)[^\\x00-\\x1f\\x7f]+$")]
    pub name: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TokenPath {
    /// The fencing token the lock was taken with.
    #[param(pattern = "^[0-9]{1,19}$")]
    pub token: String,
}

/// How long to wait for the turn: `"10s"`, `"500ms"` or a number of seconds, at most 60 s;
/// absent: answer at once.
#[derive(Deserialize, ToSchema)]
#[schema(value_type = String, pattern = "^([0-9]{1,4}ms|[1-5]?[0-9]s?|60s?)$", example = "10s")]
pub struct Wait(String);

/// `POST /locks/{name}`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LockBody {
    /// The lease that holds the place: when it ends, so does the place.
    pub lease: LeaseId,
    #[schema(required = false)]
    pub wait: Option<Wait>,
    /// If this waiter's lease ends while it holds the lock, nobody holds it for this long
    /// after (Consul's lock delay); at most 60 s, default none.
    #[schema(required = false)]
    pub lock_delay: Option<Wait>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LockHeld {
    pub name: String,
    /// The fencing token: pass it with every guarded write (`ifFence`), and to release.
    pub token: LeaseId,
    pub lease: LeaseId,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LockHeldData {
    pub data: LockHeld,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LockReleased {
    pub name: String,
    pub token: LeaseId,
    pub released: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LockReleasedData {
    pub data: LockReleased,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LockHolder {
    pub token: LeaseId,
    pub lease: LeaseId,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LockState {
    pub name: String,
    pub holder: Option<LockHolder>,
    /// How many wait behind the holder.
    pub waiting: u64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LockData {
    pub data: LockState,
}

/// `POST /elections/{name}/campaign`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignBody {
    pub lease: LeaseId,
    /// The value this candidate announces once it leads: any JSON.
    pub value: Value,
    #[schema(required = false)]
    pub wait: Option<Wait>,
}

/// `PUT /elections/{name}/proclaim`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProclaimBody {
    /// The leadership token `campaign` returned.
    pub token: LeaseId,
    pub value: Value,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ElectionLeader {
    pub name: String,
    /// The leadership token: it fences `proclaim`, and `resign` takes it.
    pub token: LeaseId,
    pub lease: LeaseId,
    pub value: Value,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaderData {
    pub data: ElectionLeader,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ResignQuery {
    /// The leadership (or candidacy) token.
    #[param(pattern = "^[0-9]{1,19}$")]
    pub token: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resigned {
    pub name: String,
    pub token: LeaseId,
    pub resigned: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResignedData {
    pub data: Resigned,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Member {
    pub id: u64,
    pub addr: String,
    pub voter: bool,
    /// The cluster recorded that this member has held data.
    pub held_data: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Status {
    pub id: u64,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub role: String,
    pub term: u64,
    pub leader: Option<u64>,
    /// On a leader only: ms since a quorum last acknowledged it.
    #[schema(required = false)]
    pub quorum_ack_ms: u64,
    pub members: Vec<Member>,
    pub last_log_index: u64,
    pub applied_index: u64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusData {
    pub data: Status,
}

/// One member in `GET /cluster/nodes`, as it answered the node that asked it.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeView {
    pub id: u64,
    pub addr: String,
    pub voter: bool,
    /// It answered `/health` with 200.
    pub up: bool,
    /// `ok`, or the error code `/health` answered with.
    #[schema(required = false)]
    pub health: String,
    #[schema(required = false)]
    pub ready: bool,
    /// Why `/ready` said no.
    #[schema(required = false)]
    pub not_ready: String,
    /// Its own `/cluster/status`.
    #[schema(required = false)]
    pub status: Status,
    /// The sum of its `cairn_http_requests_total`.
    #[schema(required = false)]
    pub requests: u64,
    /// Why it could not be asked.
    #[schema(required = false)]
    pub error: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Nodes {
    /// The node that asked the others.
    pub answered_by: u64,
    pub nodes: Vec<NodeView>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodesData {
    pub data: Nodes,
}

/// `POST /cluster/members`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberRequest {
    pub id: u64,
    /// `host:port` of the new node.
    pub addr: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
    pub id: u64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthData {
    pub data: Health,
}

/// One Server-Sent Event of a watch: `data` is JSON text (a [`WatchEvent`] for `change`,
/// `{"index"}` for `progress`, the error object for `compacted`, `revoked` and `error`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SseEvent {
    #[schema(required = false, pattern = "^[0-9]{1,19}$")]
    pub id: String,
    pub event: SseKind,
    pub data: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SseKind {
    Change,
    Progress,
    Compacted,
    Revoked,
    Error,
}

/// One Server-Sent Event of an election's `observe`: `data` is JSON text, the leader (as
/// `GET .../leader` gives it) for `leader`, `{}` for `none`, a text for `revoked` and `error`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ObserveEvent {
    pub event: ObserveKind,
    pub data: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ObserveKind {
    Leader,
    None,
    Revoked,
    Error,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangeOp {
    /// `set`, `increment`, `delete` or `expire`.
    pub op: String,
    pub key: String,
    pub version: Version,
    /// Left out with `values=false`, and on deletes.
    #[schema(required = false)]
    pub value: Value,
    #[schema(required = false, format = DateTime)]
    pub expires_at: Option<String>,
}

/// One Raft entry's changes under the watched prefix.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WatchEvent {
    pub index: Version,
    pub changes: Vec<ChangeOp>,
}

/// A long poll's answer: resume with `after=index`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WatchPoll {
    pub events: Vec<WatchEvent>,
    pub index: Version,
}

/// The error object. `index` is a batch op's; `currentVersion` is the key's version on a
/// refused `ifVersion` or `If-Match` when the key exists; `compactedIndex` and `currentIndex`
/// come with 410 `compacted`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// The machine code (docs/api.md, Errors). Branch on it; the message may change.
    pub code: String,
    pub message: String,
    #[schema(required = false)]
    pub index: u64,
    #[schema(required = false)]
    pub current_version: Version,
    #[schema(required = false)]
    pub compacted_index: Version,
    #[schema(required = false)]
    pub current_index: Version,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Ready {
    /// Always true on a 200; a node that is not ready answers 503 `not_ready`.
    pub ready: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadyData {
    pub data: Ready,
}

/// How a read is served: `strong` (or `linearizable`) is linearizable, through the leader;
/// `stale` is the answering node's applied state. Without it a leader answers strongly and a
/// follower stale.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    Strong,
    Linearizable,
    Stale,
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReadQuery {
    pub consistency: Option<Consistency>,
    /// Wait (about 5 s at most) until the answering node has applied this index; otherwise 503
    /// `not_caught_up`. Read-your-writes on any node.
    #[param(value_type = Option<String>, pattern = "^[0-9]{1,19}$")]
    pub min_version: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub enum Flag {
    #[serde(rename = "true")]
    True,
    #[serde(rename = "false")]
    False,
    #[serde(rename = "1")]
    One,
    #[serde(rename = "0")]
    Zero,
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ScanQuery {
    /// Only keys that start with this string (default: every key).
    pub prefix: Option<String>,
    /// The `nextCursor` of the previous page, with the same `prefix`.
    pub cursor: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Include each value (default false).
    pub values: Option<Flag>,
    pub consistency: Option<Consistency>,
    #[param(value_type = Option<String>, pattern = "^[0-9]{1,19}$")]
    pub min_version: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Delete only if the key is at this version (409 `version_mismatch` otherwise).
    #[param(value_type = Option<String>, pattern = "^[0-9]{1,19}$")]
    pub if_version: Option<String>,
    /// `<lock>:<token>`: delete only while this token holds this lock (409 `fenced`
    /// otherwise). Not with `ifVersion`.
    #[param(value_type = Option<String>, pattern = "^[^\\x00-\\x1f\\x7f]{1,512}:[0-9]{1,19}$")]
    pub if_fence: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WatchQuery {
    /// Only keys that start with it (default: every key).
    pub prefix: Option<String>,
    /// Resume after this log index (default: this node's applied index). `Last-Event-ID` wins.
    #[param(value_type = Option<String>, pattern = "^[0-9]{1,19}$")]
    pub after: Option<String>,
    /// `false` leaves values out of every change (default true).
    pub values: Option<Flag>,
    /// Long poll only (`Accept: application/json`): how long to wait for a change, up to 60 s
    /// (`500ms`, `30s`, `30`).
    #[param(pattern = "^(([0-9]|[1-5][0-9]|60)s?|([0-9]{1,4}|[1-5][0-9]{4}|60000)ms)$")]
    pub wait: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct WatchHeaders {
    /// Resume after this index; wins over `after` (an `EventSource` sends it when it reconnects).
    #[serde(rename = "Last-Event-ID")]
    #[param(pattern = "^[0-9]{1,19}$")]
    pub last_event_id: Option<String>,
}

/// Every error a route can give, in the native envelope. Which codes each status carries is
/// in docs/api.md, Errors.
#[derive(IntoResponses)]
pub enum Errors {
    #[response(
        status = 400,
        description = "malformed request: `invalid_*`, `unknown_field`, `conflicting_conditions`"
    )]
    BadRequest(#[to_schema] ErrorEnvelope),
    #[response(status = 401, description = "`unauthorized`: no credential, or one that matches no live token")]
    Unauthorized(#[to_schema] ErrorEnvelope),
    #[response(status = 403, description = "`forbidden` (permission or namespace), `quota_exceeded`")]
    Forbidden(#[to_schema] ErrorEnvelope),
    #[response(status = 404, description = "`not_found`")]
    NotFound(#[to_schema] ErrorEnvelope),
    #[response(status = 408, description = "`request_timeout`: the body did not arrive in time")]
    Timeout(#[to_schema] ErrorEnvelope),
    #[response(
        status = 409,
        description = "a condition did not hold (`key_exists`, `version_mismatch`, `value_mismatch`), an increment cannot apply (`not_a_number`, `overflow`, `out_of_range`), `membership_conflict`"
    )]
    Conflict(#[to_schema] ErrorEnvelope),
    #[response(
        status = 412,
        description = "`precondition_failed`: an `If-Match` / `If-None-Match` header did not hold"
    )]
    PreconditionFailed(#[to_schema] ErrorEnvelope),
    #[response(status = 413, description = "`value_too_large`")]
    TooLarge(#[to_schema] ErrorEnvelope),
    #[response(status = 429, description = "`rate_limited`, `too_many_watchers`; see `Retry-After`")]
    RateLimited(#[to_schema] ErrorEnvelope),
    #[response(status = 500, description = "`storage_error`, `internal`: on a write, the outcome is unknown")]
    Internal(#[to_schema] ErrorEnvelope),
    #[response(status = 502, description = "`leader_unreachable`: nothing was done")]
    BadGateway(#[to_schema] ErrorEnvelope),
    #[response(
        status = 503,
        description = "`no_leader`, `not_caught_up`, `too_many_connections`, `starting`, `watchers_full`: nothing was applied; retry after `Retry-After` or at another node"
    )]
    Unavailable(#[to_schema] ErrorEnvelope),
    #[response(status = 504, description = "`unknown_outcome`: the write may or may not have been applied")]
    UnknownOutcome(#[to_schema] ErrorEnvelope),
    #[response(
        status = 507,
        description = "`insufficient_storage`: the leader refused the write for want of disk space"
    )]
    InsufficientStorage(#[to_schema] ErrorEnvelope),
}
