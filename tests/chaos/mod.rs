//! The chaos harness: real `cairn serve` processes, generated workloads, a nemesis injecting
//! real faults, a recorded history and a linearizability checker. docs/testing.md explains
//! the tiers, the fault model and how to replay a seed.
//!
//! # Layout
//! - `entry`: the quick pass and configured runs (`CAIRN_CHAOS_*`), the final table.
//! - `plan`: seed → plan with proptest (schedule, workloads, node flags); shrinking.
//! - `scenarios`: named regression plans, one per bug found.
//! - `runner`: one run: namespace + re-exec, cluster, workload, nemesis, checks.
//! - `finale`: after healing: final strong reads, replica convergence.
//! - `netns`: the private network namespace and its iptables rules; `proc`: external tools.
//! - `cluster`: the `cairn serve` children on the shared harness (`tests/it/support`), and
//!   the status views the nemesis and checks read.
//! - `client`: HTTP and the ok / fail / info rules; `workload`: the client workers.
//! - `nemesis`: fault steps and their timeline; `reconfig`: the membership fault (a node
//!   joins, a voter is removed); `skew`: the clock fault and the skew the TTL checks allow.
//! - `history`: the JSON Lines history; `checker`: the Wing–Gong/Lowe search and models;
//!   `lin`: per-key linearizability of a history; `checks`: the other invariants.
//! - `watch`: the watch workload's batch writers, watchers that resume on random nodes, and
//!   the reference history; `watchcheck`: the watch guarantees (ordered, unique, atomic, …).
//! - `lock`: the lock workload's contending clients (leases, the lock, fenced writes, holders
//!   paused past their lease); `lockcheck`: its checks (token order, fencing, final read).
//! - `report`: counts, availability figures, summary tables.

pub mod checker;
pub mod checks;
pub mod client;
pub mod cluster;
pub mod entry;
pub mod finale;
pub mod history;
pub mod lin;
pub mod lock;
pub mod lockcheck;
pub mod nemesis;
pub mod netns;
pub mod plan;
pub mod proc;
pub mod reconfig;
pub mod report;
pub mod runner;
pub mod scenarios;
pub mod skew;
pub mod watch;
pub mod watchcheck;
pub mod workload;

#[cfg(test)]
mod checker_tests;
#[cfg(test)]
mod history_tests;
#[cfg(test)]
mod lock_tests;
#[cfg(test)]
mod watch_tests;
