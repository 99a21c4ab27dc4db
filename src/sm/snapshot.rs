//! Snapshot files, the only owner of their layout: `b"CRNS"`, format version (u8), then framed
//! records (see `crate::frame`), each the bincode of a [`Frame`]: one `Meta`, any number of
//! `Pairs` (raw sled keys and values), and a closing `End` with the pair count. A file without
//! its `End` frame is incomplete and is never installed. Backups (`cairn backup`) are these
//! files too.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::keys;
use crate::codec;
use crate::frame;
use crate::model::types::SnapshotMeta;

const MAGIC: &[u8; 4] = b"CRNS";
const VERSION: u8 = 1;
const PAIRS_PER_FRAME: usize = 512;
/// A `Pairs` frame is closed once it holds this many bytes, keeping every frame far below the
/// framing's record limit whatever the value sizes (found by the 100 MB catch-up test: 512
/// pairs of 1 MB values made a frame the reader rejects).
const BYTES_PER_FRAME: usize = 4 << 20;

#[derive(Serialize, Deserialize)]
enum Frame {
    Meta(SnapshotMeta),
    Pairs(Vec<(Vec<u8>, Vec<u8>)>),
    End { pairs: u64 },
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn put_frame(w: &mut impl Write, f: &Frame) -> io::Result<()> {
    let payload = codec::encode(f).map_err(io::Error::other)?;
    let mut buf = Vec::with_capacity(payload.len() + frame::HEADER_LEN);
    frame::append_frame(&payload, &mut buf);
    w.write_all(&buf)
}

fn next_frame(r: &mut impl Read) -> io::Result<Frame> {
    let payload = frame::read_frame(r)?.ok_or_else(|| invalid("snapshot ends without its End frame"))?;
    codec::decode(&payload).map_err(|e| invalid(e.to_string()))
}

/// Keys that describe the replica rather than the data; the snapshot meta carries their truth.
fn is_replica_local(k: &[u8]) -> bool {
    [
        keys::META_LAST_APPLIED,
        keys::META_MEMBERSHIP,
        keys::META_INSTALLING,
        keys::META_CLEAN,
        keys::META_REDO,
        keys::META_HISTORY,
    ]
    .contains(&k)
        || super::history::is_history_key(k)
}

/// Writes `pairs` (the raw tree, as of `meta`'s index) to `path` and fsyncs it.
pub fn write(
    pairs_in: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
    meta: &SnapshotMeta,
    path: &Path,
) -> io::Result<u64> {
    let file = File::create(path)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    w.write_all(MAGIC)?;
    w.write_all(&[VERSION])?;
    put_frame(&mut w, &Frame::Meta(meta.clone()))?;
    let mut pairs = Vec::with_capacity(PAIRS_PER_FRAME);
    let mut bytes = 0usize;
    let mut total = 0u64;
    for kv in pairs_in {
        let (k, v) = kv.map_err(io::Error::other)?;
        if is_replica_local(&k) {
            continue;
        }
        bytes += k.len() + v.len();
        pairs.push((k.to_vec(), v.to_vec()));
        total += 1;
        if pairs.len() == PAIRS_PER_FRAME || bytes >= BYTES_PER_FRAME {
            put_frame(&mut w, &Frame::Pairs(std::mem::take(&mut pairs)))?;
            bytes = 0;
        }
    }
    if !pairs.is_empty() {
        put_frame(&mut w, &Frame::Pairs(pairs))?;
    }
    put_frame(&mut w, &Frame::End { pairs: total })?;
    let file = w.into_inner().map_err(|e| e.into_error())?;
    crate::fsync::file(&file, path)?;
    Ok(total)
}

fn open(path: &Path) -> io::Result<(BufReader<File>, SnapshotMeta)> {
    let mut r = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut head = [0u8; 5];
    r.read_exact(&mut head).map_err(|_| invalid("snapshot too short"))?;
    if &head[..4] != MAGIC {
        return Err(invalid("not a cairn snapshot file"));
    }
    if head[4] != VERSION {
        return Err(invalid(format!("unsupported snapshot format version {}", head[4])));
    }
    match next_frame(&mut r)? {
        Frame::Meta(m) => Ok((r, m)),
        _ => Err(invalid("snapshot does not start with its meta")),
    }
}

/// Streams every pair to `each`, checking every frame and the closing count.
fn for_each_pair(
    path: &Path,
    mut each: impl FnMut(Vec<(Vec<u8>, Vec<u8>)>) -> io::Result<()>,
) -> io::Result<SnapshotMeta> {
    let (mut r, meta) = open(path)?;
    let mut seen = 0u64;
    loop {
        match next_frame(&mut r)? {
            Frame::Pairs(p) => {
                seen += p.len() as u64;
                each(p)?;
            }
            Frame::End { pairs } if pairs == seen => return Ok(meta),
            Frame::End { .. } => return Err(invalid("snapshot pair count mismatch")),
            Frame::Meta(_) => return Err(invalid("second meta frame in snapshot")),
        }
    }
}

pub fn read_meta(path: &Path) -> io::Result<SnapshotMeta> {
    open(path).map(|(_, m)| m)
}

/// Reads the whole file, checking it is complete and uncorrupted.
pub fn validate(path: &Path) -> io::Result<SnapshotMeta> {
    for_each_pair(path, |_| Ok(()))
}

/// Loads the file's pairs into `tree`, which the caller has emptied and which no reader sees
/// yet. Single-key inserts, as in apply (`Writes::write_to` says why); a crash part-way is
/// repaired by loading the file again.
pub fn load_into(path: &Path, tree: &sled::Tree) -> io::Result<SnapshotMeta> {
    for_each_pair(path, |pairs| {
        for (k, v) in pairs {
            tree.insert(k, v).map_err(io::Error::other)?;
        }
        Ok(())
    })
}

/// Copies a snapshot file to `dst` with its meta replaced, checking every frame on the way.
/// Used by restore to seed a new cluster with its own membership.
pub fn rewrite_meta(src: &Path, dst: &Path, meta: &SnapshotMeta) -> io::Result<u64> {
    let mut w = BufWriter::with_capacity(1 << 20, File::create(dst)?);
    w.write_all(MAGIC)?;
    w.write_all(&[VERSION])?;
    put_frame(&mut w, &Frame::Meta(meta.clone()))?;
    let mut total = 0u64;
    for_each_pair(src, |pairs| {
        total += pairs.len() as u64;
        put_frame(&mut w, &Frame::Pairs(pairs))
    })?;
    put_frame(&mut w, &Frame::End { pairs: total })?;
    let file = w.into_inner().map_err(|e| e.into_error())?;
    crate::fsync::file(&file, dst)?;
    Ok(total)
}
