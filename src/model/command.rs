//! The replicated command model: what a Raft entry carries and what applying it returns.
//!
//! JSON values travel as JSON text (`String`), because bincode cannot encode
//! `serde_json::Value`; the API layer validates and canonicalises the text before proposing.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// One Raft entry's payload: commands stamped by the leader with its wall clock. Several
/// independent client commands may share one entry (write batching); each gets its own result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Proposal {
    /// Leader wall-clock milliseconds since the Unix epoch when the proposal was made. `apply`
    /// never reads a clock; it advances the replicated logical clock to this value.
    pub now_ms: u64,
    /// Limits in force when the leader proposed, carried in the entry so every replica judges
    /// quotas identically even if nodes are configured differently.
    pub limits: Limits,
    /// Shared, because openraft clones entries (into the WAL's in-memory cache and into every
    /// replication batch) and a deep copy of every key and value showed up in profiles. Encoded
    /// exactly like a `Vec`.
    pub cmds: Arc<[Command]>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Limits {
    /// Most keys one namespace may hold; 0 means unlimited.
    pub max_keys_per_namespace: u64,
}

/// Token permission bits.
pub mod perm {
    pub const READ: u8 = 1;
    pub const WRITE: u8 = 2;
    pub const ADMIN: u8 = 4;
}

/// The replicated commands. bincode numbers variants by position and encodes fields in order,
/// and old entries stay in the WAL and in snapshots' logs: a new variant goes at the end, and
/// an existing variant never changes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum Command {
    /// A read inside an atomic batch; never proposed on its own.
    Get {
        ns: String,
        key: String,
    },
    Set {
        ns: String,
        key: String,
        /// JSON text.
        value: String,
        ttl_ms: Option<u64>,
        cond: Condition,
    },
    Delete {
        ns: String,
        key: String,
        cond: Condition,
    },
    Increment {
        ns: String,
        key: String,
        delta: Number,
        /// Applies only when the increment creates the key.
        ttl_ms: Option<u64>,
    },
    /// Deletes every key whose expiry is at or before the logical clock, in key order.
    Expire,
    /// Key commands applied all-or-nothing: the first refusal (other than deleting an absent
    /// key) undoes the whole batch.
    Batch(Vec<Command>),
    CreateToken {
        id: String,
        namespace: String,
        /// SHA-256 of the secret; the secret itself is never replicated.
        hash: Vec<u8>,
        perms: u8,
    },
    RevokeToken {
        id: String,
    },
    /// Records that a node id left the cluster, so it is never admitted again.
    RetireNode {
        id: u64,
    },
    /// `CreateToken` for a token that expires. A variant of its own rather than a field added
    /// to `CreateToken`, whose entries must still decode (see the enum's comment).
    CreateTokenExpiring {
        id: String,
        namespace: String,
        /// SHA-256 of the secret; the secret itself is never replicated.
        hash: Vec<u8>,
        perms: u8,
        expires: TokenExpiry,
    },
    /// Grants a lease in `ns` that lives `ttl_ms` unless kept alive; its id comes from a
    /// replicated counter, so every replica numbers it alike.
    LeaseGrant {
        ns: String,
        ttl_ms: u64,
    },
    /// Restarts lease `id`'s TTL from the entry's clock.
    LeaseKeepAlive {
        ns: String,
        id: u64,
    },
    /// Ends lease `id` and deletes every key attached to it, in this one entry.
    LeaseRevoke {
        ns: String,
        id: u64,
    },
    /// `Set` attached to a lease: the key is deleted with the lease. A variant of its own (see
    /// the enum's comment); a plain `Set` of the key later detaches it, as in etcd.
    SetLeased {
        ns: String,
        key: String,
        /// JSON text.
        value: String,
        ttl_ms: Option<u64>,
        cond: Condition,
        lease: u64,
    },
    /// Queues a waiter for lock `name` (or a candidate for election `name`) under `lease`,
    /// with the entry's index as its fencing token. A lease already queued there keeps its
    /// place (a retry after an unknown outcome does not queue twice).
    Enqueue {
        ns: String,
        queue: Queue,
        name: String,
        lease: u64,
        /// JSON text: a candidate's value; `null` for a lock.
        value: String,
        /// Locks only: when this waiter's lease ends while it holds the lock, nobody holds it for
        /// this long after (Consul's lock delay). 0: no delay.
        lock_delay_ms: u64,
    },
    /// Leaves a queue: releases a held lock or resigns, or stops waiting.
    Dequeue {
        ns: String,
        queue: Queue,
        name: String,
        token: u64,
    },
    /// `Increment` guarded by a fence (`Condition::IfFence`), the only condition an increment
    /// takes. A variant of its own (see the enum's comment).
    IncrementFenced {
        ns: String,
        key: String,
        delta: Number,
        ttl_ms: Option<u64>,
        cond: Condition,
    },
    /// Sets the value of election `name`'s leader, if `token` still leads it.
    Proclaim {
        ns: String,
        name: String,
        token: u64,
        /// JSON text.
        value: String,
    },
}

