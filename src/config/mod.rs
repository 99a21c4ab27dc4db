//! A node's configuration: what `cairn serve` accepts (`args`: flags, `CAIRN_*` variables and
//! their defaults, the only place defaults are written), the TOML file that can supply the
//! same settings (`file`), and the plain data the node runs on ([`NodeConfig`]). Validation
//! lives here too ([`NodeConfig::validate`]), and the server runs it again on whatever config
//! it is handed, so an embedding program gets the same refusals as the binary.
//!
//! A leaf of the crate: storage, the node and the edge read these types; this module imports
//! nothing from them.

pub(crate) mod args;
pub mod file;

pub use args::{LogFormat, ServeArgs};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Node ids are operator-chosen small integers; they are never reused. (`model::types`
/// re-exports this for openraft.)
pub type NodeId = u64;

/// Segments roll over at this size by default. Whole segments are deleted once a snapshot
/// covers them, so this is the granularity of WAL space reclamation: the segment being written
/// is never deleted, so up to one segment of already-purged entries stays on disk. 64 MiB made
/// that term the largest part of a small node's data dir (measured in docs/operations.md).
pub const DEFAULT_WAL_SEGMENT_BYTES: u64 = 16 << 20;
/// Client writes are refused while the data dir's filesystem has less than this free (plus the
/// current snapshot's size; see `node/disk.rs`). 64 MiB holds many seconds of the largest
/// writes a node takes, and the entries the node still writes itself while it refuses.
pub const DEFAULT_MIN_FREE_DISK_MB: u64 = 64;
/// sled's page cache.
pub const DEFAULT_SLED_CACHE_MB: u64 = 256;
/// sled's background flush interval. The WAL is the durability point; this only shortens
/// replay after a crash.
pub const DEFAULT_SLED_FLUSH_MS: u64 = 1000;

/// sled tuning, exposed as node flags.
#[derive(Debug, Clone)]
pub struct SmOptions {
    pub cache_bytes: u64,
    /// `None`: sled flushes only on shutdown.
    pub flush_every_ms: Option<u64>,
    pub watch_history: WatchRetention,
}

impl Default for SmOptions {
    fn default() -> Self {
        SmOptions {
            cache_bytes: DEFAULT_SLED_CACHE_MB << 20,
            flush_every_ms: Some(DEFAULT_SLED_FLUSH_MS),
            watch_history: WatchRetention::default(),
        }
    }
}

/// How much watch history a node keeps (`--watch-history-entries`, `-mb`, `-age-s`): the
/// oldest records go once any bound is passed; `0` leaves that kind unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchRetention {
    pub entries: u64,
    pub bytes: u64,
    pub age_ms: u64,
}

pub const DEFAULT_WATCH_HISTORY_ENTRIES: u64 = 100_000;
pub const DEFAULT_WATCH_HISTORY_MB: u64 = 64;
pub const DEFAULT_WATCH_HISTORY_AGE_S: u64 = 3_600;
pub const DEFAULT_MAX_WATCHERS: usize = 10_000;
pub const DEFAULT_MAX_WATCHERS_PER_NAMESPACE: usize = 1_000;

/// Caps on open watches (`--max-watchers`, `--max-watchers-per-namespace`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatcherLimits {
    pub per_node: usize,
    pub per_namespace: usize,
}

impl Default for WatcherLimits {
    fn default() -> Self {
        WatcherLimits { per_node: DEFAULT_MAX_WATCHERS, per_namespace: DEFAULT_MAX_WATCHERS_PER_NAMESPACE }
    }
}

impl Default for WatchRetention {
    fn default() -> Self {
        WatchRetention {
            entries: DEFAULT_WATCH_HISTORY_ENTRIES,
            bytes: DEFAULT_WATCH_HISTORY_MB << 20,
            age_ms: DEFAULT_WATCH_HISTORY_AGE_S * 1_000,
        }
    }
}

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub id: NodeId,
    pub listen: SocketAddr,
    /// Address peers and forwarded clients use to reach this node.
    pub advertise: String,
    pub data_dir: PathBuf,
    /// Initial voters, including this node; empty means a single-node cluster.
    pub peers: Vec<(NodeId, String)>,
    pub heartbeat: Duration,
    pub election_min: Duration,
    pub election_max: Duration,
    /// Build a snapshot after this many applied entries.
    pub snapshot_logs: u64,
    /// Entries kept in the WAL behind a snapshot, so a briefly lagging follower catches up
    /// from the log instead of a whole snapshot.
    pub snapshot_keep_logs: u64,
    /// WAL segment size; whole segments are deleted behind snapshots.
    pub wal_segment_bytes: u64,
    /// Client writes are refused (507) while the data dir's filesystem has less than this many
    /// bytes free, plus the current snapshot's size; 0: never.
    pub min_free_disk_bytes: u64,
    /// After this long a write's outcome is reported unknown (504).
    pub write_timeout: Duration,
    /// How often the leader checks for due TTL expiries.
    pub expire_interval: Duration,
    pub sm: SmOptions,
    pub watchers: WatcherLimits,
    /// A member to ask for admission (`--join`); the node then never initializes a cluster.
    pub join: Option<String>,
    /// Bound on admitting a node: learner catch-up plus promotion.
    pub join_timeout: Duration,
    pub quotas: Quotas,
    pub security: Security,
    /// What one HTTP connection may cost: its timeouts, and how many may be open.
    pub connections: ConnectionLimits,
    /// `--tls-cert` and friends; `None` serves and dials plain HTTP.
    pub tls: Option<TlsFiles>,
}

