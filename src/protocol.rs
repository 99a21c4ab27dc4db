//! Protocol constants shared by the HTTP edge, the peer network and the client: Cairn's own
//! header names and the wall clock the leader stamps entries with. A leaf: it imports nothing
//! from the crate, so any layer may use it without pulling in another.

use std::time::{SystemTime, UNIX_EPOCH};

/// The node that answered.
pub const H_NODE: &str = "x-cairn-node";
/// The leader the answering node believes in (`none` when it knows of none).
pub const H_LEADER: &str = "x-cairn-leader";
/// `linearizable` or `stale`: the consistency the answer was given at.
pub const H_CONSISTENCY: &str = "x-cairn-consistency";
/// The answering node's applied index when the answer left.
pub const H_APPLIED: &str = "x-cairn-applied-index";
/// On reads and scans: the applied index the answer reflects exactly, so a watch started
/// `after` it misses nothing and repeats nothing (list, then watch).
pub const H_INDEX: &str = "x-cairn-index";
/// Set on a request a follower proxies to the leader: the loop guard (one hop at most).
pub const H_FORWARDED_BY: &str = "x-cairn-forwarded-by";
/// The shared secret peers send on `/raft/*` (`--cluster-secret`).
pub const H_CLUSTER_SECRET: &str = "x-cairn-cluster-secret";

/// Milliseconds since the Unix epoch by this machine's clock. Only the leader's stamp on a
/// proposal ever reaches the state machine (see docs/ARCHITECTURE.md, "Time").
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
