//! `cairn serve`'s settings as clap arguments: each flag, its `CAIRN_*` variable and its
//! default, written once. [`ServeArgs::node_config`] turns them into a validated
//! [`NodeConfig`]; the binary, an embedding program and the in-process tests all go through it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::ValueEnum;

use super::{
    parse_peers, ConnectionLimits, NodeConfig, NodeId, Quotas, Security, SmOptions, TlsFiles, WatchRetention,
    WatcherLimits, DEFAULT_MAX_WATCHERS, DEFAULT_MAX_WATCHERS_PER_NAMESPACE, DEFAULT_MIN_FREE_DISK_MB,
    DEFAULT_SLED_CACHE_MB, DEFAULT_SLED_FLUSH_MS, DEFAULT_WAL_SEGMENT_BYTES, DEFAULT_WATCH_HISTORY_AGE_S,
    DEFAULT_WATCH_HISTORY_ENTRIES, DEFAULT_WATCH_HISTORY_MB,
};

/// A wrapper so clap treats the peer list as one value, not a repeated flag.
#[derive(Clone, Debug)]
pub struct Peers(pub Vec<(NodeId, String)>);

/// clap's value parser for `--peers`.
pub fn parse_peer_list(s: &str) -> Result<Peers, String> {
    parse_peers(s).map(Peers)
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// A TOML file of these settings (keys are the long flag names). Flags and CAIRN_*
    /// variables override it.
    #[arg(long, env = "CAIRN_CONFIG")]
    pub config: Option<PathBuf>,
    /// This node's id; fixed for the life of its data dir.
    #[arg(long, env = "CAIRN_ID", default_value_t = 1)]
    pub id: u64,
    /// Address to serve the client API and peer RPCs on.
    #[arg(long, env = "CAIRN_LISTEN", default_value = "127.0.0.1:7001")]
    pub listen: SocketAddr,
    /// Address peers and redirects use for this node [default: --listen].
    #[arg(long, env = "CAIRN_ADVERTISE")]
    pub advertise: Option<String>,
    #[arg(long, env = "CAIRN_DATA_DIR", default_value = "./cairn-data")]
    pub data_dir: PathBuf,
    /// Initial voters, this node included: 1=host:port,2=host:port,3=host:port. Absent: a
    /// single-node cluster.
    #[arg(long, env = "CAIRN_PEERS", value_parser = parse_peer_list)]
    pub peers: Option<Peers>,
    #[arg(long, env = "CAIRN_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Leader heartbeat interval.
    #[arg(long, env = "CAIRN_HEARTBEAT_MS", default_value_t = 100)]
    pub heartbeat_ms: u64,
    /// Election timeout range. A follower stands for election only after the leader lease
    /// (openraft sets it to the maximum) plus a random timeout in this range without hearing
    /// from the leader: 600-700 ms by default, so a dead leader is replaced in well under a
    /// second, while a busy 2-core machine must stall heartbeats for 600 ms to cause an
    /// election (docs/operations.md, "Failover").
    #[arg(long, env = "CAIRN_ELECTION_MIN_MS", default_value_t = 250)]
    pub election_min_ms: u64,
    #[arg(long, env = "CAIRN_ELECTION_MAX_MS", default_value_t = 350)]
    pub election_max_ms: u64,
    /// Build a snapshot (and allow purging the WAL behind it) every N applied entries.
    #[arg(long, env = "CAIRN_SNAPSHOT_LOGS", default_value_t = 10_000)]
    pub snapshot_logs: u64,
    /// WAL entries kept behind a snapshot, so a briefly lagging follower catches up from the
    /// log rather than a whole snapshot.
    #[arg(long, env = "CAIRN_SNAPSHOT_KEEP_LOGS", default_value_t = 1_000)]
    pub snapshot_keep_logs: u64,
    /// WAL segment size in bytes; whole segments are deleted once a snapshot covers them.
    #[arg(long, env = "CAIRN_WAL_SEGMENT_BYTES", default_value_t = DEFAULT_WAL_SEGMENT_BYTES)]
    pub wal_segment_bytes: u64,
    /// Client writes get 507 insufficient_storage while the data dir's filesystem has less
    /// than this many MiB free (plus the size of the current snapshot, which the next snapshot
    /// build writes again beside it); reads go on. 0 turns the check off.
    #[arg(long, env = "CAIRN_MIN_FREE_DISK_MB", default_value_t = DEFAULT_MIN_FREE_DISK_MB)]
    pub min_free_disk_mb: u64,
    /// After this long a write's outcome is reported unknown (504).
    #[arg(long, env = "CAIRN_WRITE_TIMEOUT_MS", default_value_t = 10_000)]
    pub write_timeout_ms: u64,
    /// sled page cache size in MiB.
    #[arg(long, env = "CAIRN_SLED_CACHE_MB", default_value_t = DEFAULT_SLED_CACHE_MB)]
    pub sled_cache_mb: u64,
    /// sled background flush interval in ms (0 = only on shutdown). The WAL is the durability
    /// point; this only shortens replay after a crash.
    #[arg(long, env = "CAIRN_SLED_FLUSH_MS", default_value_t = DEFAULT_SLED_FLUSH_MS)]
    pub sled_flush_ms: u64,
    /// Watch history kept, in entries behind the applied index (0 = no entry bound).
    #[arg(long, env = "CAIRN_WATCH_HISTORY_ENTRIES", default_value_t = DEFAULT_WATCH_HISTORY_ENTRIES)]
    pub watch_history_entries: u64,
    /// Watch history kept, in MiB of records (0 = no size bound).
    #[arg(long, env = "CAIRN_WATCH_HISTORY_MB", default_value_t = DEFAULT_WATCH_HISTORY_MB)]
    pub watch_history_mb: u64,
    /// Watch history kept, in seconds of the replicated clock (0 = no age bound).
    #[arg(long, env = "CAIRN_WATCH_HISTORY_AGE_S", default_value_t = DEFAULT_WATCH_HISTORY_AGE_S)]
    pub watch_history_age_s: u64,
    /// Open watch streams and long polls this node serves at once; past it, 503 `too_many_watchers`.
    #[arg(long, env = "CAIRN_MAX_WATCHERS", default_value_t = DEFAULT_MAX_WATCHERS)]
    pub max_watchers: usize,
    /// Open watches per namespace on this node; past it, 429 `too_many_watchers`.
    #[arg(long, env = "CAIRN_MAX_WATCHERS_PER_NAMESPACE", default_value_t = DEFAULT_MAX_WATCHERS_PER_NAMESPACE)]
    pub max_watchers_per_namespace: usize,
    /// The bootstrap admin token (every permission in every namespace). Required unless the
    /// node listens on loopback only or --insecure-allow-anonymous is given.
    #[arg(long, env = "CAIRN_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Shared secret peers send on /raft/*. Required unless the node listens on loopback only
    /// or --insecure-allow-anonymous is given.
    #[arg(long, env = "CAIRN_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// A token that `GET /metrics` then requires (as `Authorization: Bearer`; the admin token
    /// works too). Without it `/metrics` is open, like `/health` and `/ready`.
    #[arg(long, env = "CAIRN_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// PEM certificate chain to serve HTTPS with (peers then dial https://). With --tls-key.
    #[arg(long, env = "CAIRN_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "CAIRN_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate(s) that sign every node's certificate: peers then use mutual TLS and
    /// /raft/* requires a client certificate from this CA. Needs --tls-cert and --tls-key.
    #[arg(long, env = "CAIRN_PEER_CA")]
    pub peer_ca: Option<PathBuf>,
    /// Serve the open default namespace and unauthenticated peer RPCs on a non-loopback address.
    #[arg(long, env = "CAIRN_INSECURE_ALLOW_ANONYMOUS")]
    pub insecure_allow_anonymous: bool,
    /// Most keys one namespace may hold (0 = unlimited).
    #[arg(long, env = "CAIRN_MAX_KEYS_PER_NAMESPACE", default_value_t = 1_000_000)]
    pub max_keys_per_namespace: u64,
    /// Largest value, as JSON text, in bytes.
    #[arg(long, env = "CAIRN_MAX_VALUE_BYTES", default_value_t = 1 << 20)]
    pub max_value_bytes: usize,
    /// TTL applied to writes that give none (default: keys live until deleted).
    #[arg(long, env = "CAIRN_DEFAULT_TTL_SECONDS")]
    pub default_ttl_seconds: Option<u64>,
    /// Requests per second per token (or per client IP without one), per node; 0 = off.
    #[arg(long, env = "CAIRN_RATE_LIMIT", default_value_t = 0)]
    pub rate_limit: u32,
    /// Join an existing cluster through this member (http://host:port, https://host:port with
    /// TLS; a bare host:port gets this node's scheme). The node asks to be added as a learner
    /// and is promoted to voter once caught up. Not with --peers.
    #[arg(long, env = "CAIRN_JOIN")]
    pub join: Option<String>,
    /// Bound on admitting a node (learner catch-up plus promotion), in seconds.
    #[arg(long, env = "CAIRN_JOIN_TIMEOUT_S", default_value_t = 300)]
    pub join_timeout_s: u64,
    /// A request head must arrive complete within this many ms of its first byte (a client
    /// sending a byte now and then is cut off).
    #[arg(long, env = "CAIRN_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_timeout_ms: u64,
    /// A request body must arrive complete within this many ms of its head; a client that
    /// stalls part-way gets 408 `request_timeout`. Applies to peers' Raft bodies too (up to
    /// 64 MiB), so keep it above what the slowest peer link needs.
    #[arg(long, env = "CAIRN_BODY_TIMEOUT_MS", default_value_t = 30_000)]
    pub body_timeout_ms: u64,
    /// A keep-alive connection with no request in progress is closed after this many ms.
    #[arg(long, env = "CAIRN_IDLE_TIMEOUT_MS", default_value_t = 60_000)]
    pub idle_timeout_ms: u64,
    /// A connection whose answer makes no sending progress for this many ms (the client
    /// stopped reading it) is closed. Streaming responses included.
    #[arg(long, env = "CAIRN_SEND_TIMEOUT_MS", default_value_t = 30_000)]
    pub send_timeout_ms: u64,
    /// Open connections at most (clients and peers together); past it new connections are
    /// refused (503 `too_many_connections` on plain HTTP; closed at once with TLS).
    #[arg(long, env = "CAIRN_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// On shutdown, in-flight requests get this many ms to finish; then every connection
    /// still open is closed.
    #[arg(long, env = "CAIRN_DRAIN_TIMEOUT_MS", default_value_t = 10_000)]
    pub drain_timeout_ms: u64,
    /// Tokio worker threads [default: number of CPUs].
    #[arg(long, env = "CAIRN_WORKER_THREADS")]
    pub worker_threads: Option<usize>,
}