/// PEM files for TLS. A cluster is all-TLS or all-plain: with these set, this node serves
/// HTTPS and dials its peers over HTTPS. See docs/security.md.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain (leaf first), served to clients and presented to peers.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA that signs every node's certificate: turns on mutual TLS between peers.
    pub peer_ca: Option<PathBuf>,
}

/// Per-namespace limits (defaults from the hosted API this replaces: seed 000).
#[derive(Debug, Clone)]
pub struct Quotas {
    /// 0 = unlimited. Enforced in apply, so it is exact cluster-wide.
    pub max_keys_per_namespace: u64,
    pub max_value_bytes: usize,
    /// Applied to writes that give no TTL; `None` = keys live until deleted.
    pub default_ttl_seconds: Option<u64>,
}

/// Bounds on client (and peer) connections, so a slow or abusive client costs a bounded
/// amount of memory, descriptors and time. See docs/security.md, "Threat model".
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// A request head must be complete this long after its first byte arrived.
    pub header_timeout: Duration,
    /// A request body must be complete this long after its head (for every route, `/raft/*`
    /// included, whose AppendEntries bodies are up to 64 MiB).
    pub body_timeout: Duration,
    /// A keep-alive connection with no request in progress is closed after this long. A
    /// response still streaming is a request in progress.
    pub idle_timeout: Duration,
    /// A connection whose answer makes no sending progress for this long is closed: the
    /// client stopped reading. Applies to streaming responses too.
    pub send_timeout: Duration,
    /// Open connections at most; past it a new one gets 503 `too_many_connections` (plain
    /// HTTP) or is closed at once (TLS, before any handshake work).
    pub max_connections: usize,
    /// On shutdown, in-flight requests get this long to finish before their connections are
    /// closed.
    pub drain_timeout: Duration,
}

/// Who may call the node. See docs/security.md.
#[derive(Debug, Clone, Default)]
pub struct Security {
    /// The bootstrap admin token: every permission on every namespace.
    pub admin_token: Option<String>,
    /// Serve requests without credentials on the `default` namespace.
    pub allow_anonymous: bool,
    /// Required on `/raft/*` when set.
    pub cluster_secret: Option<String>,
    /// Requests per second per token (or per client IP without one); 0 = off.
    pub rate_limit_per_sec: u32,
    /// Required as `Authorization: Bearer` on `GET /metrics` when set (the admin token is
    /// accepted too); `None` keeps `/metrics` open, like the probes.
    pub metrics_token: Option<String>,
    /// `--insecure-allow-anonymous`: the operator accepts an open node on a non-loopback
    /// address. Without it [`NodeConfig::validate`] refuses such a node.
    pub insecure: bool,
}

impl NodeConfig {
    /// Refuses a configuration the node must not run with: timings that would elect
    /// constantly, limits of zero, and (unless explicitly insecure) an open node or open peer
    /// RPCs on an address other machines can reach.
    pub fn validate(&self) -> Result<(), String> {
        if self.election_min >= self.election_max || self.heartbeat >= self.election_min {
            return Err("need --heartbeat-ms < --election-min-ms < --election-max-ms".into());
        }
        let c = &self.connections;
        if [c.header_timeout, c.body_timeout, c.idle_timeout, c.send_timeout].iter().any(Duration::is_zero) {
            return Err(
                "--header-timeout-ms, --body-timeout-ms, --idle-timeout-ms and --send-timeout-ms must be positive"
                    .into(),
            );
        }
        if c.max_connections == 0 {
            return Err("--max-connections must be positive".into());
        }
        if self.quotas.max_value_bytes == 0 || self.quotas.default_ttl_seconds == Some(0) {
            return Err("--max-value-bytes and --default-ttl-seconds must be positive".into());
        }
        if !self.listen.ip().is_loopback() && !self.security.insecure {
            if self.security.admin_token.is_none() {
                return Err(format!(
                    "{} is not a loopback address: give --admin-token (or --insecure-allow-anonymous)",
                    self.listen
                ));
            }
            if self.security.cluster_secret.is_none() {
                return Err(format!(
                    "{} is not a loopback address: give --cluster-secret for peer RPCs (or --insecure-allow-anonymous)",
                    self.listen
                ));
            }
        }
        Ok(())
    }

    /// The URL scheme of this cluster's peers (and of this node).
    pub fn peer_scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// Whether `/raft/*` demands a client certificate verified against `--peer-ca`.
    pub fn peer_certs_required(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.peer_ca.is_some())
    }
}

/// Parses `1=host:port,2=host:port`.
pub fn parse_peers(s: &str) -> Result<Vec<(NodeId, String)>, String> {
    let mut out: Vec<(NodeId, String)> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part.split_once('=').ok_or_else(|| format!("peer `{part}` is not ID=HOST:PORT"))?;
        let id: NodeId = id.trim().parse().map_err(|_| format!("peer id `{id}` is not a number"))?;
        let addr = addr.trim();
        if addr.is_empty() || !addr.contains(':') {
            return Err(format!("peer {id} address `{addr}` is not HOST:PORT"));
        }
        if out.iter().any(|(i, _)| *i == id) {
            return Err(format!("peer id {id} is listed twice"));
        }
        out.push((id, addr.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_reject_garbage() {
        let p = parse_peers("1=127.0.0.1:7001, 2=127.0.0.1:7002").unwrap();
        assert_eq!(p, vec![(1, "127.0.0.1:7001".into()), (2, "127.0.0.1:7002".into())]);
        assert!(parse_peers("x=1:2").is_err());
        assert!(parse_peers("1=nohostport").is_err());
        assert!(parse_peers("1=a:1,1=b:2").is_err());
    }
}
