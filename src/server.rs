//! Runs a node until a shutdown signal: start storage and Raft, serve HTTP (or HTTPS), then
//! drain in-flight requests, stop Raft and flush.

use std::future::Future;
use std::time::Duration;

use crate::api::{self, AppState};
use crate::config::NodeConfig;
use crate::error::StartError;
use crate::listener::{Conn, TlsListener};
use crate::node::Node;
use crate::tls::NodeTls;
use crate::{net, ttl};

pub async fn run(config: NodeConfig, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), StartError> {
    // Loaded before anything else, so a bad certificate path fails fast and touches no data.
    let tls = config.tls.as_ref().map(NodeTls::load).transpose()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(StartError::io(format!("listen on {}", config.listen)))?;
    let local_ip = Some(config.listen.ip()).filter(|ip| !ip.is_unspecified());
    let peer_tls = tls.as_ref().map(|t| t.peer_client.clone());
    let node = Node::start(config, peer_tls.clone()).await?;
    tracing::info!(id = node.id, addr = %node.config.listen, tls = tls.is_some(), "cairn node serving");

    let ticker = tokio::spawn(ttl::run(node.clone()));
    let forward_http = net::peer_client(local_ip, None, peer_tls).map_err(|e| StartError::Raft(e.to_string()))?;
    let app = api::router(AppState::new(node.clone(), forward_http));
    let app = app.into_make_service_with_connect_info::<Conn>();
    let served = match tls {
        Some(tls) => {
            let listener = TlsListener::new(listener, tls.server).map_err(StartError::io("listen for TLS"))?;
            axum::serve(listener, app).with_graceful_shutdown(shutdown).await
        }
        None => axum::serve(listener, app).with_graceful_shutdown(shutdown).await,
    };
    ticker.abort();
    tracing::info!("HTTP drained; stopping raft");
    // Bound the stop so a wedged peer connection cannot hold the process forever.
    if tokio::time::timeout(Duration::from_secs(10), node.shutdown()).await.is_err() {
        tracing::warn!("raft did not stop within 10s");
    }
    served.map_err(StartError::io("serve HTTP"))
}
