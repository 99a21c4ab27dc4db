//! Request and response shapes of the REST API as the client sees them (camelCase on the wire).

use reqwest::Url;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Number, Value};

/// A stored item: the `data` of GET, PUT and increment responses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    pub key: String,
    pub value: Value,
    /// Decimal string on the wire (a Raft log index); kept as a string so it round-trips into
    /// `ifVersion` / `If-Match` exactly as the server wrote it.
    pub version: String,
    /// RFC 3339 UTC, or `None` for keys without a TTL.
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// An item as a scan lists it: `value` is `None` unless the scan asked for values, and
/// `Some(Value::Null)` for a stored `null`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Listed {
    pub key: String,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    pub version: String,
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// A field that is there, whatever it holds (`null` included); serde's `default` covers absence.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// The `data` of one `GET /kv/items` page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    pub items: Vec<Listed>,
    /// The next page's cursor; `None` exactly when no live key follows.
    pub next_cursor: Option<String>,
}

/// Options for one scan page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanOptions {
    /// Page size, 1 to 1000 (the server's default is 100).
    pub limit: Option<u32>,
    /// Include each value.
    pub values: bool,
    pub consistency: Option<Consistency>,
    /// Wait until the answering node has applied at least this index (read-your-writes).
    pub min_version: Option<u64>,
}

/// The `data` of `POST /kv/batch`: one result per op, in op order, in the server's shapes
/// (an item, `{key, found: false}` or `{key, deleted}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchResults {
    pub results: Vec<Value>,
}

/// The `data` of a successful DELETE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    pub key: String,
    pub deleted: bool,
}

/// Raft role a node reports in `/cluster/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Leader,
    Follower,
    Learner,
    Candidate,
    /// A role a newer server reports that this client does not know; kept so decoding a status
    /// never fails just because the server grew.
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: u64,
    pub addr: String,
    pub voter: bool,
}

/// The `data` of `GET /cluster/status`: one node's view of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    pub id: u64,
    pub role: Role,
    pub term: u64,
    pub leader: Option<u64>,
    #[serde(default)]
    pub members: Vec<Member>,
    pub last_log_index: u64,
    pub applied_index: u64,
}

/// The `data` of `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub id: u64,
}

/// Body of `PUT /kv/items/{key}`. Unset options are omitted so the server applies its defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PutRequest {
    pub value: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub if_not_exists: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub if_version: Option<String>,
    /// `Some(Value::Null)` is a real condition ("current value is null"), distinct from `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub if_value: Option<Value>,
}

impl PutRequest {
    pub fn new(value: Value) -> Self {
        PutRequest { value, ..PutRequest::default() }
    }
}

/// Body of `POST /kv/items/{key}/increment`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IncrementRequest {
    /// Integer or float; the server uses checked i64 arithmetic when both sides are integers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
}

/// Read consistency requested with `?consistency=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// Linearizable (ReadIndex on the leader; a follower proxies to the leader).
    Strong,
    /// Whatever the answering node has applied; may lag the leader.
    Stale,
}

impl Consistency {
    pub fn as_str(self) -> &'static str {
        match self {
            Consistency::Strong => "strong",
            Consistency::Stale => "stale",
        }
    }
}

/// Options for a GET. `consistency: None` leaves the choice to the server, whose default differs
/// between leader (strong) and follower (stale).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadOptions {
    pub consistency: Option<Consistency>,
    /// Wait until the answering node has applied at least this index (read-your-writes).
    pub min_version: Option<u64>,
}

/// What the `X-Cairn-*` and `ETag` headers said about the node that answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyMeta {
    /// The endpoint that finally served the request, after any failover.
    pub endpoint: Url,
    pub status: u16,
    pub node: Option<u64>,
    /// `None` both when the header is absent and when it says `none`.
    pub leader: Option<u64>,
    /// `linearizable` or `stale`, as reported by the server.
    pub consistency: Option<String>,
    pub applied_index: Option<u64>,
    /// The ETag with its quotes removed, i.e. the version.
    pub etag: Option<String>,
}

/// A successful response: the decoded `data` plus what the headers said.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply<T> {
    pub data: T,
    pub meta: ReplyMeta,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_listed_value_is_absent_null_or_there() {
        let without: Listed = serde_json::from_value(json!({"key": "a", "version": "3", "expiresAt": null})).unwrap();
        assert_eq!(without.value, None);
        let null: Listed = serde_json::from_value(json!({"key": "a", "value": null, "version": "3"})).unwrap();
        assert_eq!(null.value, Some(Value::Null));
        assert_eq!(serde_json::to_value(&null).unwrap()["value"], Value::Null);
        assert!(serde_json::to_value(&without).unwrap().get("value").is_none());
    }

    #[test]
    fn put_request_omits_unset_options() {
        let body = serde_json::to_value(PutRequest::new(json!({"a": 1}))).unwrap();
        assert_eq!(body, json!({"value": {"a": 1}}));
    }

    #[test]
    fn put_request_uses_camel_case_and_keeps_null_if_value() {
        let req = PutRequest {
            value: json!(2),
            ttl_seconds: Some(60),
            if_not_exists: true,
            if_version: Some("7".into()),
            if_value: Some(Value::Null),
        };
        assert_eq!(
            serde_json::to_value(req).unwrap(),
            json!({"value": 2, "ttlSeconds": 60, "ifNotExists": true,
                   "ifVersion": "7", "ifValue": null})
        );
    }

    #[test]
    fn item_decodes_with_and_without_expiry() {
        let item: Item = serde_json::from_value(json!({"key": "k", "value": [1], "version": "12"})).unwrap();
        assert_eq!(item.expires_at, None);
        let item: Item = serde_json::from_value(json!({
            "key": "k", "value": 1, "version": "3", "expiresAt": "2026-11-23T15:00:00.123Z"
        }))
        .unwrap();
        assert_eq!(item.expires_at.as_deref(), Some("2026-11-23T15:00:00.123Z"));
    }

    #[test]
    fn cluster_status_tolerates_unknown_roles() {
        let status: ClusterStatus = serde_json::from_value(json!({
            "id": 2, "role": "witness", "term": 4, "leader": null,
            "members": [{"id": 1, "addr": "127.0.0.1:7001", "voter": true}],
            "lastLogIndex": 10, "appliedIndex": 9
        }))
        .unwrap();
        assert_eq!(status.role, Role::Unknown);
        assert_eq!(status.leader, None);
        assert_eq!(status.members.len(), 1);
    }
}
