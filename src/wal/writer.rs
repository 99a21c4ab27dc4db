//! The WAL writer thread: the single owner of segment files. All write IO (appends, vote
//! saves, truncates, purges) flows through one channel and runs in arrival order, as
//! openraft's storage contract requires. Appends that queue up while a fsync runs are written
//! together and covered by one `fdatasync` (group commit); only after it do their callbacks
//! tell openraft the entries are durable.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::mpsc;

use openraft::storage::LogFlushed;
use tokio::sync::oneshot;

use super::meta::{self, WalMeta};
use super::segment::{self, Segment};
use crate::codec;
use crate::frame;
use crate::types::{Entry, LogId, TypeConfig, Vote};

pub enum Op {
    Append { entries: Vec<Entry>, callback: LogFlushed<TypeConfig> },
    SaveVote { vote: Vote, done: oneshot::Sender<io::Result<()>> },
    Truncate { since: u64, done: oneshot::Sender<io::Result<()>> },
    Purge { upto: LogId, done: oneshot::Sender<io::Result<()>> },
}

pub struct Writer {
    pub dir: PathBuf,
    pub segments: BTreeMap<u64, Segment>,
    pub meta: WalMeta,
    /// Roll to a new segment once the active one reaches this size.
    pub segment_bytes: u64,
    /// Append handle of the last segment, opened lazily.
    pub active: Option<File>,
    /// Reused encode buffer: one write per group.
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn run(mut self, rx: mpsc::Receiver<Op>) {
        while let Ok(first) = rx.recv() {
            let mut ops = vec![first];
            ops.extend(rx.try_iter());
            let mut waiting: Vec<LogFlushed<TypeConfig>> = Vec::new();
            let mut failed: Option<io::Error> = None;
            for op in ops {
                match op {
                    Op::Append { entries, callback } => {
                        if failed.is_none() {
                            if let Err(e) = self.append(&entries) {
                                failed = Some(e);
                            }
                        }
                        waiting.push(callback);
                    }
                    other => {
                        // Everything queued before this op must be durable before it runs.
                        self.finish_group(&mut waiting, &mut failed);
                        self.handle(other);
                    }
                }
            }
            self.finish_group(&mut waiting, &mut failed);
        }
    }

