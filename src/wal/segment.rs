//! Segment files: `wal/<first index, 20 digits>.seg`, each a run of framed records holding
//! consecutive log entries. This file owns reading them back on open (including cutting off a
//! torn tail), the naming scheme, zeroing them ahead of the writer, and syncing them.
//!
//! A segment's file is zeroed ahead of its records, [`ZERO_AHEAD`] at a time, and the records are
//! written over the zeros. Why: on ext4, an fdatasync after an append that grew the file must
//! also write the inode (its new size), and after an append into space already written it need
//! not: here that took about a third off an fdatasync after a 3 KB append, in time and in
//! system CPU (docs/performance.md, "What mattered"). `fallocate` does not do it: writing into
//! allocated but unwritten extents changes metadata too. So a segment is its records followed by zeros, which
//! read as nothing: a zero header is a record of length 0, and no entry's record is empty.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::codec;
use crate::failpoint::Point;
use crate::frame;
use crate::model::types::{Entry, LogId};

pub const SUFFIX: &str = ".seg";

/// An on-disk segment as the writer tracks it.
pub struct Segment {
    /// Shared with the syncer's requests, which name the file they sync (`crate::fsync`).
    pub path: Arc<Path>,
    pub first: u64,
    /// Byte length of the valid records.
    pub len: u64,
    /// Byte length of the file: the records, then zeros (at least `len`).
    pub zeroed: u64,
    /// Start offset of each entry's record; entry `first + i` starts at `offsets[i]`.
    pub offsets: Vec<u64>,
}

impl Segment {
    /// Index one past the last entry held.
    pub fn end(&self) -> u64 {
        self.first + self.offsets.len() as u64
    }

    /// Opens the file for positioned writes (records go at `len`, over zeros), creating it.
    pub fn open_for_write(&self) -> io::Result<File> {
        OpenOptions::new().create(true).write(true).truncate(false).open(&self.path)
    }
}

/// How far ahead of its records a segment is zeroed, and the step it grows by: one zeroing
/// write (about 1 ms here, folded into the fdatasync of the append that needed it) per MiB of
/// log, about every 6,000 puts of 100 bytes.
pub const ZERO_AHEAD: u64 = 1 << 20;

/// Writes zeros to `file` over `[from, to)`.
pub fn zero(file: &File, from: u64, to: u64) -> io::Result<()> {
    static BLOCK: [u8; 64 << 10] = [0; 64 << 10];
    let mut at = from;
    while at < to {
        let n = (to - at).min(BLOCK.len() as u64) as usize;
        file.write_all_at(&BLOCK[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// fdatasyncs a segment whose records end at `len`. Every sync of segment data the writer and
/// the syncer make goes through here: timed for `/metrics`, and failable by a test failpoint
/// (`crate::failpoint`).
pub fn sync(file: &File, path: &Path, len: u64) -> io::Result<()> {
    crate::failpoint::hit(Point::WalFsync)?;
    let t = std::time::Instant::now();
    let r = crate::fsync::data_upto(file, path, len);
    crate::metrics::METRICS.wal_fsync.observe(t.elapsed());
    r
}

pub fn path_for(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}{SUFFIX}"))
}

fn list(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for ent in fs::read_dir(dir)? {
        let ent = ent?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(SUFFIX) else {
            continue;
        };
        if let Ok(first) = stem.parse::<u64>() {
            out.push((first, ent.path()));
        }
    }
    out.sort();
    Ok(out)
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Reads every segment back. Entries at or below `last_purged` are dropped from the result
/// (and whole segments of them deleted). A torn or corrupt tail of the *last* segment is
/// truncated; damage anywhere else is refused, because fsync'd data cannot tear there. Zeros
/// after the records are space zeroed ahead, not damage, and are kept.
pub fn recover(dir: &Path, last_purged: Option<LogId>) -> io::Result<(BTreeMap<u64, Segment>, Vec<Entry>)> {
    let purged = last_purged.map(|l| l.index);
    let files = list(dir)?;
    let mut segments = BTreeMap::new();
    let mut entries: Vec<Entry> = Vec::new();
    let mut expect_next: Option<u64> = None;
    let count = files.len();
    for (n, (first, path)) in files.into_iter().enumerate() {
        let is_last = n + 1 == count;
        let buf = fs::read(&path)?;
        let (mut frames, mut valid) = frame::scan_frames(&buf);
        // The zeros ahead of the records scan as empty records: the records end at the first.
        if let Some(zeros) = frames.iter().position(|(_, payload)| payload.is_empty()) {
            valid = frames[zeros].0 as usize;
            frames.truncate(zeros);
        }
        let mut offsets = Vec::with_capacity(frames.len());
        let mut valid_len = valid as u64;
        for (i, (offset, payload)) in frames.iter().enumerate() {
            let decoded = codec::decode::<Entry>(payload);
            let entry = match decoded {
                Ok(e) if e.log_id.index == first + i as u64 => e,
                _ if is_last => {
                    // An undecodable record can only be a torn write that passed the CRC by
                    // chance; treat it like any torn tail.
                    valid_len = *offset;
                    break;
                }
                _ => return Err(invalid(format!("{}: record {i} is not entry {}", path.display(), first + i as u64))),
            };
            offsets.push(*offset);
            if purged.is_none_or(|p| entry.log_id.index > p) {
                entries.push(entry);
            }
        }
        let zeroed = buf[valid_len as usize..].iter().all(|&b| b == 0);
        if !zeroed {
            if !is_last {
                return Err(invalid(format!("{}: corrupt record inside a sealed segment", path.display())));
            }
            tracing::warn!(path = %path.display(), valid = valid_len, len = buf.len(), "truncating torn WAL tail");
            let f = OpenOptions::new().write(true).open(&path)?;
            f.set_len(valid_len)?;
            crate::fsync::file(&f, &path)?;
        }
        if let Some(next) = expect_next {
            // A gap is legal only where a purge covers it (the log resumed after a snapshot).
            let covered = purged.is_some_and(|p| p + 1 >= first);
            if first != next && !offsets.is_empty() && !covered {
                return Err(invalid(format!("{}: starts at entry {first}, expected {next}", path.display())));
            }
        }
        let zeroed_len = if zeroed { buf.len() as u64 } else { valid_len };
        let seg = Segment { path: path.into(), first, len: valid_len, zeroed: zeroed_len, offsets };
        expect_next = Some(seg.end());
        if !is_last && purged.is_some_and(|p| seg.end() <= p + 1) {
            fs::remove_file(&seg.path)?;
            continue;
        }
        segments.insert(first, seg);
    }
    Ok((segments, entries))
}
