//! `Client`: typed calls to the REST API with endpoint failover that never hides an unknown outcome.
//!
//! Failover rule, per endpoint in the configured order:
//! - the request certainly did not reach a server (connect error or connect timeout), or the
//!   server answered 503: try the next endpoint;
//! - a read that failed any other way (timeout, 504, dropped connection, other 5xx): try the
//!   next endpoint, since reading twice is harmless;
//! - a write that may have reached a server (timeout after sending, 504, dropped connection,
//!   other 5xx): stop and report [`ClientError::UnknownOutcome`]. Re-sending it elsewhere could
//!   apply it twice (an increment, say), so that decision belongs to the caller.
//! - 507 `insufficient_storage` (the leader refused the write before proposing it): stop with
//!   that definite error; every endpoint forwards to the same leader.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::{Method, Url};
use serde_json::Value;

use super::error::{ClientError, FailedAttempt};
use super::response::{ambiguous, cause, classify, decode, read_body, reply_meta, Attempt, Effect};
use super::types::{
    BatchResults, ClusterStatus, Deleted, Health, IncrementRequest, Item, Page, PutRequest, ReadOptions, Reply,
    ScanOptions,
};

/// Connect timeout: short, because a refused or silent endpoint should hand over to the next one
/// quickly, and a connect failure is always safe to fail over from.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Whole-request timeout. Longer than the server's default write timeout (10 s) so that a slow
/// commit is reported by the server as a 504 with a message rather than by a bare client timeout.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Tried in this order for every request.
    pub endpoints: Vec<Url>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Sent as `Authorization: Bearer`.
    pub token: Option<String>,
    /// Sent as `X-Cairn-Namespace`.
    pub namespace: Option<String>,
    /// PEM CA certificate(s) trusted for https endpoints instead of the system roots.
    pub cacert: Option<PathBuf>,
}

impl ClientConfig {
    pub fn new(endpoints: Vec<Url>) -> Self {
        ClientConfig {
            endpoints,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            token: None,
            namespace: None,
            cacert: None,
        }
    }
}

/// A Cairn API client. Cheap to clone: the connection pool is shared.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    endpoints: Vec<Url>,
    /// Every request's timeout, which a call the server may hold extends by its wait.
    pub(super) request_timeout: Duration,
}

/// One logical API request, rebuilt against each endpoint it is tried on.
pub(super) struct Call {
    method: Method,
    segments: Vec<String>,
    pub(super) query: Vec<(&'static str, String)>,
    body: Option<Value>,
    effect: Effect,
    /// Longer than the client's timeout, for a request the server may hold (a lock's wait).
    timeout: Option<Duration>,
}

impl Client {
    /// A client with default timeouts.
    pub fn new(endpoints: Vec<Url>) -> Result<Client, ClientError> {
        Client::with_config(ClientConfig::new(endpoints))
    }

    pub fn with_config(config: ClientConfig) -> Result<Client, ClientError> {
        if config.endpoints.is_empty() {
            return Err(ClientError::InvalidEndpoint {
                endpoint: String::new(),
                reason: "no endpoints given".to_string(),
            });
        }
        let mut headers = reqwest::header::HeaderMap::new();
        let invalid = |what: &str| ClientError::InvalidInput {
            code: "invalid_option",
            message: format!("{what} is not a valid header value"),
        };
        if let Some(t) = &config.token {
            let v = reqwest::header::HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| invalid("--token"))?;
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        if let Some(ns) = &config.namespace {
            let v = reqwest::header::HeaderValue::from_str(ns).map_err(|_| invalid("--namespace"))?;
            headers.insert("x-cairn-namespace", v);
        }
        let mut builder = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            // A redirect would re-send a write somewhere we did not choose; Cairn never redirects.
            .redirect(reqwest::redirect::Policy::none());
        if config.cacert.is_some() || config.endpoints.iter().any(|e| e.scheme() == "https") {
            let tls = crate::tls::client_config(config.cacert.as_deref())
                .map_err(|e| ClientError::InvalidInput { code: "invalid_cacert", message: e.to_string() })?;
            builder = builder.use_preconfigured_tls(tls);
        }
        let http = builder.build().map_err(ClientError::Setup)?;
        Ok(Client { http, endpoints: config.endpoints, request_timeout: config.request_timeout })
    }

