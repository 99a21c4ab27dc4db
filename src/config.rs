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
    /// After this long a write's outcome is reported unknown (504).
    pub write_timeout: Duration,
    /// How often the leader checks for due TTL expiries.
    pub expire_interval: Duration,
    pub sm: SmOptions,
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
            write_timeout: Duration::from_secs(10),
            expire_interval: Duration::from_secs(1),
            sm: SmOptions::default(),
        }
    }
}

/// Parses `1=host:port,2=host:port`.
pub fn parse_peers(s: &str) -> Result<Vec<(NodeId, String)>, String> {
    let mut out: Vec<(NodeId, String)> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| format!("peer `{part}` is not ID=HOST:PORT"))?;
        let id: NodeId = id
            .trim()
            .parse()
            .map_err(|_| format!("peer id `{id}` is not a number"))?;
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
