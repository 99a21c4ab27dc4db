//! Requests in the dialects' own shapes: raw bodies sent with exactly the headers a test gives
//! (curl's form type, text/plain, or none at all), HTTP Basic credentials the way `curl -u
//! 'key:'` sends them, and minting tokens on a node started with `--admin-token`.

use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};

use super::{Http, Resp, REQUEST_TIMEOUT};

/// A client that adds no headers of its own (unlike [`Http`], which marks bodies as JSON).
#[derive(Clone)]
pub struct Raw {
    client: reqwest::Client,
}

impl Default for Raw {
    fn default() -> Self {
        Self::new()
    }
}

impl Raw {
    pub fn new() -> Self {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(std::time::Duration::from_secs(2))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("build reqwest client");
        Raw { client }
    }

    /// Sends one request; transport errors come back as `Err`.
    pub async fn try_send(
        &self,
        method: Method,
        url: &str,
        body: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> Result<Resp, String> {
        let mut req = self.client.request(method.clone(), url);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(body) = body {
            req = req.body(body.to_vec());
        }
        let resp = req.send().await.map_err(|e| format!("{method} {url}: {e}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.map_err(|e| format!("{method} {url}: reading body: {e}"))?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Resp { status, headers, body, text })
    }

    /// Like `try_send`; a transport error fails the test.
    pub async fn send(&self, method: Method, url: &str, body: Option<&[u8]>, headers: &[(&str, &str)]) -> Resp {
        self.try_send(method, url, body, headers).await.unwrap_or_else(|e| panic!("transport error: {e}"))
    }

    /// `curl -d 'a=b' -d 'c=d'`: a POST with the form content type curl uses.
    pub async fn form(&self, url: &str, body: &str, headers: &[(&str, &str)]) -> Resp {
        let mut h = vec![("content-type", "application/x-www-form-urlencoded")];
        h.extend_from_slice(headers);
        self.send(Method::POST, url, Some(body.as_bytes()), &h).await
    }

    /// A request whose body is JSON (`-H 'Content-Type: application/json' -d '...'`).
    pub async fn json(&self, method: Method, url: &str, body: &Value, headers: &[(&str, &str)]) -> Resp {
        let mut h = vec![("content-type", "application/json")];
        h.extend_from_slice(headers);
        self.send(method, url, Some(&serde_json::to_vec(body).expect("encode JSON")), &h).await
    }
}

/// The `Authorization` value of `curl -u 'user:'`.
pub fn basic(user: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:")))
}

/// `Authorization: Bearer <token>`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Creates a token for `namespace` with `perms` through the admin API and returns its secret.
pub async fn mint_token(http: &Http, base: &str, admin: &str, namespace: &str, perms: &[&str]) -> String {
    let body = serde_json::to_vec(&json!({"namespace": namespace, "permissions": perms})).expect("encode");
    let auth = bearer(admin);
    let resp = http.must(Method::POST, &format!("{base}/admin/tokens"), Some(body), &[("authorization", &auth)]).await;
    assert_eq!(resp.status, 201, "creating a token: {resp:?}");
    resp.data()["token"].as_str().unwrap_or_else(|| panic!("no token in {resp:?}")).to_string()
}

/// Waits until every node in `bases` accepts `token`. A follower checks tokens against its own
/// applied state, so a token minted a moment ago on the leader is unknown (401) there briefly.
pub async fn until_token_known(bases: &[String], token: &str, deadline: std::time::Instant) {
    let raw = Raw::new();
    let auth = bearer(token);
    for base in bases {
        let url = format!("{base}/kv/items/token-probe");
        super::until(deadline, "the token to replicate", async || {
            let r = raw.try_send(Method::GET, &url, None, &[("authorization", &auth)]).await?;
            if r.status == 401 {
                Err(format!("{r:?}"))
            } else {
                Ok(())
            }
        })
        .await;
    }
}

/// Percent-encodes a query-string value (everything but RFC 3986 unreserved bytes).
pub fn query_escape(s: &str) -> String {
    super::encode_key(s)
}