    pub fn endpoints(&self) -> &[Url] {
        &self.endpoints
    }

    /// The configured HTTP client (credentials, TLS, timeouts), for requests that are not one
    /// round trip: the watch stream.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `PUT /kv/items/{key}`.
    pub async fn put(&self, key: &str, request: &PutRequest) -> Result<Reply<Item>, ClientError> {
        let body = serde_json::to_value(request)
            .map_err(|e| ClientError::InvalidInput { code: "invalid_json", message: e.to_string() })?;
        let call = Call::new(Method::PUT, Effect::Write, item_path(key)?).body(body);
        decode(self.execute(&call).await?)
    }

    /// `GET /kv/items/{key}`.
    pub async fn get(&self, key: &str, options: ReadOptions) -> Result<Reply<Item>, ClientError> {
        let mut call = Call::new(Method::GET, Effect::Read, item_path(key)?);
        if let Some(consistency) = options.consistency {
            call.query.push(("consistency", consistency.as_str().to_string()));
        }
        if let Some(min_version) = options.min_version {
            call.query.push(("minVersion", min_version.to_string()));
        }
        decode(self.execute(&call).await?)
    }

    /// `DELETE /kv/items/{key}`, optionally only if the key is at `if_version`.
    pub async fn delete(&self, key: &str, if_version: Option<&str>) -> Result<Reply<Deleted>, ClientError> {
        let mut call = Call::new(Method::DELETE, Effect::Write, item_path(key)?);
        if let Some(version) = if_version {
            call.query.push(("ifVersion", version.to_string()));
        }
        decode(self.execute(&call).await?)
    }

    /// `POST /kv/items/{key}/increment`.
    pub async fn increment(&self, key: &str, request: &IncrementRequest) -> Result<Reply<Item>, ClientError> {
        let body = serde_json::to_value(request)
            .map_err(|e| ClientError::InvalidInput { code: "invalid_delta", message: e.to_string() })?;
        let mut segments = item_path(key)?;
        segments.push("increment".to_string());
        let call = Call::new(Method::POST, Effect::Write, segments).body(body);
        decode(self.execute(&call).await?)
    }

    /// `GET /kv/items`: one page of the keys under `prefix`, after `cursor` (the previous
    /// page's `next_cursor`; `None` for the first page).
    pub async fn scan(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        options: ScanOptions,
    ) -> Result<Reply<Page>, ClientError> {
        let mut call = Call::new(Method::GET, Effect::Read, segs(&["kv", "items"]));
        call.query.push(("prefix", prefix.to_string()));
        if let Some(cursor) = cursor {
            call.query.push(("cursor", cursor.to_string()));
        }
        if let Some(limit) = options.limit {
            call.query.push(("limit", limit.to_string()));
        }
        if options.values {
            call.query.push(("values", "true".to_string()));
        }
        if let Some(consistency) = options.consistency {
            call.query.push(("consistency", consistency.as_str().to_string()));
        }
        if let Some(min_version) = options.min_version {
            call.query.push(("minVersion", min_version.to_string()));
        }
        decode(self.execute(&call).await?)
    }

    /// `POST /kv/batch`: 1 to 100 ops (objects in the server's shape, docs/api.md "Batches"),
    /// applied atomically as one Raft entry. A write: never re-sent once it may have arrived.
    pub async fn batch(&self, ops: &[Value]) -> Result<Reply<BatchResults>, ClientError> {
        let call = Call::new(Method::POST, Effect::Write, segs(&["kv", "batch"])).body(serde_json::json!({"ops": ops}));
        decode(self.execute(&call).await?)
    }

    /// `GET /cluster/status` from the first endpoint that answers.
    pub async fn cluster_status(&self) -> Result<Reply<ClusterStatus>, ClientError> {
        let segments = vec!["cluster".to_string(), "status".to_string()];
        decode(self.execute(&Call::new(Method::GET, Effect::Read, segments)).await?)
    }

    /// `POST /cluster/members`: admit node `id` at `addr` (learner, catch-up, voter).
    pub async fn add_member(&self, id: u64, addr: &str) -> Result<Reply<ClusterStatus>, ClientError> {
        let call = Call::new(Method::POST, Effect::Write, segs(&["cluster", "members"]))
            .body(serde_json::json!({"id": id, "addr": addr}));
        decode(self.execute(&call).await?)
    }

