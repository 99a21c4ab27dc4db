//! Every error code the HTTP edge can answer with, and the one table giving each its wire
//! string and HTTP status. Clients branch on the wire strings, so they never change; a surface
//! that shows errors its own way (a dialect) matches on [`Code`], never on the strings.

use axum::http::StatusCode;

/// An error the edge can answer with. The wire string and status of each are in [`Code::wire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    // 400: the request is malformed.
    InvalidKey,
    InvalidJson,
    InvalidTtl,
    InvalidVersion,
    InvalidDelta,
    InvalidQuery,
    InvalidCursor,
    InvalidLimit,
    InvalidBatch,
    InvalidOp,
    InvalidNamespace,
    InvalidPermissions,
    ConflictingConditions,
    InvalidPrecondition,
    InvalidId,
    InvalidAddr,
    /// The body could not be read (other than for its size).
    InvalidBody,
    /// A body field or query parameter the route does not know (a misspelled condition must
    /// not be dropped silently).
    UnknownField,
    /// A dialect's bad request (saasignal and KVdb say only that).
    BadRequest,
    /// echovalue's bad request.
    Malformed,
    // 401, 403
    Unauthorized,
    Forbidden,
    PeerCertificateRequired,
    QuotaExceeded,
    // 404, 405, 406
    NotFound,
    /// A lease that does not exist in the caller's namespace, or has expired.
    LeaseNotFound,
    NoRoute,
    MethodNotAllowed,
    NotAcceptable,
    // 409: a condition or the stored state refused the write.
    KeyExists,
    VersionMismatch,
    ValueMismatch,
    NotANumber,
    Overflow,
    MembershipConflict,
    /// An increment of a stored integer outside the 64-bit signed range.
    OutOfRange,
    /// A fenced write (or a proclaim) whose token does not hold the lock (lead the election).
    Fenced,
    /// A lock that stayed held by another for the whole `wait`.
    LockHeld,
    /// A campaign whose `wait` ran out while another candidate led.
    NotElected,
    /// saasignal's one conflict code.
    Conflict,
    /// A native batch op named an absent key where it needed one: the key is `not_found`, but
    /// the batch as a whole is a conflict (nothing applied), hence 409.
    BatchOpNotFound,
    /// The request body did not arrive within `--body-timeout-ms`.
    RequestTimeout,
    /// 410: a watch asked to resume below the history this node keeps.
    Compacted,
    // 412, 413, 429
    PreconditionFailed,
    ValueTooLarge,
    RateLimited,
    /// The namespace holds `--max-watchers-per-namespace` open watches on this node.
    TooManyWatchers,
    // 500: the outcome of a write is unknown.
    Internal,
    StorageError,
    NoEntropy,
    // 503: nothing was done; try again or elsewhere.
    NoLeader,
    NotCaughtUp,
    NotReady,
    RaftStopped,
    SnapshotTimeout,
    /// A KVdb bucket's policy kept changing under a request.
    Busy,
    /// The node holds `--max-connections` open connections.
    TooManyConnections,
    /// The node is starting: recovering its data, not yet serving (`server.rs`).
    Starting,
    /// The node serves `--max-watchers` open watches.
    WatchersFull,
    /// 507: the leader's disk is short of its free-space reserve; nothing was written.
    InsufficientStorage,
    /// 502: the leader refused this node's connection before any HTTP (a refused TLS
    /// handshake, or its port does not speak what this node sent): nothing was done, and it is
    /// usually a configuration mistake, not a transient one.
    LeaderUnreachable,
    // 504
    UnknownOutcome,
}

