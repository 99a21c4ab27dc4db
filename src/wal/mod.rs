//! The Raft log and vote: a segmented, fsync'd write-ahead log owned by Cairn.
//!
//! Readers see entries from an in-memory map as soon as `append` returns (openraft requires
//! that). Durability is signalled through `LogFlushed`: for entries from another leader once
//! their `fdatasync` is done; for this node's own entries as leader once they are written, with
//! the `fdatasync` on the syncer thread and a durable index that applies and the commit sent to
//! followers wait for (`durable.rs`). Memory stays bounded because the log is purged behind
//! snapshots.
//!
//! The file IO runs on the calling task (openraft's RaftCore), blocking its runtime worker for
//! the write (and a follower's fdatasync), rather than on an IO thread of its own. openraft
//! 0.9's RaftCore awaits every append's flush before it does anything else, so a thread gained
//! no overlap; it only added two thread hand-offs to every write, on the leader and again on
//! each follower. The runtime's other worker steals the blocked worker's queued tasks
//! meanwhile. `block_in_place` was measured too and cost more than the thread
//! (docs/performance.md).
//!
//! - `crate::frame`: record layout (length + CRC)
//! - `segment.rs`: segment files and recovery
//! - `meta.rs`: vote and last-purged file
//! - `committed.rs`: last committed log id (not fsync'd; see there)
//! - `durable.rs`: the durable index, and the syncer thread behind the leader's own appends
//! - `writer.rs`: the segment files' single owner: append + fdatasync, vote, truncate, purge

mod committed;
mod durable;
mod meta;
mod segment;
mod shared;
mod writer;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::{mpsc, Arc, RwLock};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageIOError};

use crate::model::types::{Entry, LogId, NodeId, StorageError, TypeConfig, Vote};
pub use durable::DurableWatch;
use durable::{Durable, SyncRequest};
use shared::Shared;
use tokio::sync::watch;
use writer::Writer;

/// The log store handed to openraft.
pub struct LogStore {
    shared: Arc<Shared>,
    writer: Writer,
    durable: Arc<watch::Sender<Durable>>,
    /// Set by [`LogStore::pipeline_own_appends`]: this node's id, and the syncer's queue.
    pipeline: Option<(NodeId, mpsc::Sender<SyncRequest>)>,
    committed: committed::CommittedFile,
    /// The committed id found on open, if the WAL still holds that entry.
    saved_committed: Option<LogId>,
}

/// A cheap, cloneable reader for replication tasks.
#[derive(Clone)]
pub struct LogReader {
    shared: Arc<Shared>,
}

impl LogStore {
    /// Opens (or creates) the WAL in `dir`, recovering entries and cutting a torn tail.
    #[cfg(test)]
    pub fn open(dir: &Path) -> io::Result<LogStore> {
        Self::open_with(dir, crate::config::DEFAULT_WAL_SEGMENT_BYTES)
    }

    /// [`LogStore::open`] with a chosen segment size.
    pub fn open_with(dir: &Path, segment_bytes: u64) -> io::Result<LogStore> {
        std::fs::create_dir_all(dir)?;
        let meta = meta::load(dir)?;
        let (segments, entries) = segment::recover(dir, meta.last_purged)?;
        let log: BTreeMap<u64, Entry> = entries.into_iter().map(|e| (e.log_id.index, e)).collect();
        let shared = Arc::new(Shared {
            log: RwLock::new(log),
            last_purged: RwLock::new(meta.last_purged),
            vote: RwLock::new(meta.vote),
        });
        let writer = Writer {
            dir: dir.to_path_buf(),
            segments,
            meta,
            segment_bytes: segment_bytes.max(4096),
            active: None,
            buf: Vec::new(),
            broken: false,
        };
        let (committed, saved) = committed::CommittedFile::open(dir)?;
        // Use the saved id only if this log still holds exactly that entry (or purged it behind
        // a snapshot); a value from a lost page cache must never make openraft apply entries
        // that were not durably logged.
        let holds = |c: &LogId| {
            let log = shared.log.read().expect("wal lock");
            match log.get(&c.index) {
                Some(e) => e.log_id == *c,
                None => shared.last_purged.read().expect("wal lock").is_some_and(|p| p.index >= c.index),
            }
        };
        let saved_committed = saved.filter(holds);
        // What recovery read back may still be only in the page cache (a process crash
        // keeps it, a power cut does not): make it durable before vouching for it.
        if let Some(seg) = writer.segments.values().next_back() {
            crate::fsync::data_upto(&std::fs::File::open(&seg.path)?, &seg.path, seg.len)?;
        }
        let last = shared.log.read().expect("wal lock").keys().next_back().copied();
        let upto = last.or(writer.meta.last_purged.map(|p| p.index));
        let durable = Arc::new(watch::Sender::new(Durable { upto, epoch: 0, failed: false }));
        Ok(LogStore { shared, writer, durable, pipeline: None, committed, saved_committed })
    }

