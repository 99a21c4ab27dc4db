//! How the state machine was last closed, and so how far sled can be trusted on the next open.
//!
//! sled never fsyncs (its `flush` is `sync_file_range`), and applies write single keys, so what
//! sled holds after an unclean stop depends on what stopped:
//!
//! - **the process** (a crash, `kill -9`, a failed apply): the kernel still holds every byte sled
//!   handed it, and sled recovers a prefix of its operations (its own crash tests check exactly
//!   that). The prefix may end inside an apply, which the apply journal finishes (`sm/mod.rs`).
//! - **the machine** (power loss, a kernel crash, the data dir moved to another host): bytes
//!   sled never synced may be gone in any pattern, so sled holds nothing trustworthy and is
//!   rebuilt from the snapshot file and the WAL.
//!
//! The two are told apart by the kernel's boot id, recorded in `sm.state` (this module owns its
//! format) when the state machine opens. A clean close fsyncs sled's files itself and then
//! records `clean`, which holds across any restart. The record is written durably before the
//! first apply, so a stale `clean` can never describe a tree that applies have since changed.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The file, in the data dir, that records the last close.
const FILE: &str = "sm.state";
const TMP: &str = "sm.state.tmp";

/// Replaces the kernel's boot id, so a process test can restart a node "after a reboot" (the
/// power-loss simulation). Nothing else reads it.
pub const BOOT_ID_ENV: &str = "CAIRN_TEST_BOOT_ID";

/// What the last run left in `sm.state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LastClose {
    /// No record: a new data dir, or one written before the record existed (then sled's own
    /// clean marker decides, as it did then).
    Unknown,
    /// Closed cleanly, with sled's files fsync'd.
    Clean,
    /// Opened and not closed cleanly since, in the boot named (`None`: unknown boot).
    Open(Option<String>),
}

/// How the open treats sled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Trust sled as it is, if it carries its clean marker (else rebuild it in place).
    CheckMarker,
    /// The process stopped, the kernel did not: trust sled's prefix and finish its journal.
    ProcessCrash,
    /// The machine restarted (or the boot is unknown) since sled was written unsynced: discard
    /// sled's files unread and rebuild.
    MachineRestart,
}

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

/// This kernel's boot id, or `None` where the system does not expose one (never trusted then).
pub fn current_boot() -> Option<String> {
    if let Some(v) = std::env::var_os(BOOT_ID_ENV) {
        // Said loudly: a fixed value in production would make a power loss look like a process
        // crash, and sled's unsynced files would be trusted.
        tracing::error!(
            "{BOOT_ID_ENV} is set: this node ignores the kernel's boot id (a test hook; never set it in production)"
        );
        return v.into_string().ok().filter(|s| !s.is_empty());
    }
    let id = fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(id.trim().to_string()).filter(|s| !s.is_empty())
}

pub fn read(data_dir: &Path) -> io::Result<LastClose> {
    let text = match fs::read_to_string(path(data_dir)) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(LastClose::Unknown),
        Err(e) => return Err(e),
    };
    let line = text.trim_end_matches('\n');
    match line.split_once(' ') {
        _ if line == "clean" => Ok(LastClose::Clean),
        _ if line == "open" => Ok(LastClose::Open(None)),
        Some(("open", boot)) if !boot.is_empty() => Ok(LastClose::Open(Some(boot.to_string()))),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} holds {line:?}, not `clean` or `open <boot id>`", path(data_dir).display()),
        )),
    }
}

pub fn verdict(last: &LastClose, boot: Option<&str>) -> Verdict {
    match last {
        LastClose::Unknown | LastClose::Clean => Verdict::CheckMarker,
        LastClose::Open(Some(then)) if Some(then.as_str()) == boot => Verdict::ProcessCrash,
        LastClose::Open(_) => Verdict::MachineRestart,
    }
}

/// Records that sled is about to change in `boot`. Durable before it returns.
pub fn mark_open(data_dir: &Path, boot: Option<&str>) -> io::Result<()> {
    match boot {
        Some(b) => write(data_dir, &format!("open {b}\n")),
        None => write(data_dir, "open\n"),
    }
}

/// Records a clean close; the caller has fsync'd sled's files first.
pub fn mark_clean(data_dir: &Path) -> io::Result<()> {
    write(data_dir, "clean\n")
}

fn write(data_dir: &Path, text: &str) -> io::Result<()> {
    let tmp = data_dir.join(TMP);
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        crate::fsync::file(&f, &tmp)?;
    }
    fs::rename(&tmp, path(data_dir))?;
    crate::fsync::dir(data_dir)
}

/// fsyncs every file and directory under `dir` (sled's), so what sled flushed survives a
/// power loss too. sled is still open here, and its own threads remove files it no longer
/// needs (old blobs, once a value is rewritten): a file or directory gone between the listing
/// and its fsync holds nothing sled will read, so it is passed over, and the fsync of its
/// directory makes the removal durable. (Seen once in CI: the clean close failed with ENOENT,
/// and the next start rebuilt sled needlessly.)
pub fn sync_tree(dir: &Path) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        other => other?,
    };
    for entry in entries {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            sync_tree(&entry.path())?;
        } else if kind.is_file() {
            sync_file_if_present(&entry.path())?;
        }
    }
    crate::fsync::dir(dir)
}

/// fsyncs `path`, or does nothing if it no longer exists.
fn sync_file_if_present(path: &Path) -> io::Result<()> {
    match fs::File::open(path) {
        Ok(f) => crate::fsync::file(&f, path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_or_directory_removed_before_its_fsync_is_passed_over() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("kept"), b"x").unwrap();
        sync_file_if_present(&dir.path().join("gone")).unwrap();
        sync_tree(&dir.path().join("gone-dir")).unwrap();
        sync_tree(dir.path()).unwrap();
    }

    #[test]
    fn the_record_round_trips_and_decides() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), LastClose::Unknown);
        mark_open(dir.path(), Some("b1")).unwrap();
        let last = read(dir.path()).unwrap();
        assert_eq!(last, LastClose::Open(Some("b1".into())));
        assert_eq!(verdict(&last, Some("b1")), Verdict::ProcessCrash);
        assert_eq!(verdict(&last, Some("b2")), Verdict::MachineRestart);
        assert_eq!(verdict(&last, None), Verdict::MachineRestart);
        mark_open(dir.path(), None).unwrap();
        let last = read(dir.path()).unwrap();
        assert_eq!(last, LastClose::Open(None));
        assert_eq!(verdict(&last, None), Verdict::MachineRestart, "an unknown boot is never the same boot");
        mark_clean(dir.path()).unwrap();
        assert_eq!(verdict(&read(dir.path()).unwrap(), Some("b3")), Verdict::CheckMarker);
        fs::write(path(dir.path()), "opened b1\n").unwrap();
        assert!(read(dir.path()).is_err(), "a damaged record refuses rather than guesses");
    }
}