impl Code {
    /// The one table: wire string and HTTP status of every code. docs/api.md lists the same.
    pub const fn wire(self) -> (&'static str, StatusCode) {
        use Code::*;
        match self {
            InvalidKey => ("invalid_key", StatusCode::BAD_REQUEST),
            InvalidJson => ("invalid_json", StatusCode::BAD_REQUEST),
            InvalidTtl => ("invalid_ttl", StatusCode::BAD_REQUEST),
            InvalidVersion => ("invalid_version", StatusCode::BAD_REQUEST),
            InvalidDelta => ("invalid_delta", StatusCode::BAD_REQUEST),
            InvalidQuery => ("invalid_query", StatusCode::BAD_REQUEST),
            InvalidCursor => ("invalid_cursor", StatusCode::BAD_REQUEST),
            InvalidLimit => ("invalid_limit", StatusCode::BAD_REQUEST),
            InvalidBatch => ("invalid_batch", StatusCode::BAD_REQUEST),
            InvalidOp => ("invalid_op", StatusCode::BAD_REQUEST),
            InvalidNamespace => ("invalid_namespace", StatusCode::BAD_REQUEST),
            InvalidPermissions => ("invalid_permissions", StatusCode::BAD_REQUEST),
            ConflictingConditions => ("conflicting_conditions", StatusCode::BAD_REQUEST),
            InvalidPrecondition => ("invalid_precondition", StatusCode::BAD_REQUEST),
            InvalidId => ("invalid_id", StatusCode::BAD_REQUEST),
            InvalidAddr => ("invalid_addr", StatusCode::BAD_REQUEST),
            InvalidBody => ("invalid_body", StatusCode::BAD_REQUEST),
            UnknownField => ("unknown_field", StatusCode::BAD_REQUEST),
            BadRequest => ("bad_request", StatusCode::BAD_REQUEST),
            Malformed => ("malformed", StatusCode::BAD_REQUEST),
            Unauthorized => ("unauthorized", StatusCode::UNAUTHORIZED),
            Forbidden => ("forbidden", StatusCode::FORBIDDEN),
            PeerCertificateRequired => ("peer_certificate_required", StatusCode::FORBIDDEN),
            QuotaExceeded => ("quota_exceeded", StatusCode::FORBIDDEN),
            NotFound => ("not_found", StatusCode::NOT_FOUND),
            LeaseNotFound => ("lease_not_found", StatusCode::NOT_FOUND),
            NoRoute => ("no_route", StatusCode::NOT_FOUND),
            MethodNotAllowed => ("method_not_allowed", StatusCode::METHOD_NOT_ALLOWED),
            NotAcceptable => ("not_acceptable", StatusCode::NOT_ACCEPTABLE),
            KeyExists => ("key_exists", StatusCode::CONFLICT),
            VersionMismatch => ("version_mismatch", StatusCode::CONFLICT),
            ValueMismatch => ("value_mismatch", StatusCode::CONFLICT),
            NotANumber => ("not_a_number", StatusCode::CONFLICT),
            Overflow => ("overflow", StatusCode::CONFLICT),
            MembershipConflict => ("membership_conflict", StatusCode::CONFLICT),
            OutOfRange => ("out_of_range", StatusCode::CONFLICT),
            Fenced => ("fenced", StatusCode::CONFLICT),
            LockHeld => ("lock_held", StatusCode::CONFLICT),
            NotElected => ("not_elected", StatusCode::CONFLICT),
            Conflict => ("conflict", StatusCode::CONFLICT),
            BatchOpNotFound => ("not_found", StatusCode::CONFLICT),
            RequestTimeout => ("request_timeout", StatusCode::REQUEST_TIMEOUT),
            PreconditionFailed => ("precondition_failed", StatusCode::PRECONDITION_FAILED),
            ValueTooLarge => ("value_too_large", StatusCode::PAYLOAD_TOO_LARGE),
            RateLimited => ("rate_limited", StatusCode::TOO_MANY_REQUESTS),
            Compacted => ("compacted", StatusCode::GONE),
            TooManyWatchers => ("too_many_watchers", StatusCode::TOO_MANY_REQUESTS),
            WatchersFull => ("watchers_full", StatusCode::SERVICE_UNAVAILABLE),
            Internal => ("internal", StatusCode::INTERNAL_SERVER_ERROR),
            StorageError => ("storage_error", StatusCode::INTERNAL_SERVER_ERROR),
            NoEntropy => ("no_entropy", StatusCode::INTERNAL_SERVER_ERROR),
            NoLeader => ("no_leader", StatusCode::SERVICE_UNAVAILABLE),
            NotCaughtUp => ("not_caught_up", StatusCode::SERVICE_UNAVAILABLE),
            NotReady => ("not_ready", StatusCode::SERVICE_UNAVAILABLE),
            RaftStopped => ("raft_stopped", StatusCode::SERVICE_UNAVAILABLE),
            SnapshotTimeout => ("snapshot_timeout", StatusCode::SERVICE_UNAVAILABLE),
            Busy => ("busy", StatusCode::SERVICE_UNAVAILABLE),
            TooManyConnections => ("too_many_connections", StatusCode::SERVICE_UNAVAILABLE),
            Starting => ("starting", StatusCode::SERVICE_UNAVAILABLE),
            InsufficientStorage => ("insufficient_storage", StatusCode::INSUFFICIENT_STORAGE),
            LeaderUnreachable => ("leader_unreachable", StatusCode::BAD_GATEWAY),
            UnknownOutcome => ("unknown_outcome", StatusCode::GATEWAY_TIMEOUT),
        }
    }