    /// Lets this node's own appends as leader report flushed once written, with their fsync
    /// running beside replication on a syncer thread (see `durable.rs` for the rules that keep
    /// this safe; the state machine and the network must use [`LogStore::durability`]).
    ///
    /// One of those rules is applied here: the node never resumes, after a restart, a term it
    /// led. openraft restores a node whose saved vote is a committed vote for itself as leader at
    /// once, in the same term. But a power cut can take the leader's unsynced tail while a
    /// follower holds those entries durably; the resumed leader would then write new entries
    /// under the same log ids, and the follower would take them for the ones it has (Raft's log
    /// matching) and apply its own. Handing openraft the vote uncommitted makes the node start as
    /// a follower that still voted for itself in that term (it grants no other vote in it), and
    /// a new term is elected. Found by the power-loss test (docs/testing.md, BUG-10).
    pub fn pipeline_own_appends(&mut self, me: NodeId) -> io::Result<()> {
        {
            let mut vote = self.shared.vote.write().expect("wal lock");
            if let Some(v) = vote.as_mut().filter(|v| v.committed && v.leader_id.node_id == me) {
                tracing::info!(
                    term = v.leader_id.term,
                    "this node led the last term it knows; a new term will be elected"
                );
                v.committed = false;
            }
        }
        let (tx, rx) = mpsc::channel();
        let state = self.durable.clone();
        std::thread::Builder::new().name("cairn-wal-sync".into()).spawn(move || durable::run_syncer(rx, state))?;
        self.pipeline = Some((me, tx));
        Ok(())
    }

    /// The durable index, for the state machine (apply waits for it) and the peer network
    /// (the commit index sent to followers is capped by it).
    pub fn durability(&self) -> DurableWatch {
        DurableWatch { rx: self.durable.subscribe(), shared: self.shared.clone() }
    }

    /// Whether appends now are this node's own, as leader: its vote is committed and names
    /// itself. A node saves the vote of any new leader before it accepts that leader's entries.
    fn appends_are_own(&self, me: NodeId) -> bool {
        self.shared.vote.read().expect("wal lock").is_some_and(|v| v.committed && v.leader_id.node_id == me)
    }

    /// Writes `entries` and hands their fsync to the syncer. `Ok(false)`: written, but the
    /// syncer is gone, so the caller must sync them itself.
    fn append_pipelined(&mut self, tx: &mpsc::Sender<SyncRequest>, entries: &[Entry], last: u64) -> io::Result<bool> {
        self.writer.append(entries)?;
        let (file, path, len) = self.writer.active_handle()?;
        let epoch = self.durable.borrow().epoch;
        Ok(tx.send(SyncRequest { file, path, len, upto: last, epoch }).is_ok())
    }

    /// Prepares an empty WAL whose log starts after `upto`, as if everything through it had
    /// been purged behind a snapshot (restore seeds a node this way).
    /// The vote is seeded in `upto`'s term, so the node's first election is in a later term
    /// than any entry it holds (Raft requires a leader's term to cover its log).
    pub fn seed_purged(dir: &Path, upto: LogId, self_id: crate::model::types::NodeId) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let vote = Vote::new(upto.leader_id.term, self_id);
        meta::store(dir, &meta::WalMeta { vote: Some(vote), last_purged: Some(upto) })
    }

    /// Last log id held, or the last purged one when the log is empty.
    pub fn last_log_id(&self) -> Option<LogId> {
        let log = self.shared.log.read().expect("wal lock");
        log.values().next_back().map(|e| e.log_id).or(*self.shared.last_purged.read().expect("wal lock"))
    }

    pub fn current_vote(&self) -> Option<Vote> {
        *self.shared.vote.read().expect("wal lock")
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let log = self.shared.log.read().expect("wal lock");
        Ok(log.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        LogReader { shared: self.shared.clone() }.try_get_log_entries(range).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        Ok(LogState {
            last_purged_log_id: *self.shared.last_purged.read().expect("wal lock"),
            last_log_id: self.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> LogReader {
        LogReader { shared: self.shared.clone() }
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let vote = *vote;
        self.writer.save_vote(vote).map_err(|e| StorageIOError::write_vote(&e))?;
        *self.shared.vote.write().expect("wal lock") = Some(vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.current_vote())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.committed.save(committed).map_err(|e| StorageIOError::write(&e))?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.saved_committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        {
            let mut log = self.shared.log.write().expect("wal lock");
            for e in &entries {
                log.insert(e.log_id.index, e.clone());
            }
        }
        let Some(last) = entries.last().map(|e| e.log_id.index) else {
            callback.log_io_completed(Ok(()));
            return Ok(());
        };
        let own = match &self.pipeline {
            Some((me, tx)) if self.appends_are_own(*me) => Some(tx.clone()),
            _ => None,
        };
        let result = match own {
            Some(tx) => match self.append_pipelined(&tx, &entries, last) {
                Ok(true) => {
                    callback.log_io_completed(Ok(()));
                    return Ok(());
                }
                Ok(false) => self.writer.sync(),
                Err(e) => Err(e),
            },
            None => self.writer.append_durably(&entries),
        };
        if result.is_ok() {
            // Synced here, under the current epoch: nothing can intervene.
            self.durable.send_modify(|d| d.advance(last, d.epoch));
        }
        if let Err(e) = &result {
            tracing::error!(error = %e, "WAL write failed; Raft will stop this node");
        }
        callback.log_io_completed(result);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let since = log_id.index;
        {
            let mut log = self.shared.log.write().expect("wal lock");
            log.split_off(&since);
        }
        // Bump the epoch first, so a sync still running cannot vouch for the entries replaced.
        self.durable.send_modify(|d| {
            d.epoch += 1;
            d.upto = d.upto.min(since.checked_sub(1));
        });
        self.writer.truncate(since).map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.writer.purge(log_id).map_err(|e| StorageIOError::write_logs(&e))?;
        *self.shared.last_purged.write().expect("wal lock") = Some(log_id);
        let purged = {
            let mut log = self.shared.log.write().expect("wal lock");
            let keep = log.split_off(&(log_id.index + 1));
            std::mem::replace(&mut *log, keep)
        };
        // Freed in the background: a purge after a snapshot drops thousands of entries and every
        // command in them, 0.2-0.3 s of work at 256 clients. On this task (openraft's RaftCore,
        // which every write waits on) it stalled every client at once (performance.md).
        crate::cleanup::in_background(move || drop(purged)).map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
