//! The core's error classes, each something a caller can act on. The API layer translates
//! them to HTTP in one table (`api/error.rs`); nothing here knows about HTTP.

use crate::model::types::NodeId;

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// This node is not the leader; the request was not proposed. Safe to forward.
    #[error("not the leader")]
    NotLeader { leader: Option<(NodeId, String)> },
    /// No leader is known, or a quorum cannot be reached right now. Nothing was changed.
    #[error("no leader is available")]
    NoLeader,
    /// The write may or may not have been applied (timeout, leadership lost after proposing,
    /// node stopping). The caller must not assume either.
    #[error("outcome unknown: {0}")]
    UnknownOutcome(String),
    /// The node has not applied the requested index within the wait bound.
    #[error("not caught up to index {0}")]
    NotCaughtUp(u64),
    /// The request contradicts the current state (a membership change already running, a
    /// retired node id, an address clash). Nothing was changed.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// Local storage failed; the node cannot serve this.
    #[error("storage: {0}")]
    Storage(String),
    /// The leader's disk is short of free space, so it refused a client write before proposing
    /// it. Nothing was changed; reads go on.
    #[error("insufficient storage: {0}")]
    InsufficientStorage(String),
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data dir {dir} belongs to node {found}, not node {given}; use --id {found} or another --data-dir")]
    IdentityMismatch { dir: String, found: NodeId, given: NodeId },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("raft: {0}")]
    Raft(String),
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The node started but had to stop: its `--join` was refused for good (it would run on as
    /// a node no cluster will have), or its storage failed (Raft stopped on a storage error, or
    /// a WAL fdatasync failed), after which it must not carry on; a restart recovers.
    #[error("stopped: {0}")]
    Fatal(String),
}

impl StartError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
        let what = what.into();
        move |source| StartError::Io { what, source }
    }
}
