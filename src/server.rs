//! Runs a node until a shutdown signal: start storage and Raft, serve HTTP (or HTTPS), then
//! drain in-flight requests, stop Raft and flush.
//!
//! A storage failure stops the node the short way: requests in flight get [`FAILED_DRAIN`] to
//! finish, and neither Raft's orderly stop nor the flush is attempted. Both would touch the
//! storage that just failed, and Raft may be waiting on a state machine worker that has quit,
//! so each would only run out its bound (15 s and more in all, where a supervisor and the
//! operator want the exit at once). Nothing in memory is worth saving then: a restart
//! recovers from what is on disk.
//!
//! [`run`] binds `--listen` itself; [`serve`] takes a listener the caller bound (port 0 in the
//! in-process tests, which read the address before they start the node).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::api::{self, AppState};
use crate::config::{ConnectionLimits, NodeConfig};
use crate::connection::{self, Timeouts};
use crate::listener::{Accepted, Conn, Listener};
use crate::net;
pub use crate::node::error::StartError;
use crate::node::{disk, marking, membership, ttl, Node};
use crate::tls::{spawn_reloader, NodeTls};

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
    crate::failpoint::arm_from_env().map_err(StartError::Config)?;
    crate::test_clock::arm_from_env().map_err(StartError::Config)?;
    crate::fsync::arm_ledger_from_env().map_err(StartError::Config)?;
    // Loaded before anything else, so a bad certificate path fails fast and touches no data.
    let (tls, reloader) = config.tls.as_ref().map(NodeTls::load).transpose()?.unzip();
    // From here on SIGHUP reloads the TLS files instead of ending the process, and with TLS a
    // change of the files is picked up too (`tls/reload.rs`). Dropped when `serve` returns.
    let _reloads = spawn_reloader(reloader);
    let local_ip = Some(config.listen.ip()).filter(|ip| !ip.is_unspecified());
    let peer_tls = tls.as_ref().map(|t| t.peer_client.clone());
    let with_tls = tls.is_some();
    let limits = config.connections.clone();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut incoming = match tls {
        Some(tls) => Listener::tls(listener, tls.server, permits),
        None => Listener::plain(listener, permits),
    };
    let (id, start) = (config.id, Node::start(config, peer_tls.clone()));
    let node = answer_while_starting(&mut incoming, id, &limits, start).await?;
    tracing::info!(id = node.id, addr = %node.config.listen, tls = with_tls, "cairn node serving");
    // A join refused for good stops the node (`membership::join_loop`).
    let (fatal_tx, fatal_rx) = tokio::sync::oneshot::channel::<String>();
    if let Some(join) = node.config.join.clone().filter(|_| node.started_empty) {
        let node = node.clone();
        tokio::spawn(async move {
            if let Err(why) = membership::join_loop(node, join).await {
                tracing::error!(%why, "stopping: this node cannot join its cluster");
                let _ = fatal_tx.send(why);
            }
        });
    }
    // So does a storage failure: Raft stopped on a storage error, or a WAL fdatasync failed.
    let storage_failure = disk::failure(node.raft.clone(), node.disk.wal(), node.disk.sm_failed());
    let fatal = Arc::new(std::sync::Mutex::new(None::<Fatal>));
    let shutdown = {
        let fatal = fatal.clone();
        async move {
            let (why, drain) = tokio::select! {
                () = shutdown => return None,
                Ok(why) = fatal_rx => (Fatal::Join(why), None),
                Some(why) = storage_failure => {
                    tracing::error!(%why, "stopping: storage failed; restart the node to recover from what is on disk");
                    (Fatal::Storage(why), Some(FAILED_DRAIN))
                }
            };
            *fatal.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
            drain
        }
    };

    let ticker = tokio::spawn(ttl::run(node.clone()));
    let marking = tokio::spawn(marking::run(node.clone()));
    // The forwarding client sends the cluster secret, so the leader can tell a forwarded
    // request's loop guard from one a client made up (`api/forward.rs`).
    let secret = node.config.security.cluster_secret.clone();
    let forward_http =
        net::peer_client(local_ip, secret.as_deref(), peer_tls).map_err(|e| StartError::Raft(e.to_string()))?;
    let state = AppState::new(node.clone(), forward_http);
    let stopping = state.stopping.clone();
    let shutdown = async move {
        let drain = shutdown.await;
        stopping.send_replace(true);
        drain
    };
    let background = tokio::spawn(api::background(state.clone()));
    let router = api::router(state);
    serve_connections(incoming, router, node.id, &limits, shutdown).await;
    ticker.abort();
    marking.abort();
    background.abort();
    let why = fatal.lock().unwrap_or_else(|e| e.into_inner()).take();
    match why {
        Some(Fatal::Storage(why)) => {
            tracing::info!("HTTP drained; not stopping raft in order after a storage failure");
            Err(StartError::Fatal(why))
        }
        why => {
            tracing::info!("HTTP drained; stopping raft");
            // Bound the stop so a wedged peer connection cannot hold the process forever.
            if tokio::time::timeout(Duration::from_secs(10), node.shutdown()).await.is_err() {
                tracing::warn!("raft did not stop within 10s");
            }
            why.map_or(Ok(()), |(Fatal::Join(why) | Fatal::Storage(why))| Err(StartError::Fatal(why)))
        }
    }
}

/// Why a node stopped on its own.
enum Fatal {
    /// A join refused for good: the storage is sound, so the stop is the orderly one.
    Join(String),
    Storage(String),
}

