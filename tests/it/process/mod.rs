//! The process tier: real `cairn` processes for what only they show: kills and restarts,
//! SIGTERM, the CLI and its exit codes, disk faults (a full disk, failed storage calls, a torn
//! WAL tail), TLS files (and their reload on SIGHUP) and environment variables, the test clock,
//! membership changes with crashed members, the process-wide metrics, strong reads through
//! stalled quorum rounds, and a whole-cluster power loss (a simulated one: unsynced bytes are
//! cut away).

mod backup_restore;
mod bench_cli;
mod cluster_formation;
mod cluster_nodes;
mod compaction;
mod config_file;
mod coord_cli;
mod disk_faults;
mod environment;
mod failover;
mod graceful_shutdown;
mod kv_cli;
mod membership;
mod observability;
mod power_loss;
mod startup;
mod strong_reads;
mod test_clock;
mod tls;
mod tls_reload;
mod watch;
