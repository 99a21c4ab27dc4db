//! Outgoing Raft RPCs: openraft's network factory over HTTP (reqwest) with bincode bodies.
//! One shared keep-alive `reqwest::Client` serves every peer connection; client forwarding
//! uses a separate one (see `api::forward`) so a burst of proxied requests cannot starve
//! heartbeats of connections.
//!
//! With TLS the peer client dials `https://` with the node's rustls client configuration.

pub mod wire;

use std::net::IpAddr;
use std::sync::Arc;
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

use crate::types::{NodeId, TypeConfig};

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
        headers.insert(crate::api::H_CLUSTER_SECRET, s);
    }
    let mut builder = reqwest::Client::builder()
        .default_headers(headers)
        .local_address(local_ip)
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(2));
    if let Some(tls) = tls {
        // reqwest takes the config by value; the Arc only spares the node a second load.
        builder = builder.use_preconfigured_tls(rustls::ClientConfig::clone(&tls));
    }
    builder.build()
}

#[derive(Clone)]
pub struct Network {
    http: reqwest::Client,
    scheme: &'static str,
}

impl Network {
    /// `scheme` is `http` or `https`, as the whole cluster uses (`NodeConfig::peer_scheme`).
    pub fn new(http: reqwest::Client, scheme: &'static str) -> Self {
        Network { http, scheme }
    }
}

pub struct Conn {
    http: reqwest::Client,
    target: NodeId,
    base: String,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Conn;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Conn {
        Conn { http: self.http.clone(), target, base: format!("{}://{}/raft", self.scheme, node.addr) }
    }
}

impl Conn {
    async fn call<Req, Resp, E>(
        &self,
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
        self.send(path, body, ttl).await
    }

    async fn send<Resp, E>(
        &self,
        path: &str,
        body: Vec<u8>,
        ttl: Duration,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let sent = self
            .http
            .post(format!("{}/{path}", self.base))
            .header("content-type", wire::CONTENT_TYPE)
            .timeout(ttl)
            .body(body)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            // Unreachable makes openraft back off instead of retrying a dead peer in a loop.
            Err(e) if e.is_connect() => return Err(RPCError::Unreachable(Unreachable::new(&e))),
            Err(e) => return Err(RPCError::Network(NetworkError::new(&e))),
        };
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        if !status.is_success() {
            let msg = String::from_utf8_lossy(&bytes).into_owned();
            return Err(RPCError::Network(NetworkError::new(&std::io::Error::other(format!("{status}: {msg}")))));
        }
        let reply: Result<Resp, RaftError<NodeId, E>> =
            wire::decode(&bytes).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        reply.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Conn {
    async fn append_entries(
        &mut self,
        req: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call("append", &req, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        req: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        let body = wire::encode_snapshot_chunk(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.send("snapshot", body, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        req: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call("vote", &req, option.hard_ttl()).await
    }
}
