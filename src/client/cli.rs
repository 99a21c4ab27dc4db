//! The `cairn kv ...` / `cairn cluster ...` subcommands: clap types, and running them to an exit code.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use reqwest::Url;
use serde::Serialize;
use serde_json::{Number, Value};
use tokio::io::AsyncReadExt;

use super::endpoints::parse_endpoint;
use super::error::{exit, ClientError};
use super::output::{self, Listing, Output};
use super::transport::{Client, ClientConfig, DEFAULT_CONNECT_TIMEOUT};
use super::types::{Consistency, IncrementRequest, PutRequest, ReadOptions, Reply, ScanOptions};

/// Options shared by every client subcommand. Global, so they may appear before or after the
/// subcommand (`cairn kv --endpoints X get k` and `cairn kv get k --endpoints X`).
#[derive(Debug, Clone, Args)]
pub struct ClientOpts {
    /// Server endpoints, comma separated, tried in order (failover on connection errors and 503)
    #[arg(
        long,
        env = "CAIRN_ENDPOINTS",
        value_name = "URL,...",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:7001",
        value_parser = parse_endpoint,
        global = true
    )]
    pub endpoints: Vec<Url>,

    /// Per-request timeout in milliseconds; a write that times out has an unknown outcome
    #[arg(
        long,
        env = "CAIRN_TIMEOUT_MS",
        value_name = "MS",
        default_value_t = 15_000,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub timeout_ms: u64,

    /// Access token (or the bootstrap admin token), sent as `Authorization: Bearer`
    #[arg(long, env = "CAIRN_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,

    /// Namespace to act on (admin tokens only; a namespace token is bound to its own)
    #[arg(long, env = "CAIRN_NAMESPACE", global = true)]
    pub namespace: Option<String>,

    /// PEM CA certificate to trust for https:// endpoints [default: the system's trust roots]
    #[arg(long, env = "CAIRN_CACERT", value_name = "FILE", global = true)]
    pub cacert: Option<PathBuf>,
}

impl ClientOpts {
    pub fn client(&self) -> Result<Client, ClientError> {
        let request_timeout = Duration::from_millis(self.timeout_ms);
        Client::with_config(ClientConfig {
            endpoints: self.endpoints.clone(),
            // Never longer than the whole request, or the request timeout would fire during the
            // connect and be mistaken for a request that may have been sent.
            connect_timeout: DEFAULT_CONNECT_TIMEOUT.min(request_timeout),
            request_timeout,
            token: self.token.clone(),
            namespace: self.namespace.clone(),
            cacert: self.cacert.clone(),
        })
    }
}

