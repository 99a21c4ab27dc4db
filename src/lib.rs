//! Cairn: a replicated JSON key/value store.
//!
//! # Layout
//! - `server`: runs a node until shutdown (the binary's `serve` calls this)
//! - `tls`: PEM loading and the rustls configurations (server, peer client, CLI client)
//! - `listener`: the HTTPS listener: TLS handshakes off the accept loop, per-connection info
//! - `node`: storage + Raft wired together; the core write/read/status operations
//! - `membership`: adding/removing nodes, retired ids, the `--join` loop
//! - `api/`: the HTTP edge (axum): validation, error table, forwarding, Raft RPC endpoints
//! - `net/`: outgoing Raft RPCs (reqwest) and their wire format
//! - `wal/`: the Raft log and vote in a segmented, fsync'd write-ahead log
//! - `sm/`: the state machine in sled, deterministic apply, snapshot files
//! - `command`: the replicated command model
//! - `codec`, `frame`: the bincode codec and the length+CRC record framing
//! - `batcher`: packs concurrent writes into one Raft entry on the leader
//! - `read_barrier`: shares ReadIndex rounds between concurrent strong reads
//! - `ttl`: the leader's expiry ticker
//! - `metrics`: process-wide counters and histograms for `/metrics`
//! - `backup`: seeding a new node's data dir from a backup file
//! - `client/`: the HTTP client and the `cairn kv` / `cairn cluster` CLI
//! - `bench/`: `cairn bench`, the load generator (also drives etcd for comparisons)

pub mod api;
pub mod backup;
pub mod batcher;
pub mod bench;
pub mod client;
pub mod codec;
pub mod command;
pub mod config;
pub mod config_file;
pub mod error;
pub mod frame;
pub mod listener;
pub mod membership;
pub mod metrics;
pub mod net;
pub mod node;
pub mod read_barrier;
pub mod server;
pub mod sm;
pub mod tls;
pub mod ttl;
pub mod types;
pub mod wal;
