//! The WAL's small metadata file (`wal/meta`): the vote and the last purged log id.
//! Layout: `b"CRNM"`, format version (u8), then one framed record (see `crate::frame`) holding
//! the bincode of [`WalMeta`]. It is replaced atomically: write a temp file, fsync, rename,
//! fsync the directory, so a crash leaves either the old or the new file, never a mix.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::frame;
use crate::model::types::{LogId, Vote};

const MAGIC: &[u8; 4] = b"CRNM";
const VERSION: u8 = 1;
const FILE: &str = "meta";

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct WalMeta {
    pub vote: Option<Vote>,
    pub last_purged: Option<LogId>,
}

pub fn load(dir: &Path) -> io::Result<WalMeta> {
    let path = dir.join(FILE);
    let buf = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(WalMeta::default()),
        Err(e) => return Err(e),
    };
    let corrupt = |why: &str| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {why}", path.display()));
    if buf.len() < 5 || &buf[..4] != MAGIC {
        return Err(corrupt("not a cairn WAL meta file"));
    }
    if buf[4] != VERSION {
        return Err(corrupt(&format!("unsupported format version {}", buf[4])));
    }
    let (frames, _) = frame::scan_frames(&buf[5..]);
    let payload = frames.first().ok_or_else(|| corrupt("checksum mismatch"))?.1;
    codec::decode(payload).map_err(|e| corrupt(&e.to_string()))
}

pub fn store(dir: &Path, meta: &WalMeta) -> io::Result<()> {
    let payload = codec::encode(meta).map_err(io::Error::other)?;
    let mut buf = Vec::with_capacity(payload.len() + 16);
    buf.extend_from_slice(MAGIC);
    buf.push(VERSION);
    frame::append_frame(&payload, &mut buf);
    let tmp = dir.join("meta.tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&buf)?;
        crate::fsync::file(&f, &tmp)?;
    }
    fs::rename(&tmp, dir.join(FILE))?;
    crate::fsync::dir(dir)
}