    /// `DELETE /cluster/members/{id}`.
    pub async fn remove_member(&self, id: u64) -> Result<Reply<ClusterStatus>, ClientError> {
        let call = Call::new(Method::DELETE, Effect::Write, segs(&["cluster", "members", &id.to_string()]));
        decode(self.execute(&call).await?)
    }

    /// `POST /admin/tokens`.
    pub async fn create_token(&self, namespace: &str, permissions: &[String]) -> Result<Reply<Value>, ClientError> {
        let call = Call::new(Method::POST, Effect::Write, segs(&["admin", "tokens"]))
            .body(serde_json::json!({"namespace": namespace, "permissions": permissions}));
        self.execute(&call).await
    }

    /// `GET /admin/tokens`.
    pub async fn list_tokens(&self) -> Result<Reply<Value>, ClientError> {
        self.execute(&Call::new(Method::GET, Effect::Read, segs(&["admin", "tokens"]))).await
    }

    /// `DELETE /admin/tokens/{id}`.
    pub async fn revoke_token(&self, id: &str) -> Result<Reply<Value>, ClientError> {
        self.execute(&Call::new(Method::DELETE, Effect::Write, segs(&["admin", "tokens", id]))).await
    }

    /// Streams `GET /admin/snapshot` into `out` from the first endpoint that answers; returns
    /// the byte count. A read: a failure moves on to the next endpoint.
    pub async fn download_snapshot(&self, out: &std::path::Path) -> Result<u64, ClientError> {
        use tokio::io::AsyncWriteExt;
        let mut attempts = Vec::new();
        for endpoint in &self.endpoints {
            let url = Call::new(Method::GET, Effect::Read, segs(&["admin", "snapshot"])).url(endpoint);
            // Snapshots can be large: no whole-request timeout here, only the connect timeout.
            let resp = match self.http.get(url).timeout(std::time::Duration::from_secs(24 * 3600)).send().await {
                Ok(r) => r,
                Err(e) => {
                    attempts.push(FailedAttempt { endpoint: endpoint.to_string(), reason: e.to_string() });
                    continue;
                }
            };
            if !resp.status().is_success() {
                let status = resp.status().as_u16();
                let meta = reply_meta(endpoint, &resp);
                let body = read_body(resp).await.unwrap_or_default();
                if status == 503 {
                    attempts.push(FailedAttempt { endpoint: endpoint.to_string(), reason: format!("HTTP {status}") });
                    continue;
                }
                return match classify(endpoint, Effect::Read, meta, &body) {
                    Attempt::Fail(e) => Err(e),
                    _ => Err(ClientError::BadResponse {
                        endpoint: endpoint.to_string(),
                        status,
                        detail: "unexpected answer".into(),
                    }),
                };
            }
            let io = |e: std::io::Error| ClientError::InvalidInput {
                code: "io_error",
                message: format!("{}: {e}", out.display()),
            };
            // A backup holds every value and every token hash: readable by its owner only.
            let mut file = tokio::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(out)
                .await
                .map_err(io)?;
            // `mode` applies only to a new file; a leftover partial one is narrowed too.
            let owner_only = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600);
            file.set_permissions(owner_only).await.map_err(io)?;
            let mut resp = resp;
            let mut total = 0u64;
            loop {
                match resp.chunk().await {
                    Ok(Some(chunk)) => {
                        total += chunk.len() as u64;
                        file.write_all(&chunk).await.map_err(io)?;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        return Err(ClientError::BadResponse {
                            endpoint: endpoint.to_string(),
                            status: 200,
                            detail: format!("transfer broke: {e}"),
                        })
                    }
                }
            }
            file.sync_all().await.map_err(io)?;
            return Ok(total);
        }
        Err(ClientError::Unavailable { attempts })
    }

    /// `GET /health` from the first endpoint that answers.
    pub async fn health(&self) -> Result<Reply<Health>, ClientError> {
        let segments = vec!["health".to_string()];
        decode(self.execute(&Call::new(Method::GET, Effect::Read, segments)).await?)
    }

