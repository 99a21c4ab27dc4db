//! The in-memory view of the log that the store, its readers and the syncer share: live
//! entries, the last purged id and the vote. Below every other part of the WAL.

use std::collections::BTreeMap;
use std::sync::RwLock;

use crate::model::types::{Entry, LogId, Vote};

pub(super) struct Shared {
    /// Live (unpurged) entries. A std lock: it is never held across an await, and reads are
    /// short clones.
    pub(super) log: RwLock<BTreeMap<u64, Entry>>,
    pub(super) last_purged: RwLock<Option<LogId>>,
    pub(super) vote: RwLock<Option<Vote>>,
}