    fn finish_group(&mut self, waiting: &mut Vec<LogFlushed<TypeConfig>>, failed: &mut Option<io::Error>) {
        if waiting.is_empty() {
            return;
        }
        let result = match failed.take() {
            Some(e) => Err(e),
            None => self.sync_active(),
        };
        for cb in waiting.drain(..) {
            let r = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            };
            cb.log_io_completed(r);
        }
        if let Err(e) = result {
            tracing::error!(error = %e, "WAL write failed; Raft will stop this node");
        }
    }

    fn sync_active(&mut self) -> io::Result<()> {
        match &self.active {
            Some(f) => {
                let t = std::time::Instant::now();
                let r = f.sync_data();
                crate::metrics::METRICS.wal_fsync.observe(t.elapsed());
                r
            }
            None => Ok(()),
        }
    }

    fn handle(&mut self, op: Op) {
        match op {
            Op::Append { .. } => unreachable!("appends are grouped by run()"),
            Op::SaveVote { vote, done } => {
                let mut m = self.meta.clone();
                m.vote = Some(vote);
                let r = meta::store(&self.dir, &m).map(|()| self.meta = m);
                let _ = done.send(r);
            }
            Op::Truncate { since, done } => {
                let _ = done.send(self.truncate(since));
            }
            Op::Purge { upto, done } => {
                let _ = done.send(self.purge(upto));
            }
        }
    }

    fn append(&mut self, entries: &[Entry]) -> io::Result<()> {
        let Some(first) = entries.first().map(|e| e.log_id.index) else {
            return Ok(());
        };
        self.ensure_segment_for(first)?;
        let seg = self.segments.values_mut().next_back().expect("ensured");
        if seg.end() != first {
            return Err(io::Error::other(format!(
                "WAL append of entry {first} would leave a hole after {}",
                seg.end()
            )));
        }
        self.buf.clear();
        let mut payload = Vec::new();
        for e in entries {
            payload.clear();
            codec::encode_into(e, &mut payload).map_err(io::Error::other)?;
            seg.offsets.push(seg.len + self.buf.len() as u64);
            frame::append_frame(&payload, &mut self.buf);
        }
        let file = self.active.as_mut().expect("ensured");
        if let Err(e) = file.write_all(&self.buf) {
            // Leave the in-memory view matching what is certainly on disk.
            seg.offsets.truncate(seg.offsets.len() - entries.len());
            return Err(e);
        }
        seg.len += self.buf.len() as u64;
        Ok(())
    }

    /// Makes sure the last segment can take an append starting at `index`, rolling over when
    /// it is full and replacing it when it is an empty file named for another index.
    fn ensure_segment_for(&mut self, index: u64) -> io::Result<()> {
        if let Some(seg) = self.segments.values().next_back() {
            // After a purge past the last entry (e.g. following a snapshot install) the log
            // resumes above a gap; the gap is covered by `last_purged`, so start a new segment.
            let resumes_after_purge = index > seg.end() && self.meta.last_purged.is_some_and(|p| p.index + 1 >= index);
            let reuse = if seg.offsets.is_empty() {
                seg.first == index
            } else {
                seg.len < self.segment_bytes && !resumes_after_purge
            };
            if reuse {
                if self.active.is_none() {
                    self.active = Some(seg.open_for_append()?);
                }
                return Ok(());
            }
            if let Some(f) = self.active.take() {
                f.sync_data()?;
            }
            let fully_purged = self.meta.last_purged.is_some_and(|p| seg.end() <= p.index + 1);
            if seg.offsets.is_empty() || fully_purged {
                let first = seg.first;
                let seg = self.segments.remove(&first).expect("present");
                fs::remove_file(&seg.path)?;
            }
        }
        let seg = Segment { path: segment::path_for(&self.dir, index), first: index, len: 0, offsets: Vec::new() };
        let file = seg.open_for_append()?;
        file.set_len(0)?;
        meta::sync_dir(&self.dir)?;
        self.active = Some(file);
        self.segments.insert(index, seg);
        Ok(())
    }

    /// Removes entries `since..`. Later segments go first, then the one holding `since` is cut,
    /// so a crash part-way leaves a shorter but still contiguous log.
    fn truncate(&mut self, since: u64) -> io::Result<()> {
        let doomed: Vec<u64> = self.segments.range(since..).map(|(k, _)| *k).rev().collect();
        if !doomed.is_empty() {
            self.active = None;
        }
        for first in doomed {
            let seg = self.segments.remove(&first).expect("listed");
            fs::remove_file(&seg.path)?;
        }
        if let Some(seg) = self.segments.values_mut().next_back() {
            if since < seg.end() {
                let keep = (since - seg.first) as usize;
                let cut = seg.offsets[keep];
                self.active = None;
                let f = fs::OpenOptions::new().write(true).open(&seg.path)?;
                f.set_len(cut)?;
                f.sync_all()?;
                seg.offsets.truncate(keep);
                seg.len = cut;
            }
        }
        meta::sync_dir(&self.dir)
    }

    /// Records `upto` as purged (durably, first), then deletes sealed segments it covers.
    fn purge(&mut self, upto: LogId) -> io::Result<()> {
        let mut m = self.meta.clone();
        m.last_purged = Some(upto);
        meta::store(&self.dir, &m)?;
        self.meta = m;
        let last_first = self.segments.keys().next_back().copied();
        let doomed: Vec<u64> = self
            .segments
            .values()
            .filter(|s| Some(s.first) != last_first && s.end() <= upto.index + 1)
            .map(|s| s.first)
            .collect();
        for first in doomed {
            let seg = self.segments.remove(&first).expect("listed");
            fs::remove_file(&seg.path)?;
        }
        Ok(())
    }
}