impl ServeArgs {
    /// The node's configuration, validated ([`NodeConfig::validate`]).
    pub fn node_config(&self) -> Result<NodeConfig, String> {
        let admin_token = self.admin_token.clone().filter(|t| !t.is_empty());
        let cluster_secret = self.cluster_secret.clone().filter(|t| !t.is_empty());
        let peers = self.peers.clone().map(|p| p.0).unwrap_or_default();
        // The advertised address: the flag, else this node's entry in --peers, else --listen.
        let advertise = self
            .advertise
            .clone()
            .or_else(|| peers.iter().find(|(i, _)| *i == self.id).map(|(_, a)| a.clone()))
            .unwrap_or_else(|| self.listen.to_string());
        let c = NodeConfig {
            id: self.id,
            listen: self.listen,
            advertise,
            data_dir: self.data_dir.clone(),
            peers,
            heartbeat: Duration::from_millis(self.heartbeat_ms),
            election_min: Duration::from_millis(self.election_min_ms),
            election_max: Duration::from_millis(self.election_max_ms),
            snapshot_logs: self.snapshot_logs.max(1),
            snapshot_keep_logs: self.snapshot_keep_logs,
            wal_segment_bytes: self.wal_segment_bytes,
            min_free_disk_bytes: self.min_free_disk_mb.saturating_mul(1 << 20),
            write_timeout: Duration::from_millis(self.write_timeout_ms.max(1)),
            expire_interval: Duration::from_secs(1),
            sm: SmOptions {
                cache_bytes: self.sled_cache_mb << 20,
                flush_every_ms: Some(self.sled_flush_ms).filter(|&ms| ms > 0),
                watch_history: WatchRetention {
                    entries: self.watch_history_entries,
                    bytes: self.watch_history_mb.saturating_mul(1 << 20),
                    age_ms: self.watch_history_age_s.saturating_mul(1_000),
                },
            },
            watchers: WatcherLimits { per_node: self.max_watchers, per_namespace: self.max_watchers_per_namespace },
            join: self.join.clone(),
            join_timeout: Duration::from_secs(self.join_timeout_s.max(1)),
            quotas: Quotas {
                max_keys_per_namespace: self.max_keys_per_namespace,
                max_value_bytes: self.max_value_bytes,
                default_ttl_seconds: self.default_ttl_seconds,
            },
            security: Security {
                allow_anonymous: admin_token.is_none(),
                admin_token,
                cluster_secret,
                rate_limit_per_sec: self.rate_limit,
                metrics_token: self.metrics_token.clone().filter(|t| !t.is_empty()),
                insecure: self.insecure_allow_anonymous,
            },
            connections: ConnectionLimits {
                header_timeout: Duration::from_millis(self.header_timeout_ms),
                body_timeout: Duration::from_millis(self.body_timeout_ms),
                idle_timeout: Duration::from_millis(self.idle_timeout_ms),
                send_timeout: Duration::from_millis(self.send_timeout_ms),
                max_connections: self.max_connections,
                drain_timeout: Duration::from_millis(self.drain_timeout_ms),
            },
            tls: self.tls_files()?,
        };
        c.validate()?;
        Ok(c)
    }

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
