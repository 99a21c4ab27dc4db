//! The single table from core errors and refusals to HTTP statuses and error codes, and the
//! JSON error envelope `{"error": {"code", "message"}}`.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::model::command::Refusal;
use crate::node::error::Error;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds, for `Retry-After`.
    pub retry_after: Option<u32>,
    /// Extra fields merged into the error object (e.g. a failing batch op's `index`).
    pub details: Option<Box<serde_json::Map<String, serde_json::Value>>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), retry_after: None, details: None }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    pub fn with_detail(mut self, key: &str, value: serde_json::Value) -> Self {
        self.details.get_or_insert_with(Default::default).insert(key.to_string(), value);
        self
    }

    pub fn no_leader(message: impl Into<String>) -> Self {
        ApiError { retry_after: Some(1), ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "no_leader", message) }
    }

    pub fn unknown_outcome(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GATEWAY_TIMEOUT, "unknown_outcome", message)
    }

    /// A refused conditional write. `precondition` is true when the condition came from an
    /// HTTP precondition header (`If-Match`, `If-None-Match`), which RFC 9110 answers with 412.
    pub fn refused(r: Refusal, precondition: bool) -> Self {
        let (status, code, msg) = match r {
            Refusal::NotFound => (StatusCode::NOT_FOUND, "not_found", "key not found"),
            _ if precondition => (StatusCode::PRECONDITION_FAILED, "precondition_failed", "precondition failed"),
            Refusal::KeyExists => (StatusCode::CONFLICT, "key_exists", "key already exists"),
            Refusal::VersionMismatch => {
                (StatusCode::CONFLICT, "version_mismatch", "key version does not match ifVersion")
            }
            Refusal::ValueMismatch => (StatusCode::CONFLICT, "value_mismatch", "key value does not match ifValue"),
            Refusal::NotANumber => (StatusCode::CONFLICT, "not_a_number", "the stored value is not a number"),
            Refusal::Overflow => (StatusCode::CONFLICT, "overflow", "the increment overflows"),
            Refusal::QuotaExceeded => {
                (StatusCode::FORBIDDEN, "quota_exceeded", "the namespace already holds its maximum number of keys")
            }
        };
        Self::new(status, code, msg)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::NotLeader { .. } | Error::NoLeader => ApiError::no_leader(e.to_string()),
            Error::UnknownOutcome(m) => {
                ApiError::unknown_outcome(format!("the write may or may not have been applied: {m}"))
            }
            Error::NotCaughtUp(i) => ApiError {
                retry_after: Some(1),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not_caught_up",
                    format!("this node has not applied index {i} yet"),
                )
            },
            Error::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "membership_conflict", m),
            Error::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, "not_found", m),
            Error::Storage(m) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage_error", m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut err = serde_json::Map::new();
        err.insert("code".into(), self.code.into());
        err.insert("message".into(), self.message.into());
        err.extend(self.details.map(|d| *d).unwrap_or_default());
        let body = json!({ "error": err });
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after {
            resp.headers_mut().insert("retry-after", HeaderValue::from(s));
        }
        resp
    }
}
