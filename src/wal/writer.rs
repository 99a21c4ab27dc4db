//! The WAL writer: the single owner of segment files. All write IO (appends, vote saves,
//! truncates, purges) goes through it, one call at a time, in the order openraft makes them
//! (the log store owns it and openraft calls the store through `&mut self`). An append is one
//! positioned `write` over the segment's zeroed space (`segment.rs`), then one `fdatasync`,
//! here for a follower or on the syncer thread for the leader's own entries (`durable.rs`);
//! grouping happens before it, in the batcher and in openraft, which hands over every entry
//! that is ready in one call.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::meta::{self, WalMeta};
use super::segment::{self, Segment};
use crate::codec;
use crate::frame;
use crate::model::types::{Entry, LogId, Vote};

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
    /// A segment write or fdatasync failed. Appends and syncs are refused from then on: how
    /// much of a failed write reached the file is unknown (the next append would land behind
    /// a torn record, and recovery cuts the log at the first one), and a failed fdatasync is
    /// never retried (`durable.rs`). Raft stops the node on the first failure anyway; this keeps
    /// the writer from being the part that carries on. Recovery on restart cuts a torn tail.
    pub broken: bool,
}

/// `file.write_all_at(buf, at)`, or, when the `wal-write` failpoint fires, what a full disk
/// does: the first half reaches the file, then ENOSPC.
fn write_all(file: &File, buf: &[u8], at: u64) -> io::Result<()> {
    if let Err(e) = crate::failpoint::hit(crate::failpoint::Point::WalWrite) {
        file.write_all_at(&buf[..buf.len() / 2], at)?;
        return Err(e);
    }
    file.write_all_at(buf, at)
}

impl Writer {
    /// Writes `entries` with one `write` and makes them durable with one `fdatasync`.
    pub fn append_durably(&mut self, entries: &[Entry]) -> io::Result<()> {
        self.append(entries)?;
        self.sync()
    }

    /// Makes everything written to the active segment durable (earlier segments were synced
    /// when the writer left them).
    pub fn sync(&mut self) -> io::Result<()> {
        self.unless_broken(|w| match (&w.active, w.segments.values().next_back()) {
            (Some(file), Some(seg)) => segment::sync(file, &seg.path, seg.len),
            _ => Ok(()),
        })
    }

    /// Runs a segment write or sync, unless one failed before; a failure breaks the writer.
    fn unless_broken(&mut self, step: impl FnOnce(&mut Self) -> io::Result<()>) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::other("an earlier WAL write or fdatasync failed; the node must restart"));
        }
        let r = step(self);
        self.broken = r.is_err();
        r
    }

    pub fn save_vote(&mut self, vote: Vote) -> io::Result<()> {
        let mut m = self.meta.clone();
        m.vote = Some(vote);
        meta::store(&self.dir, &m)?;
        self.meta = m;
        Ok(())
    }

    /// A second handle on the active segment, its path and where its records end, for syncing
    /// it from another thread.
    pub fn active_handle(&self) -> io::Result<(File, Arc<Path>, u64)> {
        let none = || io::Error::other("no active WAL segment");
        let file = self.active.as_ref().ok_or_else(none)?.try_clone()?;
        let seg = self.segments.values().next_back().ok_or_else(none)?;
        Ok((file, seg.path.clone(), seg.len))
    }

    /// Writes `entries` with one `write`, without syncing them.
    pub fn append(&mut self, entries: &[Entry]) -> io::Result<()> {
        self.unless_broken(|w| w.write_group(entries))
    }

    fn write_group(&mut self, entries: &[Entry]) -> io::Result<()> {
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
        let file = self.active.as_ref().expect("ensured");
        let end = seg.len + self.buf.len() as u64;
        // Past the zeroed space, zero the next stretch too, so the appends after this one
        // write into space that is already there (`segment.rs`, on why); never past the size at
        // which the segment rolls over.
        let ahead = (end > seg.zeroed && end < self.segment_bytes)
            .then(|| ((end / segment::ZERO_AHEAD + 1) * segment::ZERO_AHEAD).min(self.segment_bytes));
        let written = write_all(file, &self.buf, seg.len).and_then(|()| match ahead {
            Some(to) => segment::zero(file, end.max(seg.zeroed), to),
            None => Ok(()),
        });
        if let Err(e) = written {
            // Leave the in-memory view matching what is certainly on disk.
            seg.offsets.truncate(seg.offsets.len() - entries.len());
            return Err(e);
        }
        seg.len = end;
        seg.zeroed = seg.zeroed.max(ahead.unwrap_or(end));
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
                    self.active = Some(seg.open_for_write()?);
                }
                return Ok(());
            }
            if let Some(f) = self.active.take() {
                // A sealed segment keeps no zeros: it reads back as records only, as segments
                // written before the zeroing did.
                f.set_len(seg.len)?;
                segment::sync(&f, &seg.path, seg.len)?;
            }
            let fully_purged = self.meta.last_purged.is_some_and(|p| seg.end() <= p.index + 1);
            if seg.offsets.is_empty() || fully_purged {
                let first = seg.first;
                let seg = self.segments.remove(&first).expect("present");
                fs::remove_file(&seg.path)?;
            }
        }
        let path = segment::path_for(&self.dir, index).into();
        let seg = Segment { path, first: index, len: 0, zeroed: 0, offsets: Vec::new() };
        let file = seg.open_for_write()?;
        file.set_len(0)?;
        crate::fsync::dir(&self.dir)?;
        self.active = Some(file);
        self.segments.insert(index, seg);
        Ok(())
    }

    /// Removes entries `since..`. Later segments go first, then the one holding `since` is cut,
    /// so a crash part-way leaves a shorter but still contiguous log.
    pub fn truncate(&mut self, since: u64) -> io::Result<()> {
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
                crate::fsync::file(&f, &seg.path)?;
                seg.offsets.truncate(keep);
                seg.len = cut;
                seg.zeroed = cut;
            }
        }
        crate::fsync::dir(&self.dir)
    }

    /// Records `upto` as purged (durably, first), then deletes sealed segments it covers.
    pub fn purge(&mut self, upto: LogId) -> io::Result<()> {
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
        let paths: Vec<Arc<Path>> =
            doomed.into_iter().map(|first| self.segments.remove(&first).expect("listed").path).collect();
        if !paths.is_empty() {
            // Deleted in the background: this runs on openraft's RaftCore, which every write
            // waits on, and freeing a 16 MiB segment's blocks takes milliseconds (a purge took
            // 33-59 ms at 256 clients with the deletions, 1-5 ms without). The purge point above
            // is durable already, and an open deletes any segment wholly behind it, so a
            // deletion a crash cut short is finished there.
            crate::cleanup::in_background(move || {
                for path in paths {
                    if let Err(e) = fs::remove_file(&path) {
                        tracing::warn!(path = %path.display(), error = %e, "could not delete a purged WAL segment; the next start will");
                    }
                }
            })?;
        }
        Ok(())
    }
}
