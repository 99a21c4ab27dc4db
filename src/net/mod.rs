//! Outgoing Raft RPCs: openraft's network factory over HTTP/1.1 with bincode bodies, one
//! keep-alive connection per openraft client (`http1.rs`). Client forwarding and the node's
//! other peer requests use reqwest (`peer_client`), on connections of their own, so a burst of
//! proxied requests cannot delay heartbeats.
//!
//! With TLS the peer client dials `https://` with the node's rustls client configuration.

pub mod wire;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::http1;
use crate::model::types::{NodeId, TypeConfig};
use crate::wal::DurableWatch;

/// Builds an HTTP client for node-to-node traffic. Binding `local_ip` makes connections leave
/// from this node's own address, so packet-level partitions between loopback addresses cut
/// exactly the intended links (the kernel would otherwise pick 127.0.0.1).
pub fn peer_client(
    local_ip: Option<IpAddr>,
    cluster_secret: Option<&str>,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> reqwest::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(s) = cluster_secret.and_then(|s| reqwest::header::HeaderValue::from_str(s).ok()) {
        headers.insert(crate::protocol::H_CLUSTER_SECRET, s);
    }
    let mut builder = reqwest::Client::builder()
        .default_headers(headers)
        .local_address(local_ip)
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(2));
    if let Some(tls) = tls {
        // reqwest takes the config by value; the Arc only spares the node a second load. The
        // copy shares the node's certificate and CA hooks (`tls/live.rs`), so it follows every
        // reload without the client being rebuilt, and its kept-alive connections stay open.
        builder = builder.use_preconfigured_tls(rustls::ClientConfig::clone(&tls));
    }
    builder.build()
}

/// Options for Raft's own connections ([`Network`]): the same local address, secret and TLS as
/// [`peer_client`], bincode bodies, and one retry of a request that met a connection the peer
/// had closed while it sat idle (every Raft RPC may be delivered twice).
pub fn peer_options(
    local_ip: Option<IpAddr>,
    cluster_secret: Option<&str>,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> http1::Options {
    http1::Options {
        // Every call passes openraft's own deadline; this is only the fallback.
        timeout: Duration::from_secs(10),
        tls,
        local_ip,
        headers: cluster_secret.map(|s| vec![(crate::protocol::H_CLUSTER_SECRET, s.to_string())]).unwrap_or_default(),
        content_type: wire::CONTENT_TYPE,
        retry_stale: true,
    }
}

/// Idle connections kept per peer address. openraft opens a client for every leadership check
/// (each linearizable read round) as well as one per replication stream, so without reuse
/// every read round would open new TCP connections.
const IDLE_PER_PEER: usize = 8;

type Idle = Arc<Mutex<HashMap<String, Vec<http1::Conn>>>>;

#[derive(Clone)]
pub struct Network {
    opts: http1::Options,
    scheme: &'static str,
    idle: Idle,
    durable: DurableWatch,
    split: Arc<SplitVote>,
}

impl Network {
    /// `scheme` is `http` or `https`, as the whole cluster uses (`NodeConfig::peer_scheme`).
    /// `durable` is this node's WAL: the commit index sent to followers never passes it.
    pub fn new(opts: http1::Options, scheme: &'static str, durable: DurableWatch) -> Self {
        Network { opts, scheme, idle: Idle::default(), durable, split: Arc::default() }
    }

    /// Where the node hands over its Raft once it exists (see [`SplitVote`]).
    pub fn split_vote(&self) -> Arc<SplitVote> {
        self.split.clone()
    }
}

/// Ends a split vote at once when this node's log is the one that can win it.
///
/// When a leader dies, both survivors of a 3-node cluster may stand in the same term. Each
/// votes for itself and refuses the other; and in openraft's vote order the higher node id
/// outranks the lower within a term, so when the higher id holds the shorter log, neither can
/// win that term, and both wait out another election timeout, often to collide again (failover
/// under load took up to 2.1 s, in terms +3). A candidate refused by a candidate of its own term
/// whose log is behind its own is the one that can win: it stands again in the next term at
/// once, where the other, whose log is behind, grants it. Only liveness is at stake: an election
/// is always safe to start, and this starts at most one per term.
#[derive(Default)]
pub struct SplitVote {
    raft: std::sync::OnceLock<openraft::Raft<TypeConfig>>,
    last_term: std::sync::atomic::AtomicU64,
}

impl SplitVote {
    pub fn set_raft(&self, raft: openraft::Raft<TypeConfig>) {
        let _ = self.raft.set(raft);
    }

    /// Called with every vote this node asked for and the answer it got.
    fn saw(&self, req: &VoteRequest<NodeId>, resp: &VoteResponse<NodeId>, target: NodeId) {
        let term = req.vote.leader_id.term;
        if !winnable_split(req, resp, target)
            || self.last_term.fetch_max(term, std::sync::atomic::Ordering::AcqRel) >= term
        {
            return;
        }
        if let Some(raft) = self.raft.get().cloned() {
            tracing::info!(term, peer = target, "split vote with a candidate whose log is behind; standing again now");
            tokio::spawn(async move {
                let _ = raft.trigger().elect().await;
            });
        }
    }
}

/// One peer connection per openraft client: openraft calls it one RPC at a time (`&mut self`),
/// so it needs no pool of its own; dropped, it goes back to the network's idle list. Raft traffic
/// uses its own HTTP/1.1 client rather than reqwest because the append round trip is on every
/// write's path (docs/performance.md, "What mattered").
pub struct Conn {
    /// `Err` when the peer's address cannot be used; every call then reports it unreachable.
    http: Result<http1::Conn, String>,
    target: NodeId,
    base: String,
    idle: Idle,
    durable: DurableWatch,
    split: Arc<SplitVote>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        let http = std::mem::replace(&mut self.http, Err(String::new()));
        if let Ok(h) = http {
            let mut idle = self.idle.lock().expect("idle connections lock");
            let list = idle.entry(std::mem::take(&mut self.base)).or_default();
            if list.len() < IDLE_PER_PEER {
                list.push(h);
            }
        }
    }
}

