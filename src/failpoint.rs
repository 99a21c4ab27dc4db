//! Test hooks that make chosen storage calls fail on purpose, so the process-tier tests can show
//! what a node does after a failed WAL write, a failed WAL fdatasync or a failed state machine
//! write (docs/testing.md, "Storage failpoints"). They are compiled into every build, because
//! the integration tests run the binary `cargo test` builds, but are inert unless the process
//! starts with [`ENV`] set, which is hard to do by accident: the name says it is a test hook, no
//! deployment file sets it, every entry must name a known point (a typo refuses to start instead
//! of arming nothing), and an armed node says so at ERROR level when it starts.
//!
//! Syntax: `CAIRN_TEST_FAILPOINTS=<point>@<n>[,<point>@<n>…]`, points `wal-write`, `wal-fsync`
//! and `sm-write`. The first `n` calls at a point succeed, call `n + 1` fails, and later calls
//! succeed again: the failure is a single one, because a node must stop at it rather than find
//! out that a retry works (PostgreSQL's "fsyncgate": a retried fsync can succeed after the kernel
//! dropped the pages that failed).
//!
//! A leaf of the crate: imports nothing from it.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The variable that arms failpoints.
pub const ENV: &str = "CAIRN_TEST_FAILPOINTS";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    /// Writing a group of entries to the active WAL segment (fails part-way, as a full disk does).
    WalWrite,
    /// fdatasync of a WAL segment.
    WalFsync,
    /// Writing an apply's changes to sled.
    SmWrite,
}

const POINTS: [Point; 3] = [Point::WalWrite, Point::WalFsync, Point::SmWrite];

impl Point {
    fn name(self) -> &'static str {
        match self {
            Point::WalWrite => "wal-write",
            Point::WalFsync => "wal-fsync",
            Point::SmWrite => "sm-write",
        }
    }

    /// What a real failure at this point most likely returns.
    fn error(self) -> io::Error {
        let errno = match self {
            Point::WalWrite => libc::ENOSPC,
            Point::WalFsync | Point::SmWrite => libc::EIO,
        };
        io::Error::from_raw_os_error(errno)
    }
}

/// Per point (indexed by `Point as usize`): the call that fails, and the calls made so far.
struct Armed {
    fail_at: [Option<u64>; POINTS.len()],
    calls: [AtomicU64; POINTS.len()],
}

static ARMED: OnceLock<Armed> = OnceLock::new();

/// Arms the failpoints [`ENV`] names; a no-op when it is unset. The first call in a process
/// decides (in-process tests start many nodes in one process, none with failpoints).
pub fn arm_from_env() -> Result<(), String> {
    let Some(spec) = std::env::var_os(ENV) else { return Ok(()) };
    let spec = spec.into_string().map_err(|_| format!("{ENV} is not UTF-8"))?;
    let fail_at = parse(&spec)?;
    tracing::error!(%spec, "{ENV} is set: this node will fail storage calls on purpose (a test hook; never set it in production)");
    let _ = ARMED.set(Armed { fail_at, calls: Default::default() });
    Ok(())
}

/// `Err` when `point` is armed and this is the call that fails.
pub fn hit(point: Point) -> io::Result<()> {
    let Some(armed) = ARMED.get() else { return Ok(()) };
    let Some(fail_at) = armed.fail_at[point as usize] else { return Ok(()) };
    if armed.calls[point as usize].fetch_add(1, Ordering::Relaxed) != fail_at {
        return Ok(());
    }
    let e = point.error();
    tracing::error!(point = point.name(), error = %e, "failpoint fired");
    Err(e)
}

fn parse(spec: &str) -> Result<[Option<u64>; POINTS.len()], String> {
    let mut fail_at = [None; POINTS.len()];
    for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let bad = || format!("{ENV}: `{entry}` is not <point>@<calls that succeed first>");
        let (name, n) = entry.split_once('@').ok_or_else(bad)?;
        let n: u64 = n.parse().map_err(|_| bad())?;
        let point = POINTS.iter().find(|p| p.name() == name).ok_or_else(|| {
            let known: Vec<&str> = POINTS.iter().map(|p| p.name()).collect();
            format!("{ENV}: unknown failpoint `{name}` (known: {})", known.join(", "))
        })?;
        fail_at[*point as usize] = Some(n);
    }
    if fail_at.iter().all(Option::is_none) {
        return Err(format!("{ENV} is set but names no failpoint"));
    }
    Ok(fail_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_arms_each_named_point_after_its_count() {
        let got = parse("wal-fsync@20, sm-write@0").unwrap();
        assert_eq!(got[Point::WalFsync as usize], Some(20));
        assert_eq!(got[Point::SmWrite as usize], Some(0));
        assert_eq!(got[Point::WalWrite as usize], None);
    }

    #[test]
    fn a_misspelt_or_malformed_spec_is_refused_not_ignored() {
        for spec in ["wal-fsnyc@3", "wal-fsync", "wal-fsync@x", "", " , "] {
            assert!(parse(spec).is_err(), "{spec:?} must be refused");
        }
    }
}
