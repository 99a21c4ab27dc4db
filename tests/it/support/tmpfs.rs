//! A size-limited tmpfs a test mounts itself, to run a node out of disk space, and the ballast
//! file that fills it. Mounting needs root with CAP_SYS_ADMIN. Where that is missing the test is
//! skipped loudly: the SKIPPED line goes straight to the process's stderr, past libtest's
//! capture, because a skip must not look like a pass. With `CAIRN_TEST_REQUIRE_MOUNT` set (CI
//! sets it, `.ci/run`) a failure to mount fails the test instead.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Set (to anything) to make a failure to mount a test failure rather than a skip.
const REQUIRE: &str = "CAIRN_TEST_REQUIRE_MOUNT";

/// A mounted tmpfs; unmounted when dropped.
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `mib` MiB at `path` (created if missing). `None` when this machine
    /// cannot mount one: `test` has been reported SKIPPED and should return.
    pub fn mount_or_skip(path: &Path, mib: u64, test: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        let why =
            match run(Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"]).arg(path)) {
                Ok(()) => return Some(Tmpfs { path: path.to_path_buf() }),
                Err(why) => why,
            };
        if std::env::var_os(REQUIRE).is_some() {
            panic!("{test}: cannot mount a tmpfs, and {REQUIRE} is set: {why}");
        }
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: cannot mount a tmpfs ({why}); it needs root with CAP_SYS_ADMIN. Set {REQUIRE}=1 to make this \
             a failure."
        );
        None
    }

    /// Writes a ballast file that leaves about `free_mib` MiB free on the tmpfs; delete the
    /// returned path to give the space back.
    pub fn fill_leaving(&self, free_mib: u64) -> PathBuf {
        let free = self.free_bytes();
        let size = free.checked_sub(free_mib << 20).unwrap_or_else(|| {
            panic!("only {} MiB free on {}, cannot leave {free_mib} MiB", free >> 20, self.path.display())
        });
        let ballast = self.path.join("ballast");
        let mut file = std::fs::File::create(&ballast).expect("create the ballast file");
        let chunk = vec![0xa5u8; 1 << 20];
        let mut left = usize::try_from(size).expect("ballast size fits usize");
        while left > 0 {
            let n = left.min(chunk.len());
            file.write_all(&chunk[..n]).expect("write the ballast file");
            left -= n;
        }
        ballast
    }

    /// Bytes free on the tmpfs, as `df` reports them.
    pub fn free_bytes(&self) -> u64 {
        let out = Command::new("df").args(["--output=avail", "-B1"]).arg(&self.path).output().expect("run df");
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines().nth(1).and_then(|l| l.trim().parse().ok()).unwrap_or_else(|| panic!("cannot parse df: {text}"))
    }
}

impl Drop for Tmpfs {
    /// A lazy unmount: the node may still hold files open here (the cluster is dropped after).
    fn drop(&mut self) {
        if let Err(why) = run(Command::new("umount").arg("-l").arg(&self.path)) {
            eprintln!("could not unmount the test tmpfs at {}: {why}", self.path.display());
        }
    }
}

/// Runs a short command to completion; `Err` says why it did not succeed.
fn run(cmd: &mut Command) -> Result<(), String> {
    match cmd.output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr).trim().replace('\n', " ");
            Err(format!("{cmd:?}: {}: {stderr}", out.status))
        }
        Err(e) => Err(format!("{cmd:?}: {e}")),
    }
}
