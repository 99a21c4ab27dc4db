//! The two systems a run can drive: Cairn's REST API and etcd's v3 JSON gateway. Owns the
//! request bytes each op sends and what each response means.
//!
//! Per-key URLs and bodies are built once before the run, so during the run the load
//! generator spends its (shared, scarce) CPU on HTTP and not on formatting.

use bytes::Bytes;
use reqwest::{Method, StatusCode, Url};
use serde_json::{json, Value};

use super::report::{Outcome, MISS};
use super::workload::{key_name, OpKind};
use crate::http1::Conn;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    Cairn,
    Etcd,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Cairn => "cairn",
            Target::Etcd => "etcd",
        }
    }
}

/// `base` with `segments` appended as path segments (percent-encoded as needed). Keeps a path
/// prefix the endpoint may carry, such as a reverse proxy's `/cairn/`.
pub fn join(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

/// Standard base64 with padding, which is what etcd's gateway expects for `bytes` fields.
pub fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `{"key": b64, "value": b64}` for `POST <prefix>/kv/put`.
pub fn etcd_put_body(key: &str, value: &[u8]) -> Vec<u8> {
    json!({ "key": base64(key.as_bytes()), "value": base64(value) }).to_string().into_bytes()
}

/// `{"key": b64}` for `POST <prefix>/kv/range`; `serializable` reads the local member's state
/// without a quorum round, etcd's equivalent of Cairn's stale follower read.
pub fn etcd_range_body(key: &str, serializable: bool) -> Vec<u8> {
    let mut v = json!({ "key": base64(key.as_bytes()) });
    if serializable {
        v["serializable"] = Value::Bool(true);
    }
    v.to_string().into_bytes()
}

/// The value every write stores: `size` bytes of ASCII, the same payload for both systems.
pub fn payload(size: usize) -> String {
    "x".repeat(size)
}

/// What a Cairn response means for an op. `cas_read` is the first (GET) half of a CAS.
pub fn classify_cairn(kind: OpKind, status: u16, body: &[u8]) -> Outcome {
    match status {
        200 => Outcome::Ok,
        404 if matches!(kind, OpKind::Get | OpKind::GetStale) => Outcome::Error(MISS.into()),
        409 if kind == OpKind::Cas => Outcome::Conflict,
        _ => Outcome::Error(status_key(status, body)),
    }
}

/// What an etcd gateway response means. A range that finds nothing is still a 200, so a miss is
/// recognised by the absent `kvs` field (the gateway omits empty fields).
pub fn classify_etcd(kind: OpKind, status: u16, body: &[u8]) -> Outcome {
    if status != 200 {
        return Outcome::Error(status_key(status, body));
    }
    let is_read = matches!(kind, OpKind::Get | OpKind::GetStale);
    if is_read && !body.windows(6).any(|w| w == b"\"kvs\":") {
        return Outcome::Error(MISS.into());
    }
    Outcome::Ok
}

/// `"503 no_leader"` when the body carries Cairn's error code, else just the status.
fn status_key(status: u16, body: &[u8]) -> String {
    let code = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.pointer("/error/code").and_then(Value::as_str).map(str::to_string));
    match code {
        Some(code) => format!("{status} {code}"),
        None => status.to_string(),
    }
}

fn transport_key(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connect".into()
    } else {
        "io".into()
    }
}

/// Sends one request and reads the whole body, so the connection goes back to keep-alive.
pub async fn send(
    http: &reqwest::Client,
    method: Method,
    url: &Url,
    body: Option<Bytes>,
) -> Result<(StatusCode, Bytes), String> {
    let mut req = http.request(method, url.clone());
    if let Some(body) = body {
        req = req.header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
    }
    let resp = req.send().await.map_err(|e| transport_key(&e))?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| transport_key(&e))?;
    Ok((status, body))
}

/// The path and query of `url`, as a request line carries them.
fn request_target(url: &Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
}

/// Prebuilt requests for one endpoint (request targets: path and query).
#[derive(Debug)]
pub enum Routes {
    Cairn(CairnRoutes),
    Etcd(EtcdRoutes),
}

#[derive(Debug)]
pub struct CairnRoutes {
    /// `/kv/items/{key}` per key (PUT, and the write half of CAS).
    items: Vec<String>,
    /// `/kv/items/{key}?consistency=strong` per key (get, the read half of CAS). Explicit, so a
    /// leader change mid-run cannot quietly turn them into stale reads on the old leader.
    strong: Vec<String>,
    /// `/kv/items/{key}?consistency=stale` per key, built only for get-stale.
    stale: Vec<String>,
    /// `/kv/items/{key}/increment` per key, built only for incr.
    incr: Vec<String>,
    put_body: Bytes,
    /// The value as a JSON string literal, for CAS bodies built per request.
    value_json: String,
}

