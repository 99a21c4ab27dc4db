//! What every handler is given: the node and the forwarding client.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::node::Node;

/// Cloned by every extractor and middleware of every request, so it is one `Arc`: a clone is
/// one atomic increment instead of one per field (2 % of a leader's CPU under strong gets,
/// docs/performance.md).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub node: Arc<Node>,
    /// Separate from the Raft RPC client so proxied traffic cannot crowd out heartbeats.
    pub forward_http: reqwest::Client,
    /// The data dir's sizes (wal, sled, snapshots) and when they were measured: `/metrics`
    /// walks the directories at most every few seconds, however often it is scraped. A std
    /// mutex, never held across an await.
    pub disk: Arc<Mutex<Option<DiskSizes>>>,
    /// Ids of the deleted KVdb buckets whose keys this node is removing right now, so the
    /// leader's resume round does not start a second sweep of the same bucket.
    pub kvdb_sweeps: Arc<Mutex<HashSet<String>>>,
    /// A follower's last check that it can reach its leader over the peer network, for
    /// `/ready` (`observe.rs`): when, which leader, and the outcome.
    pub leader_probe: Arc<Mutex<Option<LeaderProbe>>>,
    /// Open watches on this node, in all and per namespace (`api/watch.rs`).
    pub watchers: Arc<super::watchers::Watchers>,
    /// Set when the node starts draining: open watch streams end then, so the drain does not
    /// wait out `--drain-timeout-ms` on streams that never finish by themselves.
    pub stopping: Arc<tokio::sync::watch::Sender<bool>>,
}

/// When a follower last tried to reach its leader, which leader, and the outcome.
pub type LeaderProbe = (Instant, u64, Result<(), String>);

/// When the data dir was measured, and its wal, sled and snapshot parts in bytes.
pub type DiskSizes = (Instant, [u64; 3]);

impl AppState {
    pub fn new(node: Arc<Node>, forward_http: reqwest::Client) -> Self {
        AppState(Arc::new(Shared {
            node,
            forward_http,
            disk: Arc::default(),
            kvdb_sweeps: Arc::default(),
            leader_probe: Arc::default(),
            watchers: Arc::default(),
            stopping: Arc::new(tokio::sync::watch::channel(false).0),
        }))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}
