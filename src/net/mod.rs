//! Outgoing Raft RPCs: openraft's network factory over HTTP/1.1 with bincode bodies, one
//! keep-alive connection per openraft client (`http1.rs`). Client forwarding and the node's
//! other peer requests use reqwest (`peer_client`), on connections of their own, so a burst of
//! proxied requests cannot delay heartbeats.
//!
//! With TLS the peer client dials `https://` with the node's rustls client configuration.

pub mod campaign;
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
use campaign::Campaign;

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
    campaign: Arc<Campaign>,
}

impl Network {
    /// `scheme` is `http` or `https`, as the whole cluster uses (`NodeConfig::peer_scheme`).
    /// `durable` is this node's WAL: the commit index sent to followers never passes it.
    /// `campaign` hears every vote this node asks for.
    pub fn new(opts: http1::Options, scheme: &'static str, durable: DurableWatch, campaign: Arc<Campaign>) -> Self {
        Network { opts, scheme, idle: Idle::default(), durable, campaign }
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
    campaign: Arc<Campaign>,
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
        Conn {
            http,
            target,
            base,
            idle: self.idle.clone(),
            durable: self.durable.clone(),
            campaign: self.campaign.clone(),
        }
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
        let target = self.target;
        let (status, bytes) = self.exchange(path, body, ttl).await?;
        answer(target, status, bytes)
    }

    /// One request and its response, whatever the status.
    async fn exchange<E>(
        &mut self,
        path: &str,
        body: &[u8],
        ttl: Duration,
    ) -> Result<(u16, &[u8]), RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        E: std::error::Error,
    {
        let http = match &mut self.http {
            Ok(h) => h,
            Err(e) => return Err(RPCError::Unreachable(Unreachable::new(&std::io::Error::other(e.clone())))),
        };
        match http.send_within(ttl, "POST", path, Some(body)).await {
            Ok(r) => Ok(r),
            // Unreachable makes openraft back off instead of retrying a dead peer in a loop.
            Err(e @ http1::Failure::Connect) => Err(RPCError::Unreachable(Unreachable::new(&e))),
            Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }
}

/// Turns a peer's response into the RPC's result.
// The error is openraft's own RPC error, which `RaftNetwork` returns as it is.
#[allow(clippy::result_large_err)]
fn answer<Resp, E>(
    target: NodeId,
    status: u16,
    bytes: &[u8],
) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
where
    Resp: DeserializeOwned,
    E: std::error::Error + DeserializeOwned,
{
    if !(200..300).contains(&status) {
        let msg = String::from_utf8_lossy(bytes).into_owned();
        return Err(RPCError::Network(NetworkError::new(&std::io::Error::other(format!("{status}: {msg}")))));
    }
    let reply: Result<Resp, RaftError<NodeId, E>> =
        wire::decode(bytes).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
    reply.map_err(|e| RPCError::RemoteError(RemoteError::new(target, e)))
}

/// How long a vote refused with 503 waits before it is sent again.
const VOTE_RETRY_PAUSE: Duration = Duration::from_millis(20);

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
        let body = wire::encode(&req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let (target, deadline) = (self.target, tokio::time::Instant::now() + option.hard_ttl());
        // A 503 is a peer that did not hand the vote to Raft: it is still starting (answering
        // `starting` until its data is open) or over `--max-connections` (no `/raft/*` handler
        // answers 503). In a cluster whose nodes start together the first vote can meet one,
        // and failing it costs the cluster an election timeout when no other peer grants the
        // vote (BUG-14); asking again within the vote's deadline is safe, since a vote may be
        // delivered any number of times.
        let resp: VoteResponse<NodeId> = loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let (status, bytes) = self.exchange("/raft/vote", &body, left).await?;
            if status == 503 && left > VOTE_RETRY_PAUSE * 2 {
                tokio::time::sleep(VOTE_RETRY_PAUSE).await;
                continue;
            }
            break answer(target, status, bytes)?;
        };
        self.campaign.asked(&req, &resp, self.target);
        Ok(resp)
    }
}

#[cfg(test)]
mod tests;
