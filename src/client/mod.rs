//! Client side of Cairn: an HTTP client with endpoint failover, and the `kv` / `cluster` CLI on top.
//!
//! [`Client`] is the library: give it every node's URL and it sends each call to the first that
//! serves it. A read moves on to the next node after a connection error or a 503; a write is
//! re-sent only when it provably never arrived, and otherwise fails as
//! [`ClientError::UnknownOutcome`], never as a plain failure.
//!
//! ```
//! use cairn::client::{Client, Consistency, PutRequest, ReadOptions, ScanOptions};
//! use serde_json::json;
//!
//! # #[derive(clap::Parser)]
//! # struct Serve {
//! #     #[command(flatten)]
//! #     args: cairn::config::ServeArgs,
//! # }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # // A one-node cluster on a free port, for the example to run against.
//! # let dir = tempfile::tempdir()?;
//! # let serve: Serve = clap::Parser::try_parse_from(["serve", "--data-dir", dir.path().to_str().unwrap()])?;
//! # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! # let url = format!("http://{}", listener.local_addr()?);
//! # tokio::spawn(cairn::server::serve(listener, serve.args.node_config()?, std::future::pending()));
//! # let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
//! # let probe = Client::new(vec![url.parse()?])?;
//! # while probe.cluster_status().await.map_or(true, |s| s.data.leader.is_none()) {
//! #     assert!(std::time::Instant::now() < deadline, "no leader");
//! #     tokio::time::sleep(std::time::Duration::from_millis(50)).await;
//! # }
//! // Every node of the cluster; here one, at `url`.
//! let client = Client::new(vec![url.parse()?])?;
//!
//! let written = client.put("user:1", &PutRequest::new(json!({"name": "Ada"}))).await?;
//! let mut cas = PutRequest::new(json!({"name": "Ada", "langs": ["en"]}));
//! cas.if_version = Some(written.data.version.clone());
//! client.put("user:1", &cas).await?;
//!
//! let read = client.get("user:1", ReadOptions { consistency: Some(Consistency::Strong), ..Default::default() }).await?;
//! assert_eq!(read.data.value["langs"][0], "en");
//!
//! let page = client.scan("user:", None, ScanOptions { values: true, ..Default::default() }).await?;
//! assert_eq!(page.data.items.len(), 1);
//! assert_eq!(page.data.next_cursor, None);
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//! - `transport`: [`Client`], the request loop that fails over between endpoints and reports
//!   writes that may have been applied as [`ClientError::UnknownOutcome`].
//! - `response`: what one HTTP response (or transport failure) means: done, fail, or next endpoint.
//! - `types`: request/response shapes of the REST API.
//! - `error`: [`ClientError`] and the status → exit code table.
//! - `endpoints`: parsing `--endpoints` / `CAIRN_ENDPOINTS`.
//! - `output`: `-o text|json|jsonl` of `kv get` and `kv ls`.
//! - `watch`: `cairn watch`, which follows a change stream across endpoints.
//! - `cli`: clap subcommands and `run_kv` / `run_cluster`, which return exit codes so the binary
//!   stays the only place that calls `process::exit`.

mod cli;
mod coord;
mod coord_cli;
mod endpoints;
mod error;
#[cfg(test)]
mod failover_tests;
mod output;
mod response;
mod transport;
mod types;
mod watch;

pub use cli::{
    error_line, parse_json, run_backup, run_cluster, run_kv, run_token, ClientOpts, ClusterCmd, KvCmd, TokenCmd,
};
pub use coord_cli::{run_elect, run_lease, run_lock, ElectArgs, LeaseCmd, LockArgs};
pub use endpoints::{parse_endpoint, parse_endpoints};
pub use error::{exit, exit_code_for_status, ClientError, FailedAttempt};
pub use output::Output;
pub use transport::{Client, ClientConfig, DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT};
pub use types::{
    BatchResults, ClusterStatus, Consistency, Deleted, Health, IncrementRequest, Item, Listed, Member, Page,
    PutRequest, ReadOptions, Reply, ReplyMeta, Role, ScanOptions,
};
pub use watch::{run_watch, WatchArgs};
