//! The single owner of "make this durable": every fsync and fdatasync a node makes of a file
//! or a directory goes through here (WAL segments and their recovery, the WAL meta file, the
//! node id file, snapshot files, and the directories that hold them). sled never calls it: sled is
//! not a durability point (`sm/mod.rs`). The CLI's backup download syncs its own file outside
//! any data dir and is left out.
//!
//! Owning every sync lets a test know exactly what was durable at any moment. With [`LEDGER_ENV`]
//! set (`CAIRN_TEST_POWERLOSS_LEDGER=<path>`), each successful sync appends one JSON line to that
//! file, and the process tier's power cut (`tests/it/support/power_cut.rs`) reads it after it
//! SIGKILLed the node, to cut the data dir back to what was durable (docs/operations.md, "Power
//! loss: what the simulation covers"). The lines, in the order they are appended:
//! - `{"process": <pid>}`: a process armed the ledger; its records are newer than every earlier one;
//! - `{"seq": n, "file": "<id>", "len": l, "path": "…"}`: a file was synced, and every byte below
//!   `l` is durable. `l` is the length *before* the sync began, so bytes written while it ran
//!   are never credited to it (the kernel may or may not have covered them). For a WAL segment,
//!   whose file is zeroed ahead of its records, `l` is where its records ended ([`data_upto`]);
//! - `{"seq": n, "dir": "<id>", "path": "…", "entries": {"<name>": "<id>", …}}`: a directory was
//!   synced, and the entries it held before the sync began are durable.
//!
//! `<id>` is `<dev>:<ino>:<birth time in ns, or ->`, so a file keeps its identity across a
//! rename and a reused inode number is a new file. `seq` is taken before the length or listing
//! is read: syncs of one file from two threads can finish out of order, and the record of the
//! sync that *started* last is the one that describes the file. The ledger is written with plain
//! appends, unsynced: the simulation only kills processes, and the page cache survives that.
//! Unset, it costs one atomic load per sync.
//!
//! A leaf of the crate: imports nothing from it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::UNIX_EPOCH;

use serde_json::{json, Map, Value};

/// The variable that turns the ledger on: the path of the file to append it to.
pub const LEDGER_ENV: &str = "CAIRN_TEST_POWERLOSS_LEDGER";

struct Ledger {
    file: Mutex<File>,
    seq: AtomicU64,
}

static LEDGER: OnceLock<Ledger> = OnceLock::new();

/// Opens the ledger [`LEDGER_ENV`] names; a no-op when it is unset. The first call in a process
/// decides (in-process tests start many nodes in one process, none with a ledger). A ledger that
/// cannot be opened refuses the start: a test that meant to record every sync must not run
/// without it, or its power cut would throw away what was in fact durable.
pub fn arm_ledger_from_env() -> Result<(), String> {
    let Some(path) = std::env::var_os(LEDGER_ENV) else { return Ok(()) };
    let path = Path::new(&path);
    let opened = OpenOptions::new().create(true).append(true).open(path);
    let file = opened.map_err(|e| format!("{LEDGER_ENV}: cannot open {}: {e}", path.display()))?;
    tracing::warn!(path = %path.display(), "{LEDGER_ENV} is set: this node records every fsync it makes (a test hook; never set it in production)");
    let ledger = Ledger { file: Mutex::new(file), seq: AtomicU64::new(0) };
    ledger.append(json!({ "process": std::process::id() })).map_err(|e| format!("{LEDGER_ENV}: {e}"))?;
    let _ = LEDGER.set(ledger);
    Ok(())
}

/// fdatasync: the file's bytes and its length (what reading it back needs), not its other
/// metadata (times), which the WAL's appends have no use for. Only WAL segments are synced this
/// way, and their meaningful bytes end at `len`, before the space zeroed ahead of their
/// records (`wal/segment.rs`): the ledger credits the sync with `len` at most, so the power cut
/// removes what was written past it (unsynced appends into the zeroed space), as a real power
/// cut may.
pub fn data_upto(file: &File, path: &Path, len: u64) -> io::Result<()> {
    sync_file(file, path, File::sync_data, len)
}

/// fsync: the file's bytes and all of its metadata.
pub fn file(file: &File, path: &Path) -> io::Result<()> {
    sync_file(file, path, File::sync_all, u64::MAX)
}

/// fsync of a directory: makes the entries created, renamed or removed in it durable. A new
/// file survives a power cut only once its directory was synced after it was created.
pub fn dir(path: &Path) -> io::Result<()> {
    let dir = File::open(path)?;
    let Some(ledger) = LEDGER.get() else { return dir.sync_all() };
    let seq = ledger.seq.fetch_add(1, Ordering::Relaxed);
    let id = identity(&dir.metadata()?);
    let mut entries = Map::new();
    for entry in fs::read_dir(path)? {
        let entry = entry?;
        match fs::symlink_metadata(entry.path()) {
            Ok(meta) => {
                entries.insert(entry.file_name().to_string_lossy().into_owned(), Value::String(identity(&meta)));
            }
            // Removed since it was listed: the sync covers its removal, not the entry.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    dir.sync_all()?;
    ledger.append(json!({ "seq": seq, "dir": id, "path": path.to_string_lossy(), "entries": entries }))
}

/// Syncs `file` with `how`; the ledger credits it with its length before the sync, or `upto`
/// if less.
fn sync_file(file: &File, path: &Path, how: fn(&File) -> io::Result<()>, upto: u64) -> io::Result<()> {
    let Some(ledger) = LEDGER.get() else { return how(file) };
    let seq = ledger.seq.fetch_add(1, Ordering::Relaxed);
    let meta = file.metadata()?;
    how(file)?;
    let len = meta.len().min(upto);
    ledger.append(json!({ "seq": seq, "file": identity(&meta), "len": len, "path": path.to_string_lossy() }))
}

/// `<dev>:<ino>:<birth ns>`; the birth time tells a reused inode number from the file that had
/// it before, where the filesystem reports one (ext4, xfs, btrfs, tmpfs on recent kernels).
fn identity(meta: &fs::Metadata) -> String {
    let born = meta.created().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok());
    match born {
        Some(d) => format!("{}:{}:{}", meta.dev(), meta.ino(), d.as_nanos()),
        None => format!("{}:{}:-", meta.dev(), meta.ino()),
    }
}

impl Ledger {
    /// One line per record, in one `write`, so records from several threads never interleave.
    /// A record that cannot be written fails the sync it describes: the power cut would
    /// otherwise throw away bytes the node went on to rely on.
    fn append(&self, record: Value) -> io::Result<()> {
        let mut line = record.to_string();
        line.push('\n');
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.write_all(line.as_bytes())
    }
}
