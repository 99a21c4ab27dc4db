//! One workload client's HTTP access to the node it is pinned to, and the outcome rules:
//! what counts as `ok`, `fail` (definitely did not happen) and `info` (unknown).
//!
//! | reply | write / cas / incr | read |
//! |---|---|---|
//! | 200 (201 for a lease grant) | ok | ok (value) |
//! | 404 | fail (unexpected) | ok (`null`) |
//! | 409 `value_mismatch` on a cas | ok, `res: false` | — |
//! | other 4xx | fail | fail |
//! | 503 (`no_leader`: not proposed) | fail | fail |
//! | 504, 500, other status | info | info |
//! | connection refused / connect timeout (nothing sent) | fail | fail |
//! | timeout or reset after sending | info | info |

use std::time::Duration;

use serde_json::Value;

use super::history::Status;

/// The classified answer to one request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: Status,
    /// HTTP status, when one came back.
    pub http: Option<u16>,
    /// `data` of a success envelope.
    pub data: Value,
    /// `X-Cairn-Consistency`, when present.
    pub consistency: Option<String>,
    /// `X-Cairn-Node`: the node that produced the answer (the leader, for a proxied request).
    pub served_by: Option<u64>,
    /// Why it is not a plain 200.
    pub error: Option<String>,
}

impl Reply {
    pub fn value(&self) -> Value {
        self.data.get("value").cloned().unwrap_or(Value::Null)
    }

    pub fn version(&self) -> Option<u64> {
        self.data.get("version")?.as_str()?.parse().ok()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Read,
    Write,
    Cas,
}

#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    pub base: String,
}

impl Api {
    /// A client with its own connection pool, so one client's broken connection is its own.
    pub fn new(base: &str, timeout: Duration) -> Api {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(1)))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("build reqwest client");
        Api { http, base: base.to_string() }
    }

    /// `GET /kv/items/{key}`, strong or with the node's default consistency.
    pub async fn read(&self, key: &str, strong: bool) -> Reply {
        let q = if strong { "?consistency=strong" } else { "" };
        let req = self.http.get(format!("{}/kv/items/{key}{q}", self.base));
        self.send(req, Kind::Read).await
    }

    /// `PUT /kv/items/{key}` with `body` (`value`, optionally `ifValue`, `ttlSeconds`).
    pub async fn put(&self, key: &str, body: &Value, kind: Kind) -> Reply {
        let req = self.http.put(format!("{}/kv/items/{key}", self.base)).json(body);
        self.send(req, kind).await
    }

    pub async fn incr(&self, key: &str, delta: i64) -> Reply {
        let req = self
            .http
            .post(format!("{}/kv/items/{key}/increment", self.base))
            .json(&serde_json::json!({ "delta": delta }));
        self.send(req, Kind::Write).await
    }

    /// `POST /kv/batch` with `ops`: one Raft entry, classified like a write.
    pub async fn batch(&self, ops: &Value) -> Reply {
        let req = self.http.post(format!("{}/kv/batch", self.base)).json(&serde_json::json!({ "ops": ops }));
        self.send(req, Kind::Write).await
    }

    /// `POST {path}` with a JSON body (leases, locks), classified like a write.
    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        let req = self.http.post(format!("{}{path}", self.base)).json(body);
        self.send(req, Kind::Write).await
    }

    /// `DELETE {path}` (a lease revoke, a lock release), classified like a write.
    pub async fn delete(&self, path: &str) -> Reply {
        let req = self.http.delete(format!("{}{path}", self.base));
        self.send(req, Kind::Write).await
    }

    async fn send(&self, req: reqwest::RequestBuilder, kind: Kind) -> Reply {
        let resp = match req.send().await {
            Ok(resp) => resp,
            Err(e) => {
                // A connect error means the request never left; anything later may have.
                let status = if e.is_connect() { Status::Fail } else { Status::Info };
                return Reply {
                    status,
                    http: None,
                    data: Value::Null,
                    consistency: None,
                    served_by: None,
                    error: Some(format!("transport: {e}")),
                };
            }
        };
        let code = resp.status().as_u16();
        let consistency = resp.headers().get("x-cairn-consistency").and_then(|v| v.to_str().ok()).map(str::to_string);
        let served_by = resp.headers().get("x-cairn-node").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
        let body: Result<Value, _> = resp.json().await;
        let body = match body {
            Ok(b) => b,
            Err(e) => {
                return Reply {
                    status: Status::Info,
                    http: Some(code),
                    data: Value::Null,
                    consistency,
                    served_by,
                    error: Some(format!("HTTP {code}, body lost: {e}")),
                };
            }
        };
        let err_code = body["error"]["code"].as_str().unwrap_or("").to_string();
        let status = match (code, kind) {
            (200 | 201, _) => Status::Ok,
            (404, Kind::Read) => Status::Ok,
            (409, Kind::Cas) if err_code == "value_mismatch" => Status::Ok,
            (400..=499, _) | (503, _) => Status::Fail,
            _ => Status::Info,
        };
        Reply {
            status,
            http: Some(code),
            data: body.get("data").cloned().unwrap_or(Value::Null),
            consistency,
            served_by,
            error: (!matches!(code, 200 | 201)).then(|| format!("HTTP {code} {err_code}")),
        }
    }
}
