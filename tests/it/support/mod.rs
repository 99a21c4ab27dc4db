//! Test harness shared by the integration tests: real `cairn serve` processes
//! (`cluster`), an HTTP client for the native API (`http`), certificates for the TLS tests
//! (`pki`), a tmpfs to fill (`tmpfs`), a simulated power cut of a data dir (`power_cut`),
//! deadline-bounded polling and small value helpers.
//!
//! Rules it enforces for every test (see /work/shared/STYLE.md, item 8):
//! - ports come from binding `127.0.0.1:0`, never from a fixed range;
//! - only the PIDs of children spawned here are ever signalled;
//! - every wait takes a deadline (`Instant`) and gives up at it, panicking with the last
//!   observation; sleeps only pace polling loops and are never assertions themselves;
//! - `Cluster`'s `Drop` kills and reaps every child, and prints the tail of each node's log
//!   when the test is panicking (set `CAIRN_TEST_KEEP=1` to keep the tempdir as well).
#![allow(dead_code)]

mod cluster;
mod http;
mod inproc;
mod pki;
mod power_cut;
mod process;
pub mod raw;
pub mod sse;
mod time;
mod tmpfs;

// Each test crate uses a different subset of the harness.
#[allow(unused_imports)]
pub use cluster::Cluster;
#[allow(unused_imports)]
pub use http::{encode_key, item_url, Http, Resp, REQUEST_TIMEOUT};
#[allow(unused_imports)]
pub use inproc::node_config;
#[allow(unused_imports)]
pub use pki::{served_certificate, write_atomically, Leaf, Pki};
#[allow(unused_imports)]
pub use power_cut::{power_cut, Cut};
#[allow(unused_imports)]
pub use process::{cairn_command, log_tail, read_log, run_cairn_once};
#[allow(unused_imports)]
pub use time::{parse_rfc3339_utc, unix_now};
#[allow(unused_imports)]
pub use tmpfs::Tmpfs;

use std::net::TcpListener;
use std::time::{Duration, Instant};

/// Pace of polling loops.
const POLL_EVERY: Duration = Duration::from_millis(100);

/// `Instant::now() + secs`: the usual way a test states its deadline.
pub fn deadline_in(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

/// A loopback port that was free a moment ago (the listener is dropped before returning).
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` distinct free loopback ports; all listeners are held until every port is chosen so
/// the OS cannot hand out the same port twice.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> =
        (0..n).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port")).collect();
    listeners.iter().map(|l| l.local_addr().expect("local_addr of ephemeral listener").port()).collect()
}

/// Runs `attempt` until it returns `Ok`, at most until `deadline`; panics at the deadline
/// with `what` and the last `Err` observation. An attempt still running at the deadline is
/// cut off, so the deadline is honoured even when a request hangs.
pub async fn until<T>(deadline: Instant, what: &str, mut attempt: impl AsyncFnMut() -> Result<T, String>) -> T {
    let mut last = String::from("no attempt completed");
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            panic!("deadline passed while waiting for {what}; last observation: {last}");
        }
        match tokio::time::timeout(remaining, attempt()).await {
            Ok(Ok(value)) => return value,
            Ok(Err(observation)) => last = observation,
            Err(_) => last = format!("an attempt was still running at the deadline (before: {last})"),
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(POLL_EVERY.min(remaining)).await;
    }
}