    /// The machine-readable code clients branch on.
    pub const fn as_str(self) -> &'static str {
        self.wire().0
    }

    pub const fn status(self) -> StatusCode {
        self.wire().1
    }
}

#[cfg(test)]
mod tests {
    use super::Code::{self, *};

    /// Every code as clients and the integration tests know it. Written out again on purpose:
    /// a change to the table has to change this list too, in plain sight.
    const PINNED: &[(Code, &str, u16)] = &[
        (InvalidKey, "invalid_key", 400),
        (InvalidJson, "invalid_json", 400),
        (InvalidTtl, "invalid_ttl", 400),
        (InvalidVersion, "invalid_version", 400),
        (InvalidDelta, "invalid_delta", 400),
        (InvalidQuery, "invalid_query", 400),
        (InvalidCursor, "invalid_cursor", 400),
        (InvalidLimit, "invalid_limit", 400),
        (InvalidBatch, "invalid_batch", 400),
        (InvalidOp, "invalid_op", 400),
        (InvalidNamespace, "invalid_namespace", 400),
        (InvalidPermissions, "invalid_permissions", 400),
        (ConflictingConditions, "conflicting_conditions", 400),
        (InvalidPrecondition, "invalid_precondition", 400),
        (InvalidId, "invalid_id", 400),
        (InvalidAddr, "invalid_addr", 400),
        (InvalidBody, "invalid_body", 400),
        (UnknownField, "unknown_field", 400),
        (BadRequest, "bad_request", 400),
        (Malformed, "malformed", 400),
        (Unauthorized, "unauthorized", 401),
        (Forbidden, "forbidden", 403),
        (PeerCertificateRequired, "peer_certificate_required", 403),
        (QuotaExceeded, "quota_exceeded", 403),
        (NotFound, "not_found", 404),
        (LeaseNotFound, "lease_not_found", 404),
        (NoRoute, "no_route", 404),
        (MethodNotAllowed, "method_not_allowed", 405),
        (NotAcceptable, "not_acceptable", 406),
        (KeyExists, "key_exists", 409),
        (VersionMismatch, "version_mismatch", 409),
        (ValueMismatch, "value_mismatch", 409),
        (NotANumber, "not_a_number", 409),
        (Overflow, "overflow", 409),
        (MembershipConflict, "membership_conflict", 409),
        (OutOfRange, "out_of_range", 409),
        (Fenced, "fenced", 409),
        (LockHeld, "lock_held", 409),
        (NotElected, "not_elected", 409),
        (Conflict, "conflict", 409),
        (BatchOpNotFound, "not_found", 409),
        (RequestTimeout, "request_timeout", 408),
        (PreconditionFailed, "precondition_failed", 412),
        (ValueTooLarge, "value_too_large", 413),
        (RateLimited, "rate_limited", 429),
        (Compacted, "compacted", 410),
        (TooManyWatchers, "too_many_watchers", 429),
        (WatchersFull, "watchers_full", 503),
        (Internal, "internal", 500),
        (StorageError, "storage_error", 500),
        (NoEntropy, "no_entropy", 500),
        (NoLeader, "no_leader", 503),
        (NotCaughtUp, "not_caught_up", 503),
        (NotReady, "not_ready", 503),
        (RaftStopped, "raft_stopped", 503),
        (SnapshotTimeout, "snapshot_timeout", 503),
        (Busy, "busy", 503),
        (TooManyConnections, "too_many_connections", 503),
        (Starting, "starting", 503),
        (InsufficientStorage, "insufficient_storage", 507),
        (LeaderUnreachable, "leader_unreachable", 502),
        (UnknownOutcome, "unknown_outcome", 504),
    ];

    #[test]
    fn every_code_keeps_its_wire_string_and_status() {
        for &(code, wire, status) in PINNED {
            assert_eq!(code.as_str(), wire, "{code:?}");
            assert_eq!(code.status().as_u16(), status, "{code:?}");
        }
    }

    #[test]
    fn a_wire_string_means_one_status_except_a_batch_ops_missing_key() {
        for &(a, wire, status) in PINNED {
            for &(b, other_wire, other_status) in PINNED {
                if a != b && wire == other_wire {
                    let pair = [a, b];
                    assert!(pair.contains(&NotFound) && pair.contains(&BatchOpNotFound), "{a:?} and {b:?}");
                    assert_ne!(status, other_status);
                }
            }
        }
    }
}
