//! Reading one HTTP response: the envelope, the `X-Cairn-*` headers, and whether it ends the call,
//! fails it, or sends it on to the next endpoint.

use std::error::Error as _;

use reqwest::header::HeaderMap;
use reqwest::{Response, Url};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use super::error::ClientError;
use super::types::{Reply, ReplyMeta};

/// Whether re-sending a request to another endpoint after an ambiguous failure is harmless.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Effect {
    Read,
    Write,
}

/// How one endpoint dealt with a call.
pub(super) enum Attempt {
    Done(Reply<Value>),
    /// Try the next endpoint; the string says why this one did not serve the call.
    Next(String),
    Fail(ClientError),
}

#[derive(Deserialize)]
struct Envelope {
    data: Option<Value>,
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: String,
    #[serde(default)]
    message: String,
}

/// A failure after the request may have reached a server.
pub(super) fn ambiguous(endpoint: &Url, effect: Effect, detail: String) -> Attempt {
    match effect {
        Effect::Read => Attempt::Next(detail),
        Effect::Write => Attempt::Fail(ClientError::UnknownOutcome { endpoint: endpoint.to_string(), detail }),
    }
}

pub(super) async fn read_body(response: Response) -> Result<Vec<u8>, String> {
    match response.bytes().await {
        Ok(bytes) => Ok(bytes.to_vec()),
        Err(e) => Err(format!("response body lost: {}", cause(&e))),
    }
}

/// Decides what a complete HTTP response means for the call.
pub(super) fn classify(endpoint: &Url, effect: Effect, meta: ReplyMeta, body: &[u8]) -> Attempt {
    let status = meta.status;
    let envelope: Option<Envelope> = serde_json::from_slice(body).ok();
    let describe = || match envelope.as_ref().and_then(|e| e.error.as_ref()) {
        Some(err) => format!("{status} {}: {}", err.code, err.message),
        None => format!("HTTP {status}: {}", snippet(body)),
    };
    match status {
        200..=299 => match envelope.and_then(|e| e.data) {
            Some(data) => Attempt::Done(Reply { data, meta }),
            None => Attempt::Fail(bad_response(endpoint, status, "no \"data\" in success body")),
        },
        // The contract reserves 503 for "not served here" (no leader, not caught up).
        503 => Attempt::Next(describe()),
        // The leader refused the write before proposing it (its disk is short of space): a
        // definite failure, and every endpoint forwards to the same leader.
        400..=499 | 507 => Attempt::Fail(match envelope.and_then(|e| e.error) {
            Some(err) => {
                ClientError::Api { status, code: err.code, message: err.message, endpoint: endpoint.to_string() }
            }
            // Not Cairn's envelope (a proxy, a wrong base path); keep the status so the exit
            // code still follows it.
            None => ClientError::Api {
                status,
                code: format!("http_{status}"),
                message: snippet(body),
                endpoint: endpoint.to_string(),
            },
        }),
        // 504 and any other server-side failure: the server may have applied a write.
        500..=599 => ambiguous(endpoint, effect, describe()),
        _ => Attempt::Fail(bad_response(endpoint, status, &snippet(body))),
    }
}

fn bad_response(endpoint: &Url, status: u16, detail: &str) -> ClientError {
    ClientError::BadResponse { endpoint: endpoint.to_string(), status, detail: detail.to_string() }
}

pub(super) fn decode<T: DeserializeOwned>(reply: Reply<Value>) -> Result<Reply<T>, ClientError> {
    let Reply { data, meta } = reply;
    match serde_json::from_value(data) {
        Ok(data) => Ok(Reply { data, meta }),
        Err(e) => Err(bad_response(&meta.endpoint, meta.status, &e.to_string())),
    }
}

