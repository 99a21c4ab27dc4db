//! The `cairn` binary: parses flags, sets up logging, and calls the library.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use cairn::client::{run_backup, run_cluster, run_kv, run_token, ClientOpts, ClusterCmd, KvCmd, TokenCmd};
use cairn::config::{parse_peers, NodeConfig, Quotas, Security, TlsFiles};
use cairn::config_file::{extra_args, FlagInfo};
use cairn::sm::SmOptions;

#[derive(Parser)]
#[command(name = "cairn", version, about = "A replicated JSON key/value store")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a node.
    Serve(Box<ServeArgs>),
    /// Read and write keys.
    Kv {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        cmd: KvCmd,
    },
    /// Create, list and revoke access tokens.
    Token {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// Download a consistent backup (a fresh snapshot from the leader) to a file.
    Backup {
        #[command(flatten)]
        opts: ClientOpts,
        /// Where to write the backup
        #[arg(long)]
        out: PathBuf,
    },
    /// Seed a new node's data dir from a backup file (offline; run once per node of the new
    /// cluster, each with its own --id and the same --peers).
    Restore(RestoreArgs),
    /// Inspect the cluster and change its membership.
    Cluster {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        cmd: ClusterCmd,
    },
    /// Load-test a cluster (or etcd, with --target etcd).
    Bench(cairn::bench::BenchOpts),
}

/// A wrapper so clap treats the peer list as one value, not a repeated flag.
#[derive(Clone)]
struct Peers(Vec<(u64, String)>);

fn parse_peer_list(s: &str) -> Result<Peers, String> {
    parse_peers(s).map(Peers)
}

#[derive(clap::Args)]
struct RestoreArgs {
    /// The backup file
    #[arg(long)]
    from: PathBuf,
    /// The new node's (empty) data dir
    #[arg(long)]
    data_dir: PathBuf,
    /// The new node's id
    #[arg(long)]
    id: u64,
    /// The new cluster's voters: 1=host:port,2=host:port,3=host:port
    #[arg(long, value_parser = parse_peer_list)]
    peers: Peers,
}