#[derive(Debug)]
pub struct EtcdRoutes {
    put_url: String,
    range_url: String,
    put_bodies: Vec<Bytes>,
    range_bodies: Vec<Bytes>,
}

impl Routes {
    /// Builds the requests of `kinds` (plus puts, for preloading) against `base`.
    pub fn new(
        target: Target,
        base: &Url,
        keys: usize,
        value_size: usize,
        kinds: &[OpKind],
        etcd_prefix: &str,
    ) -> Routes {
        let value = payload(value_size);
        let names: Vec<String> = (0..keys).map(key_name).collect();
        match target {
            Target::Cairn => {
                let items: Vec<String> =
                    names.iter().map(|k| request_target(&join(base, &["kv", "items", k]))).collect();
                let with_query = |wanted: bool, query: &str| -> Vec<String> {
                    if !wanted {
                        return Vec::new();
                    }
                    items.iter().map(|p| format!("{p}?{query}")).collect()
                };
                let strong =
                    with_query(kinds.iter().any(|k| matches!(k, OpKind::Get | OpKind::Cas)), "consistency=strong");
                let stale = with_query(kinds.contains(&OpKind::GetStale), "consistency=stale");
                let incr = if kinds.contains(&OpKind::Incr) {
                    names.iter().map(|k| request_target(&join(base, &["kv", "items", k, "increment"]))).collect()
                } else {
                    Vec::new()
                };
                Routes::Cairn(CairnRoutes {
                    items,
                    strong,
                    stale,
                    incr,
                    put_body: Bytes::from(json!({ "value": value }).to_string()),
                    value_json: Value::String(value).to_string(),
                })
            }
            Target::Etcd => {
                let prefix: Vec<&str> = etcd_prefix.split('/').filter(|s| !s.is_empty()).collect();
                let url = |op: &str| {
                    let mut segs = prefix.clone();
                    segs.extend(["kv", op]);
                    request_target(&join(base, &segs))
                };
                let stale = kinds.contains(&OpKind::GetStale);
                let reads = kinds.iter().any(|k| matches!(k, OpKind::Get | OpKind::GetStale));
                Routes::Etcd(EtcdRoutes {
                    put_url: url("put"),
                    range_url: url("range"),
                    put_bodies: names.iter().map(|k| etcd_put_body(k, value.as_bytes()).into()).collect(),
                    range_bodies: if reads {
                        names.iter().map(|k| etcd_range_body(k, stale).into()).collect()
                    } else {
                        Vec::new()
                    },
                })
            }
        }
    }

    /// Runs one op on key index `key` and says how it ended.
    pub async fn perform(&self, conn: &mut Conn, kind: OpKind, key: usize) -> Outcome {
        match self {
            Routes::Cairn(c) => c.perform(conn, kind, key).await,
            Routes::Etcd(e) => e.perform(conn, kind, key).await,
        }
    }
}

impl CairnRoutes {
    async fn perform(&self, conn: &mut Conn, kind: OpKind, key: usize) -> Outcome {
        let (method, path, body) = match kind {
            OpKind::Put => ("PUT", &self.items[key], Some(&self.put_body[..])),
            OpKind::Get => ("GET", &self.strong[key], None),
            OpKind::GetStale => ("GET", &self.stale[key], None),
            OpKind::Incr => ("POST", &self.incr[key], None),
            OpKind::Cas => return self.cas(conn, key).await,
        };
        match conn.send(method, path, body).await {
            Ok((status, body)) => classify_cairn(kind, status, body),
            Err(e) => Outcome::Error(e.to_string()),
        }
    }