/// Whether `target` refused this node's vote because it stands for itself in the same term
/// while holding a shorter log: a split that this node, not `target`, can win.
fn winnable_split(req: &VoteRequest<NodeId>, resp: &VoteResponse<NodeId>, target: NodeId) -> bool {
    !resp.vote_granted
        && resp.vote.leader_id.term == req.vote.leader_id.term
        && resp.vote.leader_id.node_id == target
        && resp.last_log_id < req.last_log_id
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Conn;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Conn {
        let base = format!("{}://{}/", self.scheme, node.addr);
        let reused = self.idle.lock().expect("idle connections lock").get_mut(&base).and_then(Vec::pop);
        let http = match reused {
            Some(h) => Ok(h),
            None => reqwest::Url::parse(&base)
                .map_err(|e| format!("{base}: {e}"))
                .and_then(|u| http1::Conn::new(&u, &self.opts)),
        };
        Conn { http, target, base, idle: self.idle.clone(), durable: self.durable.clone(), split: self.split.clone() }
    }
}

impl Conn {
    async fn call<Req, Resp, E>(
        &mut self,
        path: &str,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body = wire::encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.send(path, &body, ttl).await
    }

    async fn send<Resp, E>(
        &mut self,
        path: &str,
        body: &[u8],
        ttl: Duration,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let http = match &mut self.http {
            Ok(h) => h,
            Err(e) => return Err(RPCError::Unreachable(Unreachable::new(&std::io::Error::other(e.clone())))),
        };
        let (status, bytes) = match http.send_within(ttl, "POST", path, Some(body)).await {
            Ok(r) => r,
            // Unreachable makes openraft back off instead of retrying a dead peer in a loop.
            Err(e @ http1::Failure::Connect) => return Err(RPCError::Unreachable(Unreachable::new(&e))),
            Err(e) => return Err(RPCError::Network(NetworkError::new(&e))),
        };
        if !(200..300).contains(&status) {
            let msg = String::from_utf8_lossy(bytes).into_owned();
            return Err(RPCError::Network(NetworkError::new(&std::io::Error::other(format!("{status}: {msg}")))));
        }
        let reply: Result<Resp, RaftError<NodeId, E>> =
            wire::decode(bytes).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        reply.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Conn {
    async fn append_entries(
        &mut self,
        mut req: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        // openraft counts the leader's own entries before their fsync; followers must not
        // apply an entry the leader could still lose (wal/durable.rs).
        req.leader_commit = self.durable.cap(req.leader_commit);
        self.call("/raft/append", &req, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        req: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        let body = wire::encode_snapshot_chunk(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.send("/raft/snapshot", &body, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        req: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let resp: VoteResponse<NodeId> = self.call("/raft/vote", &req, option.hard_ttl()).await?;
        self.split.saw(&req, &resp, self.target);
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, LogId, Vote};

    fn log(term: u64, index: u64) -> Option<LogId<NodeId>> {
        Some(LogId::new(CommittedLeaderId::new(term, 1), index))
    }

    #[test]
    fn only_a_refusal_by_a_same_term_candidate_with_a_shorter_log_is_a_split_to_win() {
        let req = VoteRequest { vote: Vote::new(5, 2), last_log_id: log(4, 100) };
        let refused = |vote: Vote<NodeId>, last: Option<LogId<NodeId>>| VoteResponse {
            vote,
            vote_granted: false,
            last_log_id: last,
        };
        assert!(winnable_split(&req, &refused(Vote::new(5, 3), log(4, 99)), 3));
        assert!(winnable_split(&req, &refused(Vote::new(5, 3), None), 3));
        // Its log is as long or longer: it may win; leave the timers to it.
        assert!(!winnable_split(&req, &refused(Vote::new(5, 3), log(4, 100)), 3));
        assert!(!winnable_split(&req, &refused(Vote::new(5, 3), log(4, 101)), 3));
        // It voted for another node, or is in a later term: not a two-candidate split.
        assert!(!winnable_split(&req, &refused(Vote::new(5, 1), log(4, 99)), 3));
        assert!(!winnable_split(&req, &refused(Vote::new(6, 3), log(4, 99)), 3));
        // Granted.
        let granted = VoteResponse { vote: Vote::new(5, 2), vote_granted: true, last_log_id: log(4, 99) };
        assert!(!winnable_split(&req, &granted, 3));
    }
}
