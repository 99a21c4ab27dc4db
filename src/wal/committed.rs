//! The last committed log id (`wal/committed`), so a restarted node re-applies up to it before
//! serving (openraft's `save_committed`/`read_committed`). sled is flushed lazily, so without
//! this a restarted node could serve reads from a state older than it served before the crash,
//! and a leader resuming its term could compute a read index that is too low.
//!
//! Layout: one framed record (see `crate::frame`) holding the bincode of `Option<LogId>`,
//! overwritten in place at offset 0. It is written on every commit advance but not fsync'd:
//! it survives a process crash (the page cache does), and after a power loss a stale or torn
//! value is harmless, because it is only ever used if the WAL still holds that entry.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::codec;
use crate::frame;
use crate::model::types::LogId;

const FILE: &str = "committed";

pub struct CommittedFile {
    file: File,
    buf: Vec<u8>,
}

impl CommittedFile {
    pub fn open(dir: &Path) -> io::Result<(CommittedFile, Option<LogId>)> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(dir.join(FILE))?;
        let mut raw = Vec::new();
        io::Read::read_to_end(&mut &file, &mut raw)?;
        let (frames, _) = frame::scan_frames(&raw);
        let saved = frames.first().and_then(|(_, p)| codec::decode::<Option<LogId>>(p).ok()).flatten();
        Ok((CommittedFile { file, buf: Vec::with_capacity(64) }, saved))
    }

    pub fn save(&mut self, committed: Option<LogId>) -> io::Result<()> {
        let payload = codec::encode(&committed).map_err(io::Error::other)?;
        self.buf.clear();
        frame::append_frame(&payload, &mut self.buf);
        // A shorter record than a previous one leaves trailing bytes; the framing ignores them.
        self.file.write_all_at(&self.buf, 0)
    }
}
