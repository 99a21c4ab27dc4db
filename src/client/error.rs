//! Client-side error classes and the one table that turns them (and HTTP statuses) into CLI exit codes.

use thiserror::Error;

/// Process exit codes of the client CLI, as fixed by the contract.
pub mod exit {
    /// The request succeeded.
    pub const OK: i32 = 0;
    /// The key does not exist or a condition did not hold (404, 409, 412).
    pub const NOT_FOUND_OR_CONDITION: i32 = 1;
    /// The request itself was wrong: usage, bad input, any other 4xx.
    pub const USAGE: i32 = 2;
    /// Nothing could serve the request, or its outcome is unknown (503, 504, unreachable).
    pub const UNAVAILABLE: i32 = 3;
    /// `cairn lock` / `cairn elect`: the lease was lost while holding, so the lock (the
    /// leadership) may have passed to another; `cairn lock` stopped its command.
    pub const LOST: i32 = 4;
}

/// Why one endpoint could not serve a request; collected so that an [`ClientError::Unavailable`]
/// says what happened at every endpoint, not just the last one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedAttempt {
    pub endpoint: String,
    pub reason: String,
}

/// Errors a caller can act on. The variants are classes, not causes: a definite answer from the
/// server (`Api`), a request that was never served (`Unavailable`), one that may or may not have
/// taken effect (`UnknownOutcome`), or a mistake made before anything was sent.
#[derive(Debug, Error)]
pub enum ClientError {
    /// Rejected locally, before any request was sent (empty key, unparseable JSON argument, ...).
    /// `code` uses the server's error codes where one fits so scripts see one vocabulary.
    #[error("{code}: {message}")]
    InvalidInput { code: &'static str, message: String },

    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },

    /// The HTTP client could not be constructed.
    #[error("cannot build HTTP client: {0}")]
    Setup(#[source] reqwest::Error),

    /// A definite answer from a server: the request was processed and refused.
    #[error("{code}: {message}")]
    Api { status: u16, code: String, message: String, endpoint: String },

    /// A write may have reached a leader and been committed, or not. Retrying blindly could apply
    /// it twice and reporting failure could be a lie, so the caller has to decide (e.g. re-read).
    #[error("the write may or may not have been applied ({endpoint}: {detail})")]
    UnknownOutcome { endpoint: String, detail: String },

    /// Every endpoint was tried and none served the request; nothing was applied.
    #[error("no endpoint could serve the request: {}", summarize(.attempts))]
    Unavailable { attempts: Vec<FailedAttempt> },

    /// A server answered with something that is not the contract's envelope.
    #[error("unexpected response from {endpoint} (HTTP {status}): {detail}")]
    BadResponse { endpoint: String, status: u16, detail: String },
}

fn summarize(attempts: &[FailedAttempt]) -> String {
    if attempts.is_empty() {
        return "no endpoints configured".to_string();
    }
    attempts.iter().map(|a| format!("{}: {}", a.endpoint, a.reason)).collect::<Vec<_>>().join("; ")
}

impl ClientError {
    /// The error code printed as `error: <code>: <message>`: the server's code for API errors,
    /// a client-side code otherwise.
    pub fn code(&self) -> &str {
        match self {
            ClientError::InvalidInput { code, .. } => code,
            ClientError::InvalidEndpoint { .. } => "invalid_endpoint",
            ClientError::Setup(_) => "client_setup",
            ClientError::Api { code, .. } => code,
            ClientError::UnknownOutcome { .. } => "unknown_outcome",
            ClientError::Unavailable { .. } => "unavailable",
            ClientError::BadResponse { .. } => "bad_response",
        }
    }

    /// The message part of `error: <code>: <message>` (the `Display` form repeats the code for
    /// some variants, so it is not reused here).
    pub fn message(&self) -> String {
        match self {
            ClientError::InvalidInput { message, .. } => message.clone(),
            ClientError::Api { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }

    /// The CLI exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::InvalidInput { .. } | ClientError::InvalidEndpoint { .. } => exit::USAGE,
            ClientError::Setup(_) => exit::USAGE,
            ClientError::Api { status, .. } => exit_code_for_status(*status),
            ClientError::UnknownOutcome { .. } | ClientError::Unavailable { .. } | ClientError::BadResponse { .. } => {
                exit::UNAVAILABLE
            }
        }
    }

    /// True when the operation may have been applied even though no success was seen.
    pub fn is_unknown_outcome(&self) -> bool {
        matches!(self, ClientError::UnknownOutcome { .. })
    }
}

/// Maps an HTTP status to the CLI exit code. Server-side failures other than 503/504 (e.g. a 500)
/// also count as "unavailable": the operation was not served, and the caller's input was fine.
pub fn exit_code_for_status(status: u16) -> i32 {
    match status {
        200..=299 => exit::OK,
        404 | 409 | 412 => exit::NOT_FOUND_OR_CONDITION,
        400..=499 => exit::USAGE,
        _ => exit::UNAVAILABLE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_statuses_exit_zero() {
        assert_eq!(exit_code_for_status(200), exit::OK);
        assert_eq!(exit_code_for_status(204), exit::OK);
    }

    #[test]
    fn not_found_and_failed_conditions_exit_one() {
        for status in [404, 409, 412] {
            assert_eq!(exit_code_for_status(status), 1, "status {status}");
        }
    }

    #[test]
    fn other_client_errors_exit_two() {
        for status in [400, 405, 413, 422] {
            assert_eq!(exit_code_for_status(status), 2, "status {status}");
        }
    }

    #[test]
    fn unavailable_and_unknown_outcome_exit_three() {
        for status in [500, 502, 503, 504] {
            assert_eq!(exit_code_for_status(status), 3, "status {status}");
        }
    }

    #[test]
    fn error_classes_map_to_exit_codes() {
        let api = |status: u16, code: &str| ClientError::Api {
            status,
            code: code.to_string(),
            message: "m".to_string(),
            endpoint: "http://127.0.0.1:7001/".to_string(),
        };
        assert_eq!(api(404, "not_found").exit_code(), 1);
        assert_eq!(api(409, "version_mismatch").exit_code(), 1);
        assert_eq!(api(412, "precondition_failed").exit_code(), 1);
        assert_eq!(api(400, "invalid_key").exit_code(), 2);
        assert_eq!(api(413, "value_too_large").exit_code(), 2);
        let unknown = ClientError::UnknownOutcome { endpoint: "e".into(), detail: "d".into() };
        assert_eq!(unknown.exit_code(), 3);
        assert!(unknown.is_unknown_outcome());
        assert_eq!(ClientError::Unavailable { attempts: vec![] }.exit_code(), 3);
        let local = ClientError::InvalidInput { code: "invalid_json", message: "m".into() };
        assert_eq!(local.exit_code(), 2);
        assert_eq!(local.code(), "invalid_json");
    }

    #[test]
    fn unavailable_lists_every_attempt() {
        let err = ClientError::Unavailable {
            attempts: vec![
                FailedAttempt { endpoint: "http://a/".into(), reason: "connection refused".into() },
                FailedAttempt { endpoint: "http://b/".into(), reason: "503 no_leader: election in progress".into() },
            ],
        };
        let text = err.message();
        assert!(text.contains("http://a/: connection refused"), "{text}");
        assert!(text.contains("http://b/: 503 no_leader"), "{text}");
    }
}