    pub(super) async fn execute(&self, call: &Call) -> Result<Reply<Value>, ClientError> {
        let mut attempts = Vec::new();
        for endpoint in &self.endpoints {
            match self.attempt(endpoint, call).await {
                Attempt::Done(reply) => return Ok(reply),
                Attempt::Fail(err) => return Err(err),
                Attempt::Next(reason) => attempts.push(FailedAttempt { endpoint: endpoint.to_string(), reason }),
            }
        }
        Err(ClientError::Unavailable { attempts })
    }

    async fn attempt(&self, endpoint: &Url, call: &Call) -> Attempt {
        let mut request = self.http.request(call.method.clone(), call.url(endpoint));
        if let Some(timeout) = call.timeout {
            request = request.timeout(timeout);
        }
        if let Some(body) = &call.body {
            request = request.json(body);
        }
        let response = match request.send().await {
            Ok(response) => response,
            // Checked before the timeout case: a connect timeout is also a timeout, but it is
            // one where nothing was sent.
            Err(e) if e.is_connect() => return Attempt::Next(cause(&e)),
            Err(e) => return ambiguous(endpoint, call.effect, cause(&e)),
        };
        let status = response.status().as_u16();
        let meta = reply_meta(endpoint, &response);
        let body = match read_body(response).await {
            Ok(body) => body,
            Err(detail) if status == 503 => return Attempt::Next(detail),
            Err(detail) => return ambiguous(endpoint, call.effect, detail),
        };
        classify(endpoint, call.effect, meta, &body)
    }
}

impl Call {
    pub(super) fn new(method: Method, effect: Effect, segments: Vec<String>) -> Call {
        Call { method, segments, query: Vec::new(), body: None, effect, timeout: None }
    }

    pub(super) fn body(mut self, body: Value) -> Call {
        self.body = Some(body);
        self
    }

    /// The whole request's timeout, when the server may hold it longer than a plain one.
    pub(super) fn timeout(mut self, timeout: Duration) -> Call {
        self.timeout = Some(timeout);
        self
    }

    fn url(&self, base: &Url) -> Url {
        let mut url = base.clone();
        // Only cannot-be-a-base URLs refuse path segments; parse_endpoint admits http URLs with a
        // host only, so the error branch is unreachable in practice.
        if let Ok(mut path) = url.path_segments_mut() {
            // Percent-encodes each segment, including '/', '%', '?' and '#', so any key is one
            // segment.
            path.pop_if_empty().extend(&self.segments);
        }
        if !self.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&self.query);
        }
        url
    }
}

pub(super) fn segs(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|p| p.to_string()).collect()
}

/// Validates just enough of a key to build a correct URL; everything else is the server's call.
fn item_path(key: &str) -> Result<Vec<String>, ClientError> {
    let invalid = |message: &str| ClientError::InvalidInput { code: "invalid_key", message: message.to_string() };
    match key {
        "" => Err(invalid("key must not be empty")),
        // URL parsers resolve these as dot-segments (even percent-encoded), so the request
        // would land on another route instead of naming the key.
        "." | ".." => Err(invalid("keys \".\" and \"..\" cannot be addressed in a URL path")),
        _ => Ok(vec!["kv".to_string(), "items".to_string(), key.to_string()]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("http://127.0.0.1:7001/").unwrap()
    }

    #[test]
    fn keys_are_one_percent_encoded_segment() {
        let call = Call::new(Method::GET, Effect::Read, item_path("a/b c?d#e%").unwrap());
        assert_eq!(call.url(&base()).as_str(), "http://127.0.0.1:7001/kv/items/a%2Fb%20c%3Fd%23e%25");
    }

    #[test]
    fn endpoint_path_prefix_and_query_are_applied() {
        let mut call = Call::new(Method::GET, Effect::Read, item_path("k").unwrap());
        call.query.push(("consistency", "strong".into()));
        let prefixed = Url::parse("http://proxy/cairn/").unwrap();
        assert_eq!(call.url(&prefixed).as_str(), "http://proxy/cairn/kv/items/k?consistency=strong");
    }

    #[test]
    fn unaddressable_keys_are_rejected_locally() {
        for key in ["", ".", ".."] {
            assert!(item_path(key).is_err(), "{key:?}");
        }
        assert!(item_path("...").is_ok());
    }
}