fn restore(a: &RestoreArgs) -> ExitCode {
    match cairn::backup::restore(&a.from, &a.data_dir, a.id, &a.peers.0) {
        Ok(r) => {
            println!(
                "{{\"dataDir\": {:?}, \"lastIndex\": {}, \"pairs\": {}}}",
                a.data_dir.display().to_string(),
                r.last_index,
                r.pairs
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// A TOML file of these settings (keys are the long flag names). Flags and CAIRN_*
    /// variables override it.
    #[arg(long, env = "CAIRN_CONFIG")]
    config: Option<PathBuf>,
    /// This node's id; fixed for the life of its data dir.
    #[arg(long, env = "CAIRN_ID", default_value_t = 1)]
    id: u64,
    /// Address to serve the client API and peer RPCs on.
    #[arg(long, env = "CAIRN_LISTEN", default_value = "127.0.0.1:7001")]
    listen: SocketAddr,
    /// Address peers and redirects use for this node [default: --listen].
    #[arg(long, env = "CAIRN_ADVERTISE")]
    advertise: Option<String>,
    #[arg(long, env = "CAIRN_DATA_DIR", default_value = "./cairn-data")]
    data_dir: PathBuf,
    /// Initial voters, this node included: 1=host:port,2=host:port,3=host:port. Absent: a
    /// single-node cluster.
    #[arg(long, env = "CAIRN_PEERS", value_parser = parse_peer_list)]
    peers: Option<Peers>,
    #[arg(long, env = "CAIRN_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Leader heartbeat interval.
    #[arg(long, env = "CAIRN_HEARTBEAT_MS", default_value_t = 100)]
    heartbeat_ms: u64,
    /// Election timeout range; kept well above the heartbeat so a busy 2-core machine running
    /// HTTP and fsync does not trigger spurious elections.
    #[arg(long, env = "CAIRN_ELECTION_MIN_MS", default_value_t = 600)]
    election_min_ms: u64,
    #[arg(long, env = "CAIRN_ELECTION_MAX_MS", default_value_t = 1200)]
    election_max_ms: u64,
    /// Build a snapshot (and allow purging the WAL behind it) every N applied entries.
    #[arg(long, env = "CAIRN_SNAPSHOT_LOGS", default_value_t = 10_000)]
    snapshot_logs: u64,
    /// WAL entries kept behind a snapshot, so a briefly lagging follower catches up from the
    /// log rather than a whole snapshot.
    #[arg(long, env = "CAIRN_SNAPSHOT_KEEP_LOGS", default_value_t = 1_000)]
    snapshot_keep_logs: u64,
    /// WAL segment size in bytes; whole segments are deleted once a snapshot covers them.
    #[arg(long, env = "CAIRN_WAL_SEGMENT_BYTES", default_value_t = cairn::wal::DEFAULT_SEGMENT_BYTES)]
    wal_segment_bytes: u64,
    /// After this long a write's outcome is reported unknown (504).
    #[arg(long, env = "CAIRN_WRITE_TIMEOUT_MS", default_value_t = 10_000)]
    write_timeout_ms: u64,
    /// sled page cache size in MiB.
    #[arg(long, env = "CAIRN_SLED_CACHE_MB", default_value_t = 256)]
    sled_cache_mb: u64,
    /// sled background flush interval in ms (0 = only on shutdown). The WAL is the durability
    /// point; this only shortens replay after a crash.
    #[arg(long, env = "CAIRN_SLED_FLUSH_MS", default_value_t = 1000)]
    sled_flush_ms: u64,
    /// The bootstrap admin token (every permission in every namespace). Required unless the
    /// node listens on loopback only or --insecure-allow-anonymous is given.
    #[arg(long, env = "CAIRN_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Shared secret peers send on /raft/*. Required unless the node listens on loopback only
    /// or --insecure-allow-anonymous is given.
    #[arg(long, env = "CAIRN_CLUSTER_SECRET", hide_env_values = true)]
    cluster_secret: Option<String>,
    /// PEM certificate chain to serve HTTPS with (peers then dial https://). With --tls-key.
    #[arg(long, env = "CAIRN_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "CAIRN_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// PEM CA certificate(s) that sign every node's certificate: peers then use mutual TLS and
    /// /raft/* requires a client certificate from this CA. Needs --tls-cert and --tls-key.
    #[arg(long, env = "CAIRN_PEER_CA")]
    peer_ca: Option<PathBuf>,
    /// Serve the open default namespace and unauthenticated peer RPCs on a non-loopback address.
    #[arg(long, env = "CAIRN_INSECURE_ALLOW_ANONYMOUS")]
    insecure_allow_anonymous: bool,
    /// Most keys one namespace may hold (0 = unlimited).
    #[arg(long, env = "CAIRN_MAX_KEYS_PER_NAMESPACE", default_value_t = 1_000_000)]
    max_keys_per_namespace: u64,
    /// Largest value, as JSON text, in bytes.
    #[arg(long, env = "CAIRN_MAX_VALUE_BYTES", default_value_t = 1 << 20)]
    max_value_bytes: usize,
    /// TTL applied to writes that give none (default: keys live until deleted).
    #[arg(long, env = "CAIRN_DEFAULT_TTL_SECONDS")]
    default_ttl_seconds: Option<u64>,
    /// Requests per second per token (or per client IP without one), per node; 0 = off.
    #[arg(long, env = "CAIRN_RATE_LIMIT", default_value_t = 0)]
    rate_limit: u32,
    /// Join an existing cluster through this member (http://host:port, https://host:port with
    /// TLS; a bare host:port gets this node's scheme). The node asks to be added as a learner
    /// and is promoted to voter once caught up. Not with --peers.
    #[arg(long, env = "CAIRN_JOIN")]
    join: Option<String>,
    /// Bound on admitting a node (learner catch-up plus promotion), in seconds.
    #[arg(long, env = "CAIRN_JOIN_TIMEOUT_S", default_value_t = 300)]
    join_timeout_s: u64,
    /// Tokio worker threads [default: number of CPUs].
    #[arg(long, env = "CAIRN_WORKER_THREADS")]
    worker_threads: Option<usize>,
}

impl ServeArgs {
    fn node_config(&self) -> Result<NodeConfig, String> {
        if self.election_min_ms >= self.election_max_ms || self.heartbeat_ms >= self.election_min_ms {
            return Err("need --heartbeat-ms < --election-min-ms < --election-max-ms".into());
        }
        let mut c = NodeConfig::new(self.id, self.listen, self.data_dir.clone());
        if let Some(a) = &self.advertise {
            c.advertise = a.clone();
        }
        c.peers = self.peers.clone().map(|p| p.0).unwrap_or_default();
        if let Some((_, addr)) = c.peers.iter().find(|(i, _)| *i == self.id) {
            if self.advertise.is_none() {
                c.advertise = addr.clone();
            }
        }
        c.heartbeat = Duration::from_millis(self.heartbeat_ms);
        c.election_min = Duration::from_millis(self.election_min_ms);
        c.election_max = Duration::from_millis(self.election_max_ms);
        c.snapshot_logs = self.snapshot_logs.max(1);
        c.snapshot_keep_logs = self.snapshot_keep_logs;
        c.wal_segment_bytes = self.wal_segment_bytes;
        c.write_timeout = Duration::from_millis(self.write_timeout_ms.max(1));
        let loopback = self.listen.ip().is_loopback();
        let admin_token = self.admin_token.clone().filter(|t| !t.is_empty());
        let cluster_secret = self.cluster_secret.clone().filter(|t| !t.is_empty());
        if !loopback && !self.insecure_allow_anonymous {
            if admin_token.is_none() {
                return Err(format!(
                    "{} is not a loopback address: give --admin-token (or --insecure-allow-anonymous)",
                    self.listen
                ));
            }
            if cluster_secret.is_none() {
                return Err(format!(
                    "{} is not a loopback address: give --cluster-secret for peer RPCs (or --insecure-allow-anonymous)",
                    self.listen
                ));
            }
        }
        if self.max_value_bytes == 0 || self.default_ttl_seconds == Some(0) {
            return Err("--max-value-bytes and --default-ttl-seconds must be positive".into());
        }
        c.security = Security {
            allow_anonymous: admin_token.is_none(),
            admin_token,
            cluster_secret,
            rate_limit_per_sec: self.rate_limit,
        };
        c.tls = self.tls_files()?;
        c.join = self.join.clone();
        c.join_timeout = Duration::from_secs(self.join_timeout_s.max(1));
        c.quotas = Quotas {
            max_keys_per_namespace: self.max_keys_per_namespace,
            max_value_bytes: self.max_value_bytes,
            default_ttl_seconds: self.default_ttl_seconds,
        };
        c.sm = SmOptions {
            cache_bytes: self.sled_cache_mb << 20,
            flush_every_ms: Some(self.sled_flush_ms).filter(|&ms| ms > 0),
        };
        Ok(c)
    }
}

impl ServeArgs {
    fn tls_files(&self) -> Result<Option<TlsFiles>, String> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                Ok(Some(TlsFiles { cert: cert.clone(), key: key.clone(), peer_ca: self.peer_ca.clone() }))
            }
            (None, None) if self.peer_ca.is_some() => {
                Err("--peer-ca needs --tls-cert and --tls-key (this node's own identity)".into())
            }
            (None, None) => Ok(None),
            (Some(_), None) => Err("--tls-cert needs --tls-key".into()),
            (None, Some(_)) => Err("--tls-key needs --tls-cert".into()),
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn,sled=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received");
}

fn runtime(workers: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        b.worker_threads(n.max(1));
    }
    b.enable_all().build()
}

fn serve(args: &ServeArgs) -> ExitCode {
    init_tracing(args.log_format);
    let config = match args.node_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match runtime(args.worker_threads) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(cairn::server::run(config, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "node failed");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a client command on a small runtime and turns its exit code into the process's.
fn client_main<F, Fut>(f: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = i32>,
{
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            return ExitCode::from(3);
        }
    };
    let code = rt.block_on(f());
    ExitCode::from(u8::try_from(code).unwrap_or(3))
}

/// Runs `cairn bench` on `--threads` runtime threads (every client is a task).
fn bench_main(opts: cairn::bench::BenchOpts) -> ExitCode {
    match runtime(Some(opts.threads)) {
        Ok(rt) => ExitCode::from(u8::try_from(rt.block_on(cairn::bench::run(opts))).unwrap_or(1)),
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            ExitCode::from(3)
        }
    }
}

/// Re-parses the command line with `serve --config FILE`'s settings added for every flag the
/// command line and environment left unset.
fn with_config_file(cli: Cli) -> Result<Cli, String> {
    let Cmd::Serve(args) = &cli.cmd else { return Ok(cli) };
    let Some(path) = &args.config else { return Ok(cli) };
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let matches = Cli::command().get_matches();
    let serve = matches.subcommand_matches("serve").ok_or("no serve arguments")?;
    let command = Cli::command();
    let serve_cmd = command.find_subcommand("serve").ok_or("no serve command")?;
    let flags: Vec<FlagInfo> = serve_cmd
        .get_arguments()
        .filter_map(|a| {
            let long = a.get_long()?.to_string();
            let source = serve.value_source(a.get_id().as_str());
            Some(FlagInfo {
                long,
                switch: matches!(a.get_action(), clap::ArgAction::SetTrue),
                set_elsewhere: matches!(source, Some(ValueSource::CommandLine | ValueSource::EnvVariable)),
            })
        })
        .collect();
    let mut argv: Vec<String> = std::env::args().collect();
    argv.extend(extra_args(&text, &flags)?);
    Cli::try_parse_from(argv).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = match with_config_file(Cli::parse()) {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.cmd {
        Cmd::Serve(args) => serve(&args),
        Cmd::Kv { opts, cmd } => client_main(|| async move { run_kv(&opts, cmd).await }),
        Cmd::Cluster { opts, cmd } => client_main(|| async move { run_cluster(&opts, cmd).await }),
        Cmd::Token { opts, cmd } => client_main(|| async move { run_token(&opts, cmd).await }),
        Cmd::Backup { opts, out } => client_main(|| async move { run_backup(&opts, &out).await }),
        Cmd::Restore(args) => restore(&args),
        Cmd::Bench(opts) => bench_main(opts),
    }
}

/// glibc's allocator was about 20 % of a busy leader's CPU (`_int_malloc`, `malloc_consolidate`,
/// `unlink_chunk`); with mimalloc, puts at 256 clients went up by about a quarter
/// (docs/performance.md, "What mattered").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
