//! What the WAL can vouch for: the index through which every entry has been fdatasync'd, and
//! the syncer thread that moves it forward for the leader's own appends.
//!
//! openraft 0.9 replicates an entry only after the leader's log store reports it flushed, so a
//! write used to cost the leader's fsync *and then* a follower's. The leader's own appends are
//! therefore reported flushed once written, and synced by [`run_syncer`] while the entries
//! travel to the followers, as etcd's raft does (Raft thesis §10.2.1). That lets openraft count
//! the leader towards a quorum before its copy is on disk, so three rules keep "acknowledged means
//! fsync'd on a majority" true, and keep any node from applying an entry that could be lost:
//! - the state machine applies an entry only once it is durable here
//!   ([`DurableWatch::wait_for`], called by `sm::apply`), and every client answer and
//!   linearizable read waits for the apply;
//! - the commit index the leader sends to followers is lowered to its own durable entry
//!   ([`DurableWatch::cap`], called by `net::Conn::append_entries`), so no follower applies an
//!   entry that only the followers hold;
//! - a node never resumes, after a restart, a term it led (`LogStore::pipeline_own_appends`).
//!
//! A committed entry is then on the leader's disk and on a follower's (openraft counted it)
//! before anyone acts on it. If the leader dies first, the entry was never applied or
//! acknowledged anywhere, and losing it is the same as never having proposed it, as long as
//! that leader never writes again in that term: a follower may hold the entry durably, and a
//! different entry under the same log id would pass for it (found by the power-loss test).
//! Entries from another leader (this node following) are fsync'd before `append` reports them.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::{mpsc, Arc};

use tokio::sync::watch;

use super::shared::Shared;
use crate::model::types::LogId;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Durable {
    /// Every entry at or below this index is on disk.
    pub upto: Option<u64>,
    /// Bumped by every truncate: a sync that started before it cannot vouch for what follows.
    pub epoch: u64,
    /// An fdatasync failed: nothing more is vouched for, and the node must stop.
    pub failed: bool,
}

impl Durable {
    /// Raises the watermark to `index` unless a truncate or a failure intervened.
    pub fn advance(&mut self, index: u64, epoch: u64) {
        if !self.failed && self.epoch == epoch && self.upto.is_none_or(|u| u < index) {
            self.upto = Some(index);
        }
    }
}

/// One request to the syncer: make everything written to `file` durable, which covers every
/// entry through `upto` (earlier segments were synced when the writer left them).
pub struct SyncRequest {
    pub file: File,
    pub path: Arc<Path>,
    /// Where the file's records end once these entries are written.
    pub len: u64,
    pub upto: u64,
    pub epoch: u64,
}

/// The syncer thread: one fdatasync covers every request that queued up meanwhile (the last
/// one's file holds them all).
pub fn run_syncer(rx: mpsc::Receiver<SyncRequest>, state: Arc<watch::Sender<Durable>>) {
    while let Ok(first) = rx.recv() {
        let last = rx.try_iter().last().unwrap_or(first);
        match super::segment::sync(&last.file, &last.path, last.len) {
            Ok(()) => state.send_modify(|s| s.advance(last.upto, last.epoch)),
            Err(e) => {
                // Never retried: after a failed fdatasync the kernel may have dropped the pages
                // that failed, and a retry that succeeds would vouch for data that is not on
                // disk. `failed` stays set; the node stops (`node/disk.rs`).
                tracing::error!(error = %e, "WAL fdatasync failed; this node stops");
                state.send_modify(|s| s.failed = true);
            }
        }
    }
}

/// A read-only view of the watermark, for the state machine and the peer network.
#[derive(Clone)]
pub struct DurableWatch {
    pub(super) rx: watch::Receiver<Durable>,
    pub(super) shared: Arc<Shared>,
}

impl DurableWatch {
    /// Waits until every entry through `index` is durable.
    pub async fn wait_for(&self, index: u64) -> io::Result<()> {
        let mut rx = self.rx.clone();
        let d = rx
            .wait_for(|d| d.failed || d.upto.is_some_and(|u| u >= index))
            .await
            .map_err(|_| io::Error::other("the WAL was closed"))?;
        if d.failed {
            return Err(io::Error::other("a WAL fdatasync failed"));
        }
        Ok(())
    }

    /// Resolves once an fdatasync has failed. Pending while they succeed, and for good once
    /// the WAL is closed (a node that stops normally).
    pub async fn failure(&self) {
        let mut rx = self.rx.clone();
        if rx.wait_for(|d| d.failed).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// `commit` lowered, if needed, to the id of the last durable entry. A lower commit index is
    /// always safe to send: followers only ever move theirs forward.
    pub fn cap(&self, commit: Option<LogId>) -> Option<LogId> {
        let c = commit?;
        let upto = self.rx.borrow().upto?;
        if c.index <= upto {
            return Some(c);
        }
        if let Some(e) = self.shared.log.read().expect("wal lock").get(&upto) {
            return Some(e.log_id);
        }
        // Not in the log: purged behind a snapshot, which never passes the durable index.
        (*self.shared.last_purged.read().expect("wal lock")).filter(|p| p.index <= upto)
    }
}
