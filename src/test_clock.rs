//! A test hook that shifts this node's wall clock, so the chaos harness can make one node's
//! clock jump forward or back, or drift, and check the TTL bounds that hold under such skew
//! (docs/testing.md, "Clock faults"). Like the storage failpoints it is compiled into every
//! build, because the tests run the binary `cargo test` builds, and is inert unless the process
//! starts with [`ENV`] set: the name says it is a test hook, no deployment file sets it, a
//! missing or unreadable file refuses to start, and an armed node says so at ERROR level.
//!
//! `CAIRN_TEST_CLOCK_FILE=<path>`: the file holds a signed offset in milliseconds (`3000`,
//! `-1500`, `+250`), which `protocol::now_ms` adds to the machine's clock. A background thread
//! reads the file every [`POLL`] and publishes the offset through an atomic, so the clock never
//! touches the file system; a change takes effect within one poll. Only the wall clock that
//! Cairn stamps and compares with is shifted: timers (heartbeats, elections, timeouts) run on
//! the monotonic clock and are untouched, as they are by a real clock step.
//!
//! Imports only `protocol` (where the offset lives, so the clock stays one function).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The variable that arms the test clock.
pub const ENV: &str = "CAIRN_TEST_CLOCK_FILE";
/// How often the offset file is read. The chaos harness allows for this delay (and more, for
/// a loaded machine) when it judges TTL bounds.
const POLL: Duration = Duration::from_millis(50);

static ARMED: AtomicBool = AtomicBool::new(false);

/// Arms the test clock when [`ENV`] is set; a no-op when it is unset. The first call in a
/// process decides (in-process tests start many nodes in one process, none with a test clock).
pub fn arm_from_env() -> Result<(), String> {
    let Some(path) = std::env::var_os(ENV) else { return Ok(()) };
    if ARMED.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    let path = PathBuf::from(path);
    let offset = read_offset(&path)?;
    crate::protocol::set_test_offset_ms(offset);
    tracing::error!(
        file = %path.display(),
        offset_ms = offset,
        "{ENV} is set: this node's wall clock is shifted by the offset in that file (a test hook; never set it in production)"
    );
    std::thread::Builder::new()
        .name("cairn-test-clock".into())
        .spawn(move || poll(&path, offset))
        .map_err(|e| format!("{ENV}: cannot start its thread: {e}"))?;
    Ok(())
}

/// Re-reads the file for the life of the process. A file that cannot be read or parsed keeps
/// the last offset (the harness replaces it atomically, so that means someone else wrote it).
fn poll(path: &Path, mut current: i64) {
    let mut last_error = String::new();
    loop {
        std::thread::sleep(POLL);
        match read_offset(path) {
            Ok(offset) if offset != current => {
                crate::protocol::set_test_offset_ms(offset);
                tracing::info!(offset_ms = offset, was_ms = current, "test clock offset changed");
                current = offset;
                last_error.clear();
            }
            Ok(_) => last_error.clear(),
            Err(e) if e != last_error => {
                tracing::warn!(error = %e, offset_ms = current, "test clock file unreadable; keeping the offset");
                last_error = e;
            }
            Err(_) => {}
        }
    }
}

fn read_offset(path: &Path) -> Result<i64, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{ENV}: read {}: {e}", path.display()))?;
    parse(&text).ok_or_else(|| format!("{ENV}: {} holds {text:?}, not an offset in milliseconds", path.display()))
}

fn parse(text: &str) -> Option<i64> {
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_is_a_signed_integer_of_milliseconds() {
        assert_eq!(parse("3000\n"), Some(3000));
        assert_eq!(parse(" -1500 "), Some(-1500));
        assert_eq!(parse("+250"), Some(250));
        for bad in ["", "1.5", "3s", "ten", "1 2"] {
            assert_eq!(parse(bad), None, "{bad:?} must be refused");
        }
    }
}
