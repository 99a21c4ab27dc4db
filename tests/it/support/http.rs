//! HTTP helpers for the native API: one shared client with a per-request timeout, and
//! `Resp`, a fully-read response with accessors for the envelope and X-Cairn-* headers.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::Value;

/// Per-request timeout of the shared HTTP client; every wait is still bounded by its own
/// deadline, which cuts a request short when it is earlier.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// One response, fully read: status, headers, and the body parsed as JSON when it is JSON.
#[derive(Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    /// The body as JSON, or `Value::Null` when it does not parse (see `text`).
    pub body: Value,
    pub text: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `data` object of a success envelope (`Value::Null` when absent).
    pub fn data(&self) -> &Value {
        &self.body["data"]
    }

    /// The `error.code` of an error envelope.
    pub fn error_code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }

    /// `data.version` parsed from its decimal-string form; panics with the response if not.
    pub fn version(&self) -> u64 {
        let v = &self.data()["version"];
        v.as_str()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("data.version is not a decimal string in {self:?}"))
    }

    /// `X-Cairn-Applied-Index` as a number; panics with the response if missing or not a u64.
    pub fn applied_index(&self) -> u64 {
        self.header("x-cairn-applied-index")
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("X-Cairn-Applied-Index missing or not a u64 in {self:?}"))
    }

    /// Asserts a 200 and returns `self` for chaining.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.status, 200, "expected 200, got {self:?}");
        self
    }

    /// Asserts the status and the error-envelope code (and that `error.message` is a string).
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "expected {status} {code}, got {self:?}");
        assert_eq!(self.error_code(), Some(code), "expected error code {code}, got {self:?}");
        assert!(self.body["error"]["message"].is_string(), "error envelope lacks a string message: {self:?}");
    }
}

impl std::fmt::Debug for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cairn_headers: Vec<String> = self
            .headers
            .iter()
            .filter(|(k, _)| k.as_str().starts_with("x-cairn") || k.as_str() == "etag")
            .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or("<non-ascii>")))
            .collect();
        let mut text = self.text.clone();
        if text.len() > 600 {
            let mut cut = 600;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        write!(f, "HTTP {} [{}] {}", self.status, cairn_headers.join(", "), text)
    }
}

/// Percent-encodes a key as one path segment (everything but RFC 3986 unreserved bytes).
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The URL of an item; `key` is percent-encoded here.
pub fn item_url(base: &str, key: &str) -> String {
    format!("{base}/kv/items/{}", encode_key(key))
}

/// One shared `reqwest::Client` (cheap to clone) with a per-request timeout, no proxy and
/// no redirects, so the tests see exactly what a node answers.
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
}

impl Default for Http {
    fn default() -> Self {
        Self::new()
    }
}

impl Http {
    pub fn new() -> Self {
        Self::build(|b| b)
    }

