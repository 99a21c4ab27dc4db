//! The HTTPS listener and what the router learns about each connection.
//!
//! TLS handshakes run in their own tasks, each bounded by [`HANDSHAKE_TIMEOUT`], and finished
//! streams are handed to axum through a channel: a client that stalls mid-handshake (or a port
//! scanner) costs one task, never the accept loop, so other clients and peers keep connecting.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A handshake not finished by then is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Finished handshakes waiting for axum to take them.
const READY_QUEUE: usize = 64;

/// Per-connection facts, available to handlers as `ConnectInfo<Conn>`.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    pub remote: SocketAddr,
    /// The client presented a certificate that verified against `--peer-ca`. (The verifier
    /// refuses the handshake for any other certificate, so presented means verified.)
    pub peer_cert: bool,
}

impl Connected<IncomingStream<'_, TcpListener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        Conn { remote: *stream.remote_addr(), peer_cert: false }
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        *stream.remote_addr()
    }
}

pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, Conn)>,
    local: SocketAddr,
    accepting: JoinHandle<()>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        let accepting = tokio::spawn(accept_loop(tcp, TlsAcceptor::from(config), tx));
        Ok(TlsListener { ready, local, accepting })
    }
}

/// axum drops the listener when graceful shutdown begins; the port must close then too.
impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

async fn accept_loop(tcp: TcpListener, acceptor: TlsAcceptor, tx: mpsc::Sender<(TlsStream<TcpStream>, Conn)>) {
    loop {
        let (stream, remote) = match tcp.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Like axum's own loop: out of file descriptors and the like pass; back off.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // TLS turns one response into several socket writes; Nagle would hold the last back.
        let _ = stream.set_nodelay(true);
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let peer_cert = tls.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty());
                    // Fails only when the listener is gone (shutting down).
                    let _ = tx.send((tls, Conn { remote, peer_cert })).await;
                }
                Ok(Err(e)) => tracing::info!(%remote, error = %e, "TLS handshake failed"),
                Err(_) => tracing::info!(%remote, "TLS handshake timed out"),
            }
        });
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = Conn;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept loop never ends by itself; only Drop aborts it, and then nobody waits.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Conn> {
        Ok(Conn { remote: self.local, peer_cert: false })
    }
}
