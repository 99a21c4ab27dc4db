//! Client side of Cairn: an HTTP client with endpoint failover, and the `kv` / `cluster` CLI on top.
//!
//! # Layout
//! - `transport`: [`Client`], the request loop that fails over between endpoints and reports
//!   writes that may have been applied as [`ClientError::UnknownOutcome`].
//! - `response`: what one HTTP response (or transport failure) means: done, fail, or next endpoint.
//! - `types`: request/response shapes of the REST API.
//! - `error`: [`ClientError`] and the status → exit code table.
//! - `endpoints`: parsing `--endpoints` / `CAIRN_ENDPOINTS`.
//! - `watch`: `cairn watch`, which follows a change stream across endpoints.
//! - `cli`: clap subcommands and `run_kv` / `run_cluster`, which return exit codes so the binary
//!   stays the only place that calls `process::exit`.

mod cli;
mod endpoints;
mod error;
#[cfg(test)]
mod failover_tests;
mod response;
mod transport;
mod types;
mod watch;

pub use cli::{
    error_line, parse_json, run_backup, run_cluster, run_kv, run_token, ClientOpts, ClusterCmd, KvCmd, TokenCmd,
};
pub use endpoints::{parse_endpoint, parse_endpoints};
pub use error::{exit, exit_code_for_status, ClientError, FailedAttempt};
pub use transport::{Client, ClientConfig, DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT};
pub use types::{
    ClusterStatus, Consistency, Deleted, Health, IncrementRequest, Item, Member, PutRequest, ReadOptions, Reply,
    ReplyMeta, Role,
};
pub use watch::{run_watch, WatchArgs};
