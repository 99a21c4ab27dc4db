//! Cairn: a replicated JSON key/value store.
//!
//! # Layout
//! Layers point one way: each module below imports only modules listed above it
//! (`tests/it/layering.rs` fails on a cycle between top-level modules).
//! - `protocol`: header names and the wall clock; imports nothing from the crate
//! - `failpoint`: test hooks that fail chosen storage calls, inert unless `CAIRN_TEST_FAILPOINTS`
//!   is set; imports nothing from the crate
//! - `test_clock`: a test hook that shifts the node's wall clock by an offset read from a file,
//!   inert unless `CAIRN_TEST_CLOCK_FILE` is set; imports only `protocol`
//! - `fsync`: the single owner of fsync and fdatasync (files and directories), with the test
//!   ledger of what was made durable, inert unless `CAIRN_TEST_POWERLOSS_LEDGER` is set;
//!   imports nothing from the crate
//! - `config/`: `cairn serve`'s flags and defaults (`args`), the TOML file (`file`), and the
//!   validated [`config::NodeConfig`]
//! - `codec`, `frame`: the bincode codec and the length+CRC record framing
//! - `model/`: the replicated command model and openraft's type configuration
//! - `metrics`: process-wide counters and histograms for `/metrics`
//! - `wal/`: the Raft log and vote in a segmented, fsync'd write-ahead log
//! - `sm/`: the state machine in sled, deterministic apply, snapshot files
//! - `http1`: Cairn's own HTTP/1.1 keep-alive client (peer RPCs and `cairn bench`)
//! - `net/`: outgoing Raft RPCs over `http1`, their wire format, the forwarding client
//! - `tls/`: PEM loading and the rustls configurations (server, peer client, CLI client); the
//!   node's certificate, key and peer CA reloaded on SIGHUP or a change of the files
//! - `node/`: the core: storage and Raft wired together, write batching, strong reads,
//!   membership, the TTL ticker, the core's error classes
//! - `listener`: accepting plain or TLS connections within `--max-connections`
//! - `connection`: one HTTP/1.1 connection with its header, body and idle timeouts
//! - `api/`: the HTTP edge (axum): parsing, the error table, native routes, dialects,
//!   forwarding, Raft RPC endpoints
//! - `server`: runs a node until shutdown (the binary's `serve` calls this)
//! - `backup`: checking backup files and seeding a new node's data dir from one
//! - `client/`: the HTTP client and the `cairn kv` / `cairn cluster` CLI
//! - `bench/`: `cairn bench`, the load generator (also drives etcd for comparisons)
//!
//! Only what the binary and the tests use is public; everything else is `pub(crate)`, so
//! the compiler reports dead code.

pub(crate) mod api;
pub mod backup;
pub mod bench;
pub(crate) mod cleanup;
pub mod client;
pub(crate) mod codec;
pub mod config;
pub(crate) mod connection;
pub(crate) mod failpoint;
pub(crate) mod frame;
pub(crate) mod fsync;
pub(crate) mod http1;
pub(crate) mod listener;
pub(crate) mod metrics;
pub(crate) mod model;
pub(crate) mod net;
pub(crate) mod node;
pub(crate) mod protocol;
pub mod server;
pub(crate) mod sm;
pub(crate) mod test_clock;
pub(crate) mod tls;
pub(crate) mod wal;
