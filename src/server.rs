//! Runs a node until a shutdown signal: start storage and Raft, serve HTTP (or HTTPS), then
//! drain in-flight requests, stop Raft and flush.
//!
//! [`run`] binds `--listen` itself; [`serve`] takes a listener the caller bound (port 0 in the
//! in-process tests, which read the address before they start the node).

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::api::{self, AppState};
use crate::config::NodeConfig;
use crate::listener::{Conn, TlsListener};
use crate::net;
pub use crate::node::error::StartError;
use crate::node::{membership, ttl, Node};
use crate::tls::NodeTls;

/// Binds `config.listen` and serves on it until `shutdown` resolves.
pub async fn run(config: NodeConfig, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), StartError> {
    config.validate().map_err(StartError::Config)?;
    let listener =
        TcpListener::bind(config.listen).await.map_err(StartError::io(format!("listen on {}", config.listen)))?;
    serve(listener, config, shutdown).await
}

/// Serves on `listener` until `shutdown` resolves. `config.listen` becomes the listener's
/// address (and so does `advertise`, when it was only `--listen`'s default), so a caller may
/// bind port 0.
pub async fn serve(
    listener: TcpListener,
    mut config: NodeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let bound = listener.local_addr().map_err(StartError::io("read the listener's address"))?;
    if config.listen != bound {
        if config.advertise == config.listen.to_string() {
            config.advertise = bound.to_string();
        }
        config.listen = bound;
    }
    // Checked here as well as by `ServeArgs`, so an embedding program that builds its own
    // `NodeConfig` gets the same refusals as the binary.
    config.validate().map_err(StartError::Config)?;
    // Loaded before anything else, so a bad certificate path fails fast and touches no data.
    let tls = config.tls.as_ref().map(NodeTls::load).transpose()?;
    let local_ip = Some(config.listen.ip()).filter(|ip| !ip.is_unspecified());
    let peer_tls = tls.as_ref().map(|t| t.peer_client.clone());
    let node = Node::start(config, peer_tls.clone()).await?;
    tracing::info!(id = node.id, addr = %node.config.listen, tls = tls.is_some(), "cairn node serving");
    if let Some(join) = node.config.join.clone().filter(|_| node.started_empty) {
        tokio::spawn(membership::join_loop(node.clone(), join));
    }

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

/// Resolves on SIGINT or SIGTERM: the binary's shutdown future.
pub async fn shutdown_signal() {
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
