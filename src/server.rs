//! Runs a node until a shutdown signal: start storage and Raft, serve HTTP, then drain
//! in-flight requests, stop Raft and flush.

use std::future::Future;
use std::time::Duration;

use crate::api::{self, AppState};
use crate::config::NodeConfig;
use crate::error::StartError;
use crate::node::Node;
use crate::{net, ttl};

pub async fn run(config: NodeConfig, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), StartError> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(StartError::io(format!("listen on {}", config.listen)))?;
    let local_ip = Some(config.listen.ip()).filter(|ip| !ip.is_unspecified());
    let node = Node::start(config).await?;
    tracing::info!(id = node.id, addr = %node.config.listen, "cairn node serving");

    let ticker = tokio::spawn(ttl::run(node.clone()));
    let forward_http = net::http_client(local_ip, None).map_err(|e| StartError::Raft(e.to_string()))?;
    let app = api::router(AppState::new(node.clone(), forward_http));
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let served = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    ticker.abort();
    tracing::info!("HTTP drained; stopping raft");
    // Bound the stop so a wedged peer connection cannot hold the process forever.
    if tokio::time::timeout(Duration::from_secs(10), node.shutdown()).await.is_err() {
        tracing::warn!("raft did not stop within 10s");
    }
    served.map_err(StartError::io("serve HTTP"))
}
