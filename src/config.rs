//! A node's configuration as the library sees it: plain data, filled in by the binary from
//! flags and environment variables. Defaults live in the binary's flag definitions and are
//! documented in docs/api.md and README.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::sm::SmOptions;
use crate::types::NodeId;

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
    /// After this long a write's outcome is reported unknown (504).
    pub write_timeout: Duration,
    /// How often the leader checks for due TTL expiries.
    pub expire_interval: Duration,
    pub sm: SmOptions,
    /// A member to ask for admission (`--join`); the node then never initializes a cluster.
    pub join: Option<String>,
    /// Bound on admitting a node: learner catch-up plus promotion.
    pub join_timeout: Duration,
    pub quotas: Quotas,
    pub security: Security,
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

impl Default for Quotas {
    fn default() -> Self {
        Quotas { max_keys_per_namespace: 1_000_000, max_value_bytes: 1 << 20, default_ttl_seconds: None }
    }
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
}

impl NodeConfig {
    /// A config with the documented defaults, for tests and embedding.
    pub fn new(id: NodeId, listen: SocketAddr, data_dir: PathBuf) -> NodeConfig {
        NodeConfig {
            id,
            listen,
            advertise: listen.to_string(),
            data_dir,
            peers: Vec::new(),
            heartbeat: Duration::from_millis(100),
            election_min: Duration::from_millis(600),
            election_max: Duration::from_millis(1200),
            snapshot_logs: 10_000,
            snapshot_keep_logs: 1_000,
            wal_segment_bytes: crate::wal::DEFAULT_SEGMENT_BYTES,
            write_timeout: Duration::from_secs(10),
            expire_interval: Duration::from_secs(1),
            sm: SmOptions::default(),
            join: None,
            join_timeout: Duration::from_secs(300),
            quotas: Quotas::default(),
            security: Security { allow_anonymous: true, ..Security::default() },
            tls: None,
        }
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