    /// A client for https nodes: trusts only `root_ca_pem` and, when given, presents
    /// `identity_pem` (a certificate followed by its private key) as its client certificate.
    pub fn with_tls(root_ca_pem: &str, identity_pem: Option<&str>) -> Self {
        let ca = reqwest::Certificate::from_pem(root_ca_pem.as_bytes()).expect("parse test CA");
        Self::build(|b| {
            let b = b.tls_built_in_root_certs(false).add_root_certificate(ca);
            match identity_pem {
                Some(pem) => b.identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("parse test identity")),
                None => b,
            }
        })
    }

    /// A client for https nodes that trusts every CA in `roots_pem` (a rotation's overlap).
    /// With `reuse_connections` false it keeps no connection idle, so every request makes a
    /// new TLS handshake: what a node's certificate reload must never break.
    pub fn with_trust(roots_pem: &[&str], reuse_connections: bool) -> Self {
        Self::build(|mut b| {
            b = b.tls_built_in_root_certs(false);
            for pem in roots_pem {
                b = b.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).expect("parse test CA"));
            }
            if reuse_connections {
                b
            } else {
                b.pool_max_idle_per_host(0)
            }
        })
    }

    fn build(tune: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder) -> Self {
        let builder = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(2))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none());
        Self { client: tune(builder).build().expect("build reqwest client") }
    }

    /// Sends one request; transport errors (refused, reset, timeout) come back as `Err`. A node
    /// that is still starting answers 503 `starting` (nothing done) and closes; that request is
    /// sent again every 20 ms, for at most [`REQUEST_TIMEOUT`], as a request to a node still
    /// opening its data would have waited for it before it answered `starting`.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Result<Resp, String> {
        let until = std::time::Instant::now() + REQUEST_TIMEOUT;
        loop {
            let resp = self.send_once(method.clone(), url, body.clone(), headers).await?;
            if resp.status != 503 || resp.body["error"]["code"] != "starting" || std::time::Instant::now() >= until {
                return Ok(resp);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// [`Http::send`] without the retry of 503 `starting`.
    pub async fn send_once(
        &self,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Result<Resp, String> {
        let mut req = self.client.request(method.clone(), url);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body);
        }
        let resp = req.send().await.map_err(|e| format!("{method} {url}: {e}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.map_err(|e| format!("{method} {url}: reading body: {e}"))?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Resp { status, headers, body, text })
    }

    /// Like `send`, but a transport error fails the test.
    pub async fn must(&self, method: Method, url: &str, body: Option<Vec<u8>>, headers: &[(&str, &str)]) -> Resp {
        match self.send(method, url, body, headers).await {
            Ok(resp) => resp,
            Err(e) => panic!("request failed at the transport level: {e}"),
        }
    }

    pub async fn try_put(&self, base: &str, key: &str, body: &Value) -> Result<Resp, String> {
        self.send(Method::PUT, &item_url(base, key), Some(json_bytes(body)), &[]).await
    }

    /// `PUT /kv/items/{key}` with a JSON body such as `{"value": ...}`.
    pub async fn put(&self, base: &str, key: &str, body: &Value) -> Resp {
        self.put_with_headers(base, key, body, &[]).await
    }

    pub async fn put_with_headers(&self, base: &str, key: &str, body: &Value, headers: &[(&str, &str)]) -> Resp {
        self.must(Method::PUT, &item_url(base, key), Some(json_bytes(body)), headers).await
    }

    /// `PUT` with an already-encoded path segment and raw body bytes (for malformed input).
    pub async fn put_raw(&self, base: &str, encoded_key: &str, body: Vec<u8>) -> Resp {
        let url = format!("{base}/kv/items/{encoded_key}");
        self.must(Method::PUT, &url, Some(body), &[]).await
    }

    /// `GET /kv/items/{key}` with the node's default consistency.
    pub async fn get(&self, base: &str, key: &str) -> Resp {
        self.must(Method::GET, &item_url(base, key), None, &[]).await
    }

    /// `GET /kv/items/{key}?{query}`.
    pub async fn get_query(&self, base: &str, key: &str, query: &str) -> Resp {
        self.must(Method::GET, &format!("{}?{query}", item_url(base, key)), None, &[]).await
    }

    pub async fn try_get_query(&self, base: &str, key: &str, query: &str) -> Result<Resp, String> {
        self.send(Method::GET, &format!("{}?{query}", item_url(base, key)), None, &[]).await
    }

    pub async fn delete(&self, base: &str, key: &str) -> Resp {
        self.must(Method::DELETE, &item_url(base, key), None, &[]).await
    }

    /// `POST /kv/items/{key}/increment`, with no body at all when `body` is `None`.
    pub async fn increment(&self, base: &str, key: &str, body: Option<&Value>) -> Resp {
        let url = format!("{}/increment", item_url(base, key));
        self.must(Method::POST, &url, body.map(json_bytes), &[]).await
    }

    /// The `data` object of `GET /cluster/status`.
    pub async fn status(&self, base: &str) -> Result<Value, String> {
        self.status_as(base, None).await
    }

    /// `GET /cluster/status` with an `Authorization` header, for nodes that need credentials.
    pub async fn status_as(&self, base: &str, authorization: Option<&str>) -> Result<Value, String> {
        let headers: Vec<(&str, &str)> = authorization.map(|a| ("authorization", a)).into_iter().collect();
        let resp = self.send(Method::GET, &format!("{base}/cluster/status"), None, &headers).await?;
        if resp.status != 200 || !resp.data().is_object() {
            return Err(format!("{base}/cluster/status: {resp:?}"));
        }
        Ok(resp.data().clone())
    }
}

fn json_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("serialize JSON body")
}
