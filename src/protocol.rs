//! Protocol constants shared by the HTTP edge, the peer network and the client: Cairn's own
//! header names and the wall clock the leader stamps entries with. A leaf: it imports nothing
//! from the crate, so any layer may use it without pulling in another.

use std::sync::atomic::{AtomicI64, Ordering};
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

/// The response headers above as `HeaderName`s, for the server's inserts on every response: a
/// `&str` name is parsed and checked against the standard names on each insert and lookup
/// (about 1 % of a node's CPU per read, docs/performance.md).
pub mod names {
    use axum::http::HeaderName;

    pub const NODE: HeaderName = HeaderName::from_static(super::H_NODE);
    pub const LEADER: HeaderName = HeaderName::from_static(super::H_LEADER);
    pub const CONSISTENCY: HeaderName = HeaderName::from_static(super::H_CONSISTENCY);
    pub const APPLIED: HeaderName = HeaderName::from_static(super::H_APPLIED);
    pub const INDEX: HeaderName = HeaderName::from_static(super::H_INDEX);
}

/// Milliseconds added to this machine's clock by the test clock (`test_clock.rs`): always 0
/// unless the process started with `CAIRN_TEST_CLOCK_FILE`. Kept here, in the leaf, so the
/// clock stays one function; one relaxed load per call is all the hook costs when it is off.
static TEST_OFFSET_MS: AtomicI64 = AtomicI64::new(0);

/// Milliseconds since the Unix epoch by this machine's clock (shifted by the test clock's
/// offset, which is 0 outside tests). Only the leader's stamp on a proposal ever reaches the
/// state machine (see docs/ARCHITECTURE.md, "Time and TTL").
pub fn now_ms() -> u64 {
    let real = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    real.saturating_add_signed(TEST_OFFSET_MS.load(Ordering::Relaxed))
}

/// Sets the test clock's offset (`test_clock.rs` only).
pub(crate) fn set_test_offset_ms(ms: i64) {
    TEST_OFFSET_MS.store(ms, Ordering::Relaxed);
}