    /// Read the key's version, then write it back only if nobody changed it in between. An
    /// absent key is created with `ifNotExists`, which conflicts the same way.
    async fn cas(&self, conn: &mut Conn, key: usize) -> Outcome {
        let condition = match conn.send("GET", &self.strong[key], None).await {
            Ok((200, body)) => match read_version(body) {
                Some(v) => format!(r#""ifVersion":"{v}""#),
                None => return Outcome::Error("200 without version".into()),
            },
            Ok((404, _)) => r#""ifNotExists":true"#.to_string(),
            Ok((s, body)) => return Outcome::Error(status_key(s, body)),
            Err(e) => return Outcome::Error(e.to_string()),
        };
        let body = format!(r#"{{"value":{},{condition}}}"#, self.value_json);
        match conn.send("PUT", &self.items[key], Some(body.as_bytes())).await {
            Ok((status, body)) => classify_cairn(OpKind::Cas, status, body),
            Err(e) => Outcome::Error(e.to_string()),
        }
    }
}

/// The `version` of a Cairn item response, checked to be a decimal number before it is put
/// into a request body.
fn read_version(body: &[u8]) -> Option<u64> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.pointer("/data/version")?.as_str()?.parse().ok()
}

impl EtcdRoutes {
    async fn perform(&self, conn: &mut Conn, kind: OpKind, key: usize) -> Outcome {
        let (path, body) = match kind {
            OpKind::Put => (&self.put_url, &self.put_bodies[key]),
            OpKind::Get | OpKind::GetStale => (&self.range_url, &self.range_bodies[key]),
            // Rejected before the run starts (see `mod.rs`); kept total rather than panicking.
            OpKind::Incr | OpKind::Cas => return Outcome::Error("unsupported on etcd".into()),
        };
        match conn.send("POST", path, Some(body)).await {
            Ok((status, body)) => classify_etcd(kind, status, body),
            Err(e) => Outcome::Error(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, enc) in cases {
            assert_eq!(base64(plain.as_bytes()), enc, "{plain:?}");
        }
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
    }

    #[test]
    fn etcd_bodies_carry_base64_key_and_value() {
        assert_eq!(String::from_utf8(etcd_put_body("foo", b"bar")).unwrap(), r#"{"key":"Zm9v","value":"YmFy"}"#);
        assert_eq!(String::from_utf8(etcd_range_body("foo", false)).unwrap(), r#"{"key":"Zm9v"}"#);
        assert_eq!(String::from_utf8(etcd_range_body("foo", true)).unwrap(), r#"{"key":"Zm9v","serializable":true}"#);
    }

    #[test]
    fn etcd_range_without_kvs_is_a_miss() {
        let hit = br#"{"header":{"revision":"2"},"kvs":[{"key":"Zm9v","value":"YmFy"}],"count":"1"}"#;
        let miss = br#"{"header":{"revision":"2"}}"#;
        assert_eq!(classify_etcd(OpKind::Get, 200, hit), Outcome::Ok);
        assert_eq!(classify_etcd(OpKind::GetStale, 200, miss), Outcome::Error(MISS.into()));
        assert_eq!(classify_etcd(OpKind::Put, 200, miss), Outcome::Ok);
        let err = br#"{"error":"etcdserver: too many requests","code":14}"#;
        assert_eq!(classify_etcd(OpKind::Put, 503, err), Outcome::Error("503".into()));
    }

    #[test]
    fn cairn_statuses_map_to_outcomes() {
        let no_leader = br#"{"error":{"code":"no_leader","message":"x"}}"#;
        assert_eq!(classify_cairn(OpKind::Put, 200, b"{}"), Outcome::Ok);
        assert_eq!(classify_cairn(OpKind::Put, 503, no_leader), Outcome::Error("503 no_leader".into()));
        assert_eq!(classify_cairn(OpKind::Get, 404, b""), Outcome::Error(MISS.into()));
        assert_eq!(classify_cairn(OpKind::Cas, 409, b""), Outcome::Conflict);
        assert_eq!(classify_cairn(OpKind::Put, 409, b"not json"), Outcome::Error("409".into()));
    }

    #[test]
    fn cas_reads_a_numeric_version_only() {
        assert_eq!(read_version(br#"{"data":{"key":"k","version":"17"}}"#), Some(17));
        assert_eq!(read_version(br#"{"data":{"version":"17\",\"x"}}"#), None);
        assert_eq!(read_version(b"{}"), None);
    }

    #[test]
    fn routes_are_built_under_the_endpoint_path() {
        let base = Url::parse("http://127.0.0.1:7001/").unwrap();
        assert_eq!(join(&base, &["kv", "items", "a/b"]).as_str(), "http://127.0.0.1:7001/kv/items/a%2Fb");
        let prefixed = Url::parse("http://proxy/cairn/").unwrap();
        assert_eq!(join(&prefixed, &["cluster", "status"]).as_str(), "http://proxy/cairn/cluster/status");
        let Routes::Etcd(e) = Routes::new(Target::Etcd, &base, 2, 3, &[OpKind::GetStale], "/v3/") else {
            panic!("etcd routes expected");
        };
        assert_eq!(e.put_url, "/v3/kv/put");
        assert_eq!(e.range_url, "/v3/kv/range");
        assert_eq!(e.range_bodies.len(), 2);
        let Routes::Cairn(c) = Routes::new(Target::Cairn, &base, 2, 3, &[OpKind::GetStale], "") else {
            panic!("cairn routes expected");
        };
        assert_eq!(c.stale[1], "/kv/items/bench-00000001?consistency=stale");
        assert!(c.strong.is_empty(), "built only for get and cas");
        let Routes::Cairn(c) = Routes::new(Target::Cairn, &base, 2, 3, &[OpKind::Get], "") else {
            panic!("cairn routes expected");
        };
        assert_eq!(c.strong[0], "/kv/items/bench-00000000?consistency=strong");
        let Routes::Cairn(c) = Routes::new(Target::Cairn, &prefixed, 1, 3, &[OpKind::Incr], "") else {
            panic!("cairn routes expected");
        };
        assert_eq!(c.incr[0], "/cairn/kv/items/bench-00000000/increment");
        assert_eq!(&c.put_body[..], br#"{"value":"xxx"}"#);
    }
}
