//! The node and its disk.
//!
//! A filling disk is refused early. While the data dir's filesystem has less free space than
//! the reserve (`--min-free-disk-mb`, plus the current snapshot's size, because the next
//! snapshot build writes a whole new file beside it), the leader refuses client writes with
//! [`Error::InsufficientStorage`] (507) before proposing them. A full disk then shows as a clear
//! answer long before the WAL or sled meets ENOSPC, reads go on, and once space is freed writes
//! pass again at the next reading, with no restart. The node's own small entries still pass: the
//! reserve is kept for them.
//!
//! A storage failure is not survived. If a WAL write or fdatasync, or a state machine write,
//! fails anyway (something else ate the reserve, or the disk broke), Raft stops, and [`failure`]
//! says why, so that the server stops the process with a non-zero exit (`server.rs`). After a
//! failed fdatasync the page cache cannot be trusted (PostgreSQL's "fsyncgate": a retry can
//! succeed after the kernel dropped the pages that failed), and a node whose Raft stopped serves
//! nothing useful anyway. A restart recovers from what is on disk: the WAL cuts a torn tail, and
//! sled is rebuilt unless it was closed cleanly (`sm/mod.rs`).

use std::ffi::CString;
use std::io;
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use openraft::error::Fatal;

use super::error::Error;
use crate::config::NodeConfig;
use crate::model::command::Command;
use crate::model::types::Raft;
use crate::sm::current_snapshot_path;
use crate::wal::DurableWatch;

/// A free-space reading is reused for this long. The figure changes slowly, and a reading per
/// write would put two system calls (statvfs, and a stat of the snapshot) on the leader's path
/// for every client write; a burst can overshoot the reserve by what it writes in this time,
/// which the reserve absorbs.
const REREAD_MS: u64 = 100;

pub(crate) struct Disk {
    dir: PathBuf,
    snapshot: PathBuf,
    /// `--min-free-disk-mb` in bytes; 0: no check.
    reserve: u64,
    born: Instant,
    /// The last reading: when (ms after `born`, plus one so that 0 means never), the bytes free
    /// and the bytes needed. Relaxed: a racing writer at worst takes a reading of its own.
    read_at: AtomicU64,
    free: AtomicU64,
    need: AtomicU64,
    wal: DurableWatch,
    /// Why an apply failed, once one has (`sm::StateMachine::failed`).
    sm_failed: tokio::sync::watch::Receiver<Option<String>>,
}

impl Disk {
    pub fn new(
        config: &NodeConfig,
        wal: DurableWatch,
        sm_failed: tokio::sync::watch::Receiver<Option<String>>,
    ) -> Disk {
        Disk {
            dir: config.data_dir.clone(),
            snapshot: current_snapshot_path(&config.data_dir),
            reserve: config.min_free_disk_bytes,
            born: Instant::now(),
            read_at: AtomicU64::new(0),
            free: AtomicU64::new(0),
            need: AtomicU64::new(0),
            wal,
            sm_failed,
        }
    }

    /// Refuses `cmds` if they include a client write and the disk is short of its reserve.
    pub fn admit(&self, cmds: &[Command]) -> Result<(), Error> {
        if self.reserve == 0 || !cmds.iter().any(is_client_write) {
            return Ok(());
        }
        let (free, need) = self.reading();
        if free >= need {
            return Ok(());
        }
        Err(Error::InsufficientStorage(format!(
            "{} MiB free on the leader's data dir filesystem, below its {} MiB reserve (--min-free-disk-mb plus the \
             current snapshot's size); nothing was written. Free space, then retry",
            free >> 20,
            need.div_ceil(1 << 20)
        )))
    }

    /// Bytes free and bytes needed, read again if the last reading is older than `REREAD_MS`.
    fn reading(&self) -> (u64, u64) {
        let now = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1;
        let at = self.read_at.load(Ordering::Relaxed);
        if at != 0 && now.saturating_sub(at) < REREAD_MS {
            return (self.free.load(Ordering::Relaxed), self.need.load(Ordering::Relaxed));
        }
        let free = available_bytes(&self.dir).unwrap_or_else(|e| {
            // The check only refuses early; a real failure still stops the node. So it fails
            // open rather than refuse every write over a figure it cannot read.
            tracing::warn!(error = %e, dir = %self.dir.display(), "cannot read the data dir's free space");
            u64::MAX
        });
        let need = self.reserve.saturating_add(std::fs::metadata(&self.snapshot).map_or(0, |m| m.len()));
        self.free.store(free, Ordering::Relaxed);
        self.need.store(need, Ordering::Relaxed);
        self.read_at.store(now, Ordering::Relaxed);
        (free, need)
    }

    /// The WAL's durable index, for [`failure`].
    pub fn wal(&self) -> DurableWatch {
        self.wal.clone()
    }

    pub fn sm_failed(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.sm_failed.clone()
    }
}

/// Whether a command is a client's. The node's own entries pass below the reserve: expiry and
/// retiring a removed node. So does an empty proposal, a new leader's confirmation of its term,
/// which strong reads wait for. (KVdb's expiry sweep is a client-shaped batch and waits.)
fn is_client_write(cmd: &Command) -> bool {
    !matches!(cmd, Command::Expire | Command::RetireNode { .. })
}

/// Bytes an unprivileged process may still write on the filesystem holding `path` (statvfs's
/// `f_bavail`: without the blocks reserved for root, which a node running as root could use,
/// so the figure errs low).
fn available_bytes(path: &Path) -> io::Result<u64> {
    let c_path = CString::new(path.as_os_str().as_bytes())?;
    let mut st = MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is a NUL-terminated string that outlives the call, and `st` points to
    // writable memory the size of a `statvfs`, which the call fills when it returns 0.
    if unsafe { libc::statvfs(c_path.as_ptr(), st.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialized `st`.
    let st = unsafe { st.assume_init() };
    // The field types differ between platforms (u32 on some 32-bit ones).
    #[allow(clippy::unnecessary_cast)]
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// Resolves with why this node must stop once Raft has stopped on an error (a storage error, or
/// a panic in its core) or a WAL fdatasync has failed; with `None` once Raft stopped normally.
pub async fn failure(
    raft: Raft,
    wal: DurableWatch,
    mut sm_failed: tokio::sync::watch::Receiver<Option<String>>,
) -> Option<String> {
    let mut metrics = raft.metrics();
    let raft_failed = async move {
        let m = metrics.wait_for(|m| m.running_state.is_err()).await.ok()?;
        match m.running_state.as_ref().err()? {
            Fatal::Stopped => None,
            fatal => Some(format!("Raft stopped on an error: {fatal}")),
        }
    };
    // openraft stops only once its core takes the state machine's error, and a core waiting
    // on a WAL that met the same full disk may never take it: watched directly.
    let sm_failed = async move {
        let why = sm_failed.wait_for(Option::is_some).await.ok()?.clone()?;
        Some(format!("applying to the state machine failed: {why}"))
    };
    tokio::select! {
        why = raft_failed => why,
        Some(why) = sm_failed => Some(why),
        () = wal.failure() => Some("a WAL fdatasync failed, so what this node holds in memory may not be on disk".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_free_space_of_an_existing_dir_is_read_and_of_a_missing_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(available_bytes(dir.path()).unwrap() > 0);
        assert!(available_bytes(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn only_the_nodes_own_entries_pass_below_the_reserve() {
        assert!(!is_client_write(&Command::Expire));
        assert!(!is_client_write(&Command::RetireNode { id: 3 }));
        assert!(is_client_write(&Command::Batch(Vec::new())));
    }
}