/// How long requests in flight get to finish after a storage failure. Reads can still be
/// answered; a write waiting on a stopped Raft cannot, and its connection is closed, which its
/// client must take as an unknown outcome (it is one).
pub const FAILED_DRAIN: Duration = Duration::from_secs(1);

/// Connections over `--max-connections` being answered 503 at once, at most; past that they
/// are closed unanswered, so a flood cannot turn refusals into a cost of their own.
const MAX_REFUSING: usize = 256;

/// Serves `router` on `listener` (plain HTTP) with the node's connection handling and
/// `limits`, until `shutdown`: the same HTTP path as a node, for `cairn ceiling`.
pub async fn serve_plain(
    listener: TcpListener,
    router: axum::Router,
    limits: &ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let shutdown = async move {
        shutdown.await;
        None
    };
    serve_connections(Listener::plain(listener, permits), router, 1, limits, shutdown).await;
}

/// Runs `start` (the node's start: opening its data, recovery, asking its peers) while the port
/// answers every request 503 `starting` and closes (`api::starting`), and returns its result.
/// Without this the port accepts connections from the moment it is bound and answers none
/// until the node serves: three peers started together each waited out a 2 s timeout per peer
/// they asked (`node/holders.rs`), and a fresh cluster took 4.1 s to elect instead of 0.1 s.
async fn answer_while_starting<T>(
    incoming: &mut Listener,
    node_id: u64,
    limits: &ConnectionLimits,
    start: impl Future<Output = T>,
) -> T {
    let (router, timeouts) = (api::starting(node_id), timeouts(limits));
    // Connections over `--max-connections` are answered too, as many as the serving loop
    // answers at once (`MAX_REFUSING`); past that they are closed unanswered.
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    tokio::pin!(start);
    loop {
        tokio::select! {
            out = &mut start => return out,
            accepted = incoming.accept() => {
                // Over `--max-connections` or not, every request gets the same answer here.
                let Some((io, conn, permit, _over)) = admit(accepted, &refusing) else { continue };
                let router = router.clone();
                // Detached: each connection ends after its one answer, or at its timeouts.
                tokio::spawn(async move {
                    let _permit = permit;
                    let _ = connection::serve(io, conn, router, timeouts, std::future::pending()).await;
                });
            }
        }
    }
}

/// An accepted connection, ready to serve: its stream, who it is, the permit it holds, and
/// whether it is over `--max-connections` (then the permit is one of the `MAX_REFUSING`
/// answering it). `None`: over both budgets, or its address is unreadable; it is dropped.
fn admit(accepted: Accepted, refusing: &Arc<Semaphore>) -> Option<(Box<dyn Io>, Conn, OwnedSemaphorePermit, bool)> {
    match accepted {
        Accepted::Plain(stream, conn, permit) => Some((Box::new(stream), conn, permit, false)),
        Accepted::Tls(stream, conn, permit) => Some((stream, conn, permit, false)),
        Accepted::Refused(stream) => {
            let permit = refusing.clone().try_acquire_owned().ok()?;
            let remote = stream.peer_addr().ok()?;
            Some((Box::new(stream), Conn { remote, peer_cert: false }, permit, true))
        }
    }
}

fn timeouts(limits: &ConnectionLimits) -> Timeouts {
    Timeouts {
        header: limits.header_timeout,
        body: limits.body_timeout,
        idle: limits.idle_timeout,
        send: limits.send_timeout,
    }
}

/// Accepts and serves connections until `shutdown`, then drains: the port closes, every
/// connection finishes its requests in flight (idle ones close at once), and whatever is still
/// open after `--drain-timeout-ms`, or the shorter bound `shutdown` gave, is closed.
async fn serve_connections(
    mut incoming: Listener,
    router: axum::Router,
    node_id: u64,
    limits: &ConnectionLimits,
    shutdown: impl Future<Output = Option<Duration>>,
) {
    let timeouts = timeouts(limits);
    let (drain_tx, drain_rx) = watch::channel(false);
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let over_capacity = api::over_capacity(node_id);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    let drain_timeout = loop {
        tokio::select! {
            drain = &mut shutdown => break drain.map_or(limits.drain_timeout, |d| d.min(limits.drain_timeout)),
            accepted = incoming.accept() => {
                let Some((io, conn, permit, over)) = admit(accepted, &refusing) else { continue };
                if over {
                    let router = over_capacity.clone();
                    connections.spawn(async move {
                        let _permit = permit;
                        let _ = connection::serve(io, conn, router, timeouts, std::future::pending()).await;
                    });
                    continue;
                }
                let (router, mut drain) = (router.clone(), drain_rx.clone());
                connections.spawn(async move {
                    let _permit = permit;
                    let draining = async move {
                        let _ = drain.wait_for(|d| *d).await;
                    };
                    match connection::serve(io, conn, router, timeouts, draining).await {
                        Ok(Some(closed)) => tracing::debug!(remote = %conn.remote, ?closed, "connection closed by a limit"),
                        Ok(None) => {}
                        Err(e) => tracing::debug!(remote = %conn.remote, error = %e, "connection ended with an error"),
                    }
                });
            }
            // Reaps finished connections so the set holds only open ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    };
    // Closes the port (and, with TLS, stops the handshakes) before the drain.
    drop(incoming);
    let _ = drain_tx.send(true);
    let drained = tokio::time::timeout(drain_timeout, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(open = connections.len(), "drain timeout passed; closing the connections still open");
        connections.shutdown().await;
    }
}

/// A connection's stream, plain or TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// Resolves on SIGINT or SIGTERM: the binary's shutdown future. (SIGHUP reloads the TLS files;
/// `serve` handles it.)
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
