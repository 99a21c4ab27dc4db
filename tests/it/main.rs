//! Cairn's integration tests: one test binary in two tiers.
//!
//! - `inproc`: the API's semantics (the native API, tokens and namespaces, every dialect, bad
//!   input, follower reads, TTL) against nodes started inside this process by
//!   `cairn::server::serve` on listeners bound to port 0. Same router, same config validation
//!   as the binary; no process start-up per test.
//! - `process`: what only real processes show: crashes and restarts, SIGTERM, the CLI, TLS
//!   files, membership changes with kills, metrics (process-wide counters).
//! - `layering`: the module graph of `src/` has no cycle between top-level modules.
//!
//! The chaos harness is the other test binary (`tests/chaos.rs`); it shares `support/`.
//! See docs/testing.md.

mod inproc;
mod layering;
mod process;
mod support;