/// Locks and elections queue alike; each has its own names.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Queue {
    Lock,
    Election,
}

impl Queue {
    /// The byte that keeps the two kinds' queues apart in the state machine's keys.
    pub fn tag(self) -> u8 {
        match self {
            Queue::Lock => b'l',
            Queue::Election => b'e',
        }
    }
}

/// When a token stops working, made absolute at apply time against the entry's clock, so every
/// replica stores the same instant.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub enum TokenExpiry {
    /// At this logical-clock millisecond (the client's `expiresAt`).
    At(u64),
    /// This many milliseconds after the clock of the entry that creates the token.
    After(u64),
}

impl TokenExpiry {
    /// The absolute expiry for a token created at `clock`.
    pub fn at(self, clock: u64) -> u64 {
        match self {
            TokenExpiry::At(t) => t,
            TokenExpiry::After(ttl) => clock.saturating_add(ttl),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum Condition {
    None,
    IfAbsent,
    IfVersion(u64),
    /// JSON text; compared as parsed JSON, so key order and whitespace do not matter.
    IfValue(String),
    /// Only while `token` holds lock `lock` of the write's namespace: the fencing check, made in
    /// the same entry as the write.
    IfFence {
        lock: String,
        token: u64,
    },
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub enum Number {
    Int(i64),
    Float(f64),
}

/// `-?[0-9]+`: how JSON writes an integer. serde_json keeps a number's text as the client
/// wrote it (`arbitrary_precision`), so this tells an integer too large for [`Number::Int`]
/// from a float.
pub fn is_integer_literal(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// The state of one key as the state machine holds it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Item {
    pub key: String,
    /// JSON text.
    pub value: String,
    /// Log index of the key's last change.
    pub version: u64,
    /// Absolute expiry in logical-clock milliseconds.
    pub expires_at: Option<u64>,
}

/// Why a command was refused. These are business outcomes, not storage errors: the entry was
/// still applied (and changed nothing).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Refusal {
    KeyExists,
    /// `ifVersion` (or `If-Match`) did not hold; `current` is the key's version (`None` when the
    /// key is absent), so a client's compare-and-swap loop can retry without a read.
    VersionMismatch {
        current: Option<u64>,
    },
    ValueMismatch,
    NotFound,
    NotANumber,
    Overflow,
    /// The namespace already holds its maximum number of keys.
    QuotaExceeded,
    /// An increment of a stored integer outside the 64-bit signed range, which would otherwise
    /// have to turn it into an inexact float.
    OutOfRange,
    /// The lease does not exist in this namespace, or has expired.
    LeaseNotFound,
    /// `IfFence` (or a proclaim) named a token that does not hold the lock (lead the election).
    Fenced,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum CmdResult {
    Item(Item),
    /// A batch `Get` of a key that is absent or expired.
    Absent {
        key: String,
    },
    Deleted {
        key: String,
    },
    Refused(Refusal),
    Expired {
        count: u64,
    },
    Batch(Vec<CmdResult>),
    /// The batch was undone because op `index` was refused.
    BatchRefused {
        index: u32,
        refusal: Refusal,
    },
    TokenCreated {
        id: String,
        /// Absolute expiry in logical-clock milliseconds. Results are never persisted, so this
        /// could be added.
        expires_at: Option<u64>,
    },
    TokenRevoked {
        id: String,
        existed: bool,
    },
    NodeRetired {
        id: u64,
    },
    Lease(Lease),
    LeaseRevoked {
        id: u64,
        /// How many keys went with it.
        keys: u64,
    },
    /// Queued (or already queued) with `token`; `holder` is the queue's holder after this entry.
    Queued {
        token: u64,
        holder: Option<u64>,
    },
    Dequeued {
        token: u64,
    },
    Proclaimed {
        token: u64,
    },
}

/// A lease as a grant or keepalive returns it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Lease {
    pub id: u64,
    pub ttl_ms: u64,
    /// Absolute expiry in logical-clock milliseconds.
    pub expires_at: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ProposalResult {
    pub results: Vec<CmdResult>,
}
