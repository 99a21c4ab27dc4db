//! Accepting connections, plain or TLS, within the `--max-connections` budget, and what the
//! router learns about each connection.
//!
//! Every accepted socket takes a permit from the budget, held until the connection closes. A
//! socket over budget is refused: on plain HTTP it is answered with 503
//! `too_many_connections` (by the server, which reads its request head first, so the client
//! sees the answer instead of a reset), with TLS it is closed at once, before any handshake
//! work. TLS handshakes run in their own tasks, each bounded by [`HANDSHAKE_TIMEOUT`], and
//! finished streams are handed over through a channel: a client that stalls mid-handshake
//! (or a port scanner) costs one task and one permit, never the accept loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A handshake not finished by then is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Finished handshakes waiting for the server to take them.
const READY_QUEUE: usize = 64;

/// Per-connection facts, available to handlers as `ConnectInfo<Conn>`.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    pub remote: SocketAddr,
    /// The client presented a certificate that verified against `--peer-ca`. (The verifier
    /// refuses the handshake for any other certificate, so presented means verified.)
    pub peer_cert: bool,
}

/// An accepted connection.
pub enum Accepted {
    /// Within budget: serve it; the permit is released when it is dropped.
    Plain(TcpStream, Conn, OwnedSemaphorePermit),
    Tls(Box<TlsStream<TcpStream>>, Conn, OwnedSemaphorePermit),
    /// Over budget, plain HTTP: answer 503 and close.
    Refused(TcpStream),
}

pub enum Listener {
    Plain { tcp: TcpListener, permits: Arc<Semaphore> },
    Tls(TlsListener),
}

impl Listener {
    pub fn plain(tcp: TcpListener, permits: Arc<Semaphore>) -> Listener {
        Listener::Plain { tcp, permits }
    }

    pub fn tls(tcp: TcpListener, config: Arc<rustls::ServerConfig>, permits: Arc<Semaphore>) -> Listener {
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        let accepting = tokio::spawn(tls_accept_loop(tcp, TlsAcceptor::from(config), permits, tx));
        Listener::Tls(TlsListener { ready, accepting })
    }

    pub async fn accept(&mut self) -> Accepted {
        match self {
            Listener::Plain { tcp, permits } => {
                let (stream, remote) = accept_tcp(tcp).await;
                match permits.clone().try_acquire_owned() {
                    Ok(permit) => Accepted::Plain(stream, Conn { remote, peer_cert: false }, permit),
                    Err(_) => Accepted::Refused(stream),
                }
            }
            Listener::Tls(tls) => match tls.ready.recv().await {
                Some((stream, conn, permit)) => Accepted::Tls(Box::new(stream), conn, permit),
                // The accept loop never ends by itself; only Drop aborts it, and then nobody
                // waits.
                None => std::future::pending().await,
            },
        }
    }
}

pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, Conn, OwnedSemaphorePermit)>,
    accepting: JoinHandle<()>,
}

/// The server drops the listener when graceful shutdown begins; the port must close then too.
impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// Accepts the next socket, riding out errors like running out of file descriptors.
async fn accept_tcp(tcp: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match tcp.accept().await {
            Ok((stream, remote)) => {
                // TLS turns one response into several socket writes, and Nagle would hold the
                // last one back; plain responses are one write, so it costs nothing there.
                let _ = stream.set_nodelay(true);
                return (stream, remote);
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn tls_accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    permits: Arc<Semaphore>,
    tx: mpsc::Sender<(TlsStream<TcpStream>, Conn, OwnedSemaphorePermit)>,
) {
    loop {
        let (stream, remote) = accept_tcp(&tcp).await;
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Over budget: closing now costs nothing; a handshake to say so would not.
            tracing::debug!(%remote, "connection refused: --max-connections reached");
            continue;
        };
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let peer_cert = tls.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty());
                    // Fails only when the listener is gone (shutting down).
                    let _ = tx.send((tls, Conn { remote, peer_cert }, permit)).await;
                }
                Ok(Err(e)) => tracing::info!(%remote, error = %e, "TLS handshake failed"),
                Err(_) => tracing::info!(%remote, "TLS handshake timed out"),
            }
        });
    }
}