pub(super) fn reply_meta(endpoint: &Url, response: &Response) -> ReplyMeta {
    let headers = response.headers();
    ReplyMeta {
        endpoint: endpoint.clone(),
        status: response.status().as_u16(),
        node: header_u64(headers, "x-cairn-node"),
        leader: header_u64(headers, "x-cairn-leader"),
        consistency: header_str(headers, "x-cairn-consistency").map(str::to_string),
        applied_index: header_u64(headers, "x-cairn-applied-index"),
        etag: header_str(headers, "etag").map(|tag| {
            let tag = tag.strip_prefix("W/").unwrap_or(tag);
            tag.trim_matches('"').to_string()
        }),
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    header_str(headers, name).and_then(|v| v.parse().ok())
}

/// The causes under a reqwest error; its own message only repeats the URL.
pub(super) fn cause(err: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    if err.is_timeout() {
        parts.push("timed out".to_string());
    }
    let mut source = err.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !parts.contains(&text) {
            parts.push(text);
        }
        source = inner.source();
    }
    if parts.is_empty() {
        parts.push(err.to_string());
    }
    // The usual cause is a private CA the client was not told about; say how to fix that.
    if parts.iter().any(|p| p.contains("invalid peer certificate")) {
        parts.push("trust the server's CA with --cacert FILE (or CAIRN_CACERT)".to_string());
    }
    parts.join(": ")
}

/// A bounded, printable excerpt of a body that was not the expected envelope.
fn snippet(body: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None if text.is_empty() => "(empty body)".to_string(),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("http://127.0.0.1:7001/").unwrap()
    }

    fn meta(status: u16) -> ReplyMeta {
        ReplyMeta {
            endpoint: base(),
            status,
            node: None,
            leader: None,
            consistency: None,
            applied_index: None,
            etag: None,
        }
    }

    #[test]
    fn success_body_yields_data() {
        let body = br#"{"data":{"key":"k","deleted":true}}"#;
        match classify(&base(), Effect::Write, meta(200), body) {
            Attempt::Done(reply) => assert_eq!(reply.data["deleted"], true),
            _ => panic!("expected Done"),
        }
    }

    #[test]
    fn unavailable_moves_on_for_reads_and_writes() {
        let body = br#"{"error":{"code":"no_leader","message":"election"}}"#;
        for effect in [Effect::Read, Effect::Write] {
            match classify(&base(), effect, meta(503), body) {
                Attempt::Next(reason) => assert!(reason.contains("no_leader"), "{reason}"),
                _ => panic!("503 must fail over"),
            }
        }
    }

    #[test]
    fn gateway_timeout_is_unknown_for_writes_but_retried_for_reads() {
        let body = br#"{"error":{"code":"unknown_outcome","message":"commit timed out"}}"#;
        assert!(matches!(
            classify(&base(), Effect::Write, meta(504), body),
            Attempt::Fail(ClientError::UnknownOutcome { .. })
        ));
        assert!(matches!(classify(&base(), Effect::Read, meta(504), body), Attempt::Next(_)));
    }

    #[test]
    fn insufficient_storage_is_a_definite_failure_not_an_unknown_outcome() {
        let body = br#"{"error":{"code":"insufficient_storage","message":"3 MiB free"}}"#;
        match classify(&base(), Effect::Write, meta(507), body) {
            Attempt::Fail(ClientError::Api { status, code, .. }) => {
                assert_eq!((status, code.as_str()), (507, "insufficient_storage"));
            }
            _ => panic!("507 must be a definite failure"),
        }
    }

    #[test]
    fn client_errors_are_final_and_keep_code() {
        let body = br#"{"error":{"code":"version_mismatch","message":"at 9"}}"#;
        match classify(&base(), Effect::Write, meta(409), body) {
            Attempt::Fail(ClientError::Api { status, code, .. }) => {
                assert_eq!((status, code.as_str()), (409, "version_mismatch"));
            }
            _ => panic!("409 must be final"),
        }
        match classify(&base(), Effect::Read, meta(404), b"<html>nope</html>") {
            Attempt::Fail(err) => assert_eq!(err.exit_code(), 1),
            _ => panic!("404 must be final"),
        }
    }

    #[test]
    fn snippet_is_bounded() {
        let long = "x".repeat(1000);
        assert!(snippet(long.as_bytes()).len() < 210);
        assert_eq!(snippet(b"  "), "(empty body)");
    }
}
