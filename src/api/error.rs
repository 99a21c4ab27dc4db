//! The API's error value, core errors and refusals mapped onto [`Code`]s, and the native JSON
//! error envelope `{"error": {"code", "message"}}`. Each dialect renders the same value in its
//! own shape ([`Render`]); statuses and wire strings come from the table in `code.rs`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::code::Code;
use crate::model::command::Refusal;
use crate::node::error::Error;

/// How one API surface turns an error into a response. The native surface's is
/// [`ApiError::into_response`]; each dialect has one of its own. Middleware that refuses
/// requests on several surfaces (the rate limiter) is given the surface's renderer.
pub type Render = fn(ApiError) -> Response;

#[derive(Debug)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    /// Seconds, for `Retry-After`.
    pub retry_after: Option<u32>,
    /// The 0-based index of the batch op the error is about.
    pub index: Option<usize>,
    /// The key's version, on a refused `ifVersion` / `If-Match` whose key exists.
    pub current_version: Option<u64>,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into(), retry_after: None, index: None, current_version: None }
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Code::Internal, message)
    }

    /// Blames batch op `i`: the message says which op, and the error carries its index.
    pub fn for_op(self, i: usize) -> Self {
        ApiError { message: format!("op {i}: {}", self.message), index: Some(i), ..self }
    }

    pub fn retry_after(self, seconds: u32) -> Self {
        ApiError { retry_after: Some(seconds), ..self }
    }

    pub fn no_leader(message: impl Into<String>) -> Self {
        Self::new(Code::NoLeader, message).retry_after(1)
    }

    pub fn unknown_outcome(message: impl Into<String>) -> Self {
        Self::new(Code::UnknownOutcome, message)
    }

    /// The rate limiter's refusal: one more request is allowed after `seconds`.
    pub fn rate_limited(seconds: u32) -> Self {
        Self::new(Code::RateLimited, "too many requests; slow down").retry_after(seconds)
    }

    /// A refused conditional write. `precondition` is true when the condition came from an
    /// HTTP precondition header (`If-Match`, `If-None-Match`), which RFC 9110 answers with 412.
    pub fn refused(r: Refusal, precondition: bool) -> Self {
        let current_version = match r {
            Refusal::VersionMismatch { current } => current,
            _ => None,
        };
        let (code, msg) = match r {
            Refusal::NotFound => (Code::NotFound, "key not found"),
            Refusal::LeaseNotFound => {
                (Code::LeaseNotFound, "the lease does not exist in this namespace, or has expired")
            }
            // A fence is not a precondition header's condition: always 409 `fenced`.
            Refusal::Fenced => (Code::Fenced, "the fencing token does not hold the lock: another holder has taken it"),
            _ if precondition => (Code::PreconditionFailed, "precondition failed"),
            Refusal::KeyExists => (Code::KeyExists, "key already exists"),
            Refusal::VersionMismatch { .. } => (Code::VersionMismatch, "key version does not match ifVersion"),
            Refusal::ValueMismatch => (Code::ValueMismatch, "key value does not match ifValue"),
            Refusal::NotANumber => (Code::NotANumber, "the stored value is not a number"),
            Refusal::Overflow => (Code::Overflow, "the increment overflows"),
            Refusal::QuotaExceeded => (Code::QuotaExceeded, "the namespace already holds its maximum number of keys"),
            Refusal::OutOfRange => {
                (Code::OutOfRange, "the stored integer is outside the 64-bit signed range; increments stay exact")
            }
        };
        ApiError { current_version, ..Self::new(code, msg) }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::NotLeader { .. } | Error::NoLeader => ApiError::no_leader(e.to_string()),
            Error::UnknownOutcome(m) => {
                ApiError::unknown_outcome(format!("the write may or may not have been applied: {m}"))
            }
            Error::NotCaughtUp(i) => {
                ApiError::new(Code::NotCaughtUp, format!("this node has not applied index {i} yet")).retry_after(1)
            }
            Error::Conflict(m) => ApiError::new(Code::MembershipConflict, m),
            Error::NotFound(m) => ApiError::new(Code::NotFound, m),
            Error::Storage(m) => ApiError::new(Code::StorageError, m),
            Error::InsufficientStorage(m) => ApiError::new(Code::InsufficientStorage, m),
        }
    }
}

/// Adds an error's `Retry-After` (503 `no_leader`, `not_caught_up`, 429) to any surface's
/// rendering of it.
pub fn with_retry_after(mut resp: Response, e: &ApiError) -> Response {
    if let Some(s) = e.retry_after {
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    resp
}

/// The native envelope: `{"error": {"code", "message", "index"?}}`.
#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    code: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<usize>,
    /// A decimal string, as versions are everywhere else.
    #[serde(skip_serializing_if = "Option::is_none")]
    current_version: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let error = Body {
            code: self.code.as_str(),
            message: &self.message,
            index: self.index,
            current_version: self.current_version.map(|v| v.to_string()),
        };
        let body = Envelope { error };
        with_retry_after((self.status(), axum::Json(body)).into_response(), &self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(resp: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn the_native_envelope_nests_code_message_and_index() {
        let resp = ApiError::new(Code::InvalidKey, "bad").for_op(3).into_response();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let v = body(resp).await;
        assert_eq!(v, serde_json::json!({"error": {"code": "invalid_key", "message": "op 3: bad", "index": 3}}));
    }

    #[tokio::test]
    async fn retryable_errors_carry_retry_after() {
        let resp = ApiError::no_leader("none").into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        assert_eq!(body(resp).await["error"]["code"], "no_leader");
        let resp = ApiError::rate_limited(7).into_response();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "7");
    }
}