#[derive(Debug, Clone, Subcommand)]
pub enum KvCmd {
    /// Store a JSON value under KEY
    Put {
        key: String,
        /// The value as JSON text (quote strings: '"hello"'); `-` reads it from stdin
        #[arg(value_name = "JSON", allow_negative_numbers = true)]
        json: String,
        /// Expire the key after this many seconds (1..=31536000)
        #[arg(long, value_name = "SECONDS")]
        ttl: Option<u64>,
        /// Fail with key_exists if the key is present
        #[arg(long)]
        if_not_exists: bool,
        /// Fail with version_mismatch unless the key is at this version
        #[arg(long, value_name = "VERSION")]
        if_version: Option<String>,
        /// Fail with value_mismatch unless the current value equals this JSON
        #[arg(long, value_name = "JSON", allow_negative_numbers = true)]
        if_value: Option<String>,
    },
    /// Read KEY (linearizable unless --stale)
    Get {
        key: String,
        /// Accept whatever the answering node has applied (may lag the leader)
        #[arg(long)]
        stale: bool,
        /// Wait until the answering node has applied at least this version
        #[arg(long, value_name = "VERSION")]
        min_version: Option<u64>,
        /// How to print it: the value alone (text), the item (json), or the item on one line
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Json)]
        output: Output,
    },
    /// List the keys under PREFIX in order, following every page (linearizable unless --stale)
    Ls {
        /// Only keys that start with it (default: every key of the namespace)
        #[arg(default_value = "")]
        prefix: String,
        /// Include each value
        #[arg(long)]
        values: bool,
        /// List at most N keys
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        limit: Option<u64>,
        /// Accept whatever the answering node has applied (each page may lag the leader)
        #[arg(long)]
        stale: bool,
        /// How to print it: a key per line (text), one JSON array (json), or an item per line
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Apply a batch of ops atomically: FILE (or `-` for stdin) holds `{"ops": [...]}` or the
    /// bare array, each op as in the API (`{"op": "set", "key": "a", "value": 1}`)
    Batch {
        #[arg(value_name = "FILE")]
        file: String,
    },
    /// Delete KEY
    Del {
        key: String,
        /// Fail with version_mismatch unless the key is at this version
        #[arg(long, value_name = "VERSION")]
        if_version: Option<String>,
    },
    /// Add a number to KEY (a missing key starts at 0)
    Incr {
        key: String,
        /// Amount to add, integer or decimal (default 1)
        #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = parse_number)]
        by: Option<Number>,
        /// TTL in seconds, applied only if this creates the key
        #[arg(long, value_name = "SECONDS")]
        ttl: Option<u64>,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum ClusterCmd {
    /// Show the answering node's view: role, term, leader, members, indexes
    Status,
    /// Admit node ID at ADDR (host:port): learner first, voter once caught up
    Add { id: u64, addr: String },
    /// Remove node ID; its id is retired and never admitted again
    Remove { id: u64 },
}

#[derive(Debug, Clone, Subcommand)]
pub enum TokenCmd {
    /// Create a token for NAMESPACE; the secret is printed once
    Create {
        namespace: String,
        /// Comma-separated: read, write, admin
        #[arg(long, value_delimiter = ',', default_value = "read,write")]
        permissions: Vec<String>,
    },
    /// List tokens (never their secrets)
    List,
    /// Revoke the token with this id
    Revoke { id: String },
}

/// Runs a `token` subcommand; returns the process exit code.
pub async fn run_token(opts: &ClientOpts, cmd: TokenCmd) -> i32 {
    let outcome = match opts.client() {
        Ok(client) => match cmd {
            TokenCmd::Create { namespace, permissions } => {
                client.create_token(&namespace, &permissions).await.and_then(pretty)
            }
            TokenCmd::List => client.list_tokens().await.and_then(pretty),
            TokenCmd::Revoke { id } => client.revoke_token(&id).await.and_then(pretty),
        },
        Err(err) => Err(err),
    };
    finish(outcome)
}

/// Runs a `kv` subcommand; returns the process exit code.
pub async fn run_kv(opts: &ClientOpts, cmd: KvCmd) -> i32 {
    let outcome = match opts.client() {
        // A listing prints as its pages arrive, not as one text at the end.
        Ok(client) => match cmd {
            KvCmd::Ls { prefix, values, limit, stale, output } => {
                let out = Listing::new(std::io::stdout().lock(), output);
                return match list(&client, &prefix, values, limit, stale, out).await {
                    Ok(_) => exit::OK,
                    Err(err) => {
                        eprintln!("{}", error_line(&err));
                        err.exit_code()
                    }
                };
            }
            cmd => kv(&client, cmd).await,
        },
        Err(err) => Err(err),
    };
    finish(outcome)
}

/// `cairn kv ls`: follows `nextCursor` from the first page to the last (or to `limit` keys),
/// like `etcdctl get --prefix`. Each page is its own read; a key is listed once.
async fn list<W: std::io::Write>(
    client: &Client,
    prefix: &str,
    values: bool,
    limit: Option<u64>,
    stale: bool,
    mut out: Listing<W>,
) -> Result<u64, ClientError> {
    let printing = |e: std::io::Error| ClientError::InvalidInput { code: "output", message: e.to_string() };
    let consistency = Some(if stale { Consistency::Stale } else { Consistency::Strong });
    let (mut cursor, mut listed) = (None::<String>, 0u64);
    loop {
        let left = limit.map_or(u64::MAX, |l| l - listed);
        let page_size = u32::try_from(left.min(1000)).expect("at most 1000");
        let options = ScanOptions { limit: Some(page_size), values, consistency, min_version: None };
        let page = client.scan(prefix, cursor.as_deref(), options).await?.data;
        for item in &page.items {
            out.push(item).map_err(printing)?;
        }
        listed += page.items.len() as u64;
        cursor = page.next_cursor;
        if cursor.is_none() || limit.is_some_and(|l| listed >= l) {
            return out.finish().map_err(printing);
        }
    }
}

/// Runs a `cluster` subcommand; returns the process exit code.
pub async fn run_cluster(opts: &ClientOpts, cmd: ClusterCmd) -> i32 {
    let outcome = match opts.client() {
        Ok(client) => match cmd {
            ClusterCmd::Status => client.cluster_status().await.and_then(pretty),
            ClusterCmd::Add { id, addr } => client.add_member(id, &addr).await.and_then(pretty),
            ClusterCmd::Remove { id } => client.remove_member(id).await.and_then(pretty),
        },
        Err(err) => Err(err),
    };
    finish(outcome)
}

async fn kv(client: &Client, cmd: KvCmd) -> Result<String, ClientError> {
    match cmd {
        KvCmd::Put { key, json, ttl, if_not_exists, if_version, if_value } => {
            let request = PutRequest {
                value: value_arg(&json).await?,
                ttl_seconds: ttl,
                if_not_exists,
                if_version,
                if_value: if_value.as_deref().map(parse_json).transpose()?,
            };
            pretty(client.put(&key, &request).await?)
        }
        KvCmd::Get { key, stale, min_version, output } => {
            // Explicit even when strong: a follower's default is stale, and the CLI promises
            // linearizable reads unless told otherwise.
            let consistency = if stale { Consistency::Stale } else { Consistency::Strong };
            let options = ReadOptions { consistency: Some(consistency), min_version };
            Ok(output::item(&client.get(&key, options).await?.data, output))
        }
        KvCmd::Batch { file } => {
            let not_a_batch = || ClientError::InvalidInput {
                code: "invalid_batch",
                message: "a batch file holds {\"ops\": [...]} or the bare array of ops".into(),
            };
            let ops = match parse_json(&text_arg(&file).await?)? {
                Value::Array(ops) => ops,
                Value::Object(mut body) if body.len() == 1 => match body.remove("ops") {
                    Some(Value::Array(ops)) => ops,
                    _ => return Err(not_a_batch()),
                },
                _ => return Err(not_a_batch()),
            };
            pretty(client.batch(&ops).await?)
        }
        KvCmd::Ls { .. } => unreachable!("run_kv lists as pages arrive"),
        KvCmd::Del { key, if_version } => pretty(client.delete(&key, if_version.as_deref()).await?),
        KvCmd::Incr { key, by, ttl } => {
            let request = IncrementRequest { delta: by, ttl_seconds: ttl };
            pretty(client.increment(&key, &request).await?)
        }
    }
}

/// Prints the result where the contract says and picks the exit code.
pub(super) fn finish(outcome: Result<String, ClientError>) -> i32 {
    match outcome {
        Ok(text) => {
            println!("{text}");
            exit::OK
        }
        Err(err) => {
            eprintln!("{}", error_line(&err));
            err.exit_code()
        }
    }
}

/// `error: <code>: <message>`, the one error format of the CLI.
pub fn error_line(err: &ClientError) -> String {
    format!("error: {}: {}", err.code(), err.message())
}

pub(super) fn pretty<T: Serialize>(reply: Reply<T>) -> Result<String, ClientError> {
    serde_json::to_string_pretty(&reply.data).map_err(|e| ClientError::BadResponse {
        endpoint: reply.meta.endpoint.to_string(),
        status: reply.meta.status,
        detail: e.to_string(),
    })
}

/// The JSON value argument of `put`; `-` means stdin so large or awkward values need no quoting.
async fn value_arg(arg: &str) -> Result<Value, ClientError> {
    if arg != "-" {
        return parse_json(arg);
    }
    parse_json(&text_arg("-").await?)
}

/// The text of a FILE argument, `-` being stdin.
async fn text_arg(path: &str) -> Result<String, ClientError> {
    let unreadable = |e: std::io::Error| ClientError::InvalidInput {
        code: "invalid_input",
        message: format!("cannot read {}: {e}", if path == "-" { "stdin" } else { path }),
    };
    if path != "-" {
        return tokio::fs::read_to_string(path).await.map_err(unreadable);
    }
    let mut text = String::new();
    tokio::io::stdin().read_to_string(&mut text).await.map_err(unreadable)?;
    Ok(text)
}

/// Strict JSON: a bare word is an error rather than a guessed string, so `put k 01` or
/// `put k tru` cannot silently store something other than what was meant.
pub fn parse_json(text: &str) -> Result<Value, ClientError> {
    serde_json::from_str(text).map_err(|e| ClientError::InvalidInput {
        code: "invalid_json",
        message: format!("value is not valid JSON ({e}); quote strings, e.g. '\"hello\"'"),
    })
}

fn parse_number(text: &str) -> Result<Number, String> {
    match serde_json::from_str::<Value>(text.trim()) {
        Ok(Value::Number(n)) => Ok(n),
        _ => Err(format!("{text:?} is not a number")),
    }
}

/// `cairn backup --out FILE`: downloads a fresh snapshot from the leader, checks every frame,
/// and only then moves it to FILE, so a broken transfer never leaves a plausible backup.
pub async fn run_backup(opts: &ClientOpts, out: &std::path::Path) -> i32 {
    let tmp = out.with_extension("partial");
    let outcome = async {
        let client = opts.client()?;
        let bytes = client.download_snapshot(&tmp).await?;
        let index = crate::backup::validate(&tmp).map_err(|e| ClientError::BadResponse {
            endpoint: "backup".into(),
            status: 200,
            detail: format!("the downloaded snapshot is not valid: {e}"),
        })?;
        std::fs::rename(&tmp, out)
            .map_err(|e| ClientError::InvalidInput { code: "io_error", message: format!("{}: {e}", out.display()) })?;
        Ok(format!("{{\"file\": {:?}, \"bytes\": {bytes}, \"lastIndex\": {index}}}", out.display().to_string()))
    }
    .await;
    if outcome.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    finish(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Kv {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        cmd: KvCmd,
    }

    fn parse(args: &[&str]) -> Result<Kv, clap::Error> {
        Kv::try_parse_from(std::iter::once("kv").chain(args.iter().copied()))
    }

    #[test]
    fn endpoints_default_to_local_node() {
        let cli = parse(&["get", "k"]).unwrap();
        let eps: Vec<&str> = cli.opts.endpoints.iter().map(Url::as_str).collect();
        // CAIRN_ENDPOINTS in the test environment would change this; it is not set by the suite.
        if std::env::var_os("CAIRN_ENDPOINTS").is_none() {
            assert_eq!(eps, ["http://127.0.0.1:7001/"]);
        }
    }

    #[test]
    fn endpoints_flag_is_comma_separated_and_global() {
        let before = parse(&["--endpoints", "a:1,b:2", "get", "k"]).unwrap();
        let after = parse(&["get", "k", "--endpoints", "a:1,b:2"]).unwrap();
        for cli in [before, after] {
            let eps: Vec<&str> = cli.opts.endpoints.iter().map(Url::as_str).collect();
            assert_eq!(eps, ["http://a:1/", "http://b:2/"]);
        }
    }

    #[test]
    fn bad_endpoint_is_a_usage_error() {
        let err = parse(&["--endpoints", "ftp://x:1", "get", "k"]).unwrap_err();
        assert_eq!(err.exit_code(), exit::USAGE);
    }

    #[test]
    fn https_endpoints_and_cacert_parse() {
        let cli = parse(&["get", "k", "--endpoints", "https://a:1", "--cacert", "/tmp/ca.pem"]).unwrap();
        assert_eq!(cli.opts.endpoints[0].scheme(), "https");
        assert_eq!(cli.opts.cacert.as_deref(), Some(std::path::Path::new("/tmp/ca.pem")));
    }

    #[test]
    fn an_unreadable_cacert_is_a_usage_error_naming_the_file() {
        let cli = parse(&["get", "k", "--endpoints", "https://a:1", "--cacert", "/nonexistent/ca.pem"]).unwrap();
        let err = cli.opts.client().unwrap_err();
        assert_eq!(err.exit_code(), exit::USAGE);
        assert!(error_line(&err).contains("/nonexistent/ca.pem"), "{}", error_line(&err));
    }

    #[test]
    fn put_accepts_negative_numbers_and_options() {
        let cli = parse(&["put", "k", "-5", "--ttl", "30", "--if-version", "7"]).unwrap();
        match cli.cmd {
            KvCmd::Put { json, ttl, if_version, if_not_exists, .. } => {
                assert_eq!(json, "-5");
                assert_eq!(ttl, Some(30));
                assert_eq!(if_version.as_deref(), Some("7"));
                assert!(!if_not_exists);
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn incr_by_accepts_integers_and_decimals() {
        for (arg, want) in [("-2", "-2"), ("2.5", "2.5"), ("10", "10")] {
            match parse(&["incr", "n", "--by", arg]).unwrap().cmd {
                KvCmd::Incr { by: Some(n), .. } => assert_eq!(n.to_string(), want),
                other => panic!("parsed as {other:?}"),
            }
        }
        assert!(parse(&["incr", "n", "--by", "two"]).is_err());
    }

    #[test]
    fn missing_arguments_are_usage_errors() {
        let err = parse(&["put", "k"]).unwrap_err();
        assert_eq!(err.exit_code(), exit::USAGE);
    }

    #[test]
    fn bare_words_are_not_json() {
        let err = parse_json("hello").unwrap_err();
        assert_eq!(err.code(), "invalid_json");
        assert_eq!(err.exit_code(), exit::USAGE);
        assert_eq!(parse_json("\"hello\"").unwrap(), Value::from("hello"));
    }

    #[test]
    fn error_line_has_code_and_message() {
        let err = ClientError::Api {
            status: 404,
            code: "not_found".into(),
            message: "no such key".into(),
            endpoint: "http://127.0.0.1:7001/".into(),
        };
        assert_eq!(error_line(&err), "error: not_found: no such key");
    }
}
